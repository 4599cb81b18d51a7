"""One memory measurement in a fresh process: `python -m lab.sweeps.child '<json spec>'`.

CPU peak RSS is a per-process high-water mark, so every (model, mode) case runs alone here and
prints one JSON line: saved-for-backward MiB and the peak memory of two training steps.
``kind="depth"`` specs measure a case of the depth sweep (lab.sweeps.sweep.measure_case), any
other spec a named model (lab.sweeps.measure.measure_model).
"""

from __future__ import annotations

import json
import sys

import torch


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    if "threads" in spec:
        torch.set_num_threads(spec["threads"])
    if spec.get("kind") == "depth":  # scaling, modes and the Depth lab
        from lab.sweeps.sweep import measure_case

        print(json.dumps(measure_case(spec)))
        return 0
    from lab.sweeps.measure import measure_model

    print(json.dumps(measure_model(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
