"""The run verbs of `python -m lab`: train, runs, show, export, cancel, delete."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import usage_error

from lab.cli import main
from lab.runs import jobs, process
from lab.runs.store import Store

REPO = Path(__file__).resolve().parent.parent
TINY = ["--epochs", "1", "--fraction", "0.3", "--blocks", "1,1,1", "--widths", "8,8,8,8",
        "--device", "cpu"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LAB_MAX_JOBS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with Store() as st:
        yield st
        for run in st.list_runs():  # never leave a worker behind
            if run.pid and run.own_session and process.is_alive(run.pid, run.pid_start):
                os.killpg(run.pid, 9)


def finished_run(store: Store, status: str = "completed") -> str:
    run_id = store.create_run({"model": "hamiltonian-74", "dataset": "digits", "epochs": 2},
                              status="running")
    store.write_metrics(run_id, steps=[
        {"step": 1, "epoch": 1, "loss": 2.25, "acc": 0.125, "epoch_frac": 0.5},
        {"step": 2, "epoch": 1, "loss": 1.5, "acc": 0.5, "epoch_frac": 1.0}],
        epochs=[{"epoch": 1, "train_loss": 1.75, "test_acc": 0.975},
                {"epoch": 2, "train_loss": 1.25, "test_acc": 0.95}])
    store.finish(run_id, status, reason="test", final={"test_acc": 0.95, "step": 2}
                 if status == "completed" else None, error="Boom: x" if status == "failed"
                 else None)
    return run_id


def test_runs_table(home, capsys):
    assert main(["runs"]) == 0
    assert "no runs yet" in capsys.readouterr().err
    done, failed = finished_run(home), finished_run(home, "failed")
    assert main(["runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "MODEL", "DATASET", "EPOCHS", "BEST", "ACC",
                                "FINAL", "ACC", "STARTED", "DURATION"]
    assert lines[1].split()[:7] == [failed, "failed", "hamiltonian-74", "digits", "2", "97.50%",
                                    "95.00%"]
    assert lines[2].split()[:7] == [done, "completed", "hamiltonian-74", "digits", "2",
                                    "97.50%", "95.00%"]
    assert main(["runs", "--status", "failed"]) == 0
    assert done not in capsys.readouterr().out


def test_show_prints_config_and_final_metrics(home, capsys):
    run_id = finished_run(home)
    assert main(["show", run_id[:6]]) == 0
    out = capsys.readouterr().out
    assert f"run {run_id}" in out and "status:   completed" in out
    assert '  model: "hamiltonian-74"' in out and "  epochs: 2" in out
    assert "final metrics:" in out and "  test_acc: 0.95" in out
    assert "97.50%" in out  # the epoch table


def test_export_csv(home, capsys, tmp_path):
    run_id = finished_run(home)
    assert main(["export", run_id]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["kind"] for r in rows] == ["step", "step", "epoch", "epoch"]
    assert [r["step"] for r in rows[:2]] == ["1", "2"]
    assert rows[0]["loss"] == "2.25" and rows[0]["epoch_frac"] == "0.5"
    assert [r["test_acc"] for r in rows[2:]] == ["0.975", "0.95"]
    assert rows[3]["epoch"] == "2" and rows[3]["train_loss"] == "1.25"
    out = tmp_path / "m.csv"
    assert main(["export", run_id, "-o", str(out)]) == 0
    assert len(list(csv.DictReader(out.open()))) == 4


@pytest.mark.parametrize("argv", [["show", "nosuch"], ["export", "nosuch"],
                                  ["cancel", "nosuch"], ["delete", "nosuch"],
                                  ["train", "--resume", "nosuch"]])
def test_unknown_run_is_exit_2_without_traceback(home, capsys, argv):
    finished_run(home)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no run 'nosuch'" in err and "Traceback" not in err


def test_cancel_and_delete_verbs(home, capsys):
    run_id = finished_run(home)
    assert main(["cancel", run_id]) == 1
    assert "only queued or running runs can be cancelled" in capsys.readouterr().err
    home.create_run({"model": "m"})
    home.claim_queued(limit=1)  # a fake running run holds the only slot, so the next one waits
    queued = home.create_run({"model": "m"})
    assert main(["cancel", queued]) == 0
    assert f"run {queued} cancelled" in capsys.readouterr().out
    assert main(["delete", run_id]) == 0
    assert home.get_run(run_id) is None and not home.run_dir(run_id).exists()


def test_cancel_all_stops_every_active_run_and_nothing_else(home, capsys):
    """The command the Home page and README give for runs that outlive the app."""
    done = finished_run(home)
    running, queued = (jobs.launch({"steps": 10_000, "step_time": 0.05}, worker="tests.fake_worker",
                                   validate=False, store=home) for _ in range(2))
    assert [home.require_run(r).status for r in (running, queued)] == ["running", "queued"]
    pid = home.require_run(running).pid or wait_for_pid(home, running)
    assert main(["cancel", "--all", "--grace", "5"]) == 0
    out = capsys.readouterr().out
    assert f"run {running} cancelled" in out and f"run {queued} cancelled" in out
    assert [home.require_run(r).status for r in (running, queued)] == ["cancelled"] * 2
    assert home.require_run(done).status == "completed" and not process.is_alive(pid)
    assert main(["cancel", "--all"]) == 0
    assert "no queued or running runs" in capsys.readouterr().err


def wait_for_pid(store: Store, run_id: str) -> int:
    deadline = time.monotonic() + 30
    while not store.require_run(run_id).pid:
        assert time.monotonic() < deadline, "the worker never recorded its pid"
        time.sleep(0.05)
    return store.require_run(run_id).pid


@pytest.mark.parametrize("argv", [["cancel"], ["cancel", "abc", "--all"]])
def test_cancel_needs_one_run_or_all(home, capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and "name one RUN to cancel, or --all" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["train", "--memory", "bogus"], "choose from 'standard', 'checkpoint', 'reversible'"),
    (["train", "--epochs", "x"], "invalid int value"),
    (["train", "--blocks", "2,x"], "comma-separated positive integers"),
    (["train", "--model", "no-such-net"], "choose one of: "),
    (["train", "--epochs", "0"], "epochs=0 must be a whole number >= 1"),
    (["train", "--lr", "-1", "--detach"], "lr=-1.0 is not allowed"),
    (["train", "--optimizer", "lion"], "choose one of: sgd, adamw"),
    (["train", "--resume", "abc", "--epochs", "3"], "drop --epochs"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_flags_are_argparse_errors(home, capsys, argv, message):
    assert message in usage_error(main, argv, capsys)
    assert home.list_runs() == [] and list(home.runs_dir.iterdir()) == []


def test_train_foreground_with_progress_bar(home):
    """`python -m lab train` in a subprocess: the CLI process is the run's process."""
    pytest.importorskip("core.training")
    proc = subprocess.run([sys.executable, "-m", "lab", "train", *TINY], cwd=REPO, text=True,
                          capture_output=True, timeout=300, env=os.environ)
    assert proc.returncode == 0, proc.stderr
    assert "epoch 1: train loss" in proc.stderr and "step/s" in proc.stderr  # tqdm bar
    (run,) = home.list_runs()
    assert run.status == "completed" and run.final["test_acc"] > 0
    assert not run.own_session  # it ran in the CLI's own process
    assert f"run {run.id} completed: test acc" in proc.stderr
    assert len(home.step_metrics(run.id)) == run.final["step"]


