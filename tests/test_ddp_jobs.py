"""Multi-process (DDP) runs launched from the lab: torchrun under a supervising worker, two gloo
ranks on CPU; the queue counts processes; cancel, SIGKILL of a rank, resume; bad nproc refused."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import torch
from conftest import wait_for
from safetensors.torch import load_file
from test_grid import SCHEMA_V2

from lab.cli import main
from lab.runs import jobs, process
from lab.runs import store as store_module
from lab.runs.store import Store

DDP_WORKER = "tests.ddp_worker"  # the real worker and Trainer, plus each rank's final weights

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="no torch.distributed")


def tiny(**overrides) -> dict:
    """A model and data small enough for a step in milliseconds (11 steps/epoch on 2 ranks)."""
    return {"model": "hamiltonian", "model_kwargs": {"blocks": [1, 1], "widths": [8, 8, 16]},
            "dataset": "digits", "fraction": 0.25, "epochs": 2, "batch_size": 32, "lr": 0.05,
            "device": "cpu", "memory": "standard", "checkpoint_every": 4, **overrides}


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LAB_MAX_JOBS", "2")
    monkeypatch.setenv("LAB_TEST_REPLICAS", str(tmp_path))
    with Store() as st:
        yield st
        for run in st.list_runs():  # never leave a supervisor behind (its ranks die with it)
            if run.pid and run.own_session and process.is_alive(run.pid, run.pid_start):
                os.killpg(run.pid, signal.SIGKILL)


def launch(store: Store, nproc: int = 2, **overrides) -> str:
    return jobs.launch(tiny(**overrides), nproc=nproc, worker=DDP_WORKER, store=store)



def wait_done(store: Store, run_id: str, timeout: float = 240.0):
    def done():
        run = store.get_run(run_id)
        return run if run.status not in ("queued", "running") else None
    return wait_for(done, timeout, f"run {run_id} to end")


def children(pid: int) -> dict[int, int]:
    """{pid: RANK} of the processes whose parent is `pid` and that torchrun gave a RANK."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            if ppid != pid:
                continue
            env = dict(kv.split("=", 1) for kv in (entry / "environ").read_text().split("\0")
                       if "=" in kv)
        except (OSError, ValueError):
            continue
        if "RANK" in env:
            out[int(entry.name)] = int(env["RANK"])
    return out


def ranks_of(store: Store, run_id: str, n: int = 2) -> dict[int, int]:
    def found():
        run = store.get_run(run_id)
        kids = children(run.pid) if run.pid else {}
        return kids if len(kids) == n else None
    return wait_for(found, 120, f"{n} ranks of run {run_id}")


def steps_done(store: Store, run_id: str) -> int:
    rows = store.step_metrics(run_id)
    return rows[-1]["step"] if rows else 0


def test_two_rank_run_from_the_lab_completes_with_identical_replicas(store, tmp_path):
    run_id = launch(store)
    run = wait_done(store, run_id)
    assert run.status == "completed", (run.reason, run.error)
    assert run.nproc == 2
    # rank 0 wrote the curves: 2 epochs of 11 steps (global batch 32 = 16 per rank)
    assert [m["step"] for m in store.step_metrics(run_id)] == list(range(1, 23))
    epochs = store.epoch_metrics(run_id)
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all(0 <= e["test_acc"] <= 1 for e in epochs)
    start = next(e for e in store.events(run_id) if e["kind"] == "start"
                 and e["message"].startswith("{"))
    assert '"world_size": 2' in start["message"] and '"steps_per_epoch": 11' in start["message"]
    # the two replicas agree bitwise, and with the checkpoint rank 0 wrote
    r0, r1 = (load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1))
    ckpt = load_file(store.run_dir(run_id) / "model.safetensors")
    assert r0.keys() == r1.keys() == ckpt.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]) and torch.equal(r0[k], ckpt[k]), k
    # only rank 0 writes the run folder
    assert sorted(p.name for p in store.run_dir(run_id).iterdir()) == [
        "config.json", "meta.json", "model.safetensors", "state.pt", "worker.log"]


# two launches: ~25 s of CPU (three torch imports each); the issue asks for both by default
def test_cancel_stops_every_rank_with_a_checkpoint_and_resume_completes(store):
    run_id = launch(store, epochs=10)
    ranks = ranks_of(store, run_id)
    assert sorted(ranks.values()) == [0, 1]
    wait_for(lambda: store.get_run(run_id).checkpoint, 120, "a first checkpoint (step 4)")
    assert jobs.cancel(run_id, store=store, grace=30) == "cancelled"
    for pid in ranks:
        assert not process.is_alive(pid), f"rank {ranks[pid]} (pid {pid}) survived the cancel"
    run = store.get_run(run_id)
    assert not process.is_alive(run.pid, run.pid_start)
    assert "cancelled on request" in run.reason
    stopped_at = steps_done(store, run_id)
    meta = json.loads((store.run_dir(run_id) / "meta.json").read_text())
    assert (meta["status"], meta["step"]) == ("interrupted", stopped_at)  # saved where it stopped
    assert 4 <= stopped_at < 110
    jobs.resume(run_id, store=store)
    run = wait_done(store, run_id)
    assert run.status == "completed", (run.reason, run.error)
    assert run.nproc == 2 and run.attempts == 2
    assert steps_done(store, run_id) == 110
    assert any(e["kind"] == "resume" for e in store.events(run_id))


