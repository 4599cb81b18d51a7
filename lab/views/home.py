"""What the lab's home page shows: recent runs, the benchmark behind its figure, the default run."""

from __future__ import annotations

import json
from pathlib import Path

from lab.runs import table
from lab.runs.store import Store
from lab.runs.table import HOME_COLUMNS


def run_rows(home: str | None = None, limit: int = 50) -> list[dict]:
    """Newest training runs first (not sweeps, not an experiment's runs): the runs table's Home
    columns (lab.runs.table)."""
    return sections(home, limit)["runs"]


def sections(home: str | None = None, limit: int = 10) -> dict[str, list[dict]]:
    """Home's three tables, newest first: ``runs`` (training runs of no experiment),
    ``sweeps`` (the Depth lab's) and ``experiments`` (grids of runs, with their runs' statuses).
    """
    with Store(home) as store:
        runs = store.list_runs()
        exps = store.list_experiments()
    train = [r for r in runs if table.run_kind(r) == "train" and not r.experiment]
    sweeps = [r for r in runs if table.run_kind(r) == "depth-sweep"]
    out_sweeps = [{"sweep": r.id, "status": table.run_row(r)["status"], "name": r.name or "",
                   "started": table.when(r.started_at),
                   "duration s": None if r.duration is None else round(r.duration, 1)}
                  for r in sweeps[:limit]]
    out_exps = []
    for e in exps[:limit]:
        mine = [r.status for r in runs if r.experiment == e.id]
        counts = {s: mine.count(s) for s in dict.fromkeys(mine)}
        out_exps.append({"experiment": e.id, "name": e.name, "runs": len(mine),
                         "statuses": ", ".join(f"{n} {s}" for s, n in counts.items()),
                         "created": table.when(e.created_at)})
    return {"runs": table.run_rows(train[:limit], HOME_COLUMNS), "sweeps": out_sweeps,
            "experiments": out_exps}


# the benchmark the home page plots (written by `python -m lab bench scaling --tag cpu`)
SCALING_JSON = Path(__file__).resolve().parents[2] / "docs" / "bench" / "scaling-cpu.json"


def scaling_payload(path: str | Path | None = None) -> dict | None:
    """The recorded scaling benchmark, or None when the file is missing or unreadable."""
    try:
        payload = json.loads(Path(path or SCALING_JSON).read_text())
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) and payload.get("rows") else None


def model_rows() -> list[dict]:
    """The models table (``core.zoo.describe_models``, as ``python -m lab models`` prints it)."""
    from core.zoo import describe_models  # here, not at import: the page's top renders first

    return describe_models()


def launch_default_run() -> str:
    """Start the default training run (``TrainConfig()``) as a background job; its id."""
    from lab.runs import jobs

    return jobs.launch({}, name="default")
