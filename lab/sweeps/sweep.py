"""The depth sweep: activation memory and step time of the memory modes across depth, one family.

One loop serves `python -m lab bench scaling`, `python -m lab bench modes` and the app's Depth
lab. Per depth: the memory of each mode (held for backward by the allocator, saved through
autograd's hooks and, with ``peak=True``, the peak of two training steps in a fresh process on
CPU or CUDA max allocated), then the modes' step times interleaved round-robin in one process so
they compare as ratios. ``deepest_within`` turns the rows into "the deepest network that fits".
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import gc
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

import core
from core.blocks import FAMILIES
from core.device import resolve_device
from core.memory import check_supported, supported_modes
from lab.sweeps.measure import (
    held_and_saved,
    interleaved_median_times,
    make_batch,
    peak_step_memory,
    run_child,
    sgd,
    train_step,
)

DEFAULT_MODES = ("standard", "checkpoint", "reversible")
# called with (cases done, cases in all, one line saying what was just measured)
Progress = Callable[[int, int, str], None]


class SweepStopped(Exception):
    """``should_stop()`` said stop between two cases; ``rows`` holds the depths finished."""

    def __init__(self, rows: list[dict]):
        super().__init__(f"sweep stopped after {len(rows)} rows")
        self.rows = rows


@dataclass
class SweepConfig:
    """One depth sweep. ``from_dict`` rejects unknown keys; ``validate`` says what is wrong."""

    family: str = "hamiltonian"                  # a core.network.FAMILIES name
    blocks: tuple[int, ...] = (1, 2, 6, 18, 50, 100)  # blocks per stage, one network each
    modes: tuple[str, ...] | None = None         # None: every mode the family supports
    widths: tuple[int, ...] = (32, 32, 64, 128)  # channels: stem, then one per stage
    batch: int = 32                              # images per training step
    size: int = 32                               # image side in pixels (random RGB input)
    repeats: int = 5                             # timed steps per mode (the median is kept)
    warmup: int = 1                              # untimed steps per mode first
    peak: bool = True                            # also peak memory (CPU: a process per case)
    budget_mib: float | None = None              # the `budget` memory mode's MiB, if swept
    device: str = "auto"                         # "auto", "cpu", "cuda", "cuda:1", ...
    threads: int = 0                             # torch CPU threads (0: torch's default)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SweepConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown sweep option(s) {unknown}; "
                             f"allowed: {', '.join(sorted(names))}")
        d = dict(d)
        for key in ("blocks", "widths", "modes"):
            if d.get(key) is not None:
                if isinstance(d[key], str):
                    raise TypeError(f"{key}={d[key]!r} must be a list, e.g. [1, 2, 6]")
                d[key] = tuple(d[key])
        return cls(**d)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @property
    def stages(self) -> int:
        return len(self.widths) - 1

    def mode_list(self) -> list[str]:
        """The modes swept: ``modes``, or the default ones this family supports."""
        if self.modes is not None:
            return list(self.modes)
        return [m for m in DEFAULT_MODES if m in supported_modes(self.family)]

    def layers(self, blocks: int) -> int:
        """Depth in weight layers of the network with ``blocks`` blocks per stage."""
        return core.model_config(self.family, blocks=(blocks,) * self.stages,
                                 widths=(2,) * (self.stages + 1)).depth

    def validate(self) -> SweepConfig:
        if self.family not in FAMILIES:
            raise ValueError(f"family={self.family!r}; choose one of {', '.join(FAMILIES)}")
        if not self.blocks or any(type(n) is not int or n < 1 for n in self.blocks):
            raise ValueError(f"blocks={self.blocks!r}: give one or more whole numbers >= 1 "
                             "(blocks per stage)")
        try:  # the network builder checks widths against the family (even halves, ...)
            core.model_config(self.family, blocks=(1,) * max(self.stages, 1),
                              widths=self.widths)
        except (ValueError, TypeError) as e:
            raise ValueError(f"widths={self.widths!r}: {e}") from None
        modes = self.mode_list()
        if not modes or len(set(modes)) != len(modes):
            raise ValueError(f"modes={self.modes!r}: give one or more distinct memory modes")
        for m in modes:
            check_supported(m, self.family)  # unknown, or rebuilding without inverses
            if m == "auto":
                raise ValueError("modes: 'auto' picks standard, budget or reversible for the "
                                 "device, so a sweep has nothing of its own to measure; sweep "
                                 "those modes (python -m lab bench auto measures auto)")
        if "budget" in modes and not (isinstance(self.budget_mib, (int, float))
                                      and self.budget_mib > 0):
            raise ValueError(f"budget_mib={self.budget_mib!r}: the budget mode needs a memory "
                             "budget in MiB > 0")
        for name, low in (("batch", 1), ("size", 2 ** (self.stages - 1)), ("repeats", 1),
                          ("warmup", 0), ("threads", 0)):
            v = getattr(self, name)
            if type(v) is not int or v < low:
                raise ValueError(f"{name}={v!r} must be a whole number >= {low}")
        if not isinstance(self.peak, bool):
            raise TypeError(f"peak={self.peak!r} must be true or false")
        if not (self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device={self.device!r}; use auto, cpu or cuda[:N]")
        return self


def build_model(family: str, blocks: int, widths: tuple[int, ...], seed: int = 0):
    """The swept network: ``blocks`` blocks per stage, CIFAR-shaped (3 channels, 10 classes)."""
    torch.manual_seed(seed)
    return core.create_model(family, num_classes=10, in_channels=3,
                             blocks=(blocks,) * (len(widths) - 1), widths=tuple(widths))


def set_mode(model, mode: str, budget_mib: float | None = None):
    """Switch ``model`` to ``mode`` (``budget`` takes its MiB)."""
    if mode == "budget":
        return model.set_memory_mode("budget", mib=budget_mib)
    return model.set_memory_mode(mode)


def measure_case(spec: Mapping[str, Any]) -> dict:
    """Memory of one (family, blocks, mode): held/saved MiB, and the step peak if ``peak``.

    spec: family, blocks, widths, mode, budget_mib, batch, size, device, peak, steps. On CPU run
    it in a fresh process when ``peak`` (``run_child("lab.sweeps.child", dict(kind="depth",
    ...))``): the peak RSS is a per-process high-water mark.
    """
    device = resolve_device(spec.get("device", "cpu"))
    model = build_model(spec["family"], spec["blocks"], tuple(spec["widths"])).to(device)
    set_mode(model, spec["mode"], spec.get("budget_mib"))
    opt = sgd(model)
    x, y = make_batch(spec["batch"], 3, spec["size"], 10, device)
    step = functools.partial(train_step, model, opt, x, y)
    out: dict[str, Any] = {}
    if spec.get("peak", True):
        out.update(peak_step_memory(step, device, spec.get("steps", 2)))
    else:
        step()  # first calls allocate caches that are not activations
    out.update(held_and_saved(model, x, y))
    return out


def _memory(case: dict, device: torch.device) -> dict:
    """Run one memory case where it belongs; an error becomes ``{"error": ...}``."""
    if device.type == "cpu" and case["peak"]:
        return run_child("lab.sweeps.child", case)
    try:
        return measure_case(case)
    except torch.cuda.OutOfMemoryError as e:  # the answer for this depth
        return dict(error=f"OutOfMemoryError: {str(e).splitlines()[0]}")
    except (RuntimeError, ValueError) as e:
        return dict(error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    finally:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def run_sweep(cfg: SweepConfig, progress: Progress | None = None,
              should_stop: Callable[[], bool] | None = None) -> list[dict]:
    """Measure every depth of ``cfg``; one row per (depth, mode), depths in the given order.

    Row keys: family, blocks, depth, mode, held_mib, saved_mib, peak_mib, peak_over_start_mib,
    peak_method (with ``peak``), step_s, vs_standard, notes. A mode whose memory case failed
    (e.g. out of memory) is not timed and says why in ``notes``. ``progress`` hears of every
    case; ``should_stop()`` is asked between cases and, when true, SweepStopped is raised with
    the finished depths' rows.
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    modes = cfg.mode_list()
    total, done = len(cfg.blocks) * (len(modes) + 1), 0
    rows: list[dict] = []

    def tick(message: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, message)

    def check_stop() -> None:
        if should_stop is not None and should_stop():
            raise SweepStopped(rows)

    for n in cfg.blocks:
        depth = cfg.layers(n)
        base = dict(kind="depth", family=cfg.family, blocks=n, widths=list(cfg.widths),
                    batch=cfg.batch, size=cfg.size, device=str(device), steps=2, peak=cfg.peak,
                    budget_mib=cfg.budget_mib)
        if cfg.threads:
            base["threads"] = cfg.threads
        found = {}
        for mode in modes:
            check_stop()
            found[mode] = _memory(dict(base, mode=mode), device)
            mib = found[mode].get("held_mib") or found[mode].get("saved_mib")
            tick(f"memory  {depth} layers  {mode}: " + (
                found[mode]["error"] if "error" in found[mode] else f"{mib:.1f} MiB held"))
        check_stop()
        model = build_model(cfg.family, n, cfg.widths).to(device)
        x, y = make_batch(cfg.batch, 3, cfg.size, 10, device)
        steps = {}
        for mode in modes:
            if "error" not in found[mode]:  # a mode that did not fit is not timed
                m = set_mode(copy.deepcopy(model), mode, cfg.budget_mib)
                steps[mode] = functools.partial(train_step, m, sgd(m), x, y)
        times = interleaved_median_times(steps, cfg.repeats, cfg.warmup, device) if steps else {}
        del steps, model
        t0 = times.get("standard")
        for mode in modes:
            mem = dict(found[mode])
            error = mem.pop("error", None)
            t = times.get(mode)
            rows.append(dict(family=cfg.family, blocks=n, depth=depth, mode=mode, **mem,
                             step_s=t, vs_standard=t / t0 if t and t0 else None,
                             notes=f"memory failed: {error}" if error else ""))
        tick(f"time    {depth} layers  " + ", ".join(f"{m} {t:.3f} s"
                                                    for m, t in times.items()))
    return rows


