"""An experiment written down: Markdown tables, the JSON of its results, its figures as HTML."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from lab.experiments import stats
from lab.experiments.grid import fmt
from lab.experiments.results import (
    Results,
    comparison_table,
    compute,
    group_table,
    markdown,
)
from lab.runs.store import Store

LINE_AXES = ("family", "model")


def figures(results: Results) -> list:
    """The metric against every axis that is not the line axis, then parallel coordinates."""
    from lab.figures.experiments import metric_vs_axis, parallel_coordinates

    xs = [a for a in results.spec.axes if a not in LINE_AXES] or list(results.spec.axes)
    return [*(metric_vs_axis(results, x) for x in xs), parallel_coordinates(results)]


def stem(name: str) -> str:
    """A file name from an experiment name (letters, digits, '.', '-', '_')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "experiment"


def write_report(store: Store, results: Results, out: Path, *, command: str,
                 seconds: float | None = None) -> Path:
    """``<name>.md`` (setup, grouped table, comparisons), ``<name>.json`` and ``<name>.html``."""
    from lab.figures.style import to_html

    out.mkdir(parents=True, exist_ok=True)
    base = out / stem(results.experiment.name)
    spec, metric = results.spec, results.metric
    runs = store.list_runs(experiment=results.experiment.id)
    if seconds is None:  # the runs' own span: the first start to the last end
        starts = [r.started_at for r in runs if r.started_at]
        ends = [r.ended_at for r in runs if r.ended_at]
        seconds = max(ends) - min(starts) if starts and ends else None
    extra = {m: compute(results.experiment, runs, m) for m in ("num_params", "time")
             if m in results.metrics}
    header, rows = group_table(results)
    header[-1:-1] = [h for h, m in (("params", "num_params"), ("train s (mean)", "time"))
                     if m in extra]
    for i, row in enumerate(rows):
        means = {m: extra[m].groups[i].summary.mean for m in extra}
        add = [("–" if means[m] is None else f"{means[m]:,.0f}" if m == "num_params"
                else f"{means[m]:.1f}") for m in ("num_params", "time") if m in extra]
        row[-1:-1] = add
    line_axis = next((a for a in LINE_AXES if a in spec.axes), None)
    c_header, c_rows = comparison_table(results, line_axis)
    progress = results.progress()
    grid = " x ".join(f"{a} ({', '.join(fmt(x) for x in v)})" for a, v in spec.axes.items())
    md = [f"# Experiment `{results.experiment.name}` ({metric})", "",
          f"Grid: {grid} x {spec.seeds} seeds = {spec.runs} runs of {spec.steps} optimizer "
          "steps each. "
          f"Fixed settings: {json.dumps(spec.base, sort_keys=True)}"
          + (f"; per family: {json.dumps(spec.family_kwargs, sort_keys=True)}"
             if spec.family_kwargs else "") + ".",
          "", "Runs: " + ", ".join(f"{v} {k}" for k, v in progress.items() if v) + ".",
          "", f"Groups: mean over seeds with the {stats.CI_METHOD} interval of the mean; n = "
          "seeds with a result / seeds in the grid (a group with fewer says why in its note).",
          "", markdown(header, rows), "",
          f"Paired comparisons along `{line_axis or 'every axis'}` (same seed, same other axes; "
          f"difference a - b; {stats.PAIRED_TEST}, Holm-adjusted over all "
          f"{len(results.comparisons)} comparisons of the experiment, {stats.RANK_TEST}, effect "
          f"size {stats.EFFECT_SIZE}):", "", markdown(c_header, c_rows), "",
          f"Command: `{command}`" + (f" ({seconds / 60:.0f} min wall)" if seconds else "")
          + f", {time.strftime('%Y-%m-%d')}.", "",
          f"Figures: [{base.name}.html]({base.name}.html); every number, and the comparisons "
          f"along the other axes: [{base.name}.json]({base.name}.json).", ""]
    base.with_suffix(".md").write_text("\n".join(md), encoding="utf-8")
    payload: dict[str, Any] = {"experiment": {"id": results.experiment.id,
                                              "name": results.experiment.name,
                                              "spec": spec.to_dict()},
                               "metric": metric, "command": command, "seconds": seconds,
                               "progress": progress, **results.to_json()}
    base.with_suffix(".json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    to_html(figures(results), base.with_suffix(".html"),
            title=f"Experiment {results.experiment.name}", plotlyjs="directory")
    return base.with_suffix(".md")
