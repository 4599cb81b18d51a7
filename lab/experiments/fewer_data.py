"""The fewer-data experiment: each family on 5-100% of a dataset, steps held constant, as runs."""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.runs import jobs
from lab.runs.store import Store

NAME = "fewer-data"
END = ("completed", "failed", "interrupted", "cancelled", "stale")
# Family -> create_model overrides. The reversible families use the generic defaults (2-2-2
# blocks, widths 16-16-32-64: about 32.7k parameters on 1-channel digits); the ResNet has the
# same blocks at half the width (about 31.9k): similar parameter counts.
FAMILIES: dict[str, dict[str, Any]] = {
    "hamiltonian": {},
    "midpoint": {},
    "leapfrog": {},
    "resnet": {"widths": [8, 8, 16, 32]},
}
FRACTIONS = (0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass
class FewerDataPlan:
    """The grid: every family x fraction x seed is one background run of ``steps`` steps."""

    dataset: str = "digits"            # "digits" or "shapes" (embedded, no download)
    families: Sequence[str] = tuple(FAMILIES)
    fractions: Sequence[float] = FRACTIONS  # shares of the training set
    seeds: int = 3                     # seeds 0..seeds-1 per cell
    steps: int = 300                   # optimizer steps of every run, whatever the fraction
    batch_size: int = 64               # samples per step
    memory: str = "standard"           # the same memory mode for every family (ResNet: standard)
    extra: dict = field(default_factory=dict)  # more TrainConfig keys for every run

    def validate(self) -> FewerDataPlan:
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown or not self.families:
            raise ValueError(f"families={list(self.families)!r}: choose from "
                             f"{', '.join(FAMILIES)}")
        if self.dataset not in ("digits", "shapes"):
            raise ValueError(f"dataset={self.dataset!r}: the experiment runs on the embedded "
                             "'digits' or 'shapes'")
        if not self.fractions or any(not 0 < f <= 1 for f in self.fractions):
            raise ValueError(f"fractions={list(self.fractions)!r}: each must be in (0, 1]")
        for name in ("seeds", "steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a whole number >= 1")
        return self

    def configs(self) -> list[tuple[str, dict]]:
        """(run name, TrainConfig dict) for every run, seed-major so early seeds finish first."""
        out = []
        for seed in range(self.seeds):
            for family in self.families:
                for fraction in self.fractions:
                    config = {"model": family, "model_kwargs": dict(FAMILIES[family]),
                              "dataset": self.dataset, "fraction": float(fraction),
                              "seed": seed, "steps": self.steps,
                              "batch_size": self.batch_size, "memory": self.memory,
                              "checkpoint_every": 0, **self.extra}
                    out.append((run_name(family, fraction, seed), config))
        return out


def run_name(family: str, fraction: float, seed: int) -> str:
    """The run name in the store, ``fewer-data/<family>/<fraction>/<seed>``: Runs groups by it."""
    return f"{NAME}/{family}/{fraction:g}/{seed}"


def parse_name(name: str | None) -> tuple[str, float, int] | None:
    """(family, fraction, seed) of a fewer-data run name, else None."""
    parts = (name or "").split("/")
    if len(parts) != 4 or parts[0] != NAME:
        return None
    try:
        return parts[1], float(parts[2]), int(parts[3])
    except ValueError:
        return None


def launch(plan: FewerDataPlan, store: Store, manifest: Path) -> list[str]:
    """Queue every run of the plan; the ids go to ``manifest`` (JSON) before anything else."""
    plan.validate()
    configs = plan.configs()
    for _, config in configs:  # all or nothing: a bad config stops before any run is queued
        jobs.validate_config(config)
    ids: list[str] = []
    manifest.parent.mkdir(parents=True, exist_ok=True)
    for name, config in configs:
        ids.append(jobs.launch(config, name=name, store=store))
        manifest.write_text(json.dumps({"plan": _plan_json(plan), "runs": ids}, indent=1))
    return ids


def _plan_json(plan: FewerDataPlan) -> dict:
    d = asdict(plan)
    d["families"], d["fractions"] = list(plan.families), list(plan.fractions)
    return d


def wait(ids: Iterable[str], store: Store, *, poll: float = 5.0,
         report: Callable[[dict[str, int]], None] | None = None) -> None:
    """Block until every run has ended (completed, failed, cancelled, ...)."""
    ids = list(ids)
    while True:
        jobs.reconcile(store)
        counts: dict[str, int] = {}
        for run_id in ids:
            run = store.get_run(run_id)
            status = run.status if run else "deleted"
            counts[status] = counts.get(status, 0) + 1
        if report:
            report(counts)
        if all(s in END or s == "deleted" for s in counts):
            return
        time.sleep(poll)


@dataclass
class Cell:
    """One family at one fraction: the final test accuracy of each seed."""

    family: str
    fraction: float
    accs: list[float]
    train_size: int | None = None

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accs) if self.accs else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.accs) if len(self.accs) > 1 else 0.0