# two launches: ~25 s of CPU (three torch imports each); the issue asks for both by default
def test_sigkill_of_rank_1_fails_the_run_naming_it_and_resume_completes(store):
    run_id = launch(store, epochs=10)
    ranks = ranks_of(store, run_id)
    wait_for(lambda: store.get_run(run_id).checkpoint, 120, "a first checkpoint")
    rank1 = next(pid for pid, rank in ranks.items() if rank == 1)
    os.kill(rank1, signal.SIGKILL)
    killed = time.monotonic()
    run = wait_done(store, run_id, timeout=30)
    assert time.monotonic() - killed < 30
    assert run.status == "failed"
    assert "lost rank 1" in run.reason and "SIGKILL" in run.reason, run.reason
    assert run.error == "rank 1 lost: SIGKILL"
    wait_for(lambda: not any(process.is_alive(p) for p in ranks), 30, "rank 0 to exit")
    jobs.resume(run_id, store=store)
    run = wait_done(store, run_id)
    assert run.status == "completed", (run.reason, run.error)
    assert steps_done(store, run_id) == 110


def test_bad_nproc_is_refused_and_nothing_is_written(store, monkeypatch, capsys):
    for bad, message in ((0, "below 1"), (-2, "below 1")):
        with pytest.raises(ValueError, match=message):
            launch(store, nproc=bad)
    with pytest.raises(TypeError, match="integer"):
        launch(store, nproc="2")
    monkeypatch.setattr(jobs, "_gpu_count", lambda: 1)  # a machine with one GPU
    assert jobs.visible_devices() == 1 and jobs.max_nproc(tiny(device="cuda")) == 1
    for device in ("cuda", "auto"):
        with pytest.raises(ValueError, match=r"nproc=2 .* 1 CUDA device"):
            launch(store, nproc=2, device=device)
    assert jobs.max_nproc(tiny(device="cpu")) == os.cpu_count()  # gloo: one per core
    assert store.list_runs() == []
    with pytest.raises(SystemExit) as e:
        main(["train", "--nproc", "0", "--device", "cpu"])
    assert e.value.code == 2 and "nproc=0 is below 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--nproc", "2", "--device", "cuda"])
    assert "1 CUDA device(s) visible" in capsys.readouterr().err
    assert store.list_runs() == []


def test_resume_refuses_another_world_size(store, capsys):
    run_id = store.create_run(tiny(), status="running", nproc=2)
    store.finish(run_id, "interrupted", reason="test")
    with pytest.raises(SystemExit):
        main(["train", "--resume", run_id, "--nproc", "1"])
    assert "same world size" in capsys.readouterr().err
    assert store.get_run(run_id).status == "interrupted"


def test_the_queue_counts_processes_as_slots(store):
    ids = {name: store.create_run({}, nproc=n) for name, n in
           (("two", 2), ("one", 1), ("three", 3), ("last", 1))}
    # 3 slots: "two" (slots 0-1) and "one" (slot 2) start; "three" waits and, FIFO, so does "last"
    assert store.claim_queued(3) == [(ids["two"], 0), (ids["one"], 2)]
    assert store.claim_queued(3) == []
    store.finish(ids["one"], "completed")
    assert store.claim_queued(3) == []  # one slot free, "three" needs three
    store.finish(ids["two"], "completed")
    assert store.claim_queued(3) == [(ids["three"], 0)]
    store.finish(ids["three"], "completed")
    assert store.claim_queued(3) == [(ids["last"], 0)]
    # more processes than slots: it waits until nothing runs, then runs alone
    big, small = store.create_run({}, nproc=4), store.create_run({}, nproc=1)
    assert store.claim_queued(2) == []  # "last" still runs
    store.finish(ids["last"], "completed")
    assert store.claim_queued(2) == [(big, 0)]
    assert store.claim_queued(2) == []
    store.finish(big, "completed")
    assert store.claim_queued(2) == [(small, 0)]


def test_a_version_1_store_gains_the_nproc_column(tmp_path):
    home = tmp_path / "old"
    home.mkdir()
    con = sqlite3.connect(home / "lab.db")  # the schema as version 1 made it: v2's, no nproc
    v1 = re.sub(r"final TEXT,.*\n.*nproc INTEGER[^\n]*", "final TEXT", SCHEMA_V2)
    assert "nproc" not in v1
    con.executescript(v1 + "; PRAGMA user_version = 1;")
    con.execute("INSERT INTO runs (id, config, status, created_at) VALUES ('abc', '{}', 'queued',"
                " 0)")
    con.commit()
    con.close()
    run_id = "abc"
    with Store(home) as st:
        assert st.get_run(run_id).nproc == 1
        assert st.get_run(st.create_run({}, nproc=3)).nproc == 3
    con = sqlite3.connect(home / "lab.db")
    assert con.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION
    con.close()
