"""Training jobs as OS processes: launch, queue, cancel, resume, delete, and stale detection.

Each background run is `python -m lab.runs.worker RUN_ID` (or another worker module), started in its
own session so the web app or CLI that launched it can exit without killing it. At most
`max_concurrent()` runs are `running` at once; more launches wait as `queued`. `schedule()`
starts queued runs in FIFO order; it runs on launch, when a worker exits and from
`reconcile()`, which also marks runs whose process died without a word as `stale`.

Every function takes an optional `store`; without one it opens (and closes) its own.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

from lab.runs.process import is_alive, process_start
from lab.runs.store import DEFAULT_WORKER, LOG_NAME, RESUMABLE, Run, Store

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class JobError(RuntimeError):
    """The run is in a state that refuses this operation (e.g. deleting a running run)."""


@contextlib.contextmanager
def _opened(store: Store | None) -> Iterator[Store]:
    if store is not None:
        yield store
        return
    with Store() as st:
        yield st


# -- processes ------------------------------------------------------------------------------------
def _signal(run: Run, sig: int) -> bool:
    """Send `sig` to the run's process (its whole group when it leads one); False if gone."""
    if not is_alive(run.pid, run.pid_start):
        return False
    try:
        if run.own_session:
            os.killpg(run.pid, sig)  # start_new_session: pgid == pid; reaches DataLoader workers
        else:
            os.kill(run.pid, sig)
    except ProcessLookupError:
        return False
    return True


def _wait_dead(run: Run, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_alive(run.pid, run.pid_start):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def max_concurrent() -> int:
    """Runs allowed at once: $LAB_MAX_JOBS, else one per CUDA device, else 1 (CPU)."""
    env = os.environ.get("LAB_MAX_JOBS")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"LAB_MAX_JOBS={env!r} must be a positive integer")
        return int(env)
    return max(_gpu_count(), 1)


def _gpu_count() -> int:
    import torch  # only when a run is about to start: `runs` and friends stay fast

    return torch.cuda.device_count()


def visible_devices() -> int:
    """CUDA devices this process sees (CUDA_VISIBLE_DEVICES applied); 0 on a CPU machine."""
    return _gpu_count()


def _uses_cuda(config: Mapping[str, Any] | None) -> bool:
    device = (config or {}).get("device", "auto")
    return device == "cuda" or (device == "auto" and _gpu_count() > 0)


def max_nproc(config: Mapping[str, Any] | None = None) -> int:
    """The most processes a run of `config` may use on this machine.

    A CUDA run (device 'cuda', or 'auto' with a GPU visible): one process per visible GPU (nccl).
    A CPU run: one gloo process per CPU core (os.cpu_count()); sensible for tests and small
    models, each process then gets its share of the cores.
    """
    if _uses_cuda(config):
        return _gpu_count()
    return max(os.cpu_count() or 1, 1)


def check_nproc(nproc: Any, config: Mapping[str, Any] | None = None) -> int:
    """`nproc` as an int if a run of `config` may use that many processes; ValueError otherwise."""
    if isinstance(nproc, bool) or not isinstance(nproc, int):
        raise TypeError(f"nproc must be an integer number of processes, got {nproc!r}")
    if nproc < 1:
        raise ValueError(f"nproc={nproc} is below 1; a run needs at least one process")
    if nproc > 1:
        limit = max_nproc(config)
        if nproc > limit:
            what = (f"{limit} CUDA device(s) visible (CUDA_VISIBLE_DEVICES="
                    f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})" if _uses_cuda(config)
                    else f"{limit} CPU core(s)")
            raise ValueError(f"nproc={nproc} is more than this machine offers: {what}; use "
                             f"nproc <= {limit}" + (" or device='cpu' (gloo)"
                                                    if _uses_cuda(config) else ""))
    return nproc


