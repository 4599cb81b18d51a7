"""What the Experiments page computes: grids from the form or a preset, their cost, progress,
grouped tables with intervals, paired comparisons, figures and exports.

Plain Python over ``lab.experiments`` and the run store (no Streamlit). Every table cell is a
string ('–' where there is no number), so no table shows "None" or "nan".
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lab.experiments import cost, grid
from lab.experiments import results as rs
from lab.runs.store import ACTIVE, Experiment, Store

# the form's axis fields, in order: (axis, label, placeholder)
FORM_AXES = (
    ("family", "Families or models", "hamiltonian,midpoint,leapfrog,resnet"),
    ("fraction", "Fractions of the training set", "0.05,0.2,1"),
    ("layers", "Depths in layers", "14,26,50,110"),
    ("blocks", "Blocks per stage (';' between values)", "2,2,2;6,6,6"),
    ("h", "Step sizes h", "0.5,1"),
    ("lr", "Learning rates", "0.05,0.1"),
)
DATASETS = ("digits", "shapes")  # embedded or generated: no download needed


def form_defaults(preset: str | None) -> dict[str, Any]:
    """The form's values for a preset (or a small blank grid): axis texts, dataset, seeds,
    steps, batch size and the per-family settings as text."""
    spec = grid.preset(preset) if preset else grid.GridSpec(
        axes={"family": ["hamiltonian", "resnet"], "fraction": [0.1, 1.0]},
        family_kwargs={k: dict(v) for k, v in grid.EQUAL_PARAMS.items()})
    values = {axis: _text(axis, spec.axes.get(axis)) for axis, _, _ in FORM_AXES}
    others = {a: v for a, v in spec.axes.items() if a not in values}
    values["other"] = "; ".join(f"{a}={_text(a, v)}" for a, v in others.items())
    values.update(dataset=spec.base.get("dataset", "digits"), seeds=spec.seeds,
                  steps=spec.steps, batch_size=spec.base.get("batch_size", 64),
                  family_kwargs=_family_text(spec.family_kwargs))
    return values


def _text(axis: str, values: list | None) -> str:
    if not values:
        return ""
    sep = ";" if axis in grid.LIST_AXES else ","
    return sep.join(",".join(map(grid.fmt, v)) if isinstance(v, list) else grid.fmt(v)
                    for v in values)


def _family_text(family_kwargs: Mapping[str, Mapping[str, Any]]) -> str:
    return grid.family_text(family_kwargs)


def spec_from_form(values: Mapping[str, Any], preset: str | None = None) -> grid.GridSpec:
    """The grid of the form, validated (ValueError naming the bad value)."""
    axes: dict[str, list] = {}
    for axis, _, _ in FORM_AXES:
        text = str(values.get(axis) or "").strip()
        if text:
            axes[axis] = grid.parse_values(axis, text)
    for part in (p.strip() for p in str(values.get("other") or "").split(";")):
        if part:
            key, sep, text = part.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"other axes {part!r}: write key=values, e.g. dropout=0,0.1")
            axes[key.strip()] = grid.parse_values(key.strip(), text)
    spec = grid.GridSpec(axes=axes, seeds=int(values.get("seeds", 3)),
                         steps=int(values.get("steps", 300)),
                         base={"dataset": values.get("dataset", "digits"),
                               "batch_size": int(values.get("batch_size", 64))},
                         family_kwargs=grid.parse_family_kwargs(
                             str(values.get("family_kwargs") or "")),
                         preset=preset)
    return spec.validate()


def plan(spec: grid.GridSpec, *, time_steps: bool = False,
         store: Store | None = None) -> cost.Estimate:
    """The number of runs and their estimated wall time (history of the store; timing steps
    here for cells without history when ``time_steps``)."""
    with _store(store) as st:
        runs = st.list_runs(status="completed")
    return cost.estimate(spec, runs, time_steps=time_steps)


def launch(spec: grid.GridSpec, name: str | None = None, store: Store | None = None) -> str:
    with _store(store) as st:
        return grid.launch(spec, name=(name or "").strip() or None, store=st)


def list_experiments(store: Store | None = None) -> list[Experiment]:
    with _store(store) as st:
        return st.list_experiments()


class _store:
    """A context manager: the given store, or a fresh one closed at the end."""

    def __init__(self, store: Store | None):
        self.given, self.own = store, None

    def __enter__(self) -> Store:
        if self.given is not None:
            return self.given
        self.own = Store()
        return self.own

    def __exit__(self, *exc) -> None:
        if self.own is not None:
            self.own.close()


# -- one experiment ------------------------------------------------------------------------------
@dataclass
class ExperimentView:
    """An experiment's state for the page: results, progress and ETA."""

    results: rs.Results
    progress: dict[str, int]
    eta_s: float | None      # seconds until the queued and running runs are done (estimate)

    @property
    def active(self) -> bool:
        return bool(self.progress["running"] or self.progress["queued"])

    @property
    def experiment(self) -> Experiment:
        return self.results.experiment

    def progress_text(self) -> str:
        done, total = self.progress["done"], sum(self.progress.values())
        parts = [f"{v} {k}" for k, v in self.progress.items() if v]
        eta = f" · about {cost.duration(self.eta_s)} to go" if self.active and self.eta_s else ""
        return f"{done}/{total} runs done · " + ", ".join(parts) + eta


