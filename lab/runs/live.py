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
# step keys a run records on some steps only, with a name per segment (the drift watch's
# rebuild_error, rebuild_error_s0, ...): kept too, NaN on the other steps
SPARSE_PREFIXES = ("rebuild_error",)
EPOCH_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc")
MAX_POINTS = 2000  # per trace: enough for the eye, small enough for a quick redraw
ETA_WEIGHT = 0.05  # per step: the ETA's step time is an exponential average over ~20 steps


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
    eta_s: float | None       # seconds left at the recent step rate; None when unknown or the
                              # run is not running (a cancelled run has no time left to wait)
    step_s: float | None = None  # the basis: exponential average of seconds per step

    @property
    def basis(self) -> str:
        """What the ETA is computed from, in words ("" when there is no ETA)."""
        if self.eta_s is None or self.step_s is None:
            return ""
        return f"at {self.step_s:.3g} s/step (average of the recent steps)"

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
    step_s: float | None = None  # exponential average of seconds per step (ETA_WEIGHT per step)
    _clock: tuple[int, float] | None = None  # (step, time) the average last moved from

    def refresh(self, store: Store) -> int:
        """Read the run row and every metric row and event after the last seen; returns how many
        new step rows arrived. A run that vanished (deleted) leaves ``run`` None."""
        self.run = store.get_run(self.run_id)
        self.reads += 1
        if self.run is None:
            return 0
        new = store.step_metrics(self.run_id, after_step=self.last_step)
        for m in new:
            for k in m:
                if k.startswith(SPARSE_PREFIXES) and k not in self.steps:
                    self.steps[k] = [np.nan] * len(self.steps["step"])  # earlier steps: none
            self.steps["step"].append(m["step"])
            for k in self.steps:
                if k != "step":
                    v = m.get(k)
                    self.steps[k].append(np.nan if v is None else float(v))
            self._time_step(m["step"], m.get("time"))
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
        """(steps, values) of a step metric, downsampled for drawing. A metric recorded on some
        steps only (``SPARSE_PREFIXES``) gives just those steps (none if it was never seen)."""
        x = np.asarray(self.steps["step"], dtype=np.int64)
        if key.startswith(SPARSE_PREFIXES):
            y = np.asarray(self.steps.get(key, [np.nan] * len(x)), dtype=np.float64)
            kept = np.isfinite(y)
            return downsample(x[kept], y[kept], max_points, how)
        y = np.asarray(self.steps[key], dtype=np.float64)
        return downsample(x, y, max_points, how)

    def sparse_keys(self, prefix: str) -> list[str]:
        """The recorded keys ``prefix`` + ``_s0``, ``_s1``, ... in segment order."""
        found = [k for k in self.steps if k.startswith(prefix + "_s") and k[len(prefix) + 2:]
                 .isdigit()]
        return sorted(found, key=lambda k: int(k[len(prefix) + 2:]))

    def epoch_series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(epoch number as the trainer counts it, from 1; values) of an epoch metric."""
        x = np.asarray(self.epochs["epoch"], dtype=np.float64)
        return x, np.asarray(self.epochs[key], dtype=np.float64)

    def _time_step(self, step: int, t: float | None) -> None:
        """Fold one recorded step into the average step time: a gap of k steps that took dt
        seconds counts as k steps of dt/k each (rows may be sparse)."""
        if t is None or not np.isfinite(t):
            return
        if self._clock is not None:
            ds, dt = step - self._clock[0], t - self._clock[1]
            if ds > 0 and dt > 0:
                keep = (1 - ETA_WEIGHT) ** ds
                per = dt / ds
                self.step_s = per if self.step_s is None else keep * self.step_s + (1 - keep) * per
            elif dt <= 0:  # a resume restarts the trainer's clock: start the average afresh
                self.step_s = None
        self._clock = (step, float(t))

    def progress(self) -> Progress:
        """Steps done, total and ETA: steps left times the exponential average of the step time
        (``step_s``, the ETA's basis). A run that is not running has no ETA."""
        eta = None
        running = self.run is not None and self.run.status == "running"
        if running and self.total_steps and self.step_s is not None and self.last_step:
            eta = max(self.total_steps - self.last_step, 0) * self.step_s
        return Progress(self.last_step, self.total_steps, eta, self.step_s if running else None)
