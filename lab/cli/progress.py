"""A terminal progress bar for foreground training: a core.training Callback writing to stderr.

Shows the epoch, running loss and accuracy and an ETA (tqdm when installed, else a plain
carriage-return line), and one summary line per finished epoch.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO


def _fmt(x: Any, spec: str = ".4f") -> str:
    return "-" if x is None else format(x, spec) if isinstance(x, (int, float)) else str(x)


class ProgressBar:
    """Callback drawing training progress. `epochs` sizes the bar when the trainer does not say
    how many steps there are (from on_start's `total_steps` or `steps_per_epoch`)."""

    def __init__(self, epochs: int | None = None, file: TextIO | None = None):
        self.epochs, self.file = epochs, file or sys.stderr
        self._bar: Any = None
        self._total: int | None = None
        self._done = 0
        self._t0 = time.monotonic()
        self._last_draw = 0.0
        self._epoch: Any = None

    def on_start(self, info: Mapping[str, Any]) -> None:
        total = info.get("total_steps")
        if total is None and info.get("steps_per_epoch") and self.epochs:
            total = int(info["steps_per_epoch"]) * self.epochs
        self._total = int(total) if total else None
        self._done = int(info.get("resumed_from_step") or 0)
        self._t0 = time.monotonic()
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self._bar = tqdm(total=self._total, initial=self._done, file=self.file, unit="step",
                         dynamic_ncols=True, leave=True)

    def on_step(self, m: Mapping[str, Any]) -> None:
        self._epoch = m.get("epoch", self._epoch)
        epoch = f"{_fmt(self._epoch, 'd')}/{self.epochs}" if self.epochs else _fmt(self._epoch)
        postfix = f"epoch {epoch} loss {_fmt(m.get('loss'))} acc {_fmt(m.get('acc'), '.3f')}"
        self._done += 1
        if self._bar is not None:
            self._bar.set_description_str(postfix, refresh=False)
            self._bar.update(1)
            return
        now = time.monotonic()
        if now - self._last_draw < 0.2:
            return
        self._last_draw = now
        rate = (now - self._t0) / max(self._done, 1)
        eta = f" ETA {rate * (self._total - self._done):.0f}s" if self._total else ""
        total = f"/{self._total}" if self._total else ""
        self.file.write(f"\r{postfix} step {self._done}{total}{eta}  ")
        self.file.flush()

    def on_epoch(self, m: Mapping[str, Any]) -> None:
        line = (f"epoch {_fmt(m.get('epoch'), 'd')}: train loss {_fmt(m.get('train_loss'))} "
                f"acc {_fmt(m.get('train_acc'), '.4f')} | test loss {_fmt(m.get('test_loss'))} "
                f"acc {_fmt(m.get('test_acc'), '.4f')} | {_fmt(m.get('epoch_time'), '.1f')} s")
        if self._bar is not None:
            self._bar.write(line, file=self.file)
        else:
            self.file.write("\r" + line + "\n")
            self.file.flush()

    def on_event(self, kind: str, message: str) -> None:
        pass

    def on_checkpoint(self, path: str) -> None:
        pass

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._done:
            self.file.write("\n")
            self.file.flush()
