"""AppTest of the Train and Runs pages (no browser: AppTest does not fire run_every timers and
cannot see plotly, so tests/e2e drives the live curves in Chromium)."""

import json
import os
import signal

import pytest
from streamlit.testing.v1 import AppTest

from lab.runs import jobs, process
from lab.runs.store import LOG_NAME, Store

TIMEOUT = 120  # torch and the estimate's first import on a loaded 2-core machine
# (AppTest does not expose st.dataframe keys: the Runs page's tables are [0] runs, [1] configs)


@pytest.fixture
def lab_home(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_HOME", str(tmp_path))
    monkeypatch.setenv("LAB_MAX_JOBS", "1")
    yield tmp_path
    with Store(tmp_path) as st:  # never leave a worker behind
        for run in st.list_runs():
            if run.pid and run.own_session and process.is_alive(run.pid, run.pid_start):
                os.killpg(run.pid, signal.SIGKILL)


@pytest.fixture
def no_spawn(monkeypatch):
    """Runs are queued and claimed as usual but no worker process starts."""
    monkeypatch.setattr(jobs, "_spawn", lambda *a, **k: None)


def train_page(**query) -> AppTest:
    at = AppTest.from_file("../pages/1_Train.py", default_timeout=TIMEOUT)
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


def runs_page(**query) -> AppTest:
    at = AppTest.from_file("../streamlit_app.py", default_timeout=TIMEOUT)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    return at.switch_page("pages/2_Runs.py").run()


def seed_runs(home) -> dict[str, str]:
    """A completed run with curves, a failed one with a log, and a depth sweep."""
    ids = {}
    with Store(home) as st:
        for name, memory, seed in (("done", "reversible", 0), ("broken", "standard", 1)):
            rid = st.create_run({"model": "hamiltonian", "dataset": "digits", "epochs": 2,
                                 "memory": memory, "seed": seed}, name=name, status="running")
            st.add_event(rid, "start", json.dumps({"total_steps": 20}))
            steps = [{"step": i, "loss": 2.0 / i, "acc": 0.05 * i, "saved_bytes": 1 << 20,
                      "time": 0.1 * i} for i in range(1, 21 if name == "done" else 8)]
            epochs = [{"epoch": 1, "test_acc": 0.8}, {"epoch": 2, "test_acc": 0.95}]
            ids[name] = rid
            if name == "done":
                st.finish(rid, "completed", final={"test_acc": 0.95}, steps=steps, epochs=epochs)
            else:
                st.run_dir(rid).mkdir(parents=True)
                (st.run_dir(rid) / LOG_NAME).write_text("Traceback ...\nRuntimeError: boom\n")
                st.finish(rid, "failed", reason="exception during training",
                          error="RuntimeError: boom", steps=steps)
        ids["sweep"] = st.create_run({"kind": "depth-sweep", "family": "hamiltonian"},
                                     name="sweep", worker="lab.sweeps.worker")
    return ids


# -- Train ------------------------------------------------------------------------------------
def test_train_page_shows_the_form_and_the_cost_of_the_default_config(lab_home):
    at = train_page()
    assert not at.exception
    assert {b.label for b in at.button} >= {"Launch", "Compare memory modes"}
    for key in ("family", "memory", "dataset", "optimizer"):
        assert at.selectbox(key=key).value is not None
    assert at.selectbox(key="memory").value == "reversible"
    assert [m.value for m in at.metric][:2] == ["32,730", "26 layers"]
    if at.dataframe:  # the estimate has landed in core.memory
        modes = list(at.dataframe[0].value["memory mode"])
        assert modes == ["standard", "checkpoint", "reversible"]
    if "budget" in at.selectbox(key="memory").options:  # the engine's budget mode has landed
        at.selectbox(key="memory").set_value("budget").run()
        assert at.number_input(key="memory_mib").value > 0 and not at.exception
    at.selectbox(key="family").set_value("resnet").run()
    assert "reversible" not in at.selectbox(key="memory").options
    at.text_input(key="blocks").set_value("2,oops").run()
    assert "blocks per stage" in at.error[0].value and not at.exception


def test_launch_creates_the_run_puts_it_in_the_url_and_a_new_tab_reattaches(lab_home):
    at = train_page()
    at.text_input(key="blocks").set_value("1,1,1")
    at.text_input(key="widths").set_value("4,4,4,4")
    at.number_input(key="epochs").set_value(1)
    at.button(key="launch").click().run()
    assert not at.exception
    with Store(lab_home) as st:
        (run,) = st.list_runs()
    assert run.config["model_kwargs"] == {"blocks": [1, 1, 1], "widths": [4, 4, 4, 4]}
    assert run.config["epochs"] == 1 and run.status in ("queued", "running")
    assert at.query_params["run"] == run.id
    assert at.subheader[0].value.startswith(f"Run {run.id}")
    again = train_page(run=run.id)  # a refresh, a second tab or a restarted server
    assert not again.exception and again.subheader[0].value.startswith(f"Run {run.id}")
    assert any(b.label == "Cancel" for b in again.button)


def test_compare_memory_modes_launches_standard_and_reversible(lab_home, no_spawn):
    at = train_page()
    at.button(key="compare").click().run()
    assert not at.exception
    with Store(lab_home) as st:
        runs = {r.config["memory"]: r for r in st.list_runs()}
    assert set(runs) == {"standard", "reversible"}
    assert at.query_params["run"] == runs["reversible"].id
    assert at.query_params["compare"] == runs["standard"].id
    assert {k: v for k, v in runs["standard"].config.items() if k != "memory"} == \
        {k: v for k, v in runs["reversible"].config.items() if k != "memory"}


def test_completed_and_unknown_runs(lab_home):
    ids = seed_runs(lab_home)
    at = train_page(run=ids["done"])
    assert not at.exception and "95.00%" in at.success[0].value
    assert "step 20/20" in at.get("progress")[0].proto.text  # steps count from 1
    assert not any(b.label == "Cancel" for b in at.button)
    sweep = train_page(run=ids["sweep"])  # not a training run: pointed to the Depth lab
    assert not sweep.exception and "Depth lab" in sweep.info[0].value
    assert not any(h.value.startswith("Run ") for h in sweep.subheader)
    gone = train_page(run="deadbeef")
    assert not gone.exception and "not in this lab" in gone.error[0].value
    assert any(b.label == "Launch" for b in gone.button)


# -- Runs -------------------------------------------------------------------------------------
def test_runs_table_filters_kinds_and_text(lab_home):
    ids = seed_runs(lab_home)
    at = runs_page()
    assert not at.exception
    table = at.dataframe[0].value
    assert set(table["run"]) == {ids["done"], ids["broken"]}  # training runs by default
    at.multiselect(key="kinds").set_value(["depth-sweep", "train"]).run()
    assert ids["sweep"] in set(at.dataframe[0].value["run"])
    at.text_input(key="filter").set_value("broken").run()
    assert list(at.dataframe[0].value["run"]) == [ids["broken"]]


def test_selected_runs_overlay_diff_and_failed_reason(lab_home):
    ids = seed_runs(lab_home)
    at = runs_page(run=ids["broken"])
    assert at.multiselect(key="selected").value == [ids["broken"]]
    assert "exception during training" in at.error[0].value
    assert "RuntimeError: boom" in at.code[0].value  # the log tail
    at.multiselect(key="selected").set_value([ids["done"], ids["broken"]]).run()
    assert not at.exception
    every = at.dataframe[1].value
    assert {"memory", "seed", "model", "epochs"} <= set(every["key"])
    at.checkbox(key="only_diff").check().run()
    assert set(at.dataframe[1].value["key"]) == {"memory", "seed"}
    labels = {b.label for b in at.get("download_button")} if at.get("download_button") else set()
    assert at.get("plotly_chart") and len(at.get("download_button")) == 3, labels


def test_resume_and_delete_with_confirmation(lab_home, no_spawn):
    ids = seed_runs(lab_home)
    at = runs_page(run=ids["broken"])
    rid = ids["broken"]
    at.button(key=f"resume-{rid}").click().run()
    with Store(lab_home) as st:
        assert st.get_run(rid).status in ("queued", "running")
    at = runs_page(run=ids["done"])
    done = ids["done"]
    assert at.button(key=f"delete-{done}").disabled
    at.checkbox(key=f"sure-{done}").check().run()
    at.button(key=f"delete-{done}").click().run()
    assert not at.exception
    with Store(lab_home) as st:
        assert st.get_run(done) is None
    assert not (lab_home / "runs" / done).exists()


def test_delete_says_so_drops_the_chip_and_keeps_the_rest_of_the_selection(lab_home):
    ids = seed_runs(lab_home)
    done, broken = ids["done"], ids["broken"]
    at = runs_page(run=[done, broken])
    assert at.multiselect(key="selected").value == [done, broken]
    at.checkbox(key=f"sure-{broken}").check().run()
    at.button(key=f"delete-{broken}").click().run()
    assert not at.exception, at.exception
    assert at.multiselect(key="selected").value == [done]  # the chip is gone, the rest stays
    assert at.query_params["run"] in ([done], done)
    assert any(f"Deleted run {broken}" in t.value for t in at.toast)
    assert any(h.value == "Curves" for h in at.header)  # everything below is still drawn
    assert broken not in set(at.dataframe[0].value["run"])


def _empty_marks(frame) -> list:
    return [(c, v) for c in frame.columns for v in frame[c]
            if v is None or (isinstance(v, float) and v != v) or str(v) in ("None", "nan")]


def test_runs_tables_have_no_none_or_nan_cells(lab_home):
    ids = seed_runs(lab_home)  # a failed run without accuracies, a sweep without a dataset
    at = runs_page(run=[ids["done"], ids["broken"]])
    at.multiselect(key="kinds").set_value(["depth-sweep", "train"]).run()
    assert len(at.dataframe) >= 2
    for table in at.dataframe:
        assert not _empty_marks(table.value), _empty_marks(table.value)


def test_an_ended_run_offers_resume_and_delete_and_no_eta(lab_home, no_spawn):
    ids = seed_runs(lab_home)
    rid = ids["broken"]
    with Store(lab_home) as st:  # as the real trainer words an interrupted run now
        st.update(rid, reason="cancelled on request; stop requested: stopped at step 7 (a "
                              "resume continues from its checkpoint at step 5)")
    at = train_page(run=rid)
    assert not at.exception, at.exception
    text = " ".join(str(e.value) for e in (*at.warning, *at.caption, *at.markdown))
    assert "fit(resume" not in text
    assert "ETA" not in at.get("progress")[0].proto.text
    assert {f"resume-{rid}", f"delete-{rid}"} <= {b.key for b in at.button}
    at.button(key=f"resume-{rid}").click().run()
    assert not at.exception, at.exception
    assert any(f"Resumed run {rid}" in t.value for t in at.toast)
    with Store(lab_home) as st:
        assert st.require_run(rid).status == "queued"
    assert any(b.key == f"cancel-{rid}" for b in at.button)  # labels from the store


def test_deleting_the_shown_run_returns_to_the_form(lab_home):
    ids = seed_runs(lab_home)
    at = train_page(run=ids["done"])
    at.checkbox(key=f"sure-{ids['done']}").check().run()
    at.button(key=f"delete-{ids['done']}").click().run()
    assert not at.exception, at.exception
    assert "run" not in at.query_params or not at.query_params["run"]
    assert any(f"Deleted run {ids['done']}" in t.value for t in at.toast)
    assert any(b.label == "Launch" for b in at.button)
