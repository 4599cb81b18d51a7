"""`python -m lab bench auto`: memory="auto" at three memory limits, against the fixed modes.

Hamiltonian 18 blocks per stage (widths 32-64-128) on CIFAR-shaped input (batch 32, 32x32x3).
``R`` is what auto sets aside besides activations (parameters, gradients, SGD momentum, a
workspace of 4 of the largest activation: ``MemoryPlan.reserved``). The limits are R plus
standard's activations, R plus halfway between standard's and the reversible minimum, and R
plus the minimum x1.05; a fourth row gives no limit, so auto takes the device's free memory
(CUDA: ``mem_get_info``; CPU: available RAM). At each limit the contenders are auto, standard
(where its activations fit), budget at the same activation bytes, and reversible; every one a
copy of one model with its own optimizer, timed round-robin in one process so the times
compare as ratios.

Targets, per limit: auto keeps no more than its plan predicts (``SavedTensorMeter``); its
peak stays within the limit (CUDA: ``max_memory_allocated`` over the steps, plus the model's
parameters and optimizer state; CPU: the meter's bytes within the activation budget); its step
time is within 5% of the best fixed mode that fits.
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F

import core
from core.device import resolve_device
from core.estimate import estimate_activation_bytes
from core.memory import SavedTensorMeter
from lab.bench.common import add_shape_arguments, markdown_table, network_and_batch
from lab.sweeps.measure import (
    MiB,
    interleaved_median_times,
    machine_info,
    peak_step_memory,
    sgd,
    train_step,
)

TIME_SLACK = 1.05  # auto's step time may be at most this times the best fixed mode's

COLUMNS = [("limit", "limit", ""), ("limit_mib", "limit MiB", ".1f"),
           ("contender", "contender", ""), ("plan", "plan", ""),
           ("planned_mib", "planned MiB", ".2f"), ("saved_mib", "saved MiB", ".2f"),
           ("peak_mib", "peak MiB", ".1f"), ("step_s", "step s (median)", ".3f"),
           ("vs_best", "time / best fixed", ".2f")]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--blocks", type=int, default=18, help="blocks per stage")
    add_shape_arguments(p, "contender")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's "
                   "default; on a busy 2-core machine one thread avoids paying a thread pool's "
                   "synchronisation in every small op)")


def _contender(model, name: str, limit_mib: float | None, budget_mib: float):
    m = copy.deepcopy(model)
    if name == "auto":
        return m.set_memory_mode("auto", limit_mib=limit_mib)
    if name == "budget":
        return m.set_memory_mode("budget", mib=budget_mib)
    return m.set_memory_mode(name)


def _saved(model, x, y) -> int:
    with SavedTensorMeter(exclude=model.parameters()) as meter:
        out = model(x)
    F.cross_entropy(out, y).backward()
    model.zero_grad(set_to_none=True)
    return meter.bytes


def _static_bytes(model) -> int:
    """Parameters and SGD momentum: held across steps, so not in a step's peak over start."""
    return 2 * sum(p.numel() * p.element_size() for p in model.parameters())


