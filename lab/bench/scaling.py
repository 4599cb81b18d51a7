"""`python -m lab bench scaling`: memory and step time of the memory modes from 14 to 1202 layers.

Hamiltonian widths 32-64-128, batch 32, 32x32x3, at 1, 2, 6, 18, 50, 100 blocks per stage
(layers = 12 * blocks + 2: 14 ... 1202). Per depth and mode: memory held for backward
(allocator), peak memory of two training steps (CUDA: max_memory_allocated; CPU: a fresh
process per case, peak RSS over the RSS before the steps, measured after one warm-up step, see
lab.bench.common.peak_step_memory) and the median training-step time, the modes interleaved
in one process. Then, per mode, the deepest network within --budget-mib: the budget is compared
with CUDA max allocated (everything a step needs: weights, gradients, optimizer state,
activations) or, on CPU, with the peak over start (the torch runtime, weights, optimizer state
and data excluded); the deepest *measured* depth within the budget is reported, and the deepest
depth by a linear least-squares fit of memory against blocks per stage over all measured
depths, extrapolated (not searched by measurement).
"""

from __future__ import annotations

import argparse
import functools
import gc
import math

import torch

import core
from core.memory import MEMORY_MODES, check_memory_mode
from lab.bench.common import (
    interleaved_median_times,
    machine_info,
    make_batch,
    markdown_table,
    resolve_device,
    run_child,
    sgd,
    train_step,
)
from lab.bench.peers import base_model, build_contender, measure_contender

COLUMNS = [("blocks", "blocks/stage", ""), ("depth", "layers", ""), ("mode", "mode", ""),
           ("held_mib", "held MiB", ".1f"), ("saved_mib", "saved MiB", ".1f"),
           ("peak_over_start_mib", "peak over start MiB", ".1f"), ("peak_mib", "peak MiB", ".0f"),
           ("step_s", "step s (median)", ".3f"), ("vs_standard", "time vs standard", ".2f"),
           ("notes", "notes", "")]
BUDGET_COLUMNS = [("mode", "mode", ""), ("slope_mib", "MiB per block/stage", ".2f"),
                  ("intercept_mib", "MiB at 0 blocks (fit)", ".1f"),
                  ("deepest_measured_layers", "deepest measured within budget (layers)", ""),
                  ("deepest_extrapolated_layers", "deepest by linear extrapolation (layers)", ""),
                  ("note", "note", "")]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depths", default="1,2,6,18,50,100", help="blocks per stage")
    p.add_argument("--modes", default=",".join(MEMORY_MODES))
    p.add_argument("--widths", default="32,32,64,128", help="stem and stage widths")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=32, help="image side in pixels")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per mode (median)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--budget-mib", type=float, default=2048.0,
                   help="memory budget: CUDA max allocated, or CPU peak RSS over start")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--device", default="auto")


def layers(blocks: int, stages: int) -> int:
    return core.model_config("hamiltonian", blocks=(blocks,) * stages,
                             widths=(2,) * (stages + 1)).depth


def linear_fit(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Least-squares ``(slope, intercept)`` of y on x; None with fewer than two distinct x."""
    xs = [x for x, _ in points]
    if len(set(xs)) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(y for _, y in points) / len(points)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return slope, my - slope * mx


def deepest_within(points: list[tuple[int, float]], budget: float, stages: int) -> dict:
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
    for key in ("deepest_measured", "deepest_extrapolated"):
        b = out[f"{key}_blocks"]
        out[f"{key}_layers"] = layers(b, stages) if b else None
    return out


def run(args: argparse.Namespace) -> tuple[dict, str]:
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    depths = [int(d) for d in args.depths.split(",")]
    modes = [check_memory_mode(m) for m in args.modes.split(",")]
    widths = tuple(int(w) for w in args.widths.split(","))
    stages = len(widths) - 1
    metric = "peak_mib" if device.type == "cuda" else "peak_over_start_mib"
    rows = []
    for n in depths:
        spec = dict(kind="peer", blocks=n, widths=list(widths), batch=args.batch,
                    size=args.size, device=str(device), steps=2)
        if args.threads:
            spec["threads"] = args.threads
        found = {}
        for mode in modes:
            case = dict(spec, contender=mode)
            if device.type == "cuda":
                try:
                    found[mode] = measure_contender(case)
                except torch.cuda.OutOfMemoryError as e:  # the answer for this depth
                    found[mode] = dict(error=f"OutOfMemoryError: {str(e).splitlines()[0]}")
                gc.collect()
                torch.cuda.empty_cache()
            else:
                found[mode] = run_child("lab.bench.child", case)
            print(f"  memory  blocks={n:<4} {mode:<11} {found[mode]}", flush=True)
        base = base_model(n, widths).to(device)
        x, y = make_batch(args.batch, 3, args.size, 10, device)
        steps = {}
        for mode in modes:
            if "error" not in found[mode]:  # a mode that did not fit is not timed
                model = build_contender(mode, base)
                steps[mode] = functools.partial(train_step, model, sgd(model), x, y)
        times = interleaved_median_times(steps, args.repeats, args.warmup, device)
        print(f"  time    blocks={n:<4} {times}", flush=True)
        for mode in modes:
            mem = dict(found[mode])
            error = mem.pop("error", None)
            t, t0 = times.get(mode), times.get("standard")
            rows.append(dict(blocks=n, depth=layers(n, stages), mode=mode, **mem, step_s=t,
                             vs_standard=t / t0 if t and t0 else None,
                             notes=f"memory failed: {error}" if error else ""))
        del steps, base
    budget = []
    for mode in modes:
        points = [(r["blocks"], r[metric]) for r in rows
                  if r["mode"] == mode and r.get(metric) is not None]
        budget.append(dict(mode=mode, **deepest_within(points, args.budget_mib, stages)))
    info = machine_info(device)
    payload = dict(benchmark="scaling", machine=info, args=vars(args), rows=rows,
                   metric=metric, budget_mib=args.budget_mib, stages=stages, budget=budget)
    where = (f"Hamiltonian {'-'.join(map(str, widths[1:]))} (stem {widths[0]}), batch "
             f"{args.batch}, {args.size}x{args.size}x3, device: {info['device_name']} "
             f"({info['device']}), torch {info['torch']}, python {info['python']}, "
             f"{info['torch_threads']} threads, {info['date']}")
    how = (f"Deepest network within {args.budget_mib:g} MiB of `{metric}` "
           f"({'CUDA max allocated' if metric == 'peak_mib' else 'peak RSS over start'}): "
           "measured = the deepest measured depth within the budget; extrapolated = linear "
           "least-squares fit of that memory against blocks per stage over all measured "
           "depths, solved for the budget (an extrapolation, not a measurement).")
    md = "\n\n".join([where, markdown_table(rows, COLUMNS), how,
                      markdown_table(budget, BUDGET_COLUMNS)])
    return payload, md
