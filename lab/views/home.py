"""What the lab's home page shows: recent runs, the benchmark behind its figure, the default run."""

from __future__ import annotations

import json
from pathlib import Path

from lab.runs import table
from lab.runs.store import Store
from lab.runs.table import HOME_COLUMNS


def run_rows(home: str | None = None, limit: int = 50) -> list[dict]:
    """Newest runs first: the runs table's Home columns (lab.runs.table)."""
    with Store(home) as store:
        return table.run_rows(store.list_runs(limit=limit), HOME_COLUMNS)


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