def _spawn(store: Store, run_id: str, slot: int | None, pin_gpus: int) -> None:
    """Start the worker process of a run that claim_queued() moved to 'running'."""
    run = store.get_run(run_id)
    if run is None or run.status != "running":
        return  # deleted or cancelled in between
    from lab.runs import launcher, multinode

    run_dir = store.run_dir(run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    env = launcher.worker_env(store.home)  # LAB_HOME, and the repository first on PYTHONPATH
    if (pin_gpus and slot is not None and "CUDA_VISIBLE_DEVICES" not in os.environ
            and run.config.get("device", "auto") in ("auto", "cuda")):
        # one run per GPU; a run of N processes gets the N GPUs of its slots
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str((slot + k) % pin_gpus)
                                               for k in range(min(run.nproc, pin_gpus)))
    cwd = run.cwd if run.cwd and os.path.isdir(run.cwd) else None
    argv = [run.worker, run_id]
    if run.nproc > 1 or multinode.read(run_dir):  # it supervises torchrun, which starts the ranks
        argv[1:1] = ["--nproc", str(run.nproc)]
    # The app's warm launcher forks the run's process (torch already imported); without one,
    # or when it declines, a fresh interpreter starts. Either way: its own session and pid.
    pid = launcher.fork_run(store.home, argv, cwd=cwd, env=env, log=run_dir / LOG_NAME)
    if pid is None:
        try:
            with open(run_dir / LOG_NAME, "ab") as log:
                pid = subprocess.Popen(
                    [sys.executable, "-m", *argv], cwd=cwd, env=env,
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True).pid
        except OSError as e:
            store.finish(run_id, "failed", reason="could not start the worker process",
                         error=f"{type(e).__name__}: {e}")
            return
    # The worker records its pid itself too; whoever is first, the values agree.
    store.update(run_id, pid=pid, pid_start=process_start(pid), own_session=1,
                 only_if_status="running")


