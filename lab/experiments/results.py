"""An experiment's results: its runs grouped by cell, statistics per group, paired comparisons.

A group is one cell of the grid (one value per axis) over its seeds. Only completed runs with
the metric count; a group whose other seeds failed, are still queued, or were deleted says so
(``expected``, ``not_completed``) instead of quietly averaging fewer seeds. A comparison pairs
the runs of two groups that differ in one axis and share the seed and every other axis.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lab.experiments import stats
from lab.experiments.grid import GridSpec, fmt, label
from lab.runs.store import ACTIVE, Experiment, Run, Store

DEFAULT_METRIC = "test_acc"
MISSING = "missing"  # a point of the grid with no run in the store (deleted, or never queued)
# how the page and the CLI count runs: done / running / queued / failed (failed and every other
# ending without a result) / missing
PROGRESS_KEYS = ("done", "running", "queued", "failed", MISSING)


@dataclass(frozen=True)
class Point:
    """One run of the grid (or the lack of one): its cell, seed, status and metric value."""

    axes: dict[str, Any]
    seed: int
    run_id: str | None
    status: str                # a run status, or MISSING
    value: float | None        # the metric, for a completed run that reports it
    seconds: float | None = None  # the run's wall time, for a completed run


@dataclass
class Group:
    """One cell of the grid over its seeds."""

    axes: dict[str, Any]
    points: list[Point]
    summary: stats.Summary = field(init=False)

    def __post_init__(self) -> None:
        self.summary = stats.mean_ci([p.value for p in self.points if p.value is not None])

    @property
    def expected(self) -> int:
        return len(self.points)

    @property
    def runs(self) -> list[str]:
        return [p.run_id for p in self.points if p.run_id]

    @property
    def by_seed(self) -> dict[int, float]:
        return {p.seed: p.value for p in self.points if p.value is not None}

    @property
    def not_completed(self) -> dict[str, int]:
        """Status -> count of this group's seeds without a value (failed, queued, missing...)."""
        return dict(Counter(p.status for p in self.points if p.value is None))

    def note(self) -> str:
        """'' when every seed counts, else e.g. '2 of 10 seeds without a result (1 failed,
        1 queued): the mean is over 8'."""
        missing = self.not_completed
        if not missing:
            return ""
        what = ", ".join(f"{v} {k}" for k, v in sorted(missing.items()))
        return (f"{sum(missing.values())} of {self.expected} seeds without a result ({what}): "
                f"the mean is over {self.summary.n}")

    def to_json(self) -> dict[str, Any]:
        s = self.summary
        return {"axes": self.axes, "n": s.n, "mean": s.mean,
                "ci95": list(s.ci95) if s.ci95 else None, "runs": self.runs,
                "sd": s.sd, "expected": self.expected, "not_completed": self.not_completed,
                "ci_method": s.method}


@dataclass
class Comparison:
    """Groups ``a`` and ``b`` differing only in ``axis``, paired by seed (differences a - b)."""

    axis: str
    a: dict[str, Any]
    b: dict[str, Any]
    seeds: list[int]
    result: stats.Paired
    p_holm: float | None = None

    def to_json(self) -> dict[str, Any]:
        r = self.result
        return {"a": self.a, "b": self.b, "n_pairs": r.n_pairs, "mean_diff": r.mean_diff,
                "ci95": list(r.ci95) if r.ci95 else None, "p_value": r.p_value,
                "test": r.test, "axis": self.axis, "sd_diff": r.sd_diff,
                "cohens_dz": r.cohens_dz, "wilcoxon_p": r.wilcoxon_p, "p_holm": self.p_holm,
                "seeds": self.seeds}


@dataclass
class Results:
    """Everything the page and ``experiment results`` show about one experiment."""

    experiment: Experiment
    spec: GridSpec
    metric: str
    points: list[Point]
    groups: list[Group]
    comparisons: list[Comparison]
    metrics: list[str]        # metrics the completed runs report (choices for ``metric``)

    def to_json(self) -> dict[str, Any]:
        """``{"groups": [...], "comparisons": [...]}`` (see docs/experiments/README.md)."""
        return {"groups": [g.to_json() for g in self.groups],
                "comparisons": [c.to_json() for c in self.comparisons]}

    def progress(self) -> dict[str, int]:
        """Counts over the grid's runs: done, running, queued, failed, missing."""
        counts = dict.fromkeys(PROGRESS_KEYS, 0)
        for p in self.points:
            counts[progress_key(p.status)] += 1
        return counts


def progress_key(status: str) -> str:
    if status == "completed":
        return "done"
    if status in (*ACTIVE, MISSING):
        return status
    return "failed"  # failed, stale, interrupted, cancelled: ended without a result


def metric_value(run: Run, metric: str) -> float | None:
    """The metric of a completed run (its final metrics), else None: one rule for every view."""
    if run.status != "completed":
        return None
    v = (run.final or {}).get(metric)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _key(axes: Mapping[str, Any]) -> str:
    return json.dumps(axes, sort_keys=True)


def collect(store: Store, ref: str, metric: str = DEFAULT_METRIC) -> Results:
    """The results of experiment ``ref`` (id, name or id prefix) for ``metric``."""
    exp = store.require_experiment(ref)
    runs = store.list_runs(experiment=exp.id)
    return compute(exp, runs, metric)


