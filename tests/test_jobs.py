"""Job processes: launch, queue, cancel, stale detection, resume, delete, concurrent launches.

Most tests run the real worker (lab.runs.worker.execute) with a scripted trainer from
tests/fake_worker.py, so they take milliseconds per run; one runs the real Trainer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import wait_for

from lab.runs import jobs, process
from lab.runs.store import LOG_NAME, RunNotFoundError, Store

FAKE = "tests.fake_worker"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LAB_MAX_JOBS", "1")
    with Store() as st:
        yield st
        for run in st.list_runs():  # never leave a worker behind
            if run.pid and run.own_session and process.is_alive(run.pid, run.pid_start):
                os.killpg(run.pid, signal.SIGKILL)


def launch(store: Store, **config) -> str:
    return jobs.launch(config, worker=FAKE, validate=False, store=store)



def wait_status(store: Store, run_id: str, *statuses: str, timeout: float = 30.0):
    def done():
        run = store.get_run(run_id)
        return run if run.status in statuses else None
    return wait_for(done, timeout, f"run {run_id} to be {statuses}")


def test_launch_runs_to_completion(store):
    run_id = launch(store, steps=4, steps_per_epoch=2)
    run = wait_status(store, run_id, "completed", "failed")
    assert run.status == "completed", run.reason
    assert run.final == {"test_acc": 1.0, "steps": 4}
    assert [s["step"] for s in store.step_metrics(run_id)] == [0, 1, 2, 3]
    assert [e["epoch"] for e in store.epoch_metrics(run_id)] == [0, 1]
    events = store.events(run_id)
    last_ckpt = max(e["id"] for e in events if e["kind"] == "checkpoint")
    assert events[-1]["message"] == "running -> completed" and events[-1]["id"] > last_ckpt
    assert run.attempts == 1 and run.pid and run.own_session
    assert (store.run_dir(run_id) / LOG_NAME).exists()
    wait_for(lambda: not process.is_alive(run.pid, run.pid_start), 10, "worker exit")


def test_crash_is_failed_with_traceback_in_log(store):
    run_id = launch(store, steps=5, crash_at=2)
    run = wait_status(store, run_id, "completed", "failed")
    assert run.status == "failed"
    assert run.error == "RuntimeError: scripted crash at step 2"
    log = (store.run_dir(run_id) / LOG_NAME).read_text()
    assert "Traceback (most recent call last)" in log and "scripted crash" in log
    assert len(store.step_metrics(run_id)) == 2  # metrics up to the crash are kept


def test_queue_is_fifo_under_the_limit(store, tmp_path):
    trace = tmp_path / "trace"
    ids = [launch(store, steps=3, step_time=0.05, trace=str(trace)) for _ in range(3)]
    assert [store.get_run(i).status for i in ids[1:]] == ["queued", "queued"]
    runs = [wait_status(store, i, "completed") for i in ids]
    assert [r.started_at for r in runs] == sorted(r.started_at for r in runs)
    assert _max_overlap(trace) == 1


def _max_overlap(trace: Path) -> int:
    """Most trainers alive at one time, from the fake trainers' start/end lines."""
    marks = sorted((float(t), +1 if kind == "start" else -1)
                   for kind, t, _ in (ln.split() for ln in trace.read_text().splitlines()))
    level = peak = 0
    for _, delta in sorted(marks, key=lambda m: (m[0], m[1])):
        level += delta
        peak = max(peak, level)
    return peak


def test_fifty_concurrent_launches_respect_the_limit(store, tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_MAX_JOBS", "2")
    trace = tmp_path / "trace"
    config = {"steps": 1, "step_time": 0.01, "trace": str(trace)}
    seen, stop = [], threading.Event()

    def monitor():
        with Store(store.home) as st:
            while not stop.is_set():
                seen.append(st.count("running"))
                time.sleep(0.005)

    watcher = threading.Thread(target=monitor)
    watcher.start()
    # 20 launches from 4 other processes, 30 from threads here, all fired together
    code = ("import json, sys\nfrom lab.runs import jobs\n"
            f"print(json.dumps([jobs.launch({config!r}, worker={FAKE!r}, validate=False) "
            "for _ in range(5)]))")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              cwd=REPO, text=True) for _ in range(4)]
    barrier = threading.Barrier(30)

    def one(_):
        with Store(store.home) as st:
            barrier.wait()
            return jobs.launch(config, worker=FAKE, validate=False, store=st)

    with ThreadPoolExecutor(30) as pool:
        ids = list(pool.map(one, range(30)))
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        ids += json.loads(out)
    assert len(ids) == len(set(ids)) == 50
    for run_id in ids:
        assert wait_status(store, run_id, "completed", "failed", timeout=120).status == \
            "completed"
    stop.set()
    watcher.join()
    assert max(seen) <= 2 and max(seen) >= 1
    assert _max_overlap(trace) <= 2
    assert len(trace.read_text().splitlines()) == 100