# -- the verbs ------------------------------------------------------------------------------------
def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The full, validated training config as a JSON dict; ValueError/TypeError saying what is
    wrong otherwise (TrainConfig.from_dict(...).validate(), model and dataset names included)."""
    from core.training import TrainConfig

    return TrainConfig.from_dict(dict(config)).validate().to_dict()


def check_dataset(config: Mapping[str, Any], *, download: bool = False,
                  how: str = "jobs.launch(..., download=True)") -> None:
    """Refuse a run whose data is not there: the validated config's dataset must have its files
    (downloaded now, md5-verified, when ``download``), an image folder its class sub-folders.

    Raises core.data.DatasetNotFoundError (a ValueError) saying what is missing where, with
    ``how`` as the way to download (each interface names its own: a flag, a checkbox).
    """
    from core.data import check_files

    check_files(config["dataset"], root=config.get("data_root"), download=download, how=how)


def launch(config: Mapping[str, Any], *, nproc: int = 1, name: str | None = None,
           store: Store | None = None, worker: str = DEFAULT_WORKER,
           validate: bool = True, experiment: str | None = None, download: bool = False) -> str:
    """Queue a training run and start it if enough slots are free; returns its id.

    The config is validated first: a bad one raises ValueError/TypeError and nothing is written.
    So is its dataset (`check_dataset`; ``download`` fetches missing files first): a missing one
    raises core.data.DatasetNotFoundError and no run is created.
    `nproc` > 1 trains with DistributedDataParallel in that many processes under torchrun
    (`python -m WORKER --nproc N RUN_ID` supervises them; see lab.runs.worker); the global batch
    stays `batch_size`, split between them. With LAB_NNODES > 1 (and LAB_RDZV_ENDPOINT) the run
    is node 0 of several, under torchrun for any `nproc` (lab.runs.multinode). It takes `nproc`
    of the queue's slots, and is refused (ValueError) below 1 or above `max_nproc(config)`.
    `worker` is the module run as `python -m WORKER RUN_ID`; `validate=False` is only for a
    custom worker whose config is not a TrainConfig (tests use a scripted one). `experiment`:
    the id of the experiment (grid) the run belongs to (lab.experiments.grid).
    """
    if not _MODULE.match(worker):
        raise ValueError(f"worker {worker!r} is not a python module name like 'lab.runs.worker'")
    from lab.runs import multinode

    config = validate_config(config) if validate else dict(config)
    nproc = check_nproc(nproc, config)
    rdzv = multinode.plan(nproc)  # LAB_NNODES > 1: one node of several (ValueError if unclear)
    if validate:
        check_dataset(config, download=download)
    with _opened(store) as st:
        run_id = st.create_run(config, name=name, worker=worker, cwd=os.getcwd(), nproc=nproc,
                               experiment=experiment)
        st.run_dir(run_id).mkdir(parents=True, exist_ok=True)
        if rdzv is not None:  # before it can start: the supervisor and `lab join` read it
            multinode.record(st.run_dir(run_id), rdzv)
        reconcile(st)  # frees slots held by dead runs, then schedules
    return run_id


def start_foreground(config: Mapping[str, Any], *, name: str | None = None,
                     store: Store | None = None, download: bool = False) -> str:
    """Record a run that this very process trains now (the CLI's `train`); returns its id.

    It bypasses the queue (the user asked for it to run now) but holds a slot while it runs.
    The config and its dataset are checked as in `launch`.
    """
    config = validate_config(config)
    check_dataset(config, download=download)
    with _opened(store) as st:
        run_id = st.create_run(config, name=name, status="running", cwd=os.getcwd(),
                               pid=os.getpid(), pid_start=process_start(os.getpid()))
        st.run_dir(run_id).mkdir(parents=True, exist_ok=True)
    return run_id


def schedule(store: Store | None = None, *, limit: int | None = None) -> list[str]:
    """Start queued runs, oldest first, while fewer than the limit run; returns the started ids."""
    with _opened(store) as st:
        if st.count("queued") == 0:
            return []
        pin_gpus = 0
        if limit is None:
            if os.environ.get("LAB_MAX_JOBS"):
                limit = max_concurrent()
            else:
                pin_gpus = _gpu_count()
                limit = max(pin_gpus, 1)
        claimed = st.claim_queued(limit)
        for run_id, slot in claimed:
            _spawn(st, run_id, slot, pin_gpus)
        return [run_id for run_id, _ in claimed]


def reconcile(store: Store | None = None, *, launch_grace: float = 30.0,
              cancel_grace: float = 10.0, schedule_queue: bool = True) -> list[str]:
    """Mark dead 'running' runs stale, finish overdue cancels, then schedule; returns stale ids.

    A run is stale when its process is gone (or never appeared within `launch_grace` seconds of
    being started) yet it still reads 'running': the worker died without recording a result
    (kill -9, out of memory, machine reboot). A cancel whose process outlives `cancel_grace`
    seconds after the request gets SIGKILL.
    """
    stale = []
    with _opened(store) as st:
        now = time.time()
        for run in st.list_runs(status="running"):
            beat = run.heartbeat_at or run.started_at or run.created_at
            if run.pid is None:
                if now - beat > launch_grace:
                    reason = f"worker process never started ({now - beat:.0f} s after launch)"
                    if st.transition(run.id, "stale", expect="running", match={"pid": None},
                                     reason=reason, event=reason):
                        stale.append(run.id)
                continue
            if is_alive(run.pid, run.pid_start):
                if run.cancel_requested_at and now - run.cancel_requested_at > cancel_grace:
                    _kill_cancelled(st, run, cancel_grace)
                continue
            reason = (f"worker process {run.pid} is gone without recording a result "
                      f"(last heartbeat {now - beat:.0f} s ago){_log_tail(st, run.id)}")
            if run.cancel_requested_at:
                st.transition(run.id, "cancelled", expect="running", match={"pid": run.pid},
                              reason="cancelled (process ended)")
            elif st.transition(run.id, "stale", expect="running", match={"pid": run.pid},
                               reason=reason, event=reason):
                stale.append(run.id)
        if schedule_queue:
            schedule(st)
    return stale


def _log_tail(store: Store, run_id: str) -> str:
    """'; log: <last line>' from the run's worker log, or '' when there is none."""
    try:
        with open(store.run_dir(run_id) / LOG_NAME, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - 2000, 0))
            lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return f"; log: {lines[-1].strip()[:200]}" if lines else ""


def _kill_cancelled(store: Store, run: Run, grace: float) -> None:
    _signal(run, signal.SIGKILL)
    _wait_dead(run, 5.0)
    store.transition(run.id, "cancelled", expect="running", match={"pid": run.pid},
                     reason=f"cancelled: killed after not stopping within {grace:g} s of SIGTERM")


