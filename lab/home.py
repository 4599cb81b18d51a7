"""What the lab's home page shows: recent runs and the model zoo, as plain rows."""

from __future__ import annotations

import datetime as dt

from lab.store import Store


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
