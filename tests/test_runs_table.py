"""The one runs table (lab.runs.table): Home, the Runs page and `python -m lab runs` agree."""

import time

import pytest

from lab.runs.store import Store
from lab.runs.table import (
    CLI_COLUMNS,
    HOME_COLUMNS,
    RUNS_COLUMNS,
    TIME_FORMAT,
    run_rows,
    text_rows,
)
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
    assert row["status"] == "completed"  # the word; the pages colour it (no emoji)
    assert row["blocks"] == "2-2-2"  # the family's default blocks, which the config leaves out
    assert full[queued]["started"] == "" and full[queued]["kind"] == "depth-sweep"
    home = {r["run"]: r for r in home_rows(store.home)}
    assert list(home[rid]) == list(HOME_COLUMNS)
    assert all(home[rid][c] == row[c] for c in HOME_COLUMNS)
    assert home[rid]["blocks"] == "2-2-2" and "blocks" in RUNS_COLUMNS  # every page's table
    text = {r[0]: r for r in text_rows(store.list_runs())}
    cli = dict(zip(CLI_COLUMNS, text[rid], strict=True))
    assert cli["status"] == "completed" and cli["started"] == row["started"]
    assert (cli["best test acc %"], cli["final test acc %"]) == ("97.50%", "90.00%")
    assert dict(zip(CLI_COLUMNS, text[queued], strict=True))["started"] == "-"


@pytest.mark.parametrize("config, blocks", [
    ({"model": "hamiltonian"}, "2-2-2"),  # the family's default blocks
    ({"model": "hamiltonian-74"}, "6-6-6"),  # a named model's
    ({"model": "resnet", "model_kwargs": {"blocks": [3, 1, 2]}}, "3-1-2"),  # the config's own
    ({"model": "midpoint", "levels": 3}, "2-2-2 → 8-8-8"),  # multi-level doubles them twice
    ({"model": "no-such-model"}, ""),
])
def test_blocks_column_shows_the_blocks_a_run_used(store, config, blocks):
    store.create_run({**config, "dataset": "digits"})
    (row,) = run_rows(store.list_runs())
    assert row["blocks"] == blocks


def test_statuses_are_words_in_colour(store):
    from lab.runs.store import STATUSES
    from lab.runs.table import STATUS_COLOURS
    from lab.views.tables import status_coloured

    assert set(STATUS_COLOURS) == set(STATUSES)
    for status in ("failed", "completed"):
        rid = store.create_run({"model": "hamiltonian"}, status="running")
        store.finish(rid, status)
    rows = run_rows(store.list_runs())
    assert [r["status"] for r in rows] == ["completed", "failed"]
    html = status_coloured(rows).to_html()
    assert f"color: {STATUS_COLOURS['failed']}" in html
    assert f"color: {STATUS_COLOURS['completed']}" in html
    assert all(ord(ch) < 0x2190 for r in rows for ch in r["status"])  # no symbol, no emoji
