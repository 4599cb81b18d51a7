"""The runs table: one row per run, the same for Home, the Runs page and `python -m lab runs`.

`run_row` builds every column once (accuracies in percent, times in one format); each place
picks its columns: `HOME_COLUMNS`, all of them on the Runs page, `CLI_COLUMNS` as text. A status
is its word, which the pages colour (`STATUS_COLOURS`): no emoji, which browsers without an emoji
font draw as empty boxes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lab.runs.store import DEFAULT_WORKER, Run

TIME_FORMAT = "%Y-%m-%d %H:%M"  # local time, every table of runs
# text colour of each status in the pages' tables (readable on light and dark backgrounds)
STATUS_COLOURS = {"queued": "#6b7280", "running": "#2563eb", "completed": "#16a34a",
                  "failed": "#dc2626", "interrupted": "#d97706", "cancelled": "#7c3aed",
                  "stale": "#d97706"}
# what fits the Home page at 1400 px (the Runs page shows every column, reasons included)
HOME_COLUMNS = ("run", "status", "name", "model", "blocks", "dataset", "memory", "epochs",
                "final test acc %", "started")
# the Runs page: what fits at 1400 px beside the sidebar (measured in Chromium: 9 columns fill
# its 938 px; kind, batch, best accuracy, times and the reason are in the run's details)
RUNS_COLUMNS = ("run", "status", "name", "model", "blocks", "dataset", "memory", "epochs",
                "final test acc %")
# `python -m lab runs`: row key -> header
CLI_COLUMNS = {"run": "ID", "status": "STATUS", "model": "MODEL", "dataset": "DATASET",
               "epochs": "EPOCHS", "best test acc %": "BEST ACC",
               "final test acc %": "FINAL ACC", "started": "STARTED", "duration s": "DURATION"}


def run_kind(run: Run) -> str:
    """'train' for a training run, else what the run is (config ``kind`` or worker module)."""
    kind = run.config.get("kind") if isinstance(run.config, dict) else None
    if isinstance(kind, str) and kind:
        return kind
    return "train" if run.worker == DEFAULT_WORKER else run.worker


def when(t: float | None) -> str:
    """A timestamp in TIME_FORMAT (local time); '' for none."""
    return time.strftime(TIME_FORMAT, time.localtime(t)) if t else ""


def _percent(x: float | None) -> float | None:
    return None if x is None else round(100 * x, 2)


def epochs_text(r: Run) -> str:
    """The epochs a run trained, as the tables show them: what ran once it ended ("1 of 15
    (12 steps)" for a run that `--steps` stopped early), the configured number before."""
    cfg = r.config if isinstance(r.config, dict) else {}
    planned = cfg.get("epochs")
    final = r.final or {}
    ran, steps = final.get("epochs_done"), final.get("step")
    if ran is None:
        return "" if planned is None else str(planned)
    if planned is None or ran >= planned:
        return str(ran)
    return f"{ran} of {planned}" + (f" ({steps} step{'s' if steps != 1 else ''})" if steps
                                    else "")


def blocks_text(config: Mapping[str, Any]) -> str:
    """The blocks per stage a run's model has, e.g. "2-2-2" (a family's default blocks or a named
    model's when the config names none; "2-2-2 → 8-8-8" for multi-level training, which doubles
    them levels-1 times); '' for a run that is no model's (a sweep). Imports core (torch)."""
    model = config.get("model")
    if not isinstance(model, str) or not model:
        return ""
    try:
        import core

        blocks = list(core.model_config(model, **(config.get("model_kwargs") or {})).blocks)
    except (ValueError, TypeError):  # a model this code no longer knows
        blocks = list((config.get("model_kwargs") or {}).get("blocks") or [])
    text = "-".join(map(str, blocks))
    levels = config.get("levels") or 1
    if text and isinstance(levels, int) and levels > 1:
        text += " → " + "-".join(str(b * 2 ** (levels - 1)) for b in blocks)
    return text


def run_row(r: Run, *, blocks: bool = True) -> dict[str, Any]:
    """One flat row: numbers stay numbers (sortable); `blocks=False` leaves that column empty
    (it is the one that imports torch)."""
    cfg = r.config if isinstance(r.config, dict) else {}
    return {
        "run": r.id,
        "status": r.status,
        "kind": run_kind(r), "name": r.name or "", "model": str(cfg.get("model", "")),
        "blocks": blocks_text(cfg) if blocks and run_kind(r) == "train" else "",
        "dataset": str(cfg.get("dataset", "")), "memory": str(cfg.get("memory", "")),
        "epochs": epochs_text(r), "batch": cfg.get("batch_size"),
        "best test acc %": _percent(r.best_test_acc),
        "final test acc %": _percent(r.final_test_acc),
        "created": when(r.created_at), "started": when(r.started_at),
        "duration s": None if r.duration is None else round(r.duration, 1),
        "reason": r.reason or r.error or "",
    }


def run_rows(runs: Iterable[Run], columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """`run_row` for each run, only `columns` (in that order) when given."""
    rows = [run_row(r, blocks=columns is None or "blocks" in columns) for r in runs]
    return rows if columns is None else [{c: row[c] for c in columns} for row in rows]


def duration_text(s: float | None) -> str:
    """Seconds as '4m05s' or '2h03m'; '-' for none."""
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _text(key: str, value: Any) -> str:
    if value is None or value == "":
        return "-"
    if key.endswith("%"):
        return f"{value:.2f}%"
    if key == "duration s":
        return duration_text(value)
    return str(value)


def text_rows(runs: Iterable[Run], columns: Mapping[str, str] = CLI_COLUMNS) -> list[list[str]]:
    """The rows of `run_rows` as text for a terminal: '-' for nothing, '97.50%', '4m05s'."""
    return [[_text(k, row[k]) for k in columns] for row in run_rows(runs, list(columns))]
