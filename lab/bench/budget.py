"""`python -m lab bench budget`: the budget memory mode between reversible and standard.

Hamiltonian 18 blocks per stage (widths 32-64-128) on CIFAR-shaped input (batch 32, 32x32x3).
The budgets run from the reversible minimum to standard's need (``core.memory.
estimate_activation_bytes``) in ``--steps`` equal steps. Per case: the plan (blocks rebuilt and
stored), predicted and metered saved-for-backward MiB, and the median step time, every case a
separate copy of one model with its own optimizer, timed round-robin in one process so the times
compare as ratios. Targets: saved MiB never above the budget (+5%); at standard's need the step
time is at most 1.05x standard's; the time falls as the budget grows.

``--compile`` also times ``torch.compile(model)`` against eager per memory mode (on a smaller
network, ``--compile-blocks`` per stage, since compilation is slow on a few CPU cores) and
records the compile time and the gradient difference to eager.
"""

from __future__ import annotations

import argparse
import copy
import time

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
    sgd,
    synchronize,
    train_step,
)

SLACK = 1.05  # measured saved bytes may exceed the budget by at most this factor

COLUMNS = [("case", "case", ""), ("budget_mib", "budget MiB", ".1f"),
           ("rebuilt", "blocks rebuilt", ""), ("stored", "blocks stored", ""),
           ("planned_mib", "planned MiB", ".2f"), ("saved_mib", "saved MiB", ".2f"),
           ("within_budget", "saved <= budget x1.05", ""), ("step_s", "step s (median)", ".3f"),
           ("vs_standard", "time vs standard", ".2f")]
COMPILE_COLUMNS = [("mode", "mode", ""), ("eager_s", "eager step s", ".4f"),
                   ("compiled_s", "compiled step s", ".4f"),
                   ("compiled_vs_eager", "compiled / eager", ".2f"),
                   ("compile_s", "first compiled step s", ".1f"),
                   ("grad_rel_err", "grad rel. error vs eager", ".1e")]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--blocks", type=int, default=18, help="blocks per stage")
    add_shape_arguments(p, "case")
    p.add_argument("--steps", type=int, default=6, help="budgets from minimum to standard (>= 2)")
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true", help="also compiled vs eager per mode")
    p.add_argument("--compile-blocks", type=int, default=2, help="blocks per stage when compiled")


def _set(model, case: dict):
    if case["mode"] == "budget":
        return model.set_memory_mode("budget", mib=case["budget_mib"])
    return model.set_memory_mode(case["mode"])


def _saved(model, x, y) -> tuple[int, core.MemoryPlan | None]:
    with SavedTensorMeter(exclude=model.parameters()) as meter:
        out = model(x)  # the model's activations only, not the loss's
    F.cross_entropy(out, y).backward()
    model.zero_grad(set_to_none=True)
    plan = model.memory_plan() if model.memory_mode == "budget" else None
    return meter.bytes, plan


def budget_rows(args, device) -> list[dict]:
    model, x, y = network_and_batch(args, device)
    est = estimate_activation_bytes(model, tuple(x.shape), ["standard", "reversible"])
    lo, hi = est["reversible"] / MiB, est["standard"] / MiB
    n = max(args.steps, 2)
    cases = [dict(case="standard", mode="standard", budget_mib=None),
             dict(case="reversible", mode="reversible", budget_mib=None)]
    cases += [dict(case=f"budget {i}/{n - 1}", mode="budget",
                   budget_mib=lo + i * (hi - lo) / (n - 1)) for i in range(n)]
    models, steps = {}, {}
    for case in cases:
        m = _set(copy.deepcopy(model), case)
        opt = sgd(m)
        saved, plan = _saved(m, x, y)
        case.update(saved_mib=saved / MiB, depth=m.config.depth,
                    planned_mib=plan.predicted_bytes / MiB if plan else None,
                    rebuilt=sum(s.rebuilt for s in plan.segments) if plan else None,
                    stored=sum(len(s.stored) for s in plan.segments) if plan else None,
                    within_budget=(saved <= SLACK * case["budget_mib"] * MiB) if plan else None)
        print(f"  memory  {case['case']:<12} {case}", flush=True)
        models[case["case"]] = m
        steps[case["case"]] = (lambda m=m, opt=opt: train_step(m, opt, x, y))
    times = interleaved_median_times(steps, args.repeats, args.warmup, device)
    print(f"  time    {times}", flush=True)
    for case in cases:
        case.update(step_s=times[case["case"]],
                    vs_standard=times[case["case"]] / times["standard"])
    return cases


