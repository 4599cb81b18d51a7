"""Depth lab: sweep configs and their errors, the sweep loop, a sweep job end to end, the page."""

import math
import time

import pytest
import torch
from streamlit.testing.v1 import AppTest

from lab.figures.depth import depth_figure
from lab.runs import jobs
from lab.runs.store import Store
from lab.sweeps import record, sweep
from lab.sweeps.worker import SweepRunner
from lab.views import depth as depth_lab

TINY = dict(widths=(8, 8, 16, 16), batch=2, size=8, repeats=1)


@pytest.fixture
def lab_home(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_HOME", str(tmp_path))
    return tmp_path


# ---------------------------------------------------------------- configs and their errors


@pytest.mark.parametrize("family, text, blocks", [
    ("hamiltonian", "14, 74, 218", (1, 6, 18)),
    ("midpoint", "1202 14", (1, 100)),
    ("resnet", [14, 8, 1202], (1, 2, 200)),  # 2 layers per ResNet block: 6 x blocks + 2
])
def test_depths_in_layers_become_blocks_per_stage(family, text, blocks):
    assert depth_lab.parse_layers(text, family) == blocks


@pytest.mark.parametrize("family, text, match", [
    ("hamiltonian", "100", r"depth 100 layers is not possible for hamiltonian.*12 x blocks per "
                           r"stage \+ 2.*nearest: 98, 110"),
    ("hamiltonian", "1214", r"at most 1202"),
    ("leapfrog", "2", r"from 14"),
    ("hamiltonian", "14, deep", r"whole numbers of layers"),
    ("hamiltonian", " ", r"at least one depth"),
    ("hamiltonians", "14", r"family='hamiltonians'; choose one of hamiltonian, midpoint"),
])
def test_bad_depths_say_what_is_allowed(family, text, match):
    with pytest.raises(ValueError, match=match):
        depth_lab.parse_layers(text, family)


def test_sweep_config_is_a_tagged_json_dict():
    cfg = depth_lab.sweep_config("revnet", "26, 14", **TINY)
    assert cfg["kind"] == record.KIND == "depth-sweep"
    assert cfg["model"] == "revnet" and cfg["layers"] == [14, 26] and cfg["blocks"] == [1, 2]
    assert record.to_sweep(cfg).mode_list() == ["standard", "checkpoint", "reversible"]
    assert record.to_sweep(depth_lab.sweep_config("resnet", "14")).mode_list() == [
        "standard", "checkpoint"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(family="resnet", modes=["standard", "reversible"]), "resnet blocks are not invertible"),
    (dict(modes=["standard", "fast"]), "unknown memory mode 'fast'"),
    (dict(modes=["standard", "standard"]), "distinct"),
    (dict(batch=0), "batch=0 must be a whole number >= 1"),
    (dict(size=2), "size=2 must be a whole number >= 4"),
    (dict(widths=(8, 9, 16, 16)), "widths=.*even"),
    (dict(device="tpu"), "device='tpu'"),
])
def test_bad_sweep_configs_are_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        depth_lab.sweep_config(**{"depths": "14", **kwargs})


def test_stored_config_with_unknown_key_is_refused():
    cfg = dict(depth_lab.sweep_config("hamiltonian", "14"), colour="red")
    with pytest.raises(ValueError, match=r"unknown sweep option\(s\) \['colour'\]"):
        record.to_sweep(cfg)
    with pytest.raises(ValueError, match="not a depth-sweep config"):
        record.to_sweep({"model": "hamiltonian", "dataset": "digits"})


# ---------------------------------------------------------------- the sweep loop


def _tiny(**kw) -> sweep.SweepConfig:
    return sweep.SweepConfig(**{**TINY, "warmup": 0, "peak": False, "blocks": (1, 2), **kw})