def view(ref: str, metric: str = rs.DEFAULT_METRIC, store: Store | None = None) -> ExperimentView:
    """Results, progress and ETA of experiment ``ref`` (id or name)."""
    with _store(store) as st:
        res = rs.collect(st, ref, metric)
    progress = res.progress()
    per_run = rs.median_seconds(res)
    left = progress["queued"] + progress["running"] / 2  # a running run is about half done
    eta = per_run * left / cost.parallel_runs() if per_run is not None and left else None
    return ExperimentView(res, progress, eta)


def cancel_active(res: rs.Results) -> list[str]:
    """Cancel the experiment's queued and running runs (without waiting for them to stop);
    returns their ids. A run that ended meanwhile is left as it is."""
    from lab.runs import jobs

    cancelled = []
    for point in res.points:
        if point.status in ACTIVE and point.run_id:
            try:
                jobs.cancel(point.run_id, wait=False)
            except (jobs.JobError, LookupError):
                continue  # ended meanwhile
            cancelled.append(point.run_id)
    return cancelled


def group_rows(res: rs.Results) -> list[dict[str, str]]:
    """The grouped table for st.dataframe: one dict of strings per group."""
    header, rows = rs.group_table(res)
    return [dict(zip(header, row, strict=True)) for row in rows]


def comparison_rows(res: rs.Results, axis: str | None = None) -> list[dict[str, str]]:
    header, rows = rs.comparison_table(res, axis)
    return [dict(zip(header, row, strict=True)) for row in rows]


def table_csv(res: rs.Results) -> bytes:
    """The grouped table as CSV: raw numbers (accuracies as fractions), empty cells for none."""
    out = io.StringIO()
    w = csv.writer(out)
    axes = list(res.spec.axes)
    w.writerow([*axes, "n", "expected", "metric", "mean", "ci95_low", "ci95_high", "sd",
                "ci_method", "not_completed", "runs"])
    for g in res.groups:
        s = g.summary
        w.writerow([*(grid.fmt(g.axes[a]) for a in axes), s.n, g.expected, res.metric,
                    _num(s.mean), _num(s.ci95[0] if s.ci95 else None),
                    _num(s.ci95[1] if s.ci95 else None), _num(s.sd), s.method,
                    " ".join(f"{k}={v}" for k, v in sorted(g.not_completed.items())),
                    " ".join(g.runs)])
    return out.getvalue().encode()


def _num(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def x_axes(res: rs.Results) -> list[str]:
    """Axes to plot the metric against: every axis, the non-family ones first."""
    axes = list(res.spec.axes)
    return [a for a in axes if a not in ("family", "model")] + [
        a for a in axes if a in ("family", "model")]


def figures(res: rs.Results, x: str) -> tuple[Any, Any]:
    """(metric against ``x`` with 95% error bars, parallel coordinates over every run)."""
    from lab.figures.experiments import metric_vs_axis, parallel_coordinates

    rev = f"experiment-{res.experiment.id}-{res.metric}"
    return (metric_vs_axis(res, x, uirevision=f"{rev}-{x}"),
            parallel_coordinates(res, uirevision=rev))


def figures_html(res: rs.Results, x: str) -> str:
    """Both figures in one self-contained HTML file (the page's download)."""
    from lab.figures.style import to_html

    return to_html(figures(res, x), title=f"Experiment {res.experiment.name} ({res.metric})")
