"""The runs tables show what ran: the epochs a run trained, not only the configured number."""

import pytest

from lab.runs.store import Store
from lab.runs.table import CLI_COLUMNS, epochs_text, run_rows, text_rows


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path) as st:
        yield st


@pytest.mark.parametrize("final, shown", [
    (None, "15"), ({"epochs_done": 15, "step": 345}, "15"),
    ({"epochs_done": 1, "step": 12}, "1 of 15 (12 steps)")])
def test_epochs_say_what_ran(store, final, shown):
    rid = store.create_run({"model": "hamiltonian", "epochs": 15}, status="running")
    if final is not None:
        store.finish(rid, "completed", final=final)
    run = store.get_run(rid)
    assert epochs_text(run) == shown
    assert run_rows([run])[0]["epochs"] == shown
    cli = dict(zip(CLI_COLUMNS, text_rows([run])[0], strict=True))
    assert cli["epochs"] == shown
