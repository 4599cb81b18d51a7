"""The home page's figure: activation memory against depth, per memory mode, from a benchmark."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from lab.figures.style import color, finish

MODES = ("standard", "checkpoint", "reversible")


def memory_vs_depth(payload: dict[str, Any], *, metric: str = "saved_mib",
                    height: int = 340) -> go.Figure:
    """MiB kept for backward against depth in layers, one line per mode, log axes.

    ``payload`` is a ``python -m lab bench scaling`` result (``rows`` with ``depth``, ``mode``
    and ``metric``), e.g. docs/bench/scaling-cpu.json.
    """
    rows = payload.get("rows")
    if not isinstance(rows, list) or not rows:
        raise ValueError("the benchmark payload has no 'rows'; give a `python -m lab bench "
                         "scaling` result such as docs/bench/scaling-cpu.json")
    fig = go.Figure()
    for i, mode in enumerate(m for m in MODES if any(r.get("mode") == m for r in rows)):
        pts = sorted((r["depth"], r[metric]) for r in rows
                     if r.get("mode") == mode and r.get(metric) is not None)
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], name=mode,
                                 mode="lines+markers", line=dict(color=color(mode, i), width=3)))
    args = payload.get("args", {})
    what = f"batch {args['batch']}, {args['size']}x{args['size']}" if "batch" in args else ""
    fig.update_xaxes(title_text="depth (layers)", type="log")
    fig.update_yaxes(title_text="activation memory kept for backward (MiB)", type="log")
    finish(fig, title="Activation memory vs depth" + (f" ({what})" if what else ""),
           uirevision="home", height=height)
    # the legend inside, top left (empty there: every mode starts low), off the x axis title
    return fig.update_layout(legend=dict(orientation="v", x=0.02, y=0.98, xanchor="left",
                                         yanchor="top", bgcolor="rgba(255,255,255,0.7)"))
