"""What the lab's home page shows: recent runs, the benchmark behind its figure, the default run."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from lab.runs.store import Store


def run_rows(home: str | None = None, limit: int = 50) -> list[dict]:
    """Newest runs first, one flat dict each (for a table)."""
    with Store(home) as store:
        runs = store.list_runs(limit=limit)
    rows = []
    for r in runs:
        started = (dt.datetime.fromtimestamp(r.started_at).strftime("%Y-%m-%d %H:%M")
                   if r.started_at else "")
        rows.append({
            "run": r.id, "name": r.name or "", "status": r.status, "model": r.model,
            "dataset": r.dataset, "epochs": r.epochs, "memory": r.config.get("memory"),
            "best test acc": r.best_test_acc, "started": started,
            "duration s": round(r.duration, 1) if r.duration is not None else None,
            "reason": r.reason or r.error or "",
        })
    return rows


# the benchmark the home page plots (written by `python -m lab bench scaling --tag cpu`)
SCALING_JSON = Path(__file__).resolve().parents[2] / "docs" / "bench" / "scaling-cpu.json"


def scaling_payload(path: str | Path | None = None) -> dict | None:
    """The recorded scaling benchmark, or None when the file is missing or unreadable."""
    try:
        payload = json.loads(Path(path or SCALING_JSON).read_text())
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) and payload.get("rows") else None


def launch_default_run() -> str:
    """Start the default training run (``TrainConfig()``) as a background job; its id."""
    from lab.runs import jobs

    return jobs.launch({}, name="default")
