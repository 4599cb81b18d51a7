"""The per-run OS process, `python -m lab.runs.worker RUN_ID`: trains one run and records it.

It loads the run's config from the store, runs the core Trainer with a callback that writes
step/epoch metrics and events to the store, keeps a heartbeat, and records the end: completed,
failed (traceback's last line in `error`, the full traceback in the run's log), interrupted, or
cancelled when the stop came from a cancel request. SIGTERM asks the trainer to stop at the next
step with a checkpoint. Before exiting it runs the scheduler, so queued runs start.
The CLI's foreground `train` calls `execute()` in its own process the same way.

A run of N > 1 processes starts as `python -m lab.runs.worker --nproc N RUN_ID`: that process is
the torchrun supervisor (lab.runs.supervisor), which starts N copies of this module as ranks.
Rank 0 records the run as above; the other ranks train their shard and write nothing.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, TextIO

from core.training.checkpoint import CONFIG, read_json
from core.training.signals import stop_signals
from lab.runs import jobs
from lab.runs.process import take
from lab.runs.store import _RUN_ID, LOG_NAME, MetricsWriter, RunNotFoundError, Store, lab_home
from lab.runs.supervisor import (
    RESUME_ENV,
    SUPERVISOR_ENV,
    die_with_supervisor,
    rank_world,
    supervise,
)

END_STATUSES = ("completed", "failed", "interrupted")  # what Trainer.fit may report


class TrainerLike(Protocol):
    def fit(self, resume: bool = False) -> Any: ...  # -> TrainResult(status, reason, final)
    def request_stop(self) -> None: ...


TrainerFactory = Callable[[dict, Path, list], TrainerLike]


def default_trainer(config: dict, run_dir: Path, callbacks: list) -> TrainerLike:
    """core.training's Trainer for a stored config (validated again: the code may have moved)."""
    from core.training import TrainConfig, Trainer

    cfg = TrainConfig.from_dict(dict(config)).validate()
    return Trainer(cfg, run_dir=run_dir, callbacks=callbacks)


class StoreCallback:
    """A core.training Callback writing metrics (batched) and events to the run store.

    A database hiccup (locked for longer than the busy timeout) is logged and retried with the
    next batch rather than killing the training.
    """

    def __init__(self, store: Store, run_id: str, writer: MetricsWriter, log: TextIO):
        self.store, self.run_id, self.writer, self.log = store, run_id, writer, log

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except sqlite3.OperationalError as e:
            print(f"[lab.runs.worker] run store write failed, will retry: {e}", file=self.log)

    def on_start(self, info: Mapping[str, Any]) -> None:
        self._guard(lambda: self.store.add_event(
            self.run_id, "start", json.dumps(dict(info), default=str)))

    def on_step(self, m: Mapping[str, Any]) -> None:
        self._guard(lambda: self.writer.add_step(m))

    def on_epoch(self, m: Mapping[str, Any]) -> None:
        self._guard(lambda: self.writer.add_epoch(m))

    def on_event(self, kind: str, message: str) -> None:
        self._guard(lambda: self.store.add_event(self.run_id, kind, message))

    def on_checkpoint(self, path: str) -> None:
        def write() -> None:
            self.writer.flush()  # metrics up to the checkpoint are durable with it
            self.store.update(self.run_id, checkpoint=str(path))
            self.store.add_event(self.run_id, "checkpoint", str(path))
        self._guard(write)


class _Heartbeat(threading.Thread):
    """Stamps the run's heartbeat every `interval` s from its own connection (also during eval)."""

    def __init__(self, home: Path, run_id: str, interval: float):
        super().__init__(name=f"heartbeat-{run_id}", daemon=True)
        self.home, self.run_id, self.interval = home, run_id, interval
        self.stop = threading.Event()

    def run(self) -> None:
        with Store(self.home) as store:
            while not self.stop.wait(self.interval):
                with contextlib.suppress(sqlite3.Error):
                    store.heartbeat(self.run_id)


