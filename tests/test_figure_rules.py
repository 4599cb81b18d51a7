"""The rules every figure of the lab follows (lab.figures.tidy/finish): markers while a line has
few points, log axes labelled with whole numbers, the title clear of the toolbar, small exports."""

import numpy as np
import plotly.graph_objects as go
import pytest
from plotly.subplots import make_subplots

from lab.figures.runs import Trace, curves_figure, live_figures, overlay_figure
from lab.figures.style import (
    FEW_POINTS,
    TITLE_TOP,
    finish,
    log_ticks,
    tick_label,
    tidy,
    to_html,
)
from lab.runs.live import LiveRun
from lab.runs.store import Store


def _live(store: Store, steps: int) -> LiveRun:
    rid = store.create_run({"model": "hamiltonian", "memory": "reversible"}, status="running")
    store.write_metrics(rid, [{"step": s, "loss": 1 / s, "acc": 0.1, "time": 0.1 * s,
                               "saved_bytes": 2**20, "samples_per_sec": 100.0}
                              for s in range(1, steps + 1)])
    live = LiveRun(rid)
    live.refresh(store)
    return live


def test_a_one_point_line_is_drawn_as_a_marker(tmp_path):
    fig = curves_figure([Trace("one", np.array([1]), np.array([0.5]), "#000")], title="t",
                        x_title="x", y_title="y")
    assert "markers" in fig.data[0].mode
    with Store(tmp_path) as store:
        live = _live(store, 1)
        assert all("markers" in tr.mode for f in live_figures(live).values() for tr in f.data)
        assert "markers" in overlay_figure([live], "loss").data[0].mode


def test_markers_go_once_the_line_has_many_points_also_when_updated_in_place(tmp_path):
    with Store(tmp_path) as store:
        live = _live(store, 2)
        figs = live_figures(live)
        assert "markers" in figs["loss"].data[0].mode
        store.write_metrics(live.run_id, [{"step": s, "loss": 1 / s, "time": 0.1 * s}
                                          for s in range(3, FEW_POINTS + 10)])
        live.refresh(store)
        again = live_figures(live, previous=figs)
        assert again["loss"] is figs["loss"]  # the in-place path
        assert again["loss"].data[0].mode == "lines"


@pytest.mark.parametrize("values, expected", [
    ([1, 1000], ["1", "2", "5", "10", "20", "50", "100", "200", "500", "1k"]),
    ([14, 1202], ["20", "50", "100", "200", "500", "1k"]),
    ([1e-16, 1e-2], ["1e-16", "1e-15", "0.001", "0.01"]),
])
def test_log_axes_label_whole_numbers(values, expected):
    ticks = log_ticks(values)
    assert ticks["tickmode"] == "array"
    shown = [t for v, t in zip(ticks["tickvals"], ticks["ticktext"])
             if min(values) / 1.05 <= v <= max(values) * 1.05]
    for label in expected:
        assert label in shown, (label, shown)
    assert not {"2", "5"} & set(shown) or "1" in shown or "10" in shown  # never bare digits


def test_a_narrow_log_range_keeps_plotly_ticks_as_full_numbers():
    assert log_ticks([0.3, 0.45]) == dict(tickmode="auto", tickvals=None, ticktext=None,
                                          tickformat="~g")


@pytest.mark.parametrize("v, text", [(1000, "1k"), (1202, "1.2k"), (2e6, "2M"), (0.5, "0.5"),
                                     (1e-5, "1e-5"), (1, "1")])
def test_tick_label(v, text):
    assert tick_label(v) == text


def test_every_log_axis_of_a_subplot_figure_is_labelled():
    fig = make_subplots(rows=1, cols=2)
    fig.add_trace(go.Scatter(x=[14, 74, 218], y=[1, 10, 100]), row=1, col=1)
    fig.add_trace(go.Scatter(x=[14, 74, 218], y=[0.01, 0.1, 1]), row=1, col=2)
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    tidy(fig)
    for axis in ("xaxis", "yaxis", "xaxis2", "yaxis2"):
        assert fig.layout[axis].tickmode == "array", axis


def test_the_title_sits_below_the_toolbar_row():
    fig = finish(go.Figure(go.Scatter(x=[1, 2], y=[1, 2])), title="A long title " * 6)
    assert fig.layout.title.yref == "container" and fig.layout.title.yanchor == "top"
    assert fig.layout.title.pad.t == TITLE_TOP and fig.layout.margin.t > TITLE_TOP + 20


def test_an_export_that_loads_plotly_from_the_app_is_small():
    fig = finish(go.Figure(go.Scatter(x=list(range(2000)), y=np.random.rand(2000))), title="t")
    small = to_html(fig, plotlyjs="http://127.0.0.1:8501/app/static/plotly.min.js")
    assert len(small.encode()) < 200_000
    assert 'src="http://127.0.0.1:8501/app/static/plotly.min.js"' in small
    assert len(to_html(fig).encode()) > 3_000_000  # the CLI's self-contained file inlines it


def test_recorded_figures_share_one_plotly_js(tmp_path, monkeypatch):
    from lab.figures import style

    docs = tmp_path / "docs"
    monkeypatch.setattr(style, "DOCS", docs)
    fig = finish(go.Figure(go.Scatter(x=[1, 2], y=[3, 4])), title="t")
    bench, experiment = docs / "bench" / "a.html", docs / "experiments" / "b.html"
    for page in (bench, experiment):
        page.parent.mkdir(parents=True)
    small = to_html(fig, bench, plotlyjs="directory")
    two = to_html([fig, fig], experiment, title="Two figures", plotlyjs="directory")
    assert 'src="../plotly.min.js"' in small and len(small.encode()) < 200_000
    assert two.count('src="../plotly.min.js"') == 1 and two.count("Plotly.newPlot") == 2
    assert "<h1" in two and bench.read_text() == small
    assert (docs / "plotly.min.js").stat().st_size > 3_000_000  # one copy for both folders
    assert not (bench.parent / "plotly.min.js").exists()
    elsewhere = tmp_path / "out" / "c.html"  # outside docs/: the file goes beside the page
    elsewhere.parent.mkdir()
    assert 'src="plotly.min.js"' in to_html(fig, elsewhere, plotlyjs="directory")
    assert (elsewhere.parent / "plotly.min.js").exists()
    with pytest.raises(ValueError, match="needs the path"):
        to_html(fig, plotlyjs="directory")
    with pytest.raises(ValueError, match="'inline', 'directory'"):
        to_html(fig, plotlyjs="cdn")


def test_a_log_axis_of_bars_is_labelled_in_full_too():
    fig = go.Figure(go.Bar(x=["74 layers", "218 layers"], y=[20.0, 2900.0]))
    fig.update_yaxes(type="log")
    tidy(fig)
    assert fig.layout.yaxis.tickmode == "array" and "1k" in fig.layout.yaxis.ticktext


def test_a_long_title_wraps_instead_of_running_off_the_figure():
    from lab.figures.style import TITLE_CHARS, wrap_title

    title = "Trajectory through the blocks (forward only: no inverse)"
    lines = wrap_title(title)
    assert len(lines) == 2 and all(len(line) <= TITLE_CHARS for line in lines)
    assert " ".join(lines) == title
    fig = finish(go.Figure(), title=title)
    assert fig.layout.title.text == "<br>".join(lines)
    assert fig.layout.margin.t > finish(go.Figure(), title="short").layout.margin.t
