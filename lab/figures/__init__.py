"""Plotly figure builders shared by the Streamlit pages and the CLI's exports.

One module per topic (``lab.figures.runs``, ``lab.figures.depth``, ``lab.figures.analysis``);
every builder returns a ``plotly.graph_objects.Figure`` finished with :func:`finish`, so a page
shows it with ``st.plotly_chart`` and the CLI writes the same figure as self-contained HTML.
"""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

# one colour per memory mode / family, stable across every figure of the lab
COLORS = {
    "standard": "#636efa", "checkpoint": "#00cc96", "reversible": "#ef553b", "budget": "#ffa15a",
    "hamiltonian": "#ef553b", "midpoint": "#ab63fa", "leapfrog": "#19d3f3",
    "revnet": "#ff6692", "resnet": "#636efa",
}
PALETTE = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692",
           "#b6e880", "#ff97ff", "#fecb52"]


def color(name: str, i: int = 0) -> str:
    """The lab's colour for a mode or family name, else the i-th palette colour."""
    return COLORS.get(name, PALETTE[i % len(PALETTE)])


def finish(fig: go.Figure, *, title: str | None = None, uirevision: str = "lab",
           height: int = 420) -> go.Figure:
    """The lab's common layout; ``uirevision`` keeps the user's zoom across live redraws."""
    fig.update_layout(template="plotly_white", height=height, uirevision=uirevision,
                      margin=dict(t=60 if title else 30, b=40, l=50, r=20),
                      legend=dict(orientation="h", y=-0.15))
    if title:
        fig.update_layout(title=dict(text=title))
    return fig


def to_html(fig: go.Figure, path: str | Path | None = None) -> str:
    """The figure as one self-contained HTML document (plotly.js inlined); written if ``path``."""
    html = fig.to_html(include_plotlyjs=True, full_html=True)
    if path is not None:
        Path(path).write_text(html, encoding="utf-8")
    return html