def test_cancel_running_run_checkpoints(store):
    run_id = launch(store, steps=100000, step_time=0.01)
    wait_for(lambda: len(store.step_metrics(run_id)) >= 3 or None, what="steps")
    t0 = time.monotonic()
    assert jobs.cancel(run_id, store=store, grace=20) == "cancelled"
    assert time.monotonic() - t0 < 10  # SIGTERM was honoured, no SIGKILL wait
    run = store.get_run(run_id)
    assert run.cancel_requested_at and "cancelled on request" in run.reason
    ckpt = json.loads((store.run_dir(run_id) / "ckpt.json").read_text())
    assert ckpt["step"] > 0 and run.checkpoint
    assert not process.is_alive(run.pid, run.pid_start)
    with pytest.raises(jobs.JobError, match="only queued or running"):
        jobs.cancel(run_id, store=store)


def test_cancel_kills_a_worker_that_ignores_sigterm(store):
    run_id = launch(store, steps=100000, step_time=0.01, ignore_term=True)
    wait_for(lambda: store.step_metrics(run_id) or None, what="steps")
    assert jobs.cancel(run_id, store=store, grace=0.5) == "cancelled"
    run = store.get_run(run_id)
    assert "killed" in run.reason
    assert not process.is_alive(run.pid, run.pid_start)


def test_cancel_queued_run_never_starts(store):
    first = launch(store, steps=100000, step_time=0.01)
    second = launch(store, steps=1)
    assert store.get_run(second).status == "queued"
    assert jobs.cancel(second, store=store) == "cancelled"
    assert jobs.cancel(first, store=store, grace=10) == "cancelled"
    time.sleep(0.3)
    run = store.get_run(second)
    assert (run.status, run.pid, run.attempts) == ("cancelled", None, 0)


def test_sigterm_without_cancel_is_interrupted(store):
    run_id = launch(store, steps=100000, step_time=0.01)
    wait_for(lambda: store.step_metrics(run_id) or None, what="steps")
    run = store.get_run(run_id)
    os.kill(run.pid, signal.SIGTERM)
    run = wait_status(store, run_id, "interrupted", "cancelled", "failed")
    assert run.status == "interrupted" and run.reason == "stopped by SIGTERM"


def test_killed_worker_is_stale_and_resumes_from_checkpoint(store):
    run_id = launch(store, steps=60, steps_per_epoch=10, step_time=0.02)
    run = wait_for(lambda: (r := store.get_run(run_id)).checkpoint and r.pid and r, what="ckpt")
    assert jobs.reconcile(store) == []  # alive: left alone
    os.killpg(run.pid, signal.SIGKILL)
    wait_for(lambda: not process.is_alive(run.pid, run.pid_start), 10, "death")
    run = store.get_run(run_id)
    assert (run.status, run.final) == ("running", None)  # half-written: not completed
    assert store.list_runs(status="completed") == []
    assert jobs.reconcile(store) == [run_id]
    run = store.get_run(run_id)
    assert run.status == "stale" and "is gone" in run.reason
    saved_step = json.loads((store.run_dir(run_id) / "ckpt.json").read_text())["step"]
    assert saved_step >= 10

    jobs.resume(run_id, store=store)
    run = wait_status(store, run_id, "completed", "failed")
    assert run.status == "completed" and run.attempts == 2
    starts = [json.loads(e["message"]) for e in store.events(run_id) if e["kind"] == "start"]
    assert [s["resumed_from_step"] for s in starts] == [None, saved_step]
    steps = [s["step"] for s in store.step_metrics(run_id)]
    # every step from the checkpoint on exactly once (a kill between the checkpoint file and
    # its callback may lose the few metric rows just before it, never the training state)
    assert steps[steps.index(saved_step):] == list(range(saved_step, 60))
    assert steps[:10] == list(range(10))  # flushed with the first checkpoint


