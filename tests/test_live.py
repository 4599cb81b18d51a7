"""Live views of runs: incremental reads, downsampling, progress/ETA, and the run figures."""

import json

import numpy as np
import pytest

from lab.figures import runs as figs
from lab.runs.live import MAX_POINTS, LiveRun, downsample
from lab.runs.store import Store


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path) as st:
        yield st


def step(i: int, **kw) -> dict:
    return {"step": i, "epoch": i // 10 + 1, "loss": 1.0 / (i + 1), "acc": min(i / 100, 1.0),
            "samples_per_sec": 500.0, "saved_bytes": 1 << 20, "peak_mem_bytes": 2 << 20,
            "time": 0.01 * i, **kw}


def running_run(store: Store, total_steps: int = 100, epochs: int = 10) -> str:
    rid = store.create_run({"model": "hamiltonian", "dataset": "digits", "epochs": epochs,
                            "memory": "reversible"}, status="running")
    store.add_event(rid, "start", json.dumps({"total_steps": total_steps}))
    return rid


def test_downsample_bounds_points_and_keeps_spikes_and_the_last_sample():
    x = np.arange(20_001)
    y = np.zeros(20_001)
    y[12_345] = 7.0
    xs, ys = downsample(x, y, 2000, how="max")
    assert len(xs) <= 2000 and xs[-1] == 20_000 and ys.max() == 7.0
    xm, ym = downsample(x, np.ones(20_001), 2000, how="mean")
    assert len(xm) <= 2000 and np.allclose(ym, 1.0)
    short = np.arange(10.0)
    assert downsample(short, short, 2000)[1] is short  # nothing to do: the same arrays
    with pytest.raises(ValueError, match="how="):
        downsample(x, y, 100, how="median")


def test_live_run_reads_only_new_rows_and_a_fresh_one_reads_everything(store):
    rid = running_run(store)
    store.write_metrics(rid, [step(i) for i in range(30)])
    live = LiveRun(rid)
    assert live.refresh(store) == 30 and live.total_steps == 100
    store.write_metrics(rid, [step(i) for i in range(30, 45)])
    asked = []
    read = store.step_metrics
    store.step_metrics = lambda run_id, **kw: asked.append(kw) or read(run_id, **kw)
    assert live.refresh(store) == 15 and asked == [{"after_step": 29}]  # only the new rows
    del store.step_metrics
    assert live.refresh(store) == 0
    assert live.steps["step"] == list(range(45))
    # st.session_state is gone after a reload: a new LiveRun reads the whole run, same data
    again = LiveRun(rid)
    again.refresh(store)
    assert again.steps["step"] == live.steps["step"] and again.last_step == 44


def test_progress_and_eta_from_the_recent_step_rate(store):
    rid = running_run(store, total_steps=100)
    store.write_metrics(rid, [step(i) for i in range(1, 51)])  # steps 1..50, 0.01 s apart
    live = LiveRun(rid)
    live.refresh(store)
    p = live.progress()
    assert p.step == 50 and p.total_steps == 100 and p.fraction == pytest.approx(0.5)
    assert p.eta_s == pytest.approx(0.5, rel=1e-6)  # 50 steps left at 100 steps/s


def test_deleted_run_leaves_no_run(store):
    rid = running_run(store)
    store.delete_run(rid)
    live = LiveRun(rid)
    assert live.refresh(store) == 0 and live.run is None


def test_live_figures_cap_points_and_keep_zoom_per_run(store):
    rid = running_run(store, total_steps=20_000, epochs=2)
    store.write_metrics(rid, [step(i) for i in range(1, 20_001)],  # the trainer counts from 1
                        [{"epoch": 1, "train_acc": 0.5, "test_acc": 0.6},
                         {"epoch": 2, "train_acc": 0.8, "test_acc": 0.9}])
    live = LiveRun(rid)
    live.refresh(store)
    out = figs.live_figures(live)
    assert set(out) == {"loss", "accuracy", "memory", "throughput"}
    for fig in out.values():
        assert fig.layout.uirevision == rid
        assert all(len(t.x) <= MAX_POINTS for t in fig.data)
    acc = out["accuracy"]
    test = next(t for t in acc.data if t.name == "test (epoch)")
    assert list(test.y) == [0.6, 0.9] and list(test.x) == [10_000, 20_000]  # at epoch ends
    assert out["memory"].data[0].y.max() == pytest.approx(1.0)  # MiB


