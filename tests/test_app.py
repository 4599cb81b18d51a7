"""Smoke test of the Streamlit entry page through AppTest (no browser)."""

import pytest
from streamlit.testing.v1 import AppTest

from lab.runs.store import Store


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
    with Store(lab_home) as store:  # (a queued run would start: the page reconciles the queue)
        run_id = store.create_run({"model": "hamiltonian", "dataset": "digits", "epochs": 3},
                                  status="running")
        store.finish(run_id, "failed", reason="boom")
    at = AppTest.from_file("../streamlit_app.py", default_timeout=60).run()
    assert not at.exception
    runs = at.dataframe[0].value
    assert list(runs["run"]) == [run_id]
    assert list(runs["status"]) == ["failed"]  # a word (coloured), no emoji: every browser


def test_home_shows_the_benchmark_figure_and_trains_the_default_model(lab_home, monkeypatch):
    from lab.runs import jobs

    monkeypatch.setattr(jobs, "_spawn", lambda *a, **k: None)  # queue it, start no process
    at = AppTest.from_file("../streamlit_app.py", default_timeout=60).run()
    assert not at.exception
    assert at.get("plotly_chart"), "the activation-memory-vs-depth figure is missing"
    assert "flat" in at.markdown[0].value  # the three sentences say what the lab is for
    at.button(key="train_default").click().run()
    assert not at.exception
    with Store(lab_home) as store:
        (run,) = store.list_runs()
    assert run.config["memory"] == "reversible" and run.name == "default"
    assert at.query_params["run"] == run.id  # now on the Train page, attached to the run
    assert any(f"Launched run {run.id}" in t.value for t in at.toast)  # and says so
    assert at.subheader[0].value.startswith(f"Run {run.id}")


def test_navigation_titles_icons_and_pages():
    from lab.views.navigation import REPO, SECTIONS, all_pages

    titles = [p.title for p in all_pages()]
    assert titles[0] == "Home" and not all_pages()[0].url_path  # the default page
    for want in ("Train", "Runs", "Depth lab", "ODE reversal", "Classify"):
        assert want in titles
    assert all(p.icon.startswith(":material/") and p.icon.endswith(":") for p in all_pages())
    assert all((REPO / p.file).is_file() for p in all_pages())
    assert len({p.url_path for p in all_pages()}) == len(all_pages())
    assert list(SECTIONS)[0] == ""  # Home stands alone above the groups


@pytest.mark.parametrize("page, title", [("pages/1_Train.py", "Train"),
                                         ("pages/2_Runs.py", "Runs"),
                                         ("pages/5_Classify.py", "Classify")])
def test_entry_switches_to_pages(lab_home, page, title):
    at = AppTest.from_file("../streamlit_app.py", default_timeout=60).run()
    assert not at.exception and at.title[0].value.startswith("revlab")  # Home by default
    at.switch_page(page).run()
    assert not at.exception
    assert at.title[0].value == title


def test_home_keeps_sweeps_and_experiments_apart_and_has_no_empty_marks(lab_home):
    with Store(lab_home) as store:
        run_id = store.create_run({"model": "hamiltonian", "dataset": "digits", "epochs": 3},
                                  status="running")
        store.finish(run_id, "failed", reason="boom")  # no accuracy, no final epochs
        sweep = store.create_run({"kind": "depth-sweep", "family": "hamiltonian"},
                                 name="a sweep", worker="lab.sweeps.worker", status="running")
        store.finish(sweep, "completed")
    at = AppTest.from_file("../streamlit_app.py", default_timeout=60).run()
    assert not at.exception, at.exception
    runs, sweeps = at.dataframe[0].value, at.dataframe[1].value
    assert list(runs["run"]) == [run_id] and list(sweeps["sweep"]) == [sweep]
    assert "dataset" not in sweeps.columns  # no "None" dataset for a sweep
    assert [s.value for s in at.subheader] == ["Depth sweeps"]
    for frame in (runs, sweeps):
        bad = [(c, v) for c in frame.columns for v in frame[c]
               if v is None or (isinstance(v, float) and v != v) or str(v) in ("None", "nan")]
        assert not bad, bad
