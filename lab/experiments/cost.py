"""The wall time a grid will take, before it is launched: from the store's history, else timed.

A cell's time per step comes from completed runs in the store with the same settings (seed and
steps aside), else from timing one training step of its model on random inputs in this process.
A run of a timed cell costs a process start, its steps, and a test-set evaluation at every epoch
end (the trainer evaluates per epoch, so a small fraction of the data evaluates more often).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lab.experiments.grid import GridSpec
from lab.runs.store import Run

STARTUP_S = 6.0  # a run's process start, imports and data (digits, 2-core machine: 5-7 s)


@dataclass(frozen=True)
class Estimate:
    """Seconds of every run together, and how many run at once."""

    runs: int
    seconds: float        # sum over runs
    parallel: int         # runs at once (LAB_MAX_JOBS, else 1)
    from_history: int     # cells timed by earlier runs in the store
    timed: int            # cells timed here (one step of the model on random inputs)
    unknown: int          # cells without an estimate (not timed)

    @property
    def wall(self) -> float:
        return self.seconds / self.parallel

    def text(self) -> str:
        if self.unknown:
            return (f"{self.runs} runs; no time estimate for {self.unknown} of the cells yet "
                    "(no similar run in the store)")
        how = []
        if self.from_history:
            how.append(f"{self.from_history} cell(s) from earlier runs")
        if self.timed:
            how.append(f"{self.timed} cell(s) from timing a step here")
        return (f"{self.runs} runs, about {duration(self.wall)} wall time at {self.parallel} "
                f"run(s) at once ({'; '.join(how)})")


def duration(seconds: float | None) -> str:
    """'3 h 05 min', '12 min', '40 s', or '–'."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{round(s / 60)} min"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def parallel_runs() -> int:
    """Runs at once: $LAB_MAX_JOBS if set, else 1 (a GPU count would need torch: not here)."""
    env = os.environ.get("LAB_MAX_JOBS", "")
    return int(env) if env.isdigit() and int(env) > 0 else 1


def _key(config: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in config.items() if k not in ("seed", "steps")},
                      sort_keys=True)


def history(runs: Iterable[Run]) -> dict[str, float]:
    """Config key -> median wall seconds per step of the completed runs with that config."""
    per: dict[str, list[float]] = {}
    for r in runs:
        steps = (r.final or {}).get("step")
        if r.status != "completed" or not steps or not r.started_at or not r.ended_at:
            continue
        per.setdefault(_key(r.config), []).append((r.ended_at - r.started_at) / steps)
    return {k: statistics.median(v) for k, v in per.items()}


def estimate(spec: GridSpec, runs: Iterable[Run] = (), *, time_steps: bool = False) -> Estimate:
    """The grid's wall time from ``runs`` (the store's history), timing cells that have none
    when ``time_steps`` (seconds of work per distinct model)."""
    from lab.runs.jobs import validate_config

    past = history(runs)
    total, hist, timed, unknown = 0.0, 0, 0, 0
    step_cache: dict[str, tuple[float, int, int]] = {}
    for axes in spec.cell_axes():
        config = validate_config(spec.config(axes, seed=0))
        per_step = past.get(_key(config))
        if per_step is not None:
            total += per_step * spec.steps * spec.seeds
            hist += 1
            continue
        if not time_steps:
            unknown += 1
            continue
        model_key = json.dumps([config[k] for k in ("model", "model_kwargs", "dataset",
                                                    "batch_size", "memory")], sort_keys=True)
        if model_key not in step_cache:
            step_cache[model_key] = time_step(config)
        step_s, train_size, test_size = step_cache[model_key]
        per_epoch = max(math.ceil(train_size * config["fraction"] / config["batch_size"]), 1)
        evals = math.ceil(spec.steps / per_epoch)
        eval_s = step_s / 3 * math.ceil(test_size / config["batch_size"])  # forward only
        total += (STARTUP_S + step_s * spec.steps + eval_s * evals) * spec.seeds
        timed += 1
    return Estimate(spec.runs, total, parallel_runs(), hist, timed, unknown)


def time_step(config: dict[str, Any]) -> tuple[float, int, int]:
    """(seconds of one SGD step at the config's batch, train size, test size), timed here."""
    import torch
    import torch.nn.functional as F

    import core
    from core.data import load_dataset

    data = load_dataset(config["dataset"], root=config.get("data_root"), augment=False,
                        **config.get("dataset_options", {}))
    model = core.create_model(config["model"], num_classes=data.num_classes,
                              in_channels=data.in_channels, memory=config["memory"],
                              **config["model_kwargs"])
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    size = data.image_size
    x = torch.randn(config["batch_size"], data.in_channels, size, size)
    y = torch.randint(0, data.num_classes, (config["batch_size"],))
    times = []
    for _ in range(2):  # the first warms up
        t = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return times[-1], len(data.train), len(data.test)
