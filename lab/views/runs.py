"""What the Runs page shows: filters, configurations side by side, log tails, CSV exports.

Plain Python over the run store (no Streamlit). The table itself is lab.runs.table's, shared
with Home and `python -m lab runs`. The store also holds runs that are not training runs
(Depth-lab sweeps, experiments' helpers): each row carries a ``kind`` (``table.run_kind``) so the
page can filter.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lab.runs.live import LiveRun
from lab.runs.store import LOG_NAME, Run, Store
from lab.runs.table import run_kind


def filter_runs(runs: Sequence[Run], *, text: str = "", statuses: Iterable[str] = (),
                kinds: Iterable[str] = (), experiment: str | None = None) -> list[Run]:
    """Runs whose status and kind are among those given (empty: any), of ``experiment`` (an
    experiment id; None: any), and whose id, name or config JSON contains ``text``
    (case-insensitive; e.g. a model, dataset or ``memory``)."""
    statuses, kinds, needle = set(statuses), set(kinds), text.strip().lower()
    out = []
    for r in runs:
        if statuses and r.status not in statuses:
            continue
        if experiment is not None and r.experiment != experiment:
            continue
        if kinds and run_kind(r) not in kinds:
            continue
        if needle and needle not in " ".join(
                (r.id, r.name or "", json.dumps(r.config, sort_keys=True))).lower():
            continue
        out.append(r)
    return out


def overlay_runs(run_ids: Sequence[str], store: Store | None = None) -> list[LiveRun]:
    """The selected runs' metrics for the overlay, read from the store now."""
    lives = [LiveRun(i) for i in run_ids]
    with contextlib.nullcontext(store) if store is not None else Store() as st:
        for live in lives:
            live.refresh(st)
    return lives


def overlay_labels(lives: Sequence[LiveRun]) -> list[str]:
    """The overlay's legend: each run's id and name (or model)."""
    return [f"{lv.run_id} {lv.run.name or lv.run.model}" if lv.run else lv.run_id
            for lv in lives]


EMPTY = "—"  # a key a run does not set, or sets to nothing (None, {}, [], "")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v) if isinstance(v, (list, dict)) and v else v
    return out


def _shown(value: Any) -> str:
    """A config value as the diff shows and compares it: every empty value is the same "—"."""
    if isinstance(value, (dict, list)) and not value or value in (None, "", "{}", "[]"):
        return EMPTY
    return str(value)


def config_diff(runs: Sequence[Run]) -> tuple[list[dict[str, Any]], list[str]]:
    """Configurations side by side: rows ``{"key": k, <run id>: value, ...}`` for every key of any
    run (nested keys dotted, e.g. ``model_kwargs.blocks``), and the keys whose values differ.

    A key a run does not have and a key set to nothing (``{}``, ``[]``, None, "") both read
    "—" and count as equal; a key that no run sets to anything is left out.
    """
    flat = [_flatten(r.config if isinstance(r.config, dict) else {}) for r in runs]
    keys = sorted({k for f in flat for k in f})
    rows, differ = [], []
    for k in keys:
        values = [_shown(f.get(k)) for f in flat]
        if all(v == EMPTY for v in values):
            continue
        rows.append({"key": k, **{r.id: v for r, v in zip(runs, values)}})
        if len(set(values)) > 1:
            differ.append(k)
    return rows, differ


def log_tail(store: Store, run_id: str, max_bytes: int = 8000) -> str:
    """The end of the run's worker log (runs/<id>/worker.log), or '' when there is none."""
    try:
        with open(store.run_dir(run_id) / LOG_NAME, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(size - max_bytes, 0))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    if size > max_bytes:  # drop the partial first line
        text = text.split("\n", 1)[-1]
    return text


def metrics_csv(store: Store, run_id: str) -> bytes:
    """The run's step and epoch metrics as CSV bytes (the same file as `python -m lab export`)."""
    from lab.runs.export import write_metrics_csv

    out = io.StringIO()
    write_metrics_csv(store, run_id, out)
    return out.getvalue().encode()


# what the app serves at /app/static/ (server.enableStaticServing in .streamlit/config.toml)
STATIC = Path(__file__).resolve().parents[2] / "static"


def static_url(page_url: str, base_path: str = "") -> str:
    """The app's /app/static/ address from the page's URL (``st.context.url``) and
    ``server.baseUrlPath``."""
    parts = urlsplit(page_url)
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"{page_url!r} is not an absolute URL of the app")
    base = "/".join(p for p in base_path.split("/") if p)
    return f"{parts.scheme}://{parts.netloc}/{base + '/' if base else ''}app/static/"


def figure_html(fig: Any, page_url: str | None, base_path: str = "", port: int = 8501) -> str:
    """A figure as an HTML download that loads plotly.js from this app (a few kB, not 4.7 MB).

    ``page_url``: the page's address in the browser (``st.context.url``); when it is unknown
    (a script run without a browser), the app on 127.0.0.1 at ``port``.
    """
    from lab.figures.style import plotly_js_file, to_html

    url = static_url(page_url or f"http://127.0.0.1:{port}/", base_path)
    return to_html(fig, plotlyjs=url + plotly_js_file(STATIC))