def cancel(run_id: str, *, store: Store | None = None, grace: float = 10.0,
           wait: bool = True) -> str:
    """Cancel a queued or running run; returns its status afterwards.

    A queued run is cancelled at once. A running one: the request is recorded, its process gets
    SIGTERM (the worker checkpoints and records 'cancelled'), and after `grace` seconds SIGKILL.
    With `wait=False` this returns right after SIGTERM; `reconcile()` does the SIGKILL later.
    """
    with _opened(store) as st:
        run = st.require_run(run_id)
        if run.status == "queued" and st.transition(run.id, "cancelled", expect="queued",
                                                    reason="cancelled before it started"):
            return "cancelled"
        run = st.require_run(run.id)
        if run.status != "running":
            raise JobError(f"run {run.id} is {run.status}; only queued or running runs can be "
                           "cancelled")
        st.update(run.id, cancel_requested_at=time.time(), only_if_status="running")
        st.add_event(run.id, "cancel", "cancel requested")
        _signal(run, signal.SIGTERM)
        if not wait:
            return "running"
        # Wait for the worker to record its end *and* exit (its memory is free once it is gone).
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            run = st.require_run(run.id)
            alive = run.pid is not None and is_alive(run.pid, run.pid_start)
            if not alive and (run.status != "running" or run.pid is not None):
                break
            time.sleep(0.05)
        run = st.require_run(run.id)
        if run.status == "running" and (run.pid is None or is_alive(run.pid, run.pid_start)):
            _kill_cancelled(st, run, grace)
        elif run.status == "running":
            st.transition(run.id, "cancelled", expect="running", match={"pid": run.pid},
                          reason="cancelled (process ended without recording a status)")
        elif is_alive(run.pid, run.pid_start):  # recorded its end but hangs on the way out
            _signal(run, signal.SIGKILL)
            _wait_dead(run, 5.0)
        schedule(st)
        return st.require_run(run.id).status


def resume(run_id: str, *, store: Store | None = None) -> None:
    """Queue a failed, interrupted, stale or cancelled run again; it continues from its last
    checkpoint in the same run folder (from the start if it never wrote one)."""
    with _opened(store) as st:
        run = st.require_run(run_id)
        if run.status not in RESUMABLE or not st.transition(
                run.id, "queued", expect=RESUMABLE, pid=None, pid_start=None,
                cancel_requested_at=None, event="resume requested"):
            raise JobError(f"run {run.id} is {st.require_run(run.id).status}; only "
                           f"{', '.join(sorted(RESUMABLE))} runs can be resumed")
        reconcile(st)


def resume_foreground(run_id: str, *, store: Store | None = None) -> str:
    """Mark a resumable run as running in this process (the CLI's `train --resume`)."""
    with _opened(store) as st:
        run = st.require_run(run_id)
        if run.status not in RESUMABLE or not st.transition(
                run.id, "running", expect=RESUMABLE, pid=os.getpid(),
                pid_start=process_start(os.getpid()), own_session=0, cancel_requested_at=None,
                started_at=time.time(), heartbeat_at=time.time(), attempts=run.attempts + 1,
                slot=None, event="resumed in the foreground"):
            raise JobError(f"run {run.id} is {st.require_run(run.id).status}; only "
                           f"{', '.join(sorted(RESUMABLE))} runs can be resumed")
        return run.id


def delete(run_id: str, *, store: Store | None = None, force: bool = False) -> None:
    """Delete a run's rows and folder; a running run is refused unless `force` (then killed)."""
    with _opened(store) as st:
        run = st.require_run(run_id)
        if run.status == "running":
            if not force:
                raise JobError(f"run {run.id} is running; cancel it first "
                               "(or force the delete: `delete --force`)")
            _signal(run, signal.SIGKILL)
            _wait_dead(run, 5.0)
        if not st.delete_run(run.id, unless_status=() if force else ("running",)):
            raise JobError(f"run {run.id} started meanwhile; cancel it first")
        shutil.rmtree(st.run_dir(run.id), ignore_errors=True)
        schedule(st)
