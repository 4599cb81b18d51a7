"""Figures of experiments: a metric against any axis with 95% error bars, parallel coordinates.

Both take ``lab.experiments.results.Results`` (groups and runs of one grid).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from lab.figures.style import color, finish

LINE_AXES = ("family", "model")  # one line per value of this axis, when the grid has it


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _text(v: Any) -> str:
    from lab.experiments.grid import fmt

    return fmt(v)


def _scale(metric: str) -> float:
    return 100.0 if metric.endswith("acc") else 1.0


def _metric_title(metric: str) -> str:
    return f"{metric} (%)" if metric.endswith("acc") else metric


def metric_vs_axis(results: Any, x: str, *, uirevision: str = "experiment") -> go.Figure:
    """The metric's mean over seeds against axis ``x``, error bars the 95% t interval; one line
    per family (per combination of the other axes when there is no family axis, or more axes).
    A log x axis when the values are positive numbers spanning a factor of 10 or more."""
    spec, metric = results.spec, results.metric
    if x not in spec.axes:
        raise ValueError(f"x={x!r} is not an axis of this experiment; choose one of "
                         f"{', '.join(spec.axes)}")
    xs = spec.axes[x]
    numeric = _numeric(xs)
    k = _scale(metric)
    lines: dict[str, list] = {}
    for g in results.groups:
        rest = {a: v for a, v in g.axes.items() if a != x and len(spec.axes[a]) > 1}
        name = " · ".join(_text(v) if a in LINE_AXES else f"{a}={_text(v)}"
                          for a, v in rest.items()) or metric
        lines.setdefault(name, []).append(g)
    fig = go.Figure()
    for i, (name, groups) in enumerate(lines.items()):
        family = next((g.axes[a] for g in groups for a in LINE_AXES if a in g.axes), name)
        shown = [g for g in groups if g.summary.mean is not None]
        s = [g.summary for g in shown]
        fig.add_trace(go.Scatter(
            x=[g.axes[x] if numeric else _text(g.axes[x]) for g in shown],
            y=[k * v.mean for v in s],
            error_y=dict(type="data", symmetric=False, visible=True,
                         array=[k * (v.ci95[1] - v.mean) if v.ci95 else 0 for v in s],
                         arrayminus=[k * (v.mean - v.ci95[0]) if v.ci95 else 0 for v in s]),
            customdata=[[g.summary.n, g.expected,
                         "–" if not g.summary.ci95 else
                         f"{k * g.summary.ci95[0]:.4g} to {k * g.summary.ci95[1]:.4g}"]
                        for g in shown],
            mode="lines+markers", name=name, line=dict(color=color(str(family), i)),
            hovertemplate=f"{x}=%{{x}}: %{{y:.4g}} (95% CI %{{customdata[2]}}; "
                          "n=%{customdata[0]}/%{customdata[1]})<extra>" + name + "</extra>"))
    if numeric:
        positive = [v for v in xs if v > 0]
        log = len(positive) == len(xs) and max(xs) / min(xs) >= 10
        fig.update_xaxes(type="log" if log else "linear", title=x)
    else:
        fig.update_xaxes(type="category", title=x,
                         categoryorder="array", categoryarray=[_text(v) for v in xs])
    fig.update_yaxes(title=f"{_metric_title(metric)}, mean over seeds ± 95% CI")
    return finish(fig, title=f"{results.experiment.name}: {metric} against {x}",
                  uirevision=uirevision)


def parallel_coordinates(results: Any, *, uirevision: str = "experiment") -> go.Figure:
    """Every completed run as one line through its axis values, its seed and its metric."""
    spec, metric = results.spec, results.metric
    k = _scale(metric)
    done = [p for p in results.points if p.value is not None]
    dims = []
    for axis, values in spec.axes.items():
        if _numeric(values):
            dims.append(dict(label=axis, values=[p.axes[axis] for p in done]))
        else:
            texts = [_text(v) for v in values]
            dims.append(dict(label=axis, values=[texts.index(_text(p.axes[axis])) for p in done],
                             tickvals=list(range(len(texts))), ticktext=texts))
    dims.append(dict(label="seed", values=[p.seed for p in done]))
    metric_values = [k * p.value for p in done]
    dims.append(dict(label=_metric_title(metric), values=metric_values))
    fig = go.Figure(go.Parcoords(
        dimensions=dims,
        line=dict(color=metric_values, colorscale="Viridis", showscale=bool(done),
                  colorbar=dict(title=_metric_title(metric)))))
    if not done:
        fig.add_annotation(text="no completed run yet", showarrow=False, xref="paper",
                           yref="paper", x=0.5, y=0.5)
    return finish(fig, title=f"{results.experiment.name}: every completed run "
                  f"({len(done)} of {len(results.points)})", uirevision=uirevision)