def test_smooth_is_a_debiased_ema():
    y = np.array([1.0, 0.0, np.nan, 0.0])
    s = figs.smooth(y, 0.5)
    assert s[0] == 1.0 and s[1] == pytest.approx(1 / 3) and np.isnan(s[2])
    assert np.array_equal(figs.smooth(y, 0.0), y, equal_nan=True)
    with pytest.raises(ValueError, match="smoothing"):
        figs.smooth(y, 1.0)


def test_overlay_colours_by_memory_mode_and_takes_log_axes(store):
    lives = []
    for mode in ("standard", "reversible"):
        rid = store.create_run({"model": "hamiltonian", "memory": mode, "epochs": 1},
                               status="running")
        store.write_metrics(rid, [step(i, saved_bytes=(5 if mode == "standard" else 1) << 20)
                                  for i in range(10)])
        lv = LiveRun(rid)
        lv.refresh(store)
        lives.append(lv)
    fig = figs.overlay_figure(lives, "saved_bytes", by_mode=True, log_y=True, smoothing=0.5)
    assert [t.line.color for t in fig.data] == [figs.color("standard"), figs.color("reversible")]
    assert fig.layout.yaxis.type == "log"
    assert fig.data[0].y.max() == pytest.approx(5.0) and fig.data[1].y.max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown metric"):
        figs.overlay_figure(lives, "bogus")


def test_live_figures_update_in_place_and_rebuild_when_lines_change(store):
    rid = running_run(store, total_steps=100, epochs=10)
    store.write_metrics(rid, [step(i) for i in range(10)])
    live = LiveRun(rid)
    live.refresh(store)
    first = figs.live_figures(live)
    store.write_metrics(rid, [step(i) for i in range(10, 20)], [{"epoch": 1, "test_acc": 0.7,
                                                                 "train_acc": 0.6}])
    live.refresh(store)
    second = figs.live_figures(live, previous=first)
    assert second["loss"] is first["loss"] and len(second["loss"].data[0].x) == 20
    assert second["accuracy"] is not first["accuracy"]  # epoch lines appeared: a new figure
    assert [t.name for t in second["accuracy"].data][-1] == "test (epoch)"
    other = LiveRun(running_run(store))
    other.refresh(store)
    assert figs.live_figures(other, previous=second)["loss"] is not second["loss"]  # new run


def test_eta_is_an_exponential_average_that_one_slow_step_barely_moves(store):
    rid = running_run(store, total_steps=1000)
    times = [0.01 * i for i in range(1, 101)]
    times[60:] = [t + 2.0 for t in times[60:]]  # step 61 took 2 s more (an evaluation)
    store.write_metrics(rid, [step(i, time=t) for i, t in zip(range(1, 101), times)])
    live = LiveRun(rid)
    live.refresh(store)
    p = live.progress()
    # 39 steps after the slow one its weight is 0.05 * 0.95**39 ~ 0.7%: ~0.024 s/step, not 2
    assert 0.01 < p.step_s < 0.04 and p.eta_s == pytest.approx(900 * p.step_s)
    assert p.basis.startswith(f"at {p.step_s:.3g} s/step")
    # a plain mean over the window would say (1 + 2) s / 100 steps = 0.03 s; the last-50-steps
    # window the page used before jumped to 0.05 s/step while the slow step was inside it


def test_no_eta_for_a_run_that_is_not_running(store):
    rid = running_run(store, total_steps=100)
    store.write_metrics(rid, [step(i) for i in range(1, 11)])
    store.finish(rid, "cancelled", reason="cancelled on request")
    live = LiveRun(rid)
    live.refresh(store)
    p = live.progress()
    assert p.step == 10 and p.eta_s is None and p.basis == ""


def test_a_resume_restarts_the_average(store):
    rid = running_run(store, total_steps=100)
    store.write_metrics(rid, [step(i) for i in range(1, 11)]
                        + [step(i, time=0.5 * (i - 11)) for i in range(11, 21)])  # new clock
    live = LiveRun(rid)
    live.refresh(store)
    assert live.progress().step_s == pytest.approx(0.5)
