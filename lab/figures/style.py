"""The lab's figure style: colours, the common layout (`finish`, `tidy`, log ticks) and the HTML
writer (`to_html`). Every figure module of lab.figures builds on it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

# one colour per memory mode / family / benchmark contender, stable across every figure
COLORS = {
    "standard": "#636efa", "checkpoint": "#00cc96", "reversible": "#ef553b", "budget": "#ffa15a",
    "hamiltonian": "#ef553b", "midpoint": "#ab63fa", "leapfrog": "#19d3f3",
    "revnet": "#ff6692", "resnet": "#636efa",
    "memcnn": "#ab63fa", "memcnn-coupling": "#ffa15a", "revlib": "#19d3f3",  # the peers
}
ANCHORED = "#c9302c"  # "reversible-anchor-k": a darker reversible
PALETTE = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692",
           "#b6e880", "#ff97ff", "#fecb52"]


def color(name: str, i: int = 0) -> str:
    """The lab's colour for a mode, family or contender name, else the i-th palette colour."""
    if name.startswith("reversible-anchor"):
        return ANCHORED
    return COLORS.get(name, PALETTE[i % len(PALETTE)])


def finish(fig: go.Figure, *, title: str | None = None, uirevision: str = "lab",
           height: int = 420) -> go.Figure:
    """The lab's common layout; ``uirevision`` keeps the user's zoom across live redraws.

    The title sits below the toolbar (plotly's modebar and Streamlit's element toolbar take
    the top ~30 px, right-aligned), so a long title never runs under the buttons. Then
    :func:`tidy` applies the rules every figure follows (markers, log-axis labels).
    """
    lines = wrap_title(title) if title else []
    fig.update_layout(template="plotly_white", height=height, uirevision=uirevision,
                      margin=dict(t=TITLE_TOP + 30 + 20 * len(lines) if lines else 40, b=80,
                                  l=50, r=20),
                      # the legend at the figure's foot, below the x axis title (a legend at a
                      # fraction of the plot's height ran over that title on short figures)
                      legend=dict(orientation="h", x=0, xanchor="left", y=0, yanchor="bottom",
                                  yref="container"))
    if lines:
        fig.update_layout(title=dict(text="<br>".join(lines), x=0, xref="paper",
                                     xanchor="left", y=1, yref="container", yanchor="top",
                                     pad=dict(t=TITLE_TOP), font=dict(size=16)))
    return tidy(fig)


TITLE_TOP = 50   # px from the figure's top to its title's baseline: clear of the ~28 px toolbar row
TITLE_CHARS = 44  # a title line that fits a half-width chart at 1400 px (~7 px a character)


def wrap_title(title: str, width: int = TITLE_CHARS) -> list[str]:
    """The title in lines of at most ``width`` characters, broken at spaces (plotly never wraps
    a title: it cuts it at the figure's edge)."""
    lines: list[str] = []
    for word in title.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines
FEW_POINTS = 20  # a line with this many points or fewer also gets markers (plotly's own rule)


def tidy(fig: go.Figure) -> go.Figure:
    """The rules every figure of the lab follows, also after its data was replaced in place.

    - a line with few points is drawn with markers, so one point shows as a dot, not nothing;
    - a log axis (of lines or bars) is labelled with whole numbers (1, 2, 5, 10, ..., 1k), never
      plotly's abbreviated "1000, 2, 5" (see :func:`log_ticks`).
    """
    values: dict[str, list] = {}
    for trace in fig.data:
        if trace.type not in ("scatter", "bar"):
            continue
        mode = (trace.mode or "") if trace.type == "scatter" else ""
        if "lines" in mode and "markers" not in mode and _finite_count(trace.y) <= FEW_POINTS:
            trace.mode = mode + "+markers"
        for letter in ("x", "y"):
            ref = getattr(trace, f"{letter}axis", None) or letter  # "x", "x2", ...
            name = f"{letter}axis{ref[1:]}"
            data = getattr(trace, letter, None)
            # only a log axis needs its values (the live tick redraws linear axes every second)
            if data is not None and name in fig.layout and fig.layout[name].type == "log":
                values.setdefault(name, []).append(_floats(data))
    for name, arrays in values.items():
        fig.layout[name].update(log_ticks(np.concatenate(arrays)))
    return fig


def _floats(data) -> np.ndarray:
    """The finite numbers in ``data`` (vectorised; element by element only for mixed data)."""
    try:
        a = np.asarray(data, dtype=float).ravel()
    except (TypeError, ValueError):
        vals = []
        for v in np.asarray(data, dtype=object).ravel():
            try:
                vals.append(float(v))
            except (TypeError, ValueError):
                continue
        a = np.asarray(vals, dtype=float)
    return a[np.isfinite(a)]


def _finite_count(data) -> int:
    return 0 if data is None else len(_floats(data))


def tick_label(v: float) -> str:
    """A log-axis tick as a person writes it: 0.01, 0.5, 1, 20, 500, 1k, 20k, 1M; 1e-5 below."""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.3g}{suffix}"
    if v >= 1e-3:
        return f"{v:.3g}"
    mantissa, exponent = f"{v:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


_DECADES = range(-18, 19)


