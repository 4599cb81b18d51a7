"""lab.views.actions (where a page's store-changing actions end) and lab.views.tables (cells)."""

import math

import numpy as np
import pytest

from lab.runs import jobs
from lab.runs.store import Store
from lab.views import actions
from lab.views.tables import EMPTY, cells, text


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path) as st:
        yield st


@pytest.mark.parametrize("value, gone, expected", [
    ("a", {"a"}, (True, None)), ("b", {"a"}, (False, "b")),
    (["a", "b", "c"], {"b"}, (True, ["a", "c"])), (["a"], {"x"}, (False, ["a"])),
    (3, {"a"}, (False, 3)), ({"a": 1}, {"a"}, (False, {"a": 1}))])
def test_forget_drops_gone_ids_from_a_selection(value, gone, expected):
    assert actions.forget(value, gone) == expected


def test_delete_says_what_it_deleted_and_which_id_is_gone(store):
    rid = store.create_run({"model": "hamiltonian"}, name="mine")
    store.transition(rid, "running")
    store.finish(rid, "cancelled")
    out = actions.delete(rid, store=store)
    assert out.gone == (rid,) and f"Deleted run {rid} (mine)" in out.message
    assert store.get_run(rid) is None


def test_actions_refuse_what_the_store_does_not_allow(store):
    rid = store.create_run({"model": "hamiltonian"})
    store.transition(rid, "running")
    store.finish(rid, "completed")
    with pytest.raises(jobs.JobError, match="nothing to cancel"):
        actions.cancel([rid], store=store)
    with pytest.raises(jobs.JobError, match="only .* can be resumed"):
        actions.resume(rid, store=store)


def test_resume_queues_the_run_and_shows_it(store, monkeypatch):
    monkeypatch.setattr(jobs, "schedule", lambda *a, **k: [])
    rid = store.create_run({"model": "hamiltonian"})
    store.transition(rid, "running")
    store.finish(rid, "cancelled")
    out = actions.resume(rid, store=store)
    assert store.require_run(rid).status == "queued" and out.gone == ()
    assert "queued" in out.message


@pytest.mark.parametrize("value, shown", [(None, EMPTY), (float("nan"), EMPTY),
                                          (np.float64("nan"), EMPTY), ("", EMPTY),
                                          (0.123456, "0.1235"), (3, "3"), ("x", "x")])
def test_text(value, shown):
    assert text(value) == shown


def test_cells_keep_full_columns_and_write_gappy_ones_as_text():
    rows = cells([{"a": 1.5, "b": 1, "c": None}, {"a": None, "b": 2, "c": math.nan}])
    assert rows == [{"a": "1.5", "b": 1, "c": EMPTY}, {"a": EMPTY, "b": 2, "c": EMPTY}]
    assert cells([{"x": 1}, {"y": 2}]) == [{"x": "1", "y": EMPTY}, {"x": EMPTY, "y": "2"}]


def test_status_colours_keep_numbers_short():
    from lab.views.tables import status_coloured

    html = status_coloured([{"status": "completed", "final test acc %": 97.0},
                            {"status": "failed", "final test acc %": 99.4444}]).to_html()
    assert "97.000000" not in html and ">97<" in html and ">99.44<" in html


def test_no_page_or_view_tells_a_user_to_call_python():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    shown = [*root.glob("pages/*.py"), *root.glob("lab/views/*.py"),
             root / "core" / "training" / "trainer.py"]  # its reasons reach the pages
    said = {p.name: p.read_text() for p in shown}
    assert not [n for n, text in said.items() if "fit(resume=True)" in text]
    assert "resume with fit(" not in said["trainer.py"]
