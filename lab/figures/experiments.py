"""Figures of the experiments: test accuracy against the share of training data, per family."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from lab.figures import color, finish


def fewer_data_figure(cells: Sequence, *, dataset: str = "digits") -> go.Figure:
    """Mean final test accuracy (± std over seeds) vs fraction, log x, one line per family.

    ``cells``: objects with ``family``, ``fraction``, ``mean``, ``std`` and ``accs``
    (``lab.experiments.fewer_data.Cell``).
    """
    fig = go.Figure()
    families = list(dict.fromkeys(c.family for c in cells))
    for i, fam in enumerate(families):
        rows = sorted((c for c in cells if c.family == fam), key=lambda c: c.fraction)
        fig.add_trace(go.Scatter(
            x=[100 * c.fraction for c in rows], y=[100 * c.mean for c in rows],
            error_y=dict(type="data", array=[100 * c.std for c in rows], visible=True),
            customdata=[len(c.accs) for c in rows], mode="lines+markers", name=fam,
            line=dict(color=color(fam, i)),
            hovertemplate="%{x:g}% of the data: %{y:.1f}% ± %{error_y.array:.1f} "
                          "(%{customdata} seeds)<extra>" + fam + "</extra>"))
    fig.update_xaxes(type="log", title="share of the training set (%)")
    fig.update_yaxes(title="final test accuracy (%)")
    return finish(fig, title=f"Fewer data, same number of steps ({dataset})")
