"""The torchrun supervisor of a run of N > 1 processes, `python -m lab.runs.worker --nproc N RUN`.

It runs torchrun (`torch.distributed.run`, in-process, c10d rendezvous on loopback), which starts
N copies of `python -m lab.runs.worker RUN_ID` as ranks; for a run across machines (launched with
LAB_NNODES > 1, any N) the rendezvous recorded in the run's folder (lab.runs.multinode) makes it
node 0, which the others join with `python -m lab join RUN_ID`. Rank 0 records the run as a single
process would; the other ranks train their shard and write nothing. The supervisor is the run's
pid: a cancel's SIGTERM reaches it, torchrun forwards it to every rank (each its own process
group), and they stop together with a checkpoint. torchrun owns this process's signal handlers
while it runs and raises SignalException once the ranks are down; the supervisor turns that into
the run's status. When a rank dies (SIGKILL, out of memory) torchrun stops the others and the
supervisor records the run `failed`, naming the lost rank. Ranks die with their supervisor
(PR_SET_PDEATHSIG), so killing it never leaves orphans. `join` is the supervisor of another
node's ranks (`python -m lab join RUN`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Mapping
from typing import Any

from lab.runs import multinode
from lab.runs.ports import free_port
from lab.runs.process import take
from lab.runs.store import _RUN_ID, DEFAULT_WORKER, RunNotFoundError, Store, lab_home

SUPERVISOR_ENV = "LAB_DDP_SUPERVISOR"  # pid of the supervising process, set for every rank
RESUME_ENV = "LAB_DDP_RESUME"  # "1" when the ranks continue the run folder's checkpoint
SHUTDOWN_TIMEOUT = 15  # s torchrun waits for ranks to stop after SIGTERM before SIGKILL


def rank_world() -> tuple[int, int]:
    """(RANK, WORLD_SIZE) as torchrun set them; (0, 1) in a plain process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def die_with_supervisor() -> None:
    """Ask Linux to SIGKILL this rank when its parent (the supervisor) dies, whatever kills it."""
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if not supervisor or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != int(supervisor):  # it died before prctl took effect
        os._exit(1)


def torchrun_args(run_id: str, nproc: int, worker: str,
                  rdzv: Mapping[str, Any] | None = None) -> list[str]:
    """torchrun's command line for the run's ranks: one node, c10d rendezvous on loopback; or,
    with the run's recorded rendezvous (lab.runs.multinode), node 0 of several, which the other
    nodes join with `python -m lab join RUN_ID`."""
    where = (multinode.torchrun_args(run_id, dict(rdzv), worker) if rdzv else
             ["--nnodes", "1", "--nproc-per-node", str(nproc), "--rdzv-backend", "c10d",
              "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", run_id])
    return [*where, "--max-restarts", "0", "--monitor-interval", "0.1", "--shutdown-timeout",
            str(SHUTDOWN_TIMEOUT), "--module", worker, run_id]


def _failure_reason(failures: Mapping[int, Any], first: int, ckpt: str | None) -> str:
    """One sentence naming the rank that was lost first (and how), for the run's reason."""
    f = failures[first]
    how = (f"was killed by {f.signal_name()}" if f.exitcode < 0
           else f"exited with status {f.exitcode}")
    others = sorted(r for r in failures if r != first)
    also = (f" (rank{'s' if len(others) > 1 else ''} {', '.join(map(str, others))} failed "
            "too)" if others else "")
    where = f"last checkpoint {ckpt}" if ckpt else "no checkpoint yet"
    return (f"lost rank {first} (local rank {f.local_rank}, pid {f.pid}): it {how}{also}; "
            f"torchrun stopped the other ranks; resume continues from the {where}")


