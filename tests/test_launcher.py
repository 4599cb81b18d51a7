"""The warm run launcher (lab.runs.launcher): runs forked from a process with torch imported.

Each run stays its own process (own session and pid in the store); a launcher that dies takes no
run with it and the next launch starts the plain way; a request it cannot serve exactly as a
fresh process would is declined.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import wait_for

from lab.runs import jobs, launcher, process
from lab.runs.store import LOG_NAME, Store

FAKE = "tests.fake_worker"
REPO = Path(__file__).resolve().parent.parent
READY_S = 180  # importing torch, torchvision and scikit-learn on a loaded 2-core machine


def ppid(pid: int) -> int:
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text[text.rindex(")") + 2:].split()[1])


def wait_ready(home: Path) -> dict:
    """The launcher's state once it answers on its socket."""
    wait_for(lambda: launcher.ready(home), READY_S, "the launcher to answer", poll=0.1)
    return launcher.running(home)


def finish(store: Store, run_id: str, timeout: float = 60.0):
    def done():
        run = store.require_run(run_id)
        return run if run.status not in ("queued", "running") else None
    return wait_for(done, timeout, f"run {run_id} to end", poll=0.05)


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("LAB_HOME", str(path))
    monkeypatch.setenv("LAB_MAX_JOBS", "2")
    with Store(path) as store:
        yield store
        for run in store.list_runs():  # never leave a worker behind
            if run.pid and run.own_session and process.is_alive(run.pid, run.pid_start):
                os.killpg(run.pid, signal.SIGKILL)
    launcher.stop(path, grace=5)


@pytest.fixture
def warm(home):
    launcher.ensure_started(home.home)
    return wait_ready(home.home)


def test_runs_are_forked_own_processes_that_complete_and_cancel(home, warm):
    run_id = jobs.launch({"steps": 4, "step_time": 0.05}, worker=FAKE, validate=False,
                         store=home)
    run = home.require_run(run_id)
    assert run.pid and run.pid != warm["pid"] and run.own_session
    assert ppid(run.pid) == warm["pid"], "not forked by the launcher"
    assert os.getpgid(run.pid) == run.pid  # its own session: cancel signals its whole group
    run = finish(home, run_id)
    assert run.status == "completed", run.reason
    assert [s["step"] for s in home.step_metrics(run_id)] == [0, 1, 2, 3]

    slow = jobs.launch({"steps": 10_000, "step_time": 0.05}, worker=FAKE, validate=False,
                       store=home)
    wait_for(lambda: home.step_metrics(slow), 30, "the first step")
    assert jobs.cancel(slow, store=home, grace=10) == "cancelled"
    assert "cancelled on request" in home.require_run(slow).reason
    log = (home.home / launcher.LOG_NAME).read_text()
    wait_for(lambda: f"run process {run.pid} exited (0)" in (home.home / launcher.LOG_NAME)
             .read_text(), 10, "the launcher to reap the run")
    assert "declined" not in log


def test_the_real_worker_trains_in_a_forked_process(home, warm):
    config = {"device": "cpu", "epochs": 1, "fraction": 0.2, "memory": "reversible",
              "model_kwargs": {"blocks": [1, 1, 1], "widths": [8, 8, 8, 8]}}
    run_id = jobs.launch(config, store=home)
    assert ppid(home.require_run(run_id).pid) == warm["pid"]
    run = finish(home, run_id, timeout=300)
    assert run.status == "completed", (run.reason, run.error,
                                       (home.run_dir(run_id) / LOG_NAME).read_text()[-2000:])
    assert run.final["test_acc"] is not None


def test_a_dead_launcher_takes_no_run_with_it_and_is_replaced(home, warm):
    run_id = jobs.launch({"steps": 60, "step_time": 0.05}, worker=FAKE, validate=False,
                         store=home)
    run = home.require_run(run_id)
    assert ppid(run.pid) == warm["pid"]
    wait_for(lambda: home.step_metrics(run_id), 30, "the first step")
    os.kill(warm["pid"], signal.SIGKILL)
    wait_for(lambda: not process.is_alive(warm["pid"], warm["pid_start"]), 10,
             "the launcher to die")
    assert finish(home, run_id).status == "completed"  # the orphan trained on
    assert len(home.step_metrics(run_id)) == 60

    plain = jobs.launch({"steps": 2}, worker=FAKE, validate=False, store=home)
    assert ppid(home.require_run(plain).pid) == os.getpid()  # spawned the plain way
    assert finish(home, plain).status == "completed"

    fresh = launcher.ensure_started(home.home)  # what the app does on its next page run
    assert fresh["pid"] != warm["pid"] and not launcher.ready(home.home)
    # launched at once: waits for the launcher that is still importing, then forks there
    forked = jobs.launch({"steps": 2}, worker=FAKE, validate=False, store=home)
    assert ppid(home.require_run(forked).pid) == fresh["pid"]
    assert finish(home, forked).status == "completed"


def test_declines_what_a_fresh_process_would_do_differently(home, warm, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7" if os.environ.get("OMP_NUM_THREADS") != "7"
                       else "5")  # read when libraries load: the launcher's copy differs
    run_id = jobs.launch({"steps": 2}, worker=FAKE, validate=False, store=home)
    assert ppid(home.require_run(run_id).pid) == os.getpid()
    assert finish(home, run_id).status == "completed"
    assert "declined" in (home.home / launcher.LOG_NAME).read_text()
    assert "OMP_NUM_THREADS" in (home.home / launcher.LOG_NAME).read_text()
    monkeypatch.undo()


def test_reused_by_a_second_owner_and_stopped_when_owners_are_gone(tmp_path):
    """Started by one process, reused by another: it stops once both are gone, its runs not."""
    home = tmp_path / "home"
    env = dict(os.environ, LAB_HOME=str(home))
    idle = 2.0
    code = ("import sys, time; from lab.runs import launcher; "
            f"launcher.IDLE_EXIT_S = {idle}; "
            "print(launcher.ensure_started()['pid'], flush=True); time.sleep(600)")
    first = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, text=True)
    second = None
    try:
        pid = int(first.stdout.readline())
        state = wait_ready(home)
        second = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env,
                                  stdout=subprocess.PIPE, text=True)
        assert int(second.stdout.readline()) == pid  # reused, not a second launcher
        assert len(launcher.read_state(home)["owners"]) == 2
        with Store(home) as store:
            run_id = jobs.launch({"steps": 3000, "step_time": 0.1}, worker=FAKE, validate=False,
                                 store=store)
            assert ppid(store.require_run(run_id).pid) == pid
            first.kill()
            first.wait()
            time.sleep(idle + 3)
            assert process.is_alive(pid, state["pid_start"]), "stopped while an owner was alive"
            second.kill()
            second.wait()
            wait_for(lambda: not process.is_alive(pid, state["pid_start"]), idle + 30,
                     "the launcher to stop after its owners")
            run = store.require_run(run_id)  # runs outlive it
            assert run.status == "running" and process.is_alive(run.pid, run.pid_start)
            steps = len(store.step_metrics(run_id))
            wait_for(lambda: len(store.step_metrics(run_id)) > steps, 30, "more steps")
            assert jobs.cancel(run_id, store=store) == "cancelled"
        assert "its runs keep running" in (home / launcher.LOG_NAME).read_text()
        assert not launcher.socket_path(home).exists()
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        launcher.stop(home, grace=5)


def test_pages_start_none_when_disabled(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_LAUNCHER", "0")
    assert launcher.warm(tmp_path) is None
    assert launcher.read_state(tmp_path) is None
