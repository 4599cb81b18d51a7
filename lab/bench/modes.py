"""`python -m lab bench` (modes): the three memory modes of a Hamiltonian network across depth.

Hamiltonian widths 32-64-128 on CIFAR-shaped input (batch 32, 32x32x3) at 6, 18 and 100 blocks
per stage. Per mode: saved-for-backward MiB, peak memory of a training step (process RSS in a
fresh process on CPU, ``torch.cuda.max_memory_allocated`` on GPU) and the median time of a full
training step, the modes interleaved in one process so their times compare as ratios.
"""

from __future__ import annotations

import argparse

import torch

import core
from core.memory import MEMORY_MODES
from lab.bench.common import (
    interleaved_median_times,
    machine_info,
    make_batch,
    markdown_table,
    measure_model,
    resolve_device,
    run_child,
    sgd,
    train_step,
)

COLUMNS = [("blocks", "blocks/stage", ""), ("depth", "layers", ""), ("mode", "mode", ""),
           ("saved_mib", "saved MiB", ".1f"), ("peak_mib", "peak MiB", ".0f"),
           ("peak_over_start_mib", "peak over start MiB", ".1f"),
           ("step_s", "step s (median)", ".3f"), ("vs_standard", "time vs standard", ".2f")]


def _mode_step(model, opt, x, y, mode):
    return lambda: train_step(model.set_memory_mode(mode), opt, x, y)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depths", default="6,18,100", help="blocks per stage, comma-separated")
    p.add_argument("--modes", default=",".join(MEMORY_MODES))
    p.add_argument("--widths", default="32,32,64,128", help="stem and stage widths")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=32, help="image side in pixels")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per mode (median)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> tuple[dict, str]:
    device = resolve_device(args.device)
    depths = [int(d) for d in args.depths.split(",")]
    modes = args.modes.split(",")
    for m in modes:
        core.memory.check_memory_mode(m)
    widths = tuple(int(w) for w in args.widths.split(","))
    rows = []
    for n in depths:
        kw = dict(blocks=(n,) * (len(widths) - 1), widths=widths)
        spec = dict(model="hamiltonian", model_kwargs=kw, batch=args.batch, size=args.size,
                    channels=3, classes=10, device=str(device), steps=2)
        memory = {}
        for mode in modes:
            case = dict(spec, mode=mode)
            memory[mode] = (measure_model(case) if device.type == "cuda"
                            else run_child("lab.bench.child", case))
            print(f"  memory  blocks={n:<4} {mode:<11} {memory[mode]}", flush=True)
        torch.manual_seed(0)
        model = core.create_model("hamiltonian", num_classes=10, in_channels=3, **kw).to(device)
        opt = sgd(model)
        x, y = make_batch(args.batch, 3, args.size, 10, device)
        steps = {m: _mode_step(model, opt, x, y, m) for m in modes}
        times = interleaved_median_times(steps, args.repeats, args.warmup, device)
        print(f"  time    blocks={n:<4} {times}", flush=True)
        for mode in modes:
            rows.append(dict(blocks=n, depth=model.config.depth, mode=mode, **memory[mode],
                             step_s=times[mode],
                             vs_standard=times[mode] / times.get("standard", float("nan"))))
        del model, opt
    info = machine_info(device)
    payload = dict(benchmark="modes", machine=info, args=vars(args), rows=rows)
    md = (f"Hamiltonian {'-'.join(map(str, widths[1:]))}, batch {args.batch}, "
          f"{args.size}x{args.size}x3, device: {info['device_name']} ({info['device']}), "
          f"torch {info['torch']}, {info['date']}\n\n" + markdown_table(rows, COLUMNS))
    return payload, md
