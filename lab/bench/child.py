"""One memory measurement in a fresh process: `python -m lab.bench.child '<json spec>'`.

CPU peak RSS is a per-process high-water mark, so every (model, mode) case runs alone here and
prints one JSON line: saved-for-backward MiB and the peak memory of two training steps.
``kind="peer"`` specs measure a contender of the peers suite (lab.bench.peers.measure_contender),
``kind="depth"`` a case of the depth sweep (lab.bench.sweep.measure_case).
"""

from __future__ import annotations

import json
import sys

import torch

from lab.bench.common import measure_model


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    if "threads" in spec:
        torch.set_num_threads(spec["threads"])
    if spec.get("kind", "model") == "peer":  # lab.bench.peers: a contender of the peers suite
        from lab.bench.peers import measure_contender

        print(json.dumps(measure_contender(spec)))
        return 0
    if spec.get("kind") == "depth":  # lab.bench.sweep: scaling, modes and the Depth lab
        from lab.bench.sweep import measure_case

        print(json.dumps(measure_case(spec)))
        return 0
    print(json.dumps(measure_model(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