def _last_line(tb: str) -> str:
    lines = [ln for ln in tb.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "unknown error"


def execute(store: Store, run_id: str, *, trainer_factory: TrainerFactory = default_trainer,
            callbacks: Iterable[Any] = (), foreground: bool = False,
            heartbeat_every: float = 5.0) -> str:
    """Train run `run_id` (already 'running') in this process; returns its final status.

    `callbacks` are added after the store's (the CLI's progress bar). In the foreground the
    traceback of a failure is appended to the run's log file; in a background worker stderr
    already is that file.
    """
    run, ended = take(store, run_id, record_pid=not foreground and rank_world()[1] == 1)
    if ended is not None:  # under torchrun the supervisor, not a rank, is the recorded pid
        return ended
    run_dir = store.run_dir(run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    log: TextIO = open(run_dir / LOG_NAME, "a") if foreground else sys.stderr  # noqa: SIM115
    writer = MetricsWriter(store, run_id)
    cbs = [StoreCallback(store, run_id, writer, log), *callbacks]
    state: dict[str, Any] = {"trainer": None, "signal": None}

    def on_stop(name: str) -> None:
        state["signal"] = name
        if state["trainer"] is not None:
            state["trainer"].request_stop()
        if foreground and name == "SIGINT":
            print("\nstopping at the next step with a checkpoint (Ctrl-C again to abort)",
                  file=sys.stderr)

    status, reason, error, final = "failed", None, None, None
    beat = _Heartbeat(store.home, run_id, heartbeat_every)
    beat.start()
    try:
        with stop_signals(on_stop, sigint=foreground):
            try:
                state["trainer"] = trainer_factory(run.config, run_dir, cbs)
                if state["signal"]:  # stopped while the trainer was being built
                    status, reason = "interrupted", f"{state['signal']} before training started"
                else:
                    # A later attempt continues from the folder's checkpoint, if there is one.
                    # (Trainer.fit installs its own SIGTERM/SIGINT handlers while it runs.)
                    result = state["trainer"].fit(resume=run.attempts > 1)
                    status, reason, final = result.status, result.reason, result.final
                    if status not in END_STATUSES:
                        reason = f"trainer returned unknown status {status!r}"
                        status = "failed"
            except KeyboardInterrupt:
                status, reason = "interrupted", "aborted by a second Ctrl-C (no final checkpoint)"
            except Exception:
                tb = traceback.format_exc()
                print(f"[lab.runs.worker] run {run_id} failed:\n{tb}", file=log, flush=True)
                status, error = "failed", _last_line(tb)
                reason = "exception during training; full traceback in " + str(run_dir / LOG_NAME)
                if foreground:
                    print(f"training failed: {error} (traceback in {run_dir / LOG_NAME})",
                          file=sys.stderr)
    finally:
        beat.stop.set()
        beat.join()
    if status == "failed" and error is not None and os.environ.get(SUPERVISOR_ENV):
        # Rank 0 of a lab torchrun: a peer lost mid-collective looks like an exception here.
        # The supervisor sees every rank's exit, so it records the end (naming a lost rank).
        with contextlib.suppress(sqlite3.Error):
            store.write_metrics(run_id, writer.pending())
            store.update(run_id, reason=reason, error=error, only_if_status="running")
        return status
    if status == "interrupted":
        latest = store.get_run(run_id)
        if latest is not None and latest.cancel_requested_at:
            status, reason = "cancelled", "cancelled on request" + (f"; {reason}" if reason else "")
        elif state["signal"] and not reason:
            reason = f"stopped by {state['signal']}"
    if not store.finish(run_id, status, reason=reason, error=error, final=final,
                        steps=writer.pending()):
        latest = store.get_run(run_id)
        print(f"[lab.runs.worker] run {run_id} was already"
              f" {latest.status if latest else 'deleted'};"
              f" result {status!r} not recorded", file=log, flush=True)
        status = latest.status if latest else status
    if foreground:
        log.close()
    return status


# -- ranks of a multi-process run (torchrun) -------------------------------------------------------
def execute_rank(run_id: str, *, trainer_factory: TrainerFactory = default_trainer) -> int:
    """A rank other than 0: train its shard with no callbacks, writing nothing; exit status.

    It reads the config from the run folder's config.json (the supervisor writes it before
    torchrun starts), so it never opens lab.db (another node may not even have it).
    """
    rank = rank_world()[0]
    if not _RUN_ID.match(run_id):
        print(f"[lab.runs.worker rank {rank}] invalid run id {run_id!r}", file=sys.stderr)
        return 2
    run_dir = lab_home() / "runs" / run_id
    try:
        config = read_json(run_dir / CONFIG)
    except (OSError, ValueError) as e:
        print(f"[lab.runs.worker rank {rank}] cannot read the run's config {run_dir / CONFIG}: "
              f"{e}; is LAB_HOME the same folder as on node 0?", file=sys.stderr)
        return 2
    resume = os.environ.get(RESUME_ENV, "1") == "1"
    trainer = trainer_factory(config, run_dir, [])
    result = trainer.fit(resume=resume)
    print(f"[lab.runs.worker rank {rank}] {result.status}: {result.reason}", file=sys.stderr,
          flush=True)
    return 0 if result.status in END_STATUSES else 1


def main(argv: list[str] | None = None, *,
         trainer_factory: TrainerFactory = default_trainer) -> int:
    """`python -m lab.runs.worker RUN_ID`: 0 if the run completed, 1 otherwise, 2 for no run."""
    argv = list(sys.argv[1:] if argv is None else argv)
    nproc = None  # --nproc N: supervise torchrun (N per node; also N = 1 for a multi-node run)
    if len(argv) == 3 and argv[0] == "--nproc" and argv[1].isdigit() and int(argv[1]) >= 1:
        nproc, argv = int(argv[1]), argv[2:]
    if len(argv) != 1:
        print("usage: python -m lab.runs.worker [--nproc N] RUN_ID", file=sys.stderr)
        return 2
    rank, world = rank_world()
    if world > 1:  # a rank under torchrun
        die_with_supervisor()
        if rank != 0:
            return execute_rank(argv[0], trainer_factory=trainer_factory)
    with Store() as store:
        try:
            if nproc is not None:
                status = supervise(store, argv[0], nproc)
            else:
                status = execute(store, argv[0], trainer_factory=trainer_factory)
        except RunNotFoundError as e:
            print(f"[lab.runs.worker] {e}", file=sys.stderr)
            return 2
        finally:
            try:
                if world == 1:  # our slots are free: start the next queued run
                    jobs.schedule(store)
            except Exception:
                traceback.print_exc()
    if world > 1:  # rank 0: a recorded stop is no crash for torchrun to report
        return 0 if status in ("completed", "interrupted", "cancelled") else 1
    return 0 if status == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
