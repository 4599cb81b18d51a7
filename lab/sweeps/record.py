"""A depth sweep as a run of the store: its stored config and the result file in its folder.

A sweep is a run like any other (queued, cancelled, resumed, marked stale by ``lab.runs.jobs``)
whose config says ``{"kind": "depth-sweep", ...}`` and whose worker is ``lab.sweeps.worker``. Its
results live in ``runs/<id>/sweep.json`` (rewritten after every measured case, so a page can
draw a sweep while it runs). The sweep's process (lab.sweeps.worker), the Depth lab's view and
its figure read and write them here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lab.sweeps.sweep import SweepConfig

KIND = "depth-sweep"            # config["kind"] of every sweep run
WORKER = "lab.sweeps.worker"     # the module that runs a sweep: python -m lab.sweeps.worker ID
RESULT_NAME = "sweep.json"      # the payload in the run folder
STORED = ("kind", "model", "layers")  # config keys beside the SweepConfig fields


def to_sweep(config: dict) -> SweepConfig:
    """The validated SweepConfig of a stored sweep config."""
    if config.get("kind") != KIND:
        raise ValueError(f"not a depth-sweep config (kind={config.get('kind')!r})")
    return SweepConfig.from_dict({k: v for k, v in config.items() if k not in STORED}).validate()


def payload_of(cfg: SweepConfig, rows: list[dict], machine: dict,
               progress: dict[str, Any] | None = None, complete: bool = False) -> dict:
    """The JSON a sweep run keeps in its folder."""
    return dict(benchmark=KIND, family=cfg.family, config=cfg.to_dict(), stages=cfg.stages,
                machine=machine, rows=rows, progress=progress or {}, complete=complete)


def write_result(run_dir: Path, payload: dict) -> Path:
    """Write a sweep's payload atomically (readers never see half a file)."""
    path = Path(run_dir) / RESULT_NAME
    tmp = path.with_name(f".{RESULT_NAME}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_result(run_dir: Path) -> dict | None:
    """A sweep's payload, or None before its first case (or if the file is unreadable)."""
    try:
        return json.loads((Path(run_dir) / RESULT_NAME).read_text())
    except (OSError, ValueError):
        return None


def memory_metric(rows: list[dict]) -> str:
    """The activation-memory column: allocator bytes held, else autograd's saved bytes."""
    return "held_mib" if rows and all(r.get("held_mib") is not None for r in rows
                                       if not r.get("notes")) else "saved_mib"