def log_ticks(values) -> dict:
    """Tick settings for a log axis showing ``values``: 1-2-5 steps within three decades, whole
    decades beyond, each labelled in full by :func:`tick_label`. The ticks cover every decade
    from 1e-18 to 1e18 (plotly draws only those in view), so zooming and live growth keep them.
    Fewer than two such ticks in the data's range: plotly's own ticks, as full numbers.
    """
    pos = [v for v in values if v > 0]
    if not pos:
        return dict(tickmode="auto", tickvals=None, ticktext=None, tickformat="~g")
    lo, hi = min(pos), max(pos)
    steps = (1,) if math.log10(hi / lo) > 3 else (1, 2, 5)
    ticks = [m * 10.0 ** k for k in _DECADES for m in steps]
    if sum(lo / 1.05 <= t <= hi * 1.05 for t in ticks) < 2:
        return dict(tickmode="auto", tickvals=None, ticktext=None, tickformat="~g")
    return dict(tickmode="array", tickvals=ticks, ticktext=[tick_label(t) for t in ticks])


def to_html(figures: go.Figure | Sequence[go.Figure], path: str | Path | None = None, *,
            title: str | None = None, plotlyjs: str = "inline") -> str:
    """One or more figures as one HTML document; written to ``path`` if given.

    ``plotlyjs`` says where the page finds plotly.js:

    - ``"inline"``: inside the file (about 4.7 MB): opens anywhere, offline, on its own;
    - ``"directory"``: a ``plotly.min.js`` file near ``path`` (written there if missing; see
      :func:`shared_plotly_js`: every recorded figure under docs/ shares one), so each page is a
      few kB. For figures recorded in the repository (benchmarks, experiments);
    - a URL ending in ``.js``: loaded from there (the lab app's own server: see
      :func:`plotly_js_file`), the page holds only the figure.

    A page that loads plotly.js from elsewhere says so when it is missing, instead of showing a
    blank page. ``title``: a heading above the figures (and the document's title).
    """
    figs = [figures] if isinstance(figures, go.Figure) else list(figures)
    if plotlyjs == "inline":
        src: str | bool = True
        note = None
    elif plotlyjs == "directory":
        if path is None:
            raise ValueError("plotlyjs='directory' needs the path the page is written to")
        js = shared_plotly_js(Path(path).parent)
        _write_plotly_js(js)
        src = os.path.relpath(js, Path(path).resolve().parent)
        note = (f"This figure draws with plotly.js from {src} beside it, which is missing: "
                "keep the recorded figures' folder together.")
    elif plotlyjs.endswith(".js"):
        src = plotlyjs
        note = (f"This figure draws with plotly.js served by the lab app at {plotlyjs}. "
                "That address did not answer: start the lab app (scripts/app.sh) and reload.")
    else:
        raise ValueError(f"plotlyjs={plotlyjs!r}: use 'inline', 'directory' or a URL ending "
                         "in .js")
    import html as html_lib

    # one figure a line, the head on one line: a compact page (plotly writes each figure's
    # script on a single line too)
    parts = [fig.to_html(include_plotlyjs=src if i == 0 else False, full_html=False).strip()
             for i, fig in enumerate(figs)]
    head = html_lib.escape(title or "")
    html = ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>' + head + "</title>"
            "<style>html, body {height: 100%;}</style></head><body>"
            + (f'<h1 style="font-family:sans-serif">{head}</h1>' if title else "") + "\n"
            + "\n".join(" ".join(p.split("\n")) if src is not True else p for p in parts)
            + "\n" + (_MISSING_PLOTLY % json.dumps(note) if note else "") + "</body></html>\n")
    if path is not None:
        Path(path).write_text(html, encoding="utf-8")
    return html


_MISSING_PLOTLY = ('<script>if (!window.Plotly) { const p = document.createElement("p"); '
                   'p.textContent = %s; p.style.cssText = "font: 16px sans-serif; margin: 2em;"; '
                   "document.body.prepend(p); }</script>")
DOCS = Path(__file__).resolve().parents[2] / "docs"  # the repository's recorded results
PLOTLY_JS = "plotly.min.js"


def shared_plotly_js(folder: str | Path) -> Path:
    """The plotly.js file that pages written to ``folder`` load in ``"directory"`` mode: the
    one ``docs/plotly.min.js`` for any folder under the repository's docs/, else
    ``plotly.min.js`` in ``folder`` itself."""
    folder = Path(folder).resolve()
    return (DOCS if folder == DOCS or DOCS in folder.parents else folder) / PLOTLY_JS


def _write_plotly_js(path: Path) -> None:
    """The installed plotly.js at ``path``, written atomically unless it is there already."""
    if path.exists():
        return
    from plotly.offline import get_plotlyjs

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(get_plotlyjs(), encoding="utf-8")
    os.replace(tmp, path)


def plotly_js_file(folder: str | Path) -> str:
    """The name of the installed plotly.js in ``folder`` (written there once, atomically):
    ``plotly-<version>.min.js``, so a newer plotly never meets a cached older file."""
    import plotly

    name = f"plotly-{plotly.__version__}.min.js"
    _write_plotly_js(Path(folder) / name)
    return name
