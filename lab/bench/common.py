"""What the benchmark suites share: the options of the network they measure, markdown tables
and the saved .json/.md files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_shape_arguments(p: argparse.ArgumentParser, per: str) -> None:
    """--widths, --batch, --size, --repeats (timed steps per ``per``, median) and --warmup."""
    p.add_argument("--widths", default="32,32,64,128", help="stem and stage widths")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=32, help="image side in pixels")
    p.add_argument("--repeats", type=int, default=5, help=f"timed steps per {per} (median)")
    p.add_argument("--warmup", type=int, default=1)


def network_and_batch(args: argparse.Namespace, device: Any, blocks: int | None = None
                      ) -> tuple[Any, Any, Any]:
    """(model, x, y): the Hamiltonian network of ``blocks`` (default --blocks) per stage and
    --widths, built after seeding 0, and a batch of --batch images of --size pixels, on
    ``device``."""
    import torch

    import core
    from lab.sweeps.measure import make_batch

    widths = tuple(int(w) for w in args.widths.split(","))
    torch.manual_seed(0)
    model = core.create_model("hamiltonian", num_classes=10, in_channels=3,
                              blocks=(blocks or args.blocks,) * (len(widths) - 1),
                              widths=widths).to(device)
    x, y = make_batch(args.batch, 3, args.size, 10, device)
    return model, x, y


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """``columns``: (key, header, format spec). Missing values print as '-'."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    lines = [head, sep]
    for r in rows:
        cells = []
        for key, _, spec in columns:
            v = r.get(key)
            cells.append("-" if v is None else format(v, spec) if spec else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_results(out_dir: Path, stem: str, payload: dict, markdown: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    jpath.write_text(json.dumps(payload, indent=2) + "\n")
    mpath.write_text(markdown + "\n")
    return [jpath, mpath]