def auto_rows(args, device) -> tuple[list[dict], list[dict]]:
    model, x, y = network_and_batch(args, device)
    est = estimate_activation_bytes(model, tuple(x.shape), ["standard", "reversible"])
    probe = copy.deepcopy(model).set_memory_mode("auto", limit_mib=1e9)
    _saved(probe, x, y)
    reserve = sum(probe.memory_plan().reserved.values())
    limits = {"standard's need": reserve + est["standard"],
              "halfway": reserve + (est["standard"] + est["reversible"]) // 2,
              "minimum x1.05": reserve + int(est["reversible"] * 1.05),
              "device free memory": None}
    rows, checks = [], []
    for label, limit in limits.items():
        limit_mib = None if limit is None else limit / MiB
        auto = _contender(model, "auto", limit_mib, 0.0)
        saved_auto = _saved(auto, x, y)
        plan = auto.memory_plan()
        activations = plan.budget_bytes
        names = ["auto", "standard", "budget", "reversible"]
        if est["standard"] > activations:
            names.remove("standard")  # does not fit this limit
        cases = {"auto": auto}
        for name in names[1:]:
            cases[name] = _contender(model, name, limit_mib, activations / MiB)
        found = {}
        for name, m in cases.items():
            saved = saved_auto if name == "auto" else _saved(m, x, y)
            mplan = m.memory_plan() if m.memory_mode in ("budget", "auto") else None
            opt = sgd(m)
            peak = None
            if device.type == "cuda":
                mem = peak_step_memory(lambda m=m, opt=opt: train_step(m, opt, x, y), device)
                peak = mem["peak_over_start_mib"] * MiB + _static_bytes(m)
            found[name] = dict(
                limit=label, limit_mib=plan.limit_bytes / MiB, contender=name,
                plan=(f"{mplan.choice or 'budget'}: "
                      f"{sum(s.rebuilt for s in mplan.segments)} rebuilt" if mplan else name),
                planned_mib=mplan.predicted_bytes / MiB if mplan else None,
                saved_mib=saved / MiB, peak_mib=None if peak is None else peak / MiB,
                step=(lambda m=m, opt=opt: train_step(m, opt, x, y)))
            print(f"  memory  {label:<18} {name:<10} saved {saved / MiB:.2f} MiB "
                  f"{'' if mplan is None else str(mplan).splitlines()[1]}", flush=True)
        times = interleaved_median_times({k: v.pop("step") for k, v in found.items()},
                                         args.repeats, args.warmup, device)
        best = min(t for k, t in times.items() if k != "auto")
        for name, row in found.items():
            row.update(step_s=times[name], vs_best=times[name] / best)
            rows.append(row)
        a = found["auto"]
        within = (a["peak_mib"] * MiB <= plan.limit_bytes if a["peak_mib"] is not None
                  else saved_auto <= activations)
        checks.append(dict(
            limit=label, kept_within_plan=saved_auto <= plan.predicted_bytes,
            within_limit=within,
            peak_measure="CUDA max allocated + parameters and momentum"
            if a["peak_mib"] is not None else "meter bytes <= the activation budget",
            time_vs_best=times["auto"] / best, time_met=times["auto"] <= TIME_SLACK * best,
            choice=plan.choice))
        print(f"  time    {label}: {times}", flush=True)
    return rows, checks


def run(args: argparse.Namespace) -> tuple[dict, str]:
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, checks = auto_rows(args, device)
    info = machine_info(device)
    payload = dict(benchmark="auto", machine=info, args=vars(args), rows=rows, targets=checks)
    widths = args.widths.replace(",", "-").split("-", 1)[1]
    depth = core.model_config("hamiltonian", blocks=(args.blocks,) * 3).depth
    md = (f"Hamiltonian {args.blocks} blocks per stage ({depth} layers), widths {widths}, batch "
          f"{args.batch}, {args.size}x{args.size}x3, SGD with momentum, device: "
          f"{info['device_name']} ({info['device']}), torch {info['torch']}, {info['date']}\n\n"
          + markdown_table(rows, COLUMNS) + "\n\nTargets (auto at each limit):\n\n"
          + markdown_table(checks, [
              ("limit", "limit", ""), ("choice", "auto chose", ""),
              ("kept_within_plan", "saved <= planned", ""),
              ("within_limit", "within the limit", ""), ("peak_measure", "measured by", ""),
              ("time_vs_best", "time / best fixed", ".3f"),
              ("time_met", f"<= {TIME_SLACK}x", "")]))
    return payload, md


def figure(payload: dict):
    """Step time of each contender at each limit, relative to the best fixed mode there."""
    import plotly.graph_objects as go

    from lab.figures.bench import layout

    fig = go.Figure()
    limits = list(dict.fromkeys(r["limit"] for r in payload["rows"]))
    for name in ("auto", "standard", "budget", "reversible"):
        rows = {r["limit"]: r for r in payload["rows"] if r["contender"] == name}
        fig.add_trace(go.Bar(x=limits, y=[rows[k]["vs_best"] if k in rows else None
                                          for k in limits], name=name))
    fig.add_hline(y=TIME_SLACK, line_dash="dot", annotation_text=f"{TIME_SLACK}x best")
    fig.update_yaxes(title_text="step time / best fixed mode that fits")
    fig.update_xaxes(title_text="memory limit")
    return layout(fig, payload, "memory='auto' against the fixed modes")
