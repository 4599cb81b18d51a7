"""DistributedDataParallel on CPU: two processes under torchrun (gloo) train one model, stop
together when one of them is asked to, and resume exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]

# Runs in each of the two processes: an uninterrupted run, then a run that rank 0 stops at
# step 13 (mid-epoch), then its resume. The process group is made here so that the three fits
# share it (a trainer that finds a group uses it and leaves it alone).
SCRIPT = """
import json, os, sys, torch
import torch.distributed as dist
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from safetensors.torch import save_file
from test_training import Recorder, tiny_config, tiny_data
from core.training import Trainer

out = sys.argv[1]
dist.init_process_group("gloo")
rank = dist.get_rank()
report = {{}}
for name, run, resume in (("straight", "a", False), ("stopped", "b", False),
                          ("resumed", "b", True)):
    def stop(m):
        if name == "stopped" and m["step"] == 13:
            trainer.request_stop("rank 0 asked")
    rec = Recorder(on_step=stop)
    trainer = Trainer(tiny_config(epochs=4, lr=0.1), os.path.join(out, run), [rec],
                      data=tiny_data())
    result = trainer.fit(resume=resume)
    state = {{k: v.contiguous() for k, v in trainer.model.state_dict().items()}}
    save_file(state, os.path.join(out, f"{{name}}{{rank}}.safetensors"))
    report[name] = {{"status": result.status, "reason": result.reason, "step": result.final["step"],
                    "world": trainer._dist.world_size, "epochs": rec.epochs,
                    "starts": rec.starts, "steps": len(rec.steps)}}
with open(os.path.join(out, f"rank{{rank}}.json"), "w") as f:
    json.dump(report, f)
dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    script = tmp / "ddp_train.py"
    script.write_text(SCRIPT.format(tests=str(REPO / "tests")))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script), str(tmp)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    reports = [json.loads((tmp / f"rank{r}.json").read_text()) for r in (0, 1)]
    return tmp, reports


def weights(tmp: Path, name: str, rank: int) -> dict:
    return load_file(tmp / f"{name}{rank}.safetensors")


def assert_equal_states(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="no torch.distributed")


def test_two_cpu_processes_train_identical_replicas(ddp_run):
    tmp, (r0, r1) = ddp_run
    assert [r["straight"]["status"] for r in (r0, r1)] == ["completed", "completed"]
    assert [r["straight"]["world"] for r in (r0, r1)] == [2, 2]
    # Callbacks run on rank 0 only.
    assert r0["straight"]["steps"] > 0 and r1["straight"]["steps"] == 0
    assert r1["straight"]["epochs"] == [] and r1["straight"]["starts"] == []
    start = r0["straight"]["starts"][0]
    # The global batch of 32 is split 16 + 16: 359 digits -> 180 per rank -> 11 steps.
    assert start["world_size"] == 2 and start["steps_per_epoch"] == 11
    # Parameters and batch-norm statistics agree bitwise across the two processes.
    assert_equal_states(weights(tmp, "straight", 0), weights(tmp, "straight", 1))
    epochs = r0["straight"]["epochs"]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert all(0 <= e["test_acc"] <= 1 for e in epochs)
    # Only rank 0 wrote the run folder; its checkpoint holds every rank's RNG state.
    run = tmp / "a"
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "meta.json",
                                                     "model.safetensors", "state.pt"]
    assert_equal_states(load_file(run / "model.safetensors"), weights(tmp, "straight", 0))
    rng = torch.load(run / "state.pt", weights_only=True)["rng"]["torch_cpu"]
    assert len(rng) == 2 and not torch.equal(rng[0], rng[1])  # dropout differs per rank


def test_a_stop_on_rank_0_stops_both_and_the_resume_is_exact(ddp_run):
    tmp, (r0, r1) = ddp_run
    for r in (r0, r1):  # rank 1 was never asked, yet stopped at the same step
        assert (r["stopped"]["status"], r["stopped"]["step"]) == ("interrupted", 13)
        assert r["resumed"]["status"] == "completed"
    assert "rank 0 asked" in r0["stopped"]["reason"]
    assert "another process" in r1["stopped"]["reason"]
    assert r0["resumed"]["starts"][0]["resumed_from_step"] == 13
    for rank in (0, 1):
        assert_equal_states(weights(tmp, "resumed", rank), weights(tmp, "straight", rank))
