"""One memory measurement in a fresh process: `python -m lab.bench.child '<json spec>'`.

CPU peak RSS is a per-process high-water mark, so every (model, mode) case runs alone here and
prints one JSON line: saved-for-backward MiB and the peak memory of two training steps.
``kind="peer"`` specs measure a contender of the peers suite (lab.bench.peers.measure_contender).
"""

from __future__ import annotations

import json
import sys

import torch

import core
from lab.bench.common import (
    make_batch,
    peak_step_memory,
    resolve_device,
    saved_mib,
    sgd,
    train_step,
)


def measure_model(spec: dict) -> dict:
    """spec: model, model_kwargs, mode, batch, size, channels, classes, device, steps."""
    device = resolve_device(spec.get("device", "cpu"))
    torch.manual_seed(0)
    model = core.create_model(spec["model"], num_classes=spec["classes"],
                              in_channels=spec["channels"], memory=spec["mode"],
                              **spec.get("model_kwargs", {})).to(device)
    opt = sgd(model)
    x, y = make_batch(spec["batch"], spec["channels"], spec["size"], spec["classes"], device)
    saved = saved_mib(lambda: model(x), model.parameters())
    mem = peak_step_memory(lambda: train_step(model, opt, x, y), device, spec.get("steps", 2))
    return dict(saved_mib=saved, **mem)


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    if "threads" in spec:
        torch.set_num_threads(spec["threads"])
    if spec.get("kind", "model") == "peer":  # lab.bench.peers: a contender of the peers suite
        from lab.bench.peers import measure_contender

        print(json.dumps(measure_contender(spec)))
        return 0
    print(json.dumps(measure_model(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
