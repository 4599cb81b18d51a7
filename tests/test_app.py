"""Smoke test of the Streamlit entry page through AppTest (no browser)."""

import pytest
from streamlit.testing.v1 import AppTest

from lab.store import Store


@pytest.fixture
def lab_home(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_HOME", str(tmp_path))
    return tmp_path


def test_home_page_with_no_runs(lab_home):
    at = AppTest.from_file("../streamlit_app.py", default_timeout=60).run()
    assert not at.exception
    assert "python -m lab train" in at.info[0].value
    models = at.dataframe[0].value
    assert "hamiltonian-1202" in list(models["name"])


def test_home_page_lists_runs(lab_home):
    with Store(lab_home) as store:
        run_id = store.create_run({"model": "hamiltonian", "dataset": "digits", "epochs": 3})
    at = AppTest.from_file("../streamlit_app.py", default_timeout=60).run()
    assert not at.exception
    runs = at.dataframe[0].value
    assert list(runs["run"]) == [run_id]
    assert list(runs["status"]) == ["queued"]