def compile_rows(args, device) -> list[dict]:
    """Eager vs ``torch.compile`` step time and gradients per mode on a smaller network."""
    base, x, y = network_and_batch(args, device, blocks=args.compile_blocks)
    est = estimate_activation_bytes(base, tuple(x.shape), ["standard", "reversible"])
    mid = (est["standard"] + est["reversible"]) / 2 / MiB
    rows = []
    for mode in ("standard", "checkpoint", "reversible", "budget"):
        case = dict(mode=mode, budget_mib=mid if mode == "budget" else None)
        eager = _set(copy.deepcopy(base), case)
        compiled_model = _set(copy.deepcopy(base), case)
        compiled = torch.compile(compiled_model)
        grads = {}
        for name, m, params in (("eager", eager, eager), ("compiled", compiled, compiled_model)):
            synchronize(device)
            t0 = time.perf_counter()
            F.cross_entropy(m(x), y).backward()
            synchronize(device)
            grads[name] = ([p.grad.clone() for p in params.parameters()],
                           time.perf_counter() - t0)
            params.zero_grad(set_to_none=True)
        err = max(((c - e).norm() / e.norm()).item()
                  for c, e in zip(grads["compiled"][0], grads["eager"][0]))
        opt_e, opt_c = sgd(eager), sgd(compiled_model)
        times = interleaved_median_times(
            {"eager": lambda m=eager, o=opt_e: train_step(m, o, x, y),
             "compiled": lambda m=compiled, o=opt_c: train_step(m, o, x, y)},
            args.repeats, args.warmup, device)
        rows.append(dict(mode=mode, blocks=args.compile_blocks, eager_s=times["eager"],
                         compiled_s=times["compiled"],
                         compiled_vs_eager=times["compiled"] / times["eager"],
                         compile_s=grads["compiled"][1], grad_rel_err=err))
        print(f"  compile {rows[-1]}", flush=True)
    return rows


def targets(rows: list[dict]) -> list[dict]:
    budget = [r for r in rows if r["mode"] == "budget"]
    std = next(r for r in rows if r["mode"] == "standard")
    times = [r["step_s"] for r in budget]
    return [
        dict(target=f"saved MiB <= budget x{SLACK} at every budget",
             value=max(r["saved_mib"] / r["budget_mib"] for r in budget), limit=SLACK,
             met=all(r["within_budget"] for r in budget)),
        dict(target="time at standard's need <= 1.05x standard",
             value=budget[-1]["step_s"] / std["step_s"], limit=1.05,
             met=budget[-1]["step_s"] <= 1.05 * std["step_s"]),
        dict(target="time falls as the budget grows (each step <= 1.05x the previous)",
             value=max(b / a for a, b in zip(times, times[1:])), limit=1.05,
             met=all(b <= 1.05 * a for a, b in zip(times, times[1:])) and times[-1] < times[0]),
    ]


def run(args: argparse.Namespace) -> tuple[dict, str]:
    device = resolve_device(args.device)
    rows = budget_rows(args, device)
    checks = targets(rows)
    compiled = compile_rows(args, device) if args.compile else []
    info = machine_info(device)
    payload = dict(benchmark="budget", machine=info, args=vars(args), rows=rows,
                   targets=checks, compile_rows=compiled)
    widths = args.widths.replace(",", "-").split("-", 1)[1]
    md = (f"Hamiltonian {args.blocks} blocks per stage ({rows[0]['depth']} layers), widths "
          f"{widths}, batch {args.batch}, {args.size}x{args.size}x3, device: "
          f"{info['device_name']} ({info['device']}), torch {info['torch']}, {info['date']}\n\n"
          + markdown_table(rows, COLUMNS) + "\n\nTargets:\n\n"
          + markdown_table(checks, [("target", "target", ""), ("value", "measured", ".3f"),
                                    ("limit", "limit", ".2f"), ("met", "met", "")]))
    if compiled:
        md += (f"\n\n`torch.compile` vs eager, {args.compile_blocks} blocks per stage:\n\n"
               + markdown_table(compiled, COMPILE_COLUMNS))
    return payload, md
