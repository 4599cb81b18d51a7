"""AppTest of the Experiments page: the form and its cost, presets, launching, reattaching by
URL, the tables (never "None" or "nan") and the Runs page's filter by experiment. (AppTest
cannot see plotly charts or fire run_every timers: tests/e2e opens the page in Chromium.)"""

import pytest
from streamlit.testing.v1 import AppTest

from lab.experiments import grid
from lab.runs import jobs
from lab.runs.store import Store

TIMEOUT = 30


@pytest.fixture
def lab_home(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_HOME", str(tmp_path))
    monkeypatch.setenv("LAB_MAX_JOBS", "1")
    monkeypatch.setattr(jobs, "_spawn", lambda *a, **k: None)  # queue, start no process
    return tmp_path


def page(path: str = "pages/6_Experiments.py", **query) -> AppTest:
    at = AppTest.from_file("../streamlit_app.py", default_timeout=TIMEOUT)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    return at.switch_page(path).run()


def seeded(home) -> str:
    """An experiment of 2 families x 2 fractions x 3 seeds: 10 completed, 1 failed, 1 left in
    the queue."""
    with Store(home) as st:
        exp_id = grid.launch(grid.GridSpec(axes={"family": ["hamiltonian", "resnet"],
                                                 "fraction": [0.1, 1.0]}, seeds=3, steps=2),
                             store=st, name="seeded")
        exp = st.require_experiment(exp_id)
        for i, (run_id, point) in enumerate(sorted(exp.points.items(),
                                                   key=lambda kv: kv[1]["seed"])):
            if i == 11:
                continue  # stays queued
            st._conn.execute("UPDATE runs SET status = 'running' WHERE id = ?", (run_id,))
            if i == 10:
                st.finish(run_id, "failed", reason="boom")
                continue
            acc = 0.6 + 0.3 * point["axes"]["fraction"] + 0.01 * point["seed"] + (
                0.02 if point["axes"]["family"] == "hamiltonian" else 0)
            st.finish(run_id, "completed", final={"test_acc": acc, "step": 2, "time": 1.0})
    return exp_id


def cells(at) -> list[str]:
    return [str(v) for df in at.dataframe for v in df.value.astype(str).to_numpy().ravel()]


def test_empty_page_shows_the_form_and_the_number_of_runs(lab_home):
    at = page()
    assert not at.exception
    assert "No experiments yet" in at.info[0].value
    assert "**12 runs** (4 cells × 3 seeds, 300 steps each)" in at.markdown[0].value
    at.selectbox(key="preset").set_value("fewer-data").run()
    assert not at.exception
    assert at.text_input(key="form_fraction").value == "0.05,0.1,0.2,0.5,1"
    assert at.number_input(key="form_seeds").value == 10
    assert "**200 runs** (20 cells × 10 seeds, 300 steps each)" in at.markdown[0].value


def test_a_bad_value_is_refused_by_name(lab_home):
    at = page()
    at.text_input(key="form_fraction").set_value("0.1,1.5").run()
    assert not at.exception
    assert "axis 'fraction' value 1.5 is refused" in at.error[0].value
    assert "launch" not in [b.key for b in at.button]  # nothing to launch
    with Store(lab_home) as st:
        assert st.list_runs() == []


def test_launch_queues_the_grid_and_reattaches_by_url(lab_home):
    at = page()
    at.text_input(key="form_family").set_value("hamiltonian,resnet")
    at.text_input(key="form_fraction").set_value("0.5,1")
    at.number_input(key="form_seeds").set_value(2)
    at.number_input(key="form_steps").set_value(5)
    at.text_input(key="form_name").set_value("from-the-page").run()
    assert "**8 runs**" in at.markdown[0].value
    at.button(key="launch").click().run()
    assert not at.exception
    with Store(lab_home) as st:
        exp = st.require_experiment("from-the-page")
        runs = st.list_runs(experiment=exp.id)
    assert len(runs) == 8 and {r.config["steps"] for r in runs} == {5}
    assert at.query_params["experiment"] == exp.id
    assert "0/8 runs done" in at.get("progress")[0].proto.text


def test_results_tables_comparisons_and_failed_runs(lab_home):
    exp_id = seeded(lab_home)
    at = page(experiment=exp_id)
    assert not at.exception
    assert at.selectbox(key="experiment_pick").value == exp_id
    assert "10/12 runs done" in at.get("progress")[0].proto.text
    groups = at.dataframe[0].value
    assert list(groups.columns[:3]) == ["family", "fraction", "n"]
    assert "3/3" in set(groups["n"]) and "2/3" in set(groups["n"])
    notes = [n for n in groups["note"] if n]
    # the queued run was started by the page's reconcile (no process: LAB_MAX_JOBS=1, no spawn)
    assert any("1 failed" in n for n in notes) and any("1 running" in n for n in notes)
    comparisons = at.dataframe[1].value
    assert set(comparisons["axis"]) == {"family"}  # "Along" starts with the first axis
    assert "p (paired t)" in comparisons.columns
    everything = cells(at)
    assert "None" not in everything and "nan" not in everything
    at.selectbox(key="along").set_value("fraction").run()
    assert set(at.dataframe[1].value["axis"]) == {"fraction"}
    assert {b.label for b in at.get("download_button")} >= {"Table (CSV)", "Figures (HTML)"}


def test_runs_page_filters_by_experiment(lab_home):
    exp_id = seeded(lab_home)
    with Store(lab_home) as st:
        st.create_run({"model": "hamiltonian", "dataset": "digits"}, name="alone",
                      status="running")
    at = page("pages/2_Runs.py", experiment=exp_id)
    assert not at.exception
    assert at.selectbox(key="experiment").value == exp_id
    assert len(at.dataframe[0].value) == 12
    at.selectbox(key="experiment").select_index(0).run()  # "any"
    assert len(at.dataframe[0].value) == 13


def test_cancel_active_stops_only_the_queued_and_running_runs(lab_home):
    from lab.views import experiments as ev

    exp_id = seeded(lab_home)
    res = ev.view(exp_id).results
    (queued,) = [p.run_id for p in res.points if p.status == "queued"]
    assert ev.cancel_active(res) == [queued]
    with Store(lab_home) as st:
        statuses = sorted(r.status for r in st.list_runs(experiment=exp_id))
    assert statuses == ["cancelled"] + ["completed"] * 10 + ["failed"]
    assert ev.cancel_active(ev.view(exp_id).results) == []
