"""A stand-in for `python -m lab.runs.worker` in DDP tests: the real worker and Trainer, plus each
rank's final weights saved to $LAB_TEST_REPLICAS/rank<RANK>.safetensors (to compare replicas)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from safetensors.torch import save_file

from lab.runs import worker


class DumpingTrainer:
    def __init__(self, config: dict, run_dir: Path, callbacks: list):
        self.inner = worker.default_trainer(config, run_dir, callbacks)

    def request_stop(self) -> None:
        self.inner.request_stop()

    def fit(self, resume: bool = False):
        result = self.inner.fit(resume=resume)
        out = os.environ.get("LAB_TEST_REPLICAS")
        if out and result.status == "completed":
            state = {k: v.contiguous() for k, v in self.inner.model.state_dict().items()}
            save_file(state, os.path.join(out, f"rank{os.environ.get('RANK', '0')}.safetensors"))
        return result


def factory(config: dict, run_dir: Path, callbacks: list) -> DumpingTrainer:
    return DumpingTrainer(config, run_dir, callbacks)


if __name__ == "__main__":
    sys.exit(worker.main(trainer_factory=factory))
