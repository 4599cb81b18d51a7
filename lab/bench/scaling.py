"""`python -m lab bench scaling`: memory and step time of the memory modes from 14 to 1202 layers.

Hamiltonian (``--family`` for another) widths 32-64-128, batch 32, 32x32x3, at 1, 2, 6, 18, 50,
100 blocks per stage (layers = 12 * blocks + 2: 14 ... 1202). Per depth and mode
(lab.sweeps.sweep): memory held for backward (allocator), peak memory of two training steps
(CUDA: max_memory_allocated; CPU: a fresh process per case, peak RSS over the RSS before the
steps, measured after one warm-up step, see lab.sweeps.measure.peak_step_memory) and the median
training-step time, the modes interleaved in one process. Then, per mode, the deepest network
within --budget-mib: the budget is compared with CUDA max allocated (everything a step needs:
weights, gradients, optimizer state, activations) or, on CPU, with the peak over start (the torch
runtime, weights, optimizer state and data excluded); the deepest *measured* depth within the
budget is reported, and the deepest depth by a linear least-squares fit of memory against blocks
per stage over all measured depths, extrapolated (not searched by measurement).
"""

from __future__ import annotations

import argparse

from core.device import resolve_device
from lab.bench.common import add_shape_arguments, markdown_table
from lab.sweeps.measure import machine_info
from lab.sweeps.sweep import SweepConfig, budget_rows, deepest_within, linear_fit, run_sweep

__all__ = ["add_arguments", "run", "deepest_within", "linear_fit", "sweep_config", "measure"]

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


def add_arguments(p: argparse.ArgumentParser, depths: str = "1,2,6,18,50,100",
                  budget: bool = True) -> None:
    p.add_argument("--family", default="hamiltonian",
                   help="block family: hamiltonian, midpoint, leapfrog, revnet, resnet")
    p.add_argument("--depths", default=depths, help="blocks per stage, comma-separated")
    p.add_argument("--modes", default=None,
                   help="comma-separated memory modes (default: all the family supports)")
    add_shape_arguments(p, "mode")
    if budget:
        p.add_argument("--budget-mib", type=float, default=2048.0,
                       help="memory budget: CUDA max allocated, or CPU peak RSS over start")
    p.add_argument("--mode-mib", type=float, default=None,
                   help="activation MiB of the `budget` memory mode, when --modes includes it")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--device", default="auto")


def _ints(text: str, name: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise SystemExit(f"--{name} {text!r}: give comma-separated whole numbers") from None


def sweep_config(args: argparse.Namespace) -> SweepConfig:
    """The sweep the command line asks for; SystemExit with the reason if it is invalid."""
    cfg = SweepConfig(family=args.family, blocks=_ints(args.depths, "depths"),
                      modes=tuple(args.modes.split(",")) if args.modes else None,
                      widths=_ints(args.widths, "widths"), batch=args.batch, size=args.size,
                      repeats=args.repeats, warmup=args.warmup,
                      budget_mib=args.mode_mib, device=args.device,
                      threads=args.threads)
    try:
        return cfg.validate()
    except (ValueError, TypeError) as e:
        raise SystemExit(f"bad benchmark option: {e}") from None


def _print(done: int, total: int, message: str) -> None:
    print(f"  [{done}/{total}] {message}", flush=True)


def measure(args: argparse.Namespace) -> tuple[SweepConfig, list[dict], dict]:
    """Run the sweep of ``args`` with progress lines; (config, rows, machine record)."""
    cfg = sweep_config(args)
    rows = run_sweep(cfg, progress=_print)
    return cfg, rows, machine_info(resolve_device(cfg.device))


def where(cfg: SweepConfig, info: dict) -> str:
    return (f"{cfg.family.capitalize()} {'-'.join(map(str, cfg.widths[1:]))} (stem "
            f"{cfg.widths[0]}), batch {cfg.batch}, {cfg.size}x{cfg.size}x3, device: "
            f"{info['device_name']} ({info['device']}), torch {info['torch']}, python "
            f"{info['python']}, {info['torch_threads']} threads, {info['date']}")


def run(args: argparse.Namespace) -> tuple[dict, str]:
    cfg, rows, info = measure(args)
    metric = "peak_mib" if info["device"].startswith("cuda") else "peak_over_start_mib"
    budget = budget_rows(rows, args.budget_mib, metric, cfg.stages, cfg.family)
    payload = dict(benchmark="scaling", machine=info, args=vars(args), family=cfg.family,
                   rows=rows, metric=metric, budget_mib=args.budget_mib, stages=cfg.stages,
                   budget=budget)
    how = (f"Deepest network within {args.budget_mib:g} MiB of `{metric}` "
           f"({'CUDA max allocated' if metric == 'peak_mib' else 'peak RSS over start'}): "
           "measured = the deepest measured depth within the budget; extrapolated = linear "
           "least-squares fit of that memory against blocks per stage over all measured "
           "depths, solved for the budget (an extrapolation, not a measurement).")
    md = "\n\n".join([where(cfg, info), markdown_table(rows, COLUMNS), how,
                      markdown_table(budget, BUDGET_COLUMNS)])
    return payload, md
