"""A run's metrics as CSV: the Runs page's download and `python -m lab export`."""

from __future__ import annotations

import csv
from typing import Any, TextIO

from lab.runs.store import EPOCH_FIELDS, STEP_FIELDS


def write_metrics_csv(store: Any, run_id: str, out: TextIO) -> int:
    """Step then epoch metrics of a run as one CSV (column `kind`); returns the row count."""
    rows = ([{"kind": "step", **m} for m in store.step_metrics(run_id)]
            + [{"kind": "epoch", **m} for m in store.epoch_metrics(run_id)])
    columns = ["kind", "step", *STEP_FIELDS, *(c for c in EPOCH_FIELDS if c not in STEP_FIELDS)]
    columns += sorted({k for r in rows for k in r} - set(columns))
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return len(rows)