def test_resume_and_delete_refuse_wrong_states(store):
    run_id = launch(store, steps=1)
    wait_status(store, run_id, "completed")
    with pytest.raises(jobs.JobError, match="only cancelled, failed, interrupted, stale"):
        jobs.resume(run_id, store=store)
    live = launch(store, steps=100000, step_time=0.01)
    wait_status(store, live, "running")
    with pytest.raises(jobs.JobError, match="resumed"):
        jobs.resume(live, store=store)
    with pytest.raises(jobs.JobError, match="is running; cancel it first"):
        jobs.delete(live, store=store)
    assert store.get_run(live).status == "running"
    for verb in (jobs.cancel, jobs.resume, jobs.delete):
        with pytest.raises(RunNotFoundError):
            verb("nosuchrun", store=store)


def test_delete_removes_rows_and_folder(store):
    done = launch(store, steps=2)
    wait_status(store, done, "completed")
    folder = store.run_dir(done)
    assert folder.exists()
    jobs.delete(done, store=store)
    assert store.get_run(done) is None and not folder.exists()
    assert store.events(done) == [] and store.step_metrics(done) == []

    live = launch(store, steps=100000, step_time=0.01)
    run = wait_for(lambda: (r := store.get_run(live)).pid and r, what="pid")
    jobs.delete(live, store=store, force=True)
    assert store.get_run(live) is None and not store.run_dir(live).exists()
    assert not process.is_alive(run.pid, run.pid_start)


def test_one_run_per_gpu(store, monkeypatch):
    """Without LAB_MAX_JOBS the limit is the GPU count and each run sees only its own GPU."""
    monkeypatch.delenv("LAB_MAX_JOBS")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(jobs, "_gpu_count", lambda: 2)  # pretend: this machine has two GPUs
    ids = [launch(store, steps=10, step_time=0.05) for _ in range(3)]
    assert [store.get_run(i).status for i in ids] == ["running", "running", "queued"]
    runs = [wait_status(store, i, "completed") for i in ids]
    assert sorted(r.slot for r in runs[:2]) == [0, 1]
    seen = [json.loads(next(e["message"] for e in store.events(i) if e["kind"] == "start"))
            ["cuda_visible"] for i in ids]
    assert sorted(seen[:2]) == ["0", "1"]
    # (the third was started by a worker process, which counts the real GPUs, not the fake two)


def test_is_alive_tells_processes_apart():
    assert process.is_alive(os.getpid())
    assert not process.is_alive(os.getpid(), start=(process.process_start(os.getpid()) or 0) + 1)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for(lambda: not process.is_alive(child.pid), 10, "child exit")  # zombie counts as dead
    assert not process.is_alive(None)


BAD_CONFIGS = [
    ({"model": "no-such-net"}, "unknown model"),
    ({"dataset": "no-such-data"}, "unknown dataset"),
    ({"epochs": 0}, "epochs"),
    ({"batch_size": -8}, "batch_size"),
    ({"lr": 0.0}, "lr"),
    ({"lr": "fast"}, "lr"),
    ({"epohcs": 3}, "unknown TrainConfig key"),
]


@pytest.mark.parametrize("config,message", BAD_CONFIGS)
def test_bad_config_is_refused_before_anything_is_written(store, config, message):
    pytest.importorskip("core.training")
    with pytest.raises((ValueError, TypeError), match=message):
        jobs.launch(config, store=store)
    with pytest.raises((ValueError, TypeError), match=message):
        jobs.start_foreground(config, store=store)
    assert store.list_runs() == []
    assert list(store.runs_dir.iterdir()) == []


def test_real_training_run_end_to_end(store, monkeypatch):
    """The real worker and Trainer: one small epoch on digits as a background job."""
    pytest.importorskip("core.training")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    config = {"epochs": 1, "fraction": 0.3, "batch_size": 64, "device": "cpu",
              "model_kwargs": {"blocks": [1, 1, 1], "widths": [8, 8, 8, 8], "h": 1.0}}
    run_id = jobs.launch(config, store=store)
    assert store.get_run(run_id).config["model"] == "hamiltonian"  # defaults filled in
    run = wait_status(store, run_id, "completed", "failed", "stale", timeout=120)
    assert run.status == "completed", (run.error, (store.run_dir(run_id) / LOG_NAME).read_text())
    epochs = store.epoch_metrics(run_id)
    assert len(epochs) == 1 and 0.0 <= epochs[0]["test_acc"] <= 1.0
    steps = store.step_metrics(run_id)
    assert len(steps) == run.final["step"] and steps[-1]["loss"] > 0
    assert run.final["test_acc"] == epochs[0]["test_acc"]
    assert (store.run_dir(run_id) / "model.safetensors").exists()
    assert run.checkpoint.endswith("model.safetensors")