# ---------------------------------------------------------------- what fits in a budget


def linear_fit(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Least-squares ``(slope, intercept)`` of y on x; None with fewer than two distinct x."""
    xs = [x for x, _ in points]
    if len(set(xs)) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(y for _, y in points) / len(points)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return slope, my - slope * mx


def deepest_within(points: list[tuple[int, float]], budget: float, stages: int,
                   family: str = "hamiltonian") -> dict:
    """Deepest measured depth within ``budget`` and the linear extrapolation to it.

    ``points``: (blocks per stage, MiB). The fit is memory = intercept + slope * blocks.
    """
    fits = [b for b, m in points if m <= budget]
    out = dict(deepest_measured_blocks=max(fits, default=None),
               deepest_extrapolated_blocks=None, slope_mib=None, intercept_mib=None, note="")
    fit = linear_fit([(float(b), m) for b, m in points])
    if fit is None:
        out["note"] = "one depth measured: no fit"
    else:
        slope, intercept = fit
        out.update(slope_mib=slope, intercept_mib=intercept)
        if slope <= 0:
            out["note"] = "memory does not grow with depth in the fit: no limit"
        elif intercept > budget:
            out.update(deepest_extrapolated_blocks=0, note="over budget at any depth (fit)")
        else:
            out["deepest_extrapolated_blocks"] = math.floor((budget - intercept) / slope)
    cfg = SweepConfig(family=family, widths=(2,) * (stages + 1))
    for key in ("deepest_measured", "deepest_extrapolated"):
        b = out[f"{key}_blocks"]
        out[f"{key}_layers"] = cfg.layers(b) if b else None
    return out


def budget_rows(rows: list[dict], budget: float, metric: str, stages: int,
                family: str = "hamiltonian") -> list[dict]:
    """Per mode of ``rows``: the deepest network whose ``metric`` (MiB) stays within ``budget``."""
    out = []
    for mode in dict.fromkeys(r["mode"] for r in rows):
        points = [(r["blocks"], r[metric]) for r in rows
                  if r["mode"] == mode and r.get(metric) is not None]
        out.append(dict(mode=mode, **deepest_within(points, budget, stages, family)))
    return out
