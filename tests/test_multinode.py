"""Runs across machines, tried on one: two loopback "nodes" (gloo) at 1 and 2 processes each.

Node 0 is `LAB_NNODES=2 LAB_RDZV_ENDPOINT=127.0.0.1:PORT python -m lab train --nproc P ...`, the
other `python -m lab join RUN` with the same LAB_HOME. A node nobody joins stops after the join
timeout with a message naming the endpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import wait_for

from lab.cli import main
from lab.runs import jobs, multinode
from lab.runs.ports import free_port
from lab.runs.store import Store

REPO = Path(__file__).resolve().parent.parent
TINY = ["--model", "hamiltonian", "--blocks", "1,1", "--widths", "8,8,16", "--fraction", "0.25",
        "--epochs", "1", "--batch-size", "32", "--device", "cpu", "--memory", "standard"]
BOTH_EXIT_S = 300  # torch imported by 2 launchers and up to 4 ranks on a loaded 2-core machine

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="no torch.distributed")


@pytest.fixture
def env(tmp_path, monkeypatch) -> dict[str, str]:
    """Both nodes' environment: the same LAB_HOME, two nodes, one loopback endpoint."""
    values = {"LAB_HOME": str(tmp_path / "home"), "LAB_NNODES": "2",
              "LAB_RDZV_ENDPOINT": f"127.0.0.1:{free_port()}", "OMP_NUM_THREADS": "1",
              "LAB_MAX_JOBS": "2"}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return dict(os.environ)


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "lab", *argv], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def the_run(home: str) -> str:
    def created():
        with Store(home) as store:
            runs = store.list_runs()
        return runs[0].id if runs else None
    return wait_for(created, 120, "node 0 to create its run", poll=0.2)


def stop(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p is not None and p.poll() is None:
            os.killpg(p.pid, 9)
            p.wait()


@pytest.mark.parametrize("per_node", [1, 2])
def test_two_loopback_nodes_train_one_run(env, tmp_path, per_node):
    node0 = start(["train", "--nproc", str(per_node), *TINY], env, tmp_path / "node0.log")
    node1 = None
    try:
        run_id = the_run(env["LAB_HOME"])
        node1 = start(["join", run_id[:6]], env, tmp_path / "node1.log")  # a prefix will do
        codes = [p.wait(BOTH_EXIT_S) for p in (node0, node1)]
        logs = [(tmp_path / f"node{i}.log").read_text() for i in (0, 1)]
        assert codes == [0, 0], logs
        assert f"python -m lab join {run_id}" in logs[0]  # node 0 says how to join
        with Store(env["LAB_HOME"]) as store:
            run = store.require_run(run_id)
            assert run.status == "completed", (run.reason, run.error)
            assert run.nproc == per_node
            (start_info,) = [json.loads(e["message"]) for e in store.events(run_id)
                             if e["kind"] == "start" and e["message"].startswith("{")]
        assert start_info["world_size"] == 2 * per_node
        rdzv = multinode.read(Path(env["LAB_HOME"]) / "runs" / run_id)
        assert rdzv["nnodes"] == 2 and rdzv["nproc_per_node"] == per_node
    finally:
        stop(node0, node1)


def test_a_node_nobody_joins_stops_naming_the_endpoint(env, tmp_path):
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "lab", "join", "norun1", "--timeout", "5"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 1, out.stderr
    assert env["LAB_RDZV_ENDPOINT"] in out.stderr and "within 5 s" in out.stderr
    assert "Traceback" not in out.stderr
    assert time.monotonic() - started < 120


def test_node_0_alone_records_the_run_failed_naming_the_endpoint(env, tmp_path):
    env = {**env, "LAB_JOIN_TIMEOUT": "5"}
    node0 = start(["train", *TINY], env, tmp_path / "node0.log")  # --nproc 1: still torchrun
    try:
        assert node0.wait(180) == 1, (tmp_path / "node0.log").read_text()
    finally:
        stop(node0)
    with Store(env["LAB_HOME"]) as store:
        (run,) = store.list_runs()
    assert run.status == "failed"
    assert env["LAB_RDZV_ENDPOINT"] in run.reason and f"python -m lab join {run.id}" in run.reason


@pytest.mark.parametrize("variables, message", [
    ({"LAB_NNODES": "2", "LAB_RDZV_ENDPOINT": ""}, "needs LAB_RDZV_ENDPOINT=host:port"),
    ({"LAB_NNODES": "two"}, "LAB_NNODES='two' must be a whole number"),
    ({"LAB_NNODES": "2", "LAB_RDZV_ENDPOINT": "node0"}, "is not host:port"),
])
def test_a_multinode_launch_without_a_clear_plan_is_refused(env, monkeypatch, capsys, variables,
                                                            message):
    for k, v in variables.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(jobs, "_spawn", lambda *a, **k: None)
    with pytest.raises(ValueError, match=message):
        jobs.launch({"device": "cpu"})
    with pytest.raises(SystemExit) as exc:
        main(["train", "--detach", *TINY])
    assert exc.value.code == 2 and message.split("=")[0] in capsys.readouterr().err
    with Store() as store:
        assert store.list_runs() == []
