"""The one runs table (lab.runs.table): Home, the Runs page and `python -m lab runs` agree."""

import time

import pytest

from lab.runs.store import Store
from lab.runs.table import CLI_COLUMNS, HOME_COLUMNS, TIME_FORMAT, run_rows, text_rows
from lab.views.home import run_rows as home_rows


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path) as st:
        yield st


def test_one_row_for_every_place(store):
    rid = store.create_run({"model": "hamiltonian", "dataset": "digits", "epochs": 2,
                            "memory": "reversible"}, status="running", name="mine")
    store.write_metrics(rid, epochs=[{"epoch": 1, "test_acc": 0.975},
                                     {"epoch": 2, "test_acc": 0.95}])
    store.finish(rid, "completed", final={"test_acc": 0.9})
    queued = store.create_run({"kind": "depth-sweep"}, worker="lab.sweeps.worker")
    run = store.get_run(rid)
    full = {r["run"]: r for r in run_rows(store.list_runs())}
    row = full[rid]
    assert (row["best test acc %"], row["final test acc %"]) == (97.5, 90.0)
    assert row["started"] == time.strftime(TIME_FORMAT, time.localtime(run.started_at))
    assert row["status"].endswith("completed") and row["status"] != "completed"  # an icon
    assert full[queued]["started"] == "" and full[queued]["kind"] == "depth-sweep"
    home = {r["run"]: r for r in home_rows(store.home)}
    assert list(home[rid]) == list(HOME_COLUMNS)
    assert all(home[rid][c] == row[c] for c in HOME_COLUMNS)
    text = {r[0]: r for r in text_rows(store.list_runs())}
    cli = dict(zip(CLI_COLUMNS, text[rid], strict=True))
    assert cli["status"] == "completed" and cli["started"] == row["started"]
    assert (cli["best test acc %"], cli["final test acc %"]) == ("97.50%", "90.00%")
    assert text[queued][CLI_COLUMNS_INDEX["started"]] == "-"


CLI_COLUMNS_INDEX = {k: i for i, k in enumerate(CLI_COLUMNS)}