def test_sweep_rows_and_progress(one_thread):
    heard = []
    rows = sweep.run_sweep(_tiny(), progress=lambda *a: heard.append(a))
    assert [(r["depth"], r["mode"]) for r in rows] == [
        (d, m) for d in (14, 26) for m in ("standard", "checkpoint", "reversible")]
    assert [d for d, _, _ in heard] == list(range(1, 9)) and {t for _, t, _ in heard} == {8}
    assert all(r["step_s"] > 0 and r["saved_mib"] > 0 and r["notes"] == "" for r in rows)
    by = {(r["depth"], r["mode"]): r for r in rows}
    # activations: standard grows with depth, reversible barely
    assert by[26, "standard"]["saved_mib"] > 1.3 * by[14, "standard"]["saved_mib"]
    assert by[26, "reversible"]["saved_mib"] < 1.1 * by[14, "reversible"]["saved_mib"]
    assert by[26, "reversible"]["saved_mib"] < by[26, "standard"]["saved_mib"] / 2


def test_sweep_stops_between_cases_keeping_finished_depths(one_thread):
    heard = []
    with pytest.raises(sweep.SweepStopped) as stopped:
        sweep.run_sweep(_tiny(), progress=lambda *a: heard.append(a),
                        should_stop=lambda: len(heard) >= 5)  # 4 cases of depth 14, 1 of 26
    assert [r["depth"] for r in stopped.value.rows] == [14, 14, 14]


def test_runner_resumes_with_the_depths_it_finished(tmp_path, one_thread):
    config = depth_lab.sweep_config("hamiltonian", "14, 26", **TINY)
    steps = []

    class Recorder:
        def on_start(self, info):
            pass

        def on_step(self, m):
            steps.append(m["step"])
            if m["step"] == 4:  # depth 14 done
                runner.request_stop()

        def on_event(self, kind, message):
            pass

    runner = SweepRunner(config, tmp_path, [Recorder()])
    result = runner.fit()
    assert result.status == "interrupted"
    assert [r["depth"] for r in record.read_result(tmp_path)["rows"]] == [14, 14, 14]
    runner = SweepRunner(config, tmp_path, [Recorder()])
    assert runner.fit(resume=True).status == "completed"
    payload = record.read_result(tmp_path)
    assert [r["depth"] for r in payload["rows"]] == [14] * 3 + [26] * 3
    assert payload["complete"] and payload["progress"]["done"] == payload["progress"]["total"] == 8
    assert steps[-4:] == [5, 6, 7, 8]  # the second attempt measured depth 26 only


# ---------------------------------------------------------------- analysis and figure


def _payload(rows):
    return dict(family="hamiltonian", stages=3, rows=rows,
                config=dict(family="hamiltonian", widths=[32, 32, 64, 128], batch=32, size=32))


def _row(blocks, mode, mib, t):
    return dict(blocks=blocks, depth=12 * blocks + 2, mode=mode, held_mib=mib, saved_mib=mib,
                step_s=t, notes="")


def test_deepest_within_budget_per_mode():
    p = _payload([_row(1, "standard", 10, 0.1), _row(6, "standard", 60, 0.5),
                  _row(1, "reversible", 4, 0.13), _row(6, "reversible", 4, 0.7)])
    got = {r["mode"]: r for r in depth_lab.deepest_within(p, 45)}
    assert got["standard"]["deepest measured (layers)"] == 14
    assert got["standard"]["deepest by linear fit (layers)"] == 12 * 4 + 2  # 10 MiB per block
    assert got["reversible"]["deepest measured (layers)"] == 74
    assert "no limit" in got["reversible"]["note"]
    with pytest.raises(ValueError, match="budget -1 MiB"):
        depth_lab.deepest_within(p, -1)


def test_depth_figure_log_axes_one_line_per_mode():
    p = _payload([_row(1, "standard", 10, 0.1), _row(6, "standard", 60, 0.5),
                  _row(1, "reversible", 4, 0.13), _row(6, "reversible", 4, 0.7)])
    fig = depth_figure(p, budget_mib=45, uirevision="depth-x")
    names = [t.name for t in fig.data]
    assert names == ["standard", "standard", "reversible", "reversible"]
    assert list(fig.data[0].x) == [14, 74] and list(fig.data[0].y) == [10, 60]
    assert list(fig.data[1].y) == [0.1, 0.5]  # the time panel
    layout = fig.layout
    assert layout.xaxis.type == layout.xaxis2.type == "log"
    assert layout.yaxis.type == layout.yaxis2.type == "log"
    assert layout.uirevision == "depth-x"
    # the budget: a line at 45 MiB, its label at log10(45) (plotly.js annotations on log axes)
    assert [s.y0 for s in layout.shapes] == [45]
    assert [a.y for a in layout.annotations if "budget" in a.text] == [
        pytest.approx(math.log10(45))]


