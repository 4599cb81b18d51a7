"""OS processes of the lab: start times and liveness (Linux /proc, else signals), and taking a
queued run into this process. The rest of lab.runs (jobs, the launcher, owners, the worker and
the supervisor) builds on it; it imports nothing of theirs.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from lab.runs.store import Run, RunNotFoundError, Store


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) from /proc, or None if unavailable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces
    return fields[0], int(fields[19])


def process_start(pid: int) -> int | None:
    """The process's start time (Linux /proc ticks), to tell it from a later one with its pid."""
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def is_alive(pid: int | None, start: int | None = None) -> bool:
    """Whether process `pid` runs (not a zombie) and, if `start` is given, is the same process."""
    if not pid or pid <= 0:
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child that exited: reap it
            return False
    stat = _proc_stat(pid)
    if stat is not None:
        return stat[0] not in ("Z", "X") and (start is None or stat[1] == start)
    if Path("/proc/self/stat").exists():
        return False  # Linux, and no /proc entry: gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def take(store: Store, run_id: str, *, record_pid: bool) -> tuple[Run, str | None]:
    """Take a run that the queue moved to 'running' into this process (a worker, a supervisor).

    Returns ``(run, None)`` to go on, or ``(run, status)`` when there is nothing to train: the run
    was cancelled or deleted before this process got going. With ``record_pid`` this process is
    recorded as the run's pid (the queue's launcher records it too; the values agree).
    """
    run = store.get_run(run_id)
    if run is None:
        raise RunNotFoundError(f"no run {run_id!r} in {store.db_path}")
    if run.status != "running":
        return run, run.status
    if record_pid:
        store.update(run_id, pid=os.getpid(), pid_start=process_start(os.getpid()),
                     own_session=int(os.getpgid(0) == os.getpid()), heartbeat_at=time.time(),
                     only_if_status="running")
    if run.cancel_requested_at:
        store.finish(run_id, "cancelled", reason="cancelled before training started")
        return run, "cancelled"
    return run, None