def supervise(store: Store, run_id: str, nproc: int) -> str:
    """Run the ranks of `run_id` under torchrun in this process; returns the final status."""
    run, ended = take(store, run_id, record_pid=True)
    if ended is not None:
        return ended
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError

    from core.training.checkpoint import write_config

    run_dir = store.run_dir(run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, run.config)  # what the other ranks train; rank 0's trainer rewrites it
    os.environ[SUPERVISOR_ENV] = str(os.getpid())
    os.environ[RESUME_ENV] = "1" if run.attempts > 1 else "0"
    rdzv = multinode.read(run_dir)  # recorded at launch when LAB_NNODES > 1
    if rdzv is None:  # one node: gloo stays on loopback
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    args = torchrun_args(run_id, nproc, run.worker, rdzv)
    print(f"[lab.runs.supervisor] run {run_id}: torchrun {' '.join(args)}", file=sys.stderr,
          flush=True)
    status, reason, error, stopped = None, None, None, None
    try:
        torchrun.run(torchrun.parse_args(args))
    except ChildFailedError as e:
        first, failure = e.get_first_failure()
        latest = store.get_run(run_id)
        status = "failed"
        if not (first == 0 and failure.exitcode > 0):  # else rank 0 failed and said why
            reason = _failure_reason(e.failures, first, latest.checkpoint if latest else None)
            error = f"rank {first} lost: " + (failure.signal_name() if failure.exitcode < 0
                                              else f"exit status {failure.exitcode}")
    except SignalException as e:  # SIGTERM/SIGINT: torchrun forwarded it and waited for the ranks
        stopped = signal.Signals(e.sigval).name
    except RendezvousError as e:  # the other nodes never came (or could not be reached)
        status, error = "failed", f"{type(e).__name__}: {e}"[:500]
        reason = multinode.not_joined(run_id, rdzv) if rdzv else f"torchrun rendezvous: {e}"
    latest = store.get_run(run_id)
    if latest is None:
        return "deleted"
    if latest.status == "running":  # rank 0 failed (it leaves that to us), was lost, or hung
        if stopped:
            status = "cancelled" if latest.cancel_requested_at else "interrupted"
            reason = f"stopped by {stopped} before rank 0 recorded a result"
        elif status is None:
            status, reason = "failed", "the ranks ended without rank 0 recording a result"
        elif reason is None:  # rank 0's own exception, which it noted in reason/error
            reason = latest.reason or "rank 0 failed; see the run's log"
            error = latest.error
        store.finish(run_id, status, reason=reason, error=error)
    return store.require_run(run_id).status


def join(ref: str, *, nproc: int | None = None, timeout: int | None = None) -> int:
    """`python -m lab join RUN`: this machine's ranks of a multi-node run; the exit status.

    The plan comes from the run's folder in LAB_HOME (`rendezvous.json`) or, where this machine
    does not see it, from LAB_NNODES and LAB_RDZV_ENDPOINT (and `nproc`, default 1).
    """
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError

    run_id, worker = ref.strip(), DEFAULT_WORKER
    try:
        with Store() as store:
            run_id = store.resolve(ref)
            worker = store.require_run(run_id).worker
    except RunNotFoundError:
        pass  # not in this machine's store: the id as given, the plan from the environment
    if not _RUN_ID.match(run_id):
        raise ValueError(f"run id {ref!r} has characters a run id never has")
    rdzv = multinode.read(lab_home() / "runs" / run_id)
    if rdzv is None:
        nnodes = multinode.nnodes_from_env()
        if nnodes == 1 or not os.environ.get("LAB_RDZV_ENDPOINT"):
            raise ValueError(f"run {run_id} has no rendezvous in {lab_home() / 'runs'} (is "
                             "LAB_HOME the folder node 0 uses?); give LAB_NNODES (> 1) and "
                             "LAB_RDZV_ENDPOINT as on node 0")
        rdzv = {"nnodes": nnodes, "nproc_per_node": nproc or 1,
                "endpoint": multinode.check_endpoint(os.environ["LAB_RDZV_ENDPOINT"]),
                "join_timeout": multinode.join_timeout_from_env()}
    rdzv = {**rdzv, **({"nproc_per_node": nproc} if nproc else {}),
            **({"join_timeout": timeout} if timeout else {})}
    os.environ[SUPERVISOR_ENV] = str(os.getpid())  # this node's ranks die with this process
    args = torchrun_args(run_id, rdzv["nproc_per_node"], worker, rdzv)
    print(f"joining run {run_id}: {rdzv['nnodes']} nodes x {rdzv['nproc_per_node']} "
          f"processes at {rdzv['endpoint']} (waiting up to {rdzv['join_timeout']} s for the "
          "others)", file=sys.stderr, flush=True)
    try:
        torchrun.run(torchrun.parse_args(args))
    except RendezvousError as e:
        print(f"error: {multinode.not_joined(run_id, rdzv)} ({type(e).__name__})", file=sys.stderr)
        return 1
    except ChildFailedError as e:
        first, failure = e.get_first_failure()
        print(f"error: rank {first} on this node failed (exit {failure.exitcode}); the run's "
              f"record says why (`python -m lab show {run_id}`)", file=sys.stderr)
        return 1
    except SignalException as e:
        print(f"stopped by signal {e.sigval}; the other nodes stop too", file=sys.stderr)
        return 130
    print(f"run {run_id}: this node's ranks are done", file=sys.stderr)
    return 0