def collect(ids: Iterable[str], store: Store) -> tuple[list[Cell], list[str]]:
    """Cells (family x fraction) from the runs' final test accuracy; and the runs left out."""
    cells: dict[tuple[str, float], Cell] = {}
    missing: list[str] = []
    for run_id in ids:
        run = store.get_run(run_id)
        key = parse_name(run.name) if run else None
        acc = (run.final or {}).get("test_acc") if run else None
        if run is None or key is None or run.status != "completed" or acc is None:
            missing.append(f"{run_id} ({run.status if run else 'deleted'})")
            continue
        cell = cells.setdefault(key[:2], Cell(key[0], key[1], []))
        cell.accs.append(float(acc))
    order = {f: i for i, f in enumerate(FAMILIES)}
    return sorted(cells.values(), key=lambda c: (order.get(c.family, 99), c.fraction)), missing


def table(cells: Sequence[Cell]) -> str:
    """Markdown: one row per fraction, one column per family, ``mean ± std (n)`` in %."""
    families = list(dict.fromkeys(c.family for c in cells))
    fractions = sorted({c.fraction for c in cells})
    by = {(c.family, c.fraction): c for c in cells}
    lines = ["| fraction | " + " | ".join(families) + " |",
             "|---|" + "---|" * len(families)]
    for f in fractions:
        row = [f"{100 * f:g}%"]
        for fam in families:
            c = by.get((fam, f))
            row.append("-" if c is None else
                       f"{100 * c.mean:.1f} ± {100 * c.std:.1f} (n={len(c.accs)})")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_report(cells: Sequence[Cell], missing: Sequence[str], plan: dict, out: Path,
                 command: str, seconds: float | None = None) -> Path:
    """docs: ``fewer-data-<dataset>.md`` (table, plan, command), ``.json`` and ``.html``."""
    from lab.figures import to_html
    from lab.figures.experiments import fewer_data_figure

    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{NAME}-{plan['dataset']}"
    fig = fewer_data_figure(cells, dataset=plan["dataset"])
    to_html(fig, stem.with_suffix(".html"))
    stem.with_suffix(".json").write_text(json.dumps({
        "plan": plan, "command": command, "seconds": seconds, "missing": list(missing),
        "cells": [{"family": c.family, "fraction": c.fraction, "accs": c.accs,
                   "mean": c.mean, "std": c.std} for c in cells]}, indent=1))
    md = [f"# Fewer data: test accuracy vs share of `{plan['dataset']}`",
          "",
          f"Every run takes the same {plan['steps']} optimizer steps (batch {plan['batch_size']},"
          f" memory `{plan['memory']}`, SGD with the default step schedule), whatever the "
          "fraction: fewer data means fewer examples, not fewer updates. Cells: final test "
          "accuracy in %, mean ± sample standard deviation over seeds (n = seeds).",
          "", table(cells), "",
          f"Command: `{command}`" + (f" ({seconds / 60:.0f} min wall)" if seconds else ""),
          "", f"Figure: [{stem.name}.html]({stem.name}.html); raw numbers: "
          f"[{stem.name}.json]({stem.name}.json).", ""]
    if missing:
        md += ["Runs left out (not completed): " + ", ".join(missing), ""]
    path = stem.with_suffix(".md")
    path.write_text("\n".join(md))
    return path
