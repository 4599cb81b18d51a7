"""The process of one depth sweep, `python -m lab.sweeps.worker RUN_ID`: lab.runs.worker's life
cycle (heartbeat, SIGTERM, status, log) around lab.sweeps.sweep instead of the trainer.

After every measured case the results so far and the progress go to ``runs/<id>/sweep.json``;
each case is also a step metric (step = cases done; extras: total, message). A resumed sweep
keeps the depths it finished and measures the rest.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from core.device import resolve_device
from lab.runs import worker
from lab.sweeps import record
from lab.sweeps.measure import machine_info
from lab.sweeps.sweep import SweepStopped, run_sweep


class SweepRunner:
    """A ``lab.runs.worker`` trainer that runs a sweep: ``fit(resume)`` and ``request_stop()``."""

    def __init__(self, config: dict, run_dir: Path, callbacks: list):
        self.cfg = record.to_sweep(config)  # validated again: the code may have moved
        self.run_dir, self.callbacks = Path(run_dir), callbacks
        self.stop = False

    def request_stop(self) -> None:
        self.stop = True

    def _emit(self, method: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, method)(*args)

    def fit(self, resume: bool = False) -> SimpleNamespace:
        cfg, modes = self.cfg, self.cfg.mode_list()
        old = record.read_result(self.run_dir) if resume else None
        rows = [r for r in (old or {}).get("rows", []) if r.get("blocks") in cfg.blocks]
        finished = {n for n in cfg.blocks
                    if {r["mode"] for r in rows if r["blocks"] == n} >= set(modes)}
        rows = [r for r in rows if r["blocks"] in finished]
        todo = [n for n in cfg.blocks if n not in finished]
        total = len(cfg.blocks) * (len(modes) + 1)
        state = {"done": len(finished) * (len(modes) + 1), "message": ""}
        machine = machine_info(resolve_device(cfg.device))

        def save(complete: bool = False) -> None:
            progress = dict(done=state["done"], total=total, message=state["message"])
            record.write_result(self.run_dir, record.payload_of(
                cfg, rows, machine, progress, complete))

        def progress(_done: int, _total: int, message: str) -> None:
            state["done"] += 1
            state["message"] = message
            self._emit("on_step", dict(step=state["done"], time=time.time(), total=total,
                                       message=message))
            save()

        self._emit("on_start", dict(total_cases=total, depths=[cfg.layers(n) for n in cfg.blocks],
                                    resumed_depths=[cfg.layers(n) for n in sorted(finished)]))
        save()
        for n in todo:
            try:
                rows += run_sweep(dataclasses.replace(cfg, blocks=(n,)), progress=progress,
                                  should_stop=lambda: self.stop)
            except SweepStopped:
                save()
                return SimpleNamespace(status="interrupted", reason="stopped between two cases",
                                       final=dict(rows=len(rows)))
            self._emit("on_event", "depth", f"{cfg.layers(n)} layers measured")
            save()
        state["message"] = "done"
        save(complete=True)
        failed = [r for r in rows if r.get("notes")]
        return SimpleNamespace(status="completed", reason=None, final=dict(
            rows=len(rows), depths=len(cfg.blocks), failed_cases=len(failed),
            result=str(self.run_dir / record.RESULT_NAME)))


if __name__ == "__main__":
    sys.exit(worker.main(sys.argv[1:], trainer_factory=SweepRunner))