def test_detach_cancel_then_resume_in_foreground(home, capsys):
    """--detach queues a real background job; cancel checkpoints it; --resume finishes it."""
    pytest.importorskip("core.training")
    argv = ["train", "--detach", "--epochs", "2", "--fraction", "0.5", "--blocks", "1,1,1",
            "--widths", "8,8,8,8", "--device", "cpu", "--batch-size", "16", "--name", "bg"]
    assert main(argv) == 0
    run_id = capsys.readouterr().out.strip()
    run = home.get_run(run_id)
    assert run.name == "bg" and run.config["epochs"] == 2 and run.config["batch_size"] == 16
    deadline = time.monotonic() + 120
    while len(home.step_metrics(run_id)) < 5:
        assert home.get_run(run_id).status == "running", home.get_run(run_id).reason
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert main(["cancel", run_id]) == 0
    assert f"run {run_id} cancelled" in capsys.readouterr().out
    run = home.get_run(run_id)
    assert "cancelled on request" in run.reason and run.checkpoint
    assert main(["train", "--resume", run_id[:6]]) == 0
    run = home.get_run(run_id)
    assert run.status == "completed" and run.attempts == 2
    assert "resuming at step" in " ".join(e["message"] or "" for e in home.events(run_id))
    assert len(home.epoch_metrics(run_id)) == 2
