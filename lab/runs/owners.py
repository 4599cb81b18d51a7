"""Helper processes that stop once every process that owns them has been gone a while.

The Streamlit app starts two helpers as processes of their own (own session, so page reruns and
reloads never stop them): the classifier (lab.classify) and the run launcher (lab.runs.launcher).
Each is started with its owner, `--owner PID:START` (the Streamlit server), and an owners file: a
JSON object ``{"pid": <helper pid>, "owners": [[pid, start], ...], ...}`` to which a Streamlit
server that later reuses the helper adds itself (owners listed for another helper pid are
ignored). Once no owner has been alive for `idle` seconds the helper shuts down, so stopping the
app leaves nothing behind. Runs are not helpers: they outlive the app by design.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

Owner = tuple[int, "int | None"]  # (pid, /proc start time or None)


def parse_owner(text: str) -> Owner:
    """'1234' or '1234:567890' (pid, start time in clock ticks) -> (1234, 567890)."""
    pid, _, start = text.partition(":")
    if not pid.isdigit() or int(pid) < 1 or (start and not start.isdigit()):
        raise ValueError(f"owner {text!r} is not PID or PID:START (positive whole numbers), "
                         "e.g. 1234 or 1234:567890")
    return int(pid), int(start) if start else None


def format_owner(owner: Owner) -> str:
    """(1234, 567890) -> '1234:567890' (the `--owner` argument)."""
    pid, start = owner
    return f"{pid}:{start}" if start is not None else str(pid)


def me() -> Owner:
    """This process as an owner: (pid, start time)."""
    from lab.runs.process import process_start

    return os.getpid(), process_start(os.getpid())


def file_owners(path: str | os.PathLike | None, pid: int | None = None) -> list[Owner]:
    """Owners listed in ``path`` for helper ``pid`` (this process by default); [] if the file is
    missing, unreadable, or written for another helper."""
    if path is None:
        return []
    try:
        data = json.loads(Path(path).read_text())
        if data.get("pid") != (pid or os.getpid()):
            return []
        return [(int(p), None if s is None else int(s)) for p, s in data.get("owners", [])]
    except (OSError, ValueError, TypeError, AttributeError):
        return []


def any_alive(owners: Iterable[Owner]) -> bool:
    from lab.runs.process import is_alive

    return any(is_alive(pid, start) for pid, start in owners)


class OwnerWatch:
    """Polled by a helper: `gone()` returns why to stop once no owner (given, or listed in
    ``owners_file``) has been alive for ``idle`` seconds, else None."""

    def __init__(self, owners: Iterable[Owner], owners_file: str | os.PathLike | None,
                 idle: float):
        self.fixed, self.owners_file, self.idle = list(owners), owners_file, idle
        self.since: float | None = None

    def gone(self) -> str | None:
        current = self.fixed + file_owners(self.owners_file)
        if any_alive(current):
            self.since = None
            return None
        now = time.monotonic()
        if self.since is None:
            self.since = now
        if now - self.since < self.idle:
            return None
        pids = ", ".join(str(p) for p, _ in current) or "none"
        return f"the process(es) that used it (pid {pids}) have been gone for {self.idle:g} s"


def watch(owners: Iterable[Owner], owners_file: str | os.PathLike | None, idle: float,
          on_gone: Callable[[str], None], poll: float = 1.0) -> threading.Thread:
    """Start a daemon thread calling ``on_gone(reason)`` once `OwnerWatch.gone()` says so."""
    w = OwnerWatch(owners, owners_file, idle)

    def loop() -> None:
        while (reason := w.gone()) is None:
            time.sleep(poll)
        on_gone(reason)

    thread = threading.Thread(target=loop, name="owner-watch", daemon=True)
    thread.start()
    return thread
