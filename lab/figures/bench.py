"""Plotly figures built from the benchmarks' saved JSON payloads (docs/bench/*.json).

Each builder takes the payload dict that ``python -m lab bench <suite>`` saved and returns a
``plotly.graph_objects.Figure`` in the lab's style (lab.figures.style): the CLI writes it with
``style.to_html`` and a Streamlit page can show the same figure with
``st.plotly_chart(figure(json.loads(path.read_text())))``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lab.figures.style import color, finish


def _where(payload: dict) -> str:
    m = payload.get("machine", {})
    peers = ", ".join(f"{k[:-8]} {v}" for k, v in m.items() if k.endswith("_version") and v)
    bits = [f"{m.get('device_name', '?')} ({m.get('device', '?')})", f"torch {m.get('torch', '?')}"]
    return " | ".join(bits + ([peers] if peers else []) + [m.get("date", "")])


def layout(fig: go.Figure, payload: dict, title: str) -> go.Figure:
    """The lab's layout for a benchmark: the title over the machine it ran on, the command
    under the plot, the legend at the right."""
    finish(fig, title=title, height=520, uirevision=payload.get("benchmark") or "bench")
    fig.update_layout(title_text=f"{fig.layout.title.text}<br><sup>{_where(payload)}</sup>",
                      barmode="group", legend_title_text="",
                      margin=dict(t=fig.layout.margin.t + 20, b=90),
                      legend=dict(orientation="v", x=1.02, xanchor="left", y=1, yanchor="top",
                                  yref="paper"))
    command = payload.get("command", "")
    if command:
        fig.add_annotation(text=command, xref="paper", yref="paper", x=0, y=-0.2,
                           showarrow=False, xanchor="left",
                           font=dict(size=11, family="monospace"))
    return fig


def _series(rows: list[dict], key: str) -> list[str]:
    seen: list[str] = []
    for r in rows:
        if r[key] not in seen:
            seen.append(r[key])
    return seen


def _grouped_bars(fig: go.Figure, rows: list[dict], series_key: str,
                  panels: list[tuple[str, str, str]]) -> None:
    """One bar group per depth, one bar per series, one subplot per (key, title, unit)."""
    for i, name in enumerate(_series(rows, series_key)):
        mine = [r for r in rows if r[series_key] == name]
        x = [f"{r['depth']} layers" for r in mine]
        for col, (key, _, _) in enumerate(panels, start=1):
            fig.add_trace(go.Bar(
                x=x, y=[r.get(key) for r in mine], name=name, legendgroup=name,
                showlegend=col == 1, marker_color=color(name, i),
                customdata=[r.get("notes") or "" for r in mine],
                hovertemplate=f"{name}<br>%{{x}}<br>%{{y:.4g}}<br>%{{customdata}}<extra></extra>",
            ), row=1, col=col)
    for col, (_, _, unit) in enumerate(panels, start=1):
        fig.update_yaxes(title_text=unit, row=1, col=col)


def _three_panels(payload: dict, series_key: str, panels: list[tuple[str, str, str]],
                  log_cols: tuple[int, ...], title: str) -> go.Figure:
    fig = make_subplots(rows=1, cols=3, subplot_titles=[t for _, t, _ in panels])
    _grouped_bars(fig, payload["rows"], series_key, panels)
    for col in log_cols:
        fig.update_yaxes(type="log", row=1, col=col)
    return layout(fig, payload, title)


def modes_figure(payload: dict) -> go.Figure:
    """Step time, saved MiB and peak-over-start MiB of the memory modes per depth."""
    family = payload.get("family", "hamiltonian").capitalize()
    return _three_panels(payload, "mode", [("step_s", "training step (median)", "s"),
                                           ("saved_mib", "saved for backward", "MiB"),
                                           ("peak_over_start_mib", "peak over start", "MiB")],
                         (2,), f"Memory modes of a {family} network")


def peers_figure(payload: dict) -> go.Figure:
    """Step time, held activation MiB and peak-over-start MiB of every contender per depth."""
    return _three_panels(payload, "contender",
                         [("step_s", "training step (median)", "s"),
                          ("held_mib", "held for backward (allocator)", "MiB"),
                          ("peak_over_start_mib", "peak over start", "MiB")],
                         (2, 3), "Same Hamiltonian blocks: our memory modes vs memcnn and RevLib")


def scaling_figure(payload: dict) -> go.Figure:
    """Memory (with the budget and the linear fits) and step time against depth, per mode."""
    metric, budget = payload["metric"], payload["budget_mib"]
    rows, fits = payload["rows"], {f["mode"]: f for f in payload.get("budget", [])}
    fig = make_subplots(rows=1, cols=2, subplot_titles=[
        "CUDA max allocated" if metric == "peak_mib" else "peak RSS over start",
        "training step (median)"])
    for i, mode in enumerate(_series(rows, "mode")):
        mine = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["depth"])
        line_color = color(mode, i)
        for col, key in ((1, metric), (2, "step_s")):
            fig.add_trace(go.Scatter(
                x=[r["depth"] for r in mine], y=[r.get(key) for r in mine], name=mode,
                legendgroup=mode, showlegend=col == 1, mode="lines+markers",
                line=dict(color=line_color)), row=1, col=col)
        fit = fits.get(mode, {})
        if fit.get("slope_mib") and mine:
            # the linear fit in blocks per stage, drawn out to where it crosses the budget
            stop = fit.get("deepest_extrapolated_layers") or mine[-1]["depth"]
            stop = max(stop, mine[-1]["depth"])
            xs = [mine[0]["depth"], stop]
            ys = [fit["intercept_mib"] + fit["slope_mib"] * fit_blocks(payload, d) for d in xs]
            fig.add_trace(go.Scatter(x=xs, y=ys, name=f"{mode} (linear fit)", legendgroup=mode,
                                     showlegend=False, mode="lines",
                                     line=dict(color=line_color, dash="dot")), row=1, col=1)
    fig.add_hline(y=budget, line=dict(color="grey", dash="dash"), row=1, col=1)
    # on a log axis plotly.js takes a shape's y as data but an annotation's as log10(y)
    fig.add_annotation(text=f"budget {budget:g} MiB", x=0, xref="x domain", y=math.log10(budget),
                       yref="y", showarrow=False, xanchor="left", yanchor="bottom")
    fig.update_xaxes(type="log", title_text="layers")
    fig.update_yaxes(type="log", title_text="MiB", row=1, col=1)
    fig.update_yaxes(title_text="s", row=1, col=2)
    family = payload.get("family", "hamiltonian").capitalize()
    return layout(fig, payload, f"Depth scaling of the memory modes ({family})")


def fit_blocks(payload: dict, layers: float) -> float:
    """Blocks per stage of a depth in layers: layers = k * stages * blocks + 2.

    k (layers per block: 4 reversible, 2 ResNet) comes from the payload's measured rows.
    """
    r = payload["rows"][0]
    per_block = (r["depth"] - 2) / (r["blocks"] * payload["stages"])
    return (layers - 2) / (per_block * payload["stages"])


def budget_figure(payload: dict) -> go.Figure:
    """Saved MiB against the budget, and step time relative to standard, per budget."""
    rows = [r for r in payload["rows"] if r["mode"] == "budget"]
    ref = {r["mode"]: r for r in payload["rows"] if r["mode"] != "budget"}
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "saved-for-backward MiB vs budget", "step time vs standard"))
    xs = [r["budget_mib"] for r in rows]
    fig.add_trace(go.Scatter(x=xs, y=[r["saved_mib"] for r in rows], mode="lines+markers",
                             name="budget: saved MiB"), 1, 1)
    fig.add_trace(go.Scatter(x=xs, y=xs, mode="lines", name="the budget",
                             line=dict(dash="dash")), 1, 1)
    fig.add_trace(go.Scatter(x=xs, y=[r["vs_standard"] for r in rows], mode="lines+markers",
                             name="budget: time vs standard"), 1, 2)
    for mode, r in ref.items():
        fig.add_trace(go.Scatter(x=[xs[0], xs[-1]], y=[r["vs_standard"]] * 2, mode="lines",
                                 name=f"{mode}", line=dict(dash="dot")), 1, 2)
    fig.update_xaxes(title_text="budget MiB")
    return layout(fig, payload, "Budget memory mode")


FIGURES: dict[str, Callable[[dict], go.Figure]] = {
    "modes": modes_figure, "peers": peers_figure, "scaling": scaling_figure,
    "budget": budget_figure,
}


def figure(payload: dict) -> go.Figure:
    """The figure of any saved benchmark payload."""
    kind = payload.get("benchmark")
    if kind not in FIGURES:
        raise ValueError(f"no figure for benchmark {kind!r}; known: {', '.join(FIGURES)}")
    return FIGURES[kind](payload)
