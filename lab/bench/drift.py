"""`python -m lab bench drift`: what the drift watch costs on the default job.

The default job is `python -m lab train` (``TrainConfig()``: the generic Hamiltonian net,
blocks 2-2-2, widths 16-16-32-64, digits at batch 64, reversible memory, SGD). Timed round-robin
in one process: one training step, and one drift check (``model.rebuild_errors`` on the step's
batch: a no-grad forward plus the rebuild of every segment). The overhead at ``drift_every=N``
is one check per N steps: ``check / (N x step)``. Also timed end to end: the default job
trained by ``Trainer`` with the watch off and at its default, alternating, the median of
``--runs`` each. Target: at most 2% at the default N.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

import core
from core.device import resolve_device
from core.training import TrainConfig, Trainer
from core.training.trainer import build_optimizer
from lab.bench.common import markdown_table
from lab.sweeps.measure import interleaved_median_times, machine_info

TARGET = 0.02  # the drift watch may cost at most 2% of training time at its default


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=int, default=40, help="timed steps and checks (median)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--runs", type=int, default=3, help="end-to-end trainings per setting")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's "
                   "default; on a busy 2-core machine one thread avoids paying a thread pool's "
                   "synchronisation in every small op)")


def _micro(args, device) -> dict:
    cfg = TrainConfig()
    data = core.data.load_dataset(cfg.dataset, augment=False)
    torch.manual_seed(0)
    model = core.create_model(cfg.model, num_classes=data.num_classes,
                              in_channels=data.in_channels, memory=cfg.memory).to(device)
    model.train()
    loader = torch.utils.data.DataLoader(data.train, batch_size=cfg.batch_size, shuffle=True)
    x, y = (t.to(device) for t in next(iter(loader)))
    opt = build_optimizer(model, cfg)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    times = interleaved_median_times({"step": step, "check": lambda: model.rebuild_errors(x)},
                                     args.repeats, args.warmup, device)
    return dict(step_s=times["step"], check_s=times["check"],
                check_vs_step=times["check"] / times["step"], drift_every=cfg.drift_every,
                overhead=times["check"] / (cfg.drift_every * times["step"]),
                segments=len(model.reversible_segments()))


def _end_to_end(args, device) -> dict:
    walls: dict[int, list[float]] = {0: [], TrainConfig.drift_every: []}
    for _ in range(args.runs):
        for every in walls:  # alternating, so load changes fall on both
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()
                result = Trainer(TrainConfig(drift_every=every, device=str(device)), d).fit()
                walls[every].append(time.perf_counter() - t0)
            assert result.status == "completed", result.reason
    off, on = (statistics.median(walls[k]) for k in walls)
    return dict(off_s=off, on_s=on, overhead=on / off - 1, runs=args.runs,
                steps=result.final["step"])


def run(args: argparse.Namespace) -> tuple[dict, str]:
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    micro = _micro(args, device)
    print(f"  micro {micro}", flush=True)
    e2e = _end_to_end(args, device)
    print(f"  end to end {e2e}", flush=True)
    info = machine_info(device)
    checks = [dict(target=f"drift watch at drift_every={micro['drift_every']}: check / "
                          f"(N x step) <= {TARGET:.0%}", value=micro["overhead"], limit=TARGET,
                   met=micro["overhead"] <= TARGET)]
    payload = dict(benchmark="drift", machine=info, args=vars(args), rows=[micro],
                   end_to_end=e2e, targets=checks)
    md = (f"The default job (`python -m lab train`: hamiltonian 2-2-2, widths 16-16-32-64, "
          f"digits, batch 64, reversible, {e2e['steps']} steps), device: {info['device_name']} "
          f"({info['device']}), {info['torch_threads']} torch threads, torch {info['torch']}, "
          f"{info['date']}\n\n"
          + markdown_table([micro], [
              ("step_s", "step s (median)", ".4f"), ("check_s", "one check s (median)", ".4f"),
              ("check_vs_step", "check / step", ".2f"), ("drift_every", "drift_every", ""),
              ("overhead", "overhead = check / (N x step)", ".2%")])
          + "\n\nEnd to end (Trainer, whole job with evaluation and checkpoints, median of "
          f"{e2e['runs']} alternating runs each; noisy on a shared machine):\n\n"
          + markdown_table([e2e], [("off_s", "drift_every=0 s", ".2f"),
                                   ("on_s", f"drift_every={micro['drift_every']} s", ".2f"),
                                   ("overhead", "difference", "+.1%")])
          + "\n\nTarget:\n\n"
          + markdown_table(checks, [("target", "target", ""), ("value", "measured", ".2%"),
                                    ("limit", "limit", ".0%"), ("met", "met", "")]))
    return payload, md


def figure(payload: dict):
    import plotly.graph_objects as go

    from lab.figures.bench import layout

    r = payload["rows"][0]
    fig = go.Figure(go.Bar(x=["training step", "drift check", "check per step at default N"],
                           y=[r["step_s"] * 1e3, r["check_s"] * 1e3,
                              r["check_s"] / r["drift_every"] * 1e3]))
    fig.update_yaxes(title_text="milliseconds (median)")
    return layout(fig, payload, "Drift watch cost on the default job")