def compute(exp: Experiment, runs: Iterable[Run], metric: str = DEFAULT_METRIC) -> Results:
    """Group ``runs`` (the experiment's) by cell; statistics and comparisons for ``metric``."""
    spec = GridSpec.from_dict(exp.spec)
    by_id = {r.id: r for r in runs}
    metrics = sorted({k for r in by_id.values() if r.status == "completed"
                      for k, v in (r.final or {}).items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool)})
    if metrics and metric not in metrics:
        raise ValueError(f"metric={metric!r}: the runs of {exp.name} report "
                         f"{', '.join(metrics)}")
    found: dict[tuple[str, int], Run] = {}
    for run_id, where in exp.points.items():
        run = by_id.get(run_id)
        if run is None:
            continue
        key = (_key(where["axes"]), int(where["seed"]))
        old = found.get(key)
        if old is None or (_rank(run), run.created_at) > (_rank(old), old.created_at):
            found[key] = run
    cells = list(spec.cell_axes())
    groups: dict[str, Group] = {}
    points = []
    for axes in cells:
        mine = []
        for seed in range(spec.seeds):
            run = found.get((_key(axes), seed))
            if run is None:
                mine.append(Point(axes, seed, None, MISSING, None))
                continue
            seconds = (run.ended_at - run.started_at
                       if run.status == "completed" and run.started_at and run.ended_at else None)
            mine.append(Point(axes, seed, run.id, run.status, metric_value(run, metric), seconds))
        points += mine
        groups[_key(axes)] = Group(axes, mine)
    comparisons = _comparisons(spec, groups)
    for c, p in zip(comparisons, stats.holm([c.result.p_value for c in comparisons]),
                    strict=True):
        c.p_holm = p
    return Results(exp, spec, metric, points, list(groups.values()), comparisons, metrics)


def _rank(run: Run) -> int:
    """Which of two runs of one point counts: completed, then active, then the rest."""
    return 2 if run.status == "completed" else 1 if run.active else 0


def _comparisons(spec: GridSpec, groups: Mapping[str, Group]) -> list[Comparison]:
    out = []
    for axis, values in spec.axes.items():
        if len(values) < 2:
            continue
        others = {k: v for k, v in spec.axes.items() if k != axis}
        rest_cells = (GridSpec(axes=others).cell_axes() if others else iter([{}]))
        for rest in rest_cells:
            for i, va in enumerate(values):
                for vb in values[i + 1:]:
                    a = _ordered(spec, {**rest, axis: va})
                    b = _ordered(spec, {**rest, axis: vb})
                    ga, gb = groups[_key(a)].by_seed, groups[_key(b)].by_seed
                    seeds = sorted(set(ga) & set(gb))
                    result = stats.paired([ga[s] for s in seeds], [gb[s] for s in seeds])
                    out.append(Comparison(axis, a, b, seeds, result))
    return out


def _ordered(spec: GridSpec, axes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: axes[k] for k in spec.axes}


# -- text -----------------------------------------------------------------------------------------
def fmt_value(metric: str, v: float | None, digits: int = 1) -> str:
    """A metric value for a table: accuracies in %, others as numbers; '–' for none."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if metric.endswith("acc"):
        return f"{100 * v:.{digits}f}"
    return f"{v:.4g}"


def fmt_ci(metric: str, ci: Sequence[float] | None, digits: int = 1) -> str:
    if ci is None:
        return "–"
    return f"[{fmt_value(metric, ci[0], digits)}, {fmt_value(metric, ci[1], digits)}]"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "–"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}" if p < 0.01 else f"{p:.3f}"


def unit(metric: str) -> str:
    return " (%)" if metric.endswith("acc") else ""


def group_table(results: Results) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the grouped table: axes, n/expected, mean, 95% CI, SD, note."""
    m = results.metric
    header = [*results.spec.axes, "n", f"mean {m}{unit(m)}", "95% CI (t)", "SD", "note"]
    rows = []
    for g in results.groups:
        s = g.summary
        rows.append([*(fmt(v) for v in g.axes.values()), f"{s.n}/{g.expected}",
                     fmt_value(m, s.mean), fmt_ci(m, s.ci95), fmt_value(m, s.sd), g.note()])
    return header, rows


def comparison_table(results: Results, axis: str | None = None
                     ) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the paired comparisons (optionally those along one ``axis``)."""
    m = results.metric
    header = ["axis", "a", "b", "where", "pairs", f"mean a-b{unit(m)}", "95% CI (t)",
              "p (paired t)", "p (Holm)", "p (Wilcoxon)", "d_z"]
    rows = []
    for c in results.comparisons:
        if axis is not None and c.axis != axis:
            continue
        where = label({k: v for k, v in c.a.items() if k != c.axis})
        r = c.result
        rows.append([c.axis, fmt(c.a[c.axis]), fmt(c.b[c.axis]), where or "–", str(r.n_pairs),
                     fmt_value(m, r.mean_diff, 2), fmt_ci(m, r.ci95, 2), fmt_p(r.p_value),
                     fmt_p(c.p_holm), fmt_p(r.wilcoxon_p),
                     "–" if r.cohens_dz is None else f"{r.cohens_dz:.2f}"])
    return header, rows


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c or " " for c in row) + " |" for row in rows]
    return "\n".join(lines)


def plain(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned with spaces, for the terminal."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in [header, *rows])


def median_seconds(results: Results) -> float | None:
    """Median wall time of the experiment's completed runs (for the ETA)."""
    secs = [p.seconds for p in results.points if p.seconds is not None]
    return statistics.median(secs) if secs else None
