"""A stand-in for `python -m lab.runs.worker` in tests: the real worker with a scripted trainer.

The run's config scripts the trainer (no torch, starts in a few tens of milliseconds):
steps, steps_per_epoch, step_time (s), crash_at (step), ignore_term (request_stop does nothing),
trace (a file that gets "start"/"end" lines with monotonic times, for overlap checks).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from lab.runs import worker


class ScriptedTrainer:
    def __init__(self, config: dict, run_dir: Path, callbacks: list):
        self.config, self.run_dir, self.callbacks = config, Path(run_dir), callbacks
        self.stop = False

    def request_stop(self) -> None:
        if not self.config.get("ignore_term"):
            self.stop = True

    def _emit(self, method: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, method)(*args)

    def _trace(self, what: str) -> None:
        if self.config.get("trace"):
            with open(self.config["trace"], "a") as f:
                f.write(f"{what} {time.monotonic()} {os.getpid()}\n")

    def _checkpoint(self, step: int) -> None:
        path = self.run_dir / "ckpt.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"step": step}))
        os.replace(tmp, path)  # atomic, like the real trainer's checkpoints
        self._emit("on_checkpoint", str(path))

    def fit(self, resume: bool = False):
        steps = self.config.get("steps", 3)
        per_epoch = self.config.get("steps_per_epoch", 2)
        ckpt = self.run_dir / "ckpt.json"
        start = json.loads(ckpt.read_text())["step"] if resume and ckpt.exists() else 0
        self._trace("start")
        self._emit("on_start", {"total_steps": steps, "resumed_from_step": start if resume
                                else None,
                                "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES")})
        for step in range(start, steps):
            if self.stop:
                self._checkpoint(step)
                self._trace("end")
                return SimpleNamespace(status="interrupted", reason=None, final=None)
            if self.config.get("crash_at") == step:
                raise RuntimeError(f"scripted crash at step {step}")
            time.sleep(self.config.get("step_time", 0.0))
            self._emit("on_step", {"step": step, "epoch": step // per_epoch,
                                   "loss": 1.0 / (step + 1), "acc": step / steps, "lr": 0.1,
                                   "epoch_frac": step / per_epoch})
            if (step + 1) % per_epoch == 0:
                self._emit("on_epoch", {"epoch": step // per_epoch, "train_loss": 0.5,
                                        "train_acc": 0.5, "test_loss": 0.4,
                                        "test_acc": (step + 1) / steps})
                self._checkpoint(step + 1)
        self._checkpoint(steps)
        self._trace("end")
        return SimpleNamespace(status="completed", reason=None,
                               final={"test_acc": 1.0, "steps": steps})


if __name__ == "__main__":
    sys.exit(worker.main(sys.argv[1:], trainer_factory=ScriptedTrainer))
