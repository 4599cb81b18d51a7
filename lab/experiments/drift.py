"""Rebuild drift at depth: float32 error of each stage's rebuilt input, at init and trained."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

FAMILIES = ("hamiltonian", "midpoint", "leapfrog", "revnet")


@dataclass
class DriftRow:
    """One family at one moment: worst relative error of a rebuilt stage input, per setting."""

    family: str
    when: str            # "init" or "trained (N steps)"
    free: float          # no anchors
    anchored: float      # anchors every k blocks
    test_acc: float | None = None


def _stage_input_error(model, x, anchor_every: int) -> float:
    """Max over segments of the rebuilt segment input's relative error (float32, train mode)."""
    from core.analysis import trajectory

    tr = trajectory(model, x, dtype="float32", anchor_every=anchor_every)
    firsts = [j for j, s in enumerate(tr.segment) if j == 0 or tr.segment[j - 1] != s]
    return max(tr.error[j] for j in firsts)


def measure(families: Sequence[str] = FAMILIES, *, blocks: int = 100, train_steps: int = 30,
            anchor_every: int = 10, seed: int = 0, widths=(8, 8, 16, 32), batch: int = 16,
            train_size: int = 512, progress_every: int = 0) -> list[DriftRow]:
    """Each family at ``blocks`` blocks per stage on ``shapes``: error at init, then trained.

    ``progress_every`` > 0 prints the step and the loss to stderr every that many steps.
    """
    import torch
    import torch.nn.functional as F

    import core
    from core.data import load_dataset

    data = load_dataset("shapes", seed=seed, augment=False, train_size=train_size,
                        test_size=256)
    rows = []
    for family in families:
        torch.manual_seed(seed)
        model = core.create_model(family, blocks=(blocks,) * 3, widths=tuple(widths),
                                  in_channels=data.in_channels, num_classes=data.num_classes,
                                  memory="reversible")
        loader = torch.utils.data.DataLoader(data.train, batch_size=batch, shuffle=True,
                                             generator=torch.Generator().manual_seed(seed))
        probe = next(iter(loader))[0]
        model.train()
        rows.append(DriftRow(family, "init", _stage_input_error(model, probe, 0),
                             _stage_input_error(model, probe, anchor_every)))
        opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
        step = 0
        while step < train_steps:
            for x, y in loader:
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                if progress_every and step % progress_every == 0:
                    print(f"  {time.strftime('%H:%M:%S')} {family}: step {step}/{train_steps},"
                          f" loss {loss.item():.3f}", file=sys.stderr, flush=True)
                if step >= train_steps:
                    break
        model.eval()
        with torch.no_grad():
            xs, ys = zip(*[data.test[i] for i in range(len(data.test))])
            acc = (model(torch.stack(xs)).argmax(1) == torch.tensor(ys)).float().mean().item()
        model.train()
        rows.append(DriftRow(family, f"trained ({train_steps} steps)",
                             _stage_input_error(model, probe, 0),
                             _stage_input_error(model, probe, anchor_every), acc))
    return rows


def table(rows: Sequence[DriftRow], anchor_every: int = 10) -> str:
    lines = ["| family | when | no anchors | anchors every " f"{anchor_every} | test acc |",
             "|---|---|---|---|---|"]
    for r in rows:
        acc = "-" if r.test_acc is None else f"{100 * r.test_acc:.1f}%"
        lines.append(f"| {r.family} | {r.when} | {r.free:.2e} | {r.anchored:.2e} | {acc} |")
    return "\n".join(lines)


def write_report(rows: Sequence[DriftRow], out: Path, command: str, *, blocks: int,
                 train_steps: int, anchor_every: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "drift.md"
    path.write_text("\n".join([
        "# Rebuild drift at depth (float32)",
        "",
        f"Each family at {blocks} blocks per stage (widths 8-8-16-32) on `shapes` (32x32). "
        "Number: the largest relative error `||rebuilt - forward|| / ||forward||` of a stage's "
        "input rebuilt from the stage's output by the blocks' inverse, as the reversible "
        "backward does it (`core.analysis.trajectory`, train-mode batch norm, one batch of 16), "
        f"at initialisation and after {train_steps} SGD steps (lr 0.02, batch 16); with anchors "
        f"the rebuild restarts from the stored state every {anchor_every} blocks.",
        "", table(rows, anchor_every), "",
        f"Command: `{command}` ({time.strftime('%Y-%m-%d')}).", ""]))
    return path
