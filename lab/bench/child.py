"""One peer measurement in a fresh process: `python -m lab.bench.child '<json spec>'`.

CPU peak RSS is a per-process high-water mark, so every contender of the peers suite runs alone
here (lab.bench.peers.measure_contender) and prints one JSON line. Our own models and depth cases
are measured by `lab.sweeps.child`.
"""

from __future__ import annotations

import json
import sys

import torch

from lab.bench.peers import measure_contender


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    if "threads" in spec:
        torch.set_num_threads(spec["threads"])
    print(json.dumps(measure_contender(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
