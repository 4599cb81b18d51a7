"""Depth-lab figures: activation memory and step time against depth, one line per memory mode."""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lab.figures.style import color, finish
from lab.sweeps.record import memory_metric  # the one rule for which memory column to draw

_MEMORY_TITLES = {"held_mib": "activation memory held for backward",
                  "saved_mib": "activation memory saved by autograd"}


def depth_figure(payload: dict, budget_mib: float | None = None, *,
                 uirevision: str = "depth") -> go.Figure:
    """Two log-log panels from a sweep payload (``lab.sweeps.record``): MiB and seconds per step.

    ``budget_mib`` draws the budget as a dashed line on the memory panel.
    """
    rows = payload.get("rows", [])
    metric = memory_metric(rows)
    fig = make_subplots(rows=1, cols=2, subplot_titles=[
        _MEMORY_TITLES[metric], "training step (median)"])
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    for i, mode in enumerate(modes):
        mine = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["depth"])
        for col, key, unit in ((1, metric, "MiB"), (2, "step_s", "s")):
            fig.add_trace(go.Scatter(
                x=[r["depth"] for r in mine], y=[r.get(key) for r in mine], name=mode,
                legendgroup=mode, showlegend=col == 1, mode="lines+markers",
                line=dict(color=color(mode, i)),
                hovertemplate=f"{mode}<br>%{{x}} layers<br>%{{y:.4g}} {unit}<extra></extra>"),
                row=1, col=col)
    if budget_mib:
        fig.add_hline(y=budget_mib, line=dict(color="grey", dash="dash"), row=1, col=1)
        # on a log axis plotly.js takes a shape's y as data but an annotation's as log10(y)
        fig.add_annotation(text=f"budget {budget_mib:g} MiB", x=0, xref="x domain",
                           y=math.log10(budget_mib), yref="y", showarrow=False,
                           xanchor="left", yanchor="bottom", font=dict(color="grey"))
    fig.update_xaxes(type="log", title_text="layers")
    fig.update_yaxes(type="log", title_text="MiB", row=1, col=1)
    fig.update_yaxes(type="log", title_text="s", row=1, col=2)
    cfg = payload.get("config", {})
    title = (f"{payload.get('family', '?').capitalize()} depth sweep: batch {cfg.get('batch')}, "
             f"{cfg.get('size')}x{cfg.get('size')}x3")
    return finish(fig, title=title, uirevision=uirevision, height=440)
