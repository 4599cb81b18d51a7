"""`python -m lab bench` (modes): the memory modes of a Hamiltonian network at three depths.

The scaling suite's sweep (lab.sweeps.sweep) at 6, 18 and 100 blocks per stage (74, 218 and 1202
layers) without the budget table: widths 32-64-128 on CIFAR-shaped input (batch 32, 32x32x3).
Per mode: memory held and saved for backward, peak memory of a training step (process RSS in a
fresh process on CPU, ``torch.cuda.max_memory_allocated`` on GPU) and the median time of a full
training step, the modes interleaved in one process so their times compare as ratios.
"""

from __future__ import annotations

import argparse

from lab.bench import scaling
from lab.bench.common import markdown_table

COLUMNS = [("blocks", "blocks/stage", ""), ("depth", "layers", ""), ("mode", "mode", ""),
           ("held_mib", "held MiB", ".1f"), ("saved_mib", "saved MiB", ".1f"),
           ("peak_mib", "peak MiB", ".0f"),
           ("peak_over_start_mib", "peak over start MiB", ".1f"),
           ("step_s", "step s (median)", ".3f"), ("vs_standard", "time vs standard", ".2f"),
           ("notes", "notes", "")]


def add_arguments(p: argparse.ArgumentParser) -> None:
    scaling.add_arguments(p, depths="6,18,100", budget=False)


def run(args: argparse.Namespace) -> tuple[dict, str]:
    cfg, rows, info = scaling.measure(args)
    payload = dict(benchmark="modes", machine=info, args=vars(args), family=cfg.family, rows=rows)
    return payload, scaling.where(cfg, info) + "\n\n" + markdown_table(rows, COLUMNS)
