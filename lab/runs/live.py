"""A live view of one run: incremental reads of its metrics, progress and ETA, downsampled curves.

The Train page keeps one ``LiveRun`` per run in ``st.session_state``; each tick of its fragment
calls ``refresh(store)``, which reads only the rows after the last one seen
(``Store.step_metrics(id, after_step=...)``). ``st.session_state`` is per browser tab and gone on
reload: a fresh ``LiveRun`` then simply reads the whole run once, so losing it loses nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from lab.runs.store import Run, Store

# the step columns kept for the curves (the Callback contract's on_step keys)
STEP_KEYS = ("loss", "acc", "samples_per_sec", "saved_bytes", "peak_mem_bytes", "time")
EPOCH_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc")
MAX_POINTS = 2000  # per trace: enough for the eye, small enough for a quick redraw


def downsample(x: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS,
               how: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points: equal buckets of consecutive samples, each reduced to one.

    ``how`` is "mean" (smooth curves such as loss) or "max" (peaks such as memory: a spike must
    not vanish). NaNs (missing values) are ignored inside a bucket. The last sample is kept.
    """
    if how not in ("mean", "max"):
        raise ValueError(f"how={how!r}; choose 'mean' or 'max'")
    if max_points < 2:
        raise ValueError(f"max_points={max_points} must be at least 2")
    n = len(x)
    if n <= max_points:
        return x, y
    size = -(-n // (max_points - 1))  # ceil: buckets of `size`, the last one may be short
    m = n // size * size
    xs = x[:m].reshape(-1, size)[:, -1]
    ys = y[:m].reshape(-1, size)
    with np.errstate(all="ignore"):
        ys = np.nanmean(ys, axis=1) if how == "mean" else np.nanmax(ys, axis=1)
    if m < n:  # the tail bucket, reduced the same way, ends on the last sample
        tail = y[m:]
        with np.errstate(all="ignore"):
            t = np.nanmean(tail) if how == "mean" else np.nanmax(tail)
        xs, ys = np.append(xs, x[-1]), np.append(ys, t)
    return xs, ys


@dataclass
class Progress:
    """Where a run stands: steps done of the total, and the estimated seconds left."""

    step: int | None          # steps done (the trainer counts from 1), None before the first
    total_steps: int | None   # from the trainer's start event; None until it has started
    eta_s: float | None       # seconds left at the recent step rate; None when unknown

    @property
    def fraction(self) -> float:
        if not self.total_steps or self.step is None:
            return 0.0
        return min(max(self.step / self.total_steps, 0.0), 1.0)


@dataclass
class LiveRun:
    """The metrics of one run read so far, grown incrementally by :meth:`refresh`."""

    run_id: str
    steps: dict[str, list] = field(default_factory=lambda: {k: [] for k in ("step", *STEP_KEYS)})
    epochs: dict[str, list] = field(default_factory=lambda: {k: [] for k in EPOCH_KEYS})
    last_step: int | None = None
    last_epoch: int | None = None
    last_event: int | None = None
    total_steps: int | None = None
    run: Run | None = None
    reads: int = 0

    def refresh(self, store: Store) -> int:
        """Read the run row and every metric row and event after the last seen; returns how many
        new step rows arrived. A run that vanished (deleted) leaves ``run`` None."""
        self.run = store.get_run(self.run_id)
        self.reads += 1
        if self.run is None:
            return 0
        new = store.step_metrics(self.run_id, after_step=self.last_step)
        for m in new:
            self.steps["step"].append(m["step"])
            for k in STEP_KEYS:
                v = m.get(k)
                self.steps[k].append(np.nan if v is None else float(v))
        if new:
            self.last_step = new[-1]["step"]
        for e in store.epoch_metrics(self.run_id, after_epoch=self.last_epoch):
            for k in EPOCH_KEYS:
                v = e.get(k)
                self.epochs[k].append(v if k == "epoch" else (np.nan if v is None else float(v)))
            self.last_epoch = e["epoch"]
        for ev in store.events(self.run_id, after_id=self.last_event):
            self.last_event = ev["id"]
            if ev["kind"] == "start" and ev["message"]:
                try:
                    info = json.loads(ev["message"])
                except ValueError:
                    continue
                if isinstance(info, dict) and isinstance(info.get("total_steps"), int):
                    self.total_steps = info["total_steps"]
        return len(new)

    def series(self, key: str, max_points: int = MAX_POINTS,
               how: str = "mean") -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of a step metric, downsampled for drawing."""
        x = np.asarray(self.steps["step"], dtype=np.int64)
        y = np.asarray(self.steps[key], dtype=np.float64)
        return downsample(x, y, max_points, how)

    def epoch_series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(epoch number as the trainer counts it, from 1; values) of an epoch metric."""
        x = np.asarray(self.epochs["epoch"], dtype=np.float64)
        return x, np.asarray(self.epochs[key], dtype=np.float64)

    def progress(self) -> Progress:
        """Steps done, total and ETA from the rate of the last ~50 recorded steps."""
        eta = None
        steps, times = self.steps["step"], self.steps["time"]
        if self.total_steps and len(steps) >= 2:
            k = max(len(steps) - 50, 0)
            dt, ds = times[-1] - times[k], steps[-1] - steps[k]
            if dt > 0 and ds > 0:  # a resume restarts the trainer's clock: dt <= 0, no estimate
                eta = max(self.total_steps - steps[-1], 0) * dt / ds
        if self.run is not None and self.run.status == "completed":
            eta = 0.0
        return Progress(self.last_step, self.total_steps, eta)