# ---------------------------------------------------------------- a sweep job end to end


def test_sweep_job_runs_end_to_end_through_lab_jobs(lab_home, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the worker's: tiny models, a busy machine
    config = depth_lab.sweep_config("hamiltonian", "14", **TINY)  # one depth: a few seconds
    with Store(lab_home) as store:
        run_id = depth_lab.launch_sweep(config, store=store)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            jobs.reconcile(store)
            if store.require_run(run_id).status not in ("queued", "running"):
                break
            time.sleep(0.5)
        run = store.require_run(run_id)
        log = (store.run_dir(run_id) / "worker.log").read_text()
        assert run.status == "completed", (run.reason, run.error, log[-2000:])
        assert run.worker == "lab.sweeps.worker" and depth_lab.is_sweep(run)
        assert run.name == "depth sweep: hamiltonian 14 layers"
        assert run.final["rows"] == 3 and run.final["failed_cases"] == 0
        assert [m["step"] for m in store.step_metrics(run_id)] == [1, 2, 3, 4]
        assert [s.id for s in depth_lab.list_sweeps(store)] == [run_id]
        v = depth_lab.view(run_id[:5], store)
    assert not v.active and v.progress[:2] == (4, 4)
    assert [(r["depth"], r["mode"]) for r in v.rows] == [
        (14, m) for m in ("standard", "checkpoint", "reversible")]
    assert v.payload["machine"]["torch"] == torch.__version__


# ---------------------------------------------------------------- the page (AppTest)

PAGE = "../pages/3_Depth_lab.py"


def picker(at):
    """The Sweep selectbox (its key changes with its labels: lab.views.actions.picker_key)."""
    return next(s for s in at.selectbox if s.label == "Sweep")


def _stored_sweep(home, status="completed"):
    config = depth_lab.sweep_config("hamiltonian", "14, 74")
    with Store(home) as store:
        run_id = store.create_run(config, name="depth sweep: test", status="running",
                                  worker=record.WORKER)
        cfg = record.to_sweep(config)
        store.run_dir(run_id).mkdir(parents=True)
        record.write_result(store.run_dir(run_id), record.payload_of(
            cfg, [_row(1, "standard", 10, 0.1), _row(6, "standard", 60, 0.5),
                  _row(1, "reversible", 4, 0.13), _row(6, "reversible", 4, 0.7)],
            {}, dict(done=8, total=8, message="done"), complete=True))
        if status != "running":
            store.finish(run_id, status)
    return run_id


def test_page_without_sweeps_offers_a_new_one(lab_home):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert at.selectbox[0].label == "Family" and at.selectbox[0].value == "hamiltonian"
    assert at.text_input[0].value == "14, 74, 218"
    assert at.multiselect[0].value == ["standard", "checkpoint", "reversible"]
    assert "No sweeps yet" in at.info[0].value
    at.selectbox[0].set_value("resnet").run()  # no reversible mode without inverses
    assert at.multiselect[0].options == ["standard", "checkpoint"]


def test_page_refuses_a_bad_depth_and_launches_nothing(lab_home):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.text_input[0].set_value("14, 100").run()
    at.button[0].click().run()
    assert not at.exception
    assert "depth 100 layers is not possible" in at.error[0].value
    with Store(lab_home) as store:
        assert store.list_runs() == []


def test_page_launch_creates_a_sweep_run(lab_home, monkeypatch):
    monkeypatch.setattr(jobs, "schedule", lambda *a, **k: [])  # stays queued: no real sweep
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.text_input[0].set_value("14").run()
    at.button[0].click().run()
    assert not at.exception
    with Store(lab_home) as store:
        (run,) = store.list_runs()
    assert depth_lab.is_sweep(run) and run.status == "queued" and run.config["layers"] == [14]
    assert at.query_params["sweep"] == [run.id] or at.query_params["sweep"] == run.id
    assert run.id in picker(at).value


def test_page_reloads_a_stored_sweep_from_the_url(lab_home):
    old = _stored_sweep(lab_home)
    new = _stored_sweep(lab_home)
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["sweep"] = old
    at.run()
    assert not at.exception
    assert picker(at).value == old  # not the newest: the one in the URL
    deepest = at.dataframe[0].value
    assert list(deepest["mode"]) == ["standard", "reversible"]
    at.number_input[-1].set_value(45.0).run()
    deepest = at.dataframe[0].value.set_index("mode")
    assert deepest.loc["standard", "deepest measured (layers)"] == 14
    assert deepest.loc["reversible", "deepest measured (layers)"] == 74
    assert len(at.dataframe[1].value) == 4
    assert any(new in o for o in picker(at).options)


def test_sweep_budget_mode_and_a_budget_too_small(one_thread):
    cfg = _tiny(blocks=(2,), modes=("standard", "budget"), budget_mib=0.05)
    rows = {r["mode"]: r for r in sweep.run_sweep(cfg)}
    assert rows["budget"]["notes"] == "" and rows["budget"]["step_s"] > 0
    assert rows["budget"]["saved_mib"] < rows["standard"]["saved_mib"]
    rows = {r["mode"]: r for r in sweep.run_sweep(_tiny(blocks=(1,), modes=("standard", "budget"),
                                                        budget_mib=1e-6))}
    assert rows["budget"]["notes"].startswith("memory failed: ValueError")  # names the minimum
    assert rows["budget"]["step_s"] is None and rows["standard"]["step_s"] > 0


def test_a_second_sweep_takes_over_the_url_and_the_picker(lab_home, monkeypatch):
    monkeypatch.setattr(jobs, "schedule", lambda *a, **k: [])  # stays queued: no real sweep
    first = _stored_sweep(lab_home)
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["sweep"] = first
    at.run()
    assert picker(at).value == first
    at.text_input[0].set_value("14").run()
    at.button[0].click().run()
    assert not at.exception, at.exception
    with Store(lab_home) as store:
        second = next(r.id for r in store.list_runs() if r.id != first)
    assert picker(at).value == second
    assert at.query_params["sweep"] in (second, [second])
    assert any(second in t.value and "Launched sweep" in t.value for t in at.toast)


def test_the_picker_labels_come_from_the_store(lab_home):
    run_id = _stored_sweep(lab_home, status="running")
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    label = lambda: picker(at).format_func(run_id)  # noqa: E731
    assert label().endswith("running")
    before = picker(at).key
    with Store(lab_home) as store:
        store.finish(run_id, "completed")
    at.run()
    assert label().endswith("completed")
    # a new widget: Streamlit's selectbox would keep showing the old label otherwise
    assert picker(at).key != before and picker(at).value == run_id


def _no_empty_marks(frame) -> list:
    bad = []
    for col in frame.columns:
        for v in frame[col]:
            if v is None or (isinstance(v, float) and v != v) or str(v) in ("None", "nan"):
                bad.append((col, v))
    return bad


def test_tables_show_a_dash_not_none_or_nan(lab_home):
    run_id = _stored_sweep(lab_home)  # rows without peak or time-vs-standard values
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["sweep"] = run_id
    at.run()
    assert len(at.dataframe) == 2
    for table in at.dataframe:
        assert not _no_empty_marks(table.value), _no_empty_marks(table.value)
    assert "–" in set(at.dataframe[1].value["peak over start MiB"])


@pytest.mark.parametrize("layers, measured, shown", [
    (50, 74, 50), (None, 74, None), (530, 218, "530 (extrapolated beyond 218)"),
    (5678, 218, "over 1202 (extrapolated; the form's maximum)")])
def test_a_fit_is_a_number_only_inside_the_measured_range(layers, measured, shown):
    assert depth_lab.fit_depth(layers, measured) == shown


def test_deepest_within_never_names_a_depth_past_the_form(lab_home):
    p = _payload([_row(1, "standard", 1.0, 0.1), _row(6, "standard", 1.5, 0.5)])
    (row,) = depth_lab.deepest_within(p, 1000)
    assert row["deepest by linear fit (layers)"].startswith("over 1202")
