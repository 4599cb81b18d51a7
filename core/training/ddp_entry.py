"""Command line for one training run: a single process, or one of many under ``torchrun``.

    python -m core.training.ddp_entry --config cfg.json --run-dir runs/demo [--resume]
    torchrun --standalone --nproc_per_node 2 -m core.training.ddp_entry \\
        --config cfg.json --run-dir runs/demo [--resume]

``cfg.json`` holds ``TrainConfig`` keys (missing ones take defaults; unknown ones are an error).
Under torchrun every process trains its shard of each batch (gloo on CPU, nccl on CUDA; on
CUDA each process takes the GPU of its LOCAL_RANK); rank 0 alone writes the run folder and
prints one JSON object per line: ``{"epoch": {...}}``, ``{"event": [kind, message]}``, and
finally ``{"result": {"status", "reason", "final"}}``.

Exit status: 0 completed, 1 failed, 3 interrupted (2 is a usage error).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.training.config import TrainConfig
from core.training.trainer import Callback, Trainer

EXIT_CODES = {"completed": 0, "failed": 1, "interrupted": 3}


class JsonLines(Callback):
    """Prints epochs and events as JSON lines (rank 0 only, like every callback)."""

    def __init__(self, stream=None):
        self.stream = stream

    def _print(self, obj) -> None:
        print(json.dumps(obj), file=self.stream or sys.stdout, flush=True)

    def on_epoch(self, m: dict) -> None:
        self._print({"epoch": m})

    def on_event(self, kind: str, message: str) -> None:
        self._print({"event": [kind, message]})


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core.training.ddp_entry",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True, help="JSON file of TrainConfig keys")
    p.add_argument("--run-dir", type=Path, required=True, help="folder for checkpoints")
    p.add_argument("--resume", action="store_true", help="continue the run folder's checkpoint")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = TrainConfig.from_dict(json.loads(args.config.read_text()))
        trainer = Trainer(cfg, args.run_dir, [JsonLines()])
    except (OSError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        result = trainer.fit(resume=args.resume)
    except ValueError as e:  # e.g. a checkpoint exists without --resume, or data files missing
        print(f"error: {e}", file=sys.stderr)
        return 2
    if trainer.is_main:
        JsonLines()._print({"result": {"status": result.status, "reason": result.reason,
                                       "final": result.final}})
    return EXIT_CODES[result.status]


if __name__ == "__main__":
    sys.exit(main())
