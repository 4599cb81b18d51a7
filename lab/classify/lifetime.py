"""The classifier's lifetime: it stops once every process that owns it has been gone a while.

The Streamlit app starts the classifier as its own process (its own session, so page reruns and
reloads never stop it) and names itself as its owner: `--owner PID:START`. A Streamlit server
that later reuses the running classifier adds itself to the owners file (`--owners-file`, a JSON
object ``{"pid": <classifier pid>, "owners": [[pid, start], ...]}``; owners listed for another
classifier pid are ignored). When no owner has been alive for `idle` seconds, the classifier
shuts down, so stopping the app (Ctrl+C on `scripts/app.sh`) leaves nothing behind. Started by
hand (`python -m lab classify`, no owner), it runs until stopped.
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


def file_owners(path: str | os.PathLike | None, pid: int | None = None) -> list[Owner]:
    """Owners listed in ``path`` for classifier ``pid`` (this process by default); [] if the file
    is missing, unreadable, or written for another classifier."""
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
    from lab.runs.jobs import is_alive

    return any(is_alive(pid, start) for pid, start in owners)


def watch(owners: Iterable[Owner], owners_file: str | os.PathLike | None, idle: float,
          on_gone: Callable[[str], None], poll: float = 1.0) -> threading.Thread:
    """Start a daemon thread calling ``on_gone(reason)`` once no owner (given, or listed in
    ``owners_file``) has been alive for ``idle`` seconds; it checks every ``poll`` seconds."""
    fixed = list(owners)

    def loop() -> None:
        gone_since = None
        while True:
            current = fixed + file_owners(owners_file)
            if any_alive(current):
                gone_since = None
            elif gone_since is None:
                gone_since = time.monotonic()
            elif time.monotonic() - gone_since >= idle:
                pids = ", ".join(str(p) for p, _ in current) or "none"
                on_gone(f"the Streamlit server(s) that used it (pid {pids}) have been gone "
                        f"for {idle:g} s")
                return
            time.sleep(poll)

    thread = threading.Thread(target=loop, name="classifier-owners", daemon=True)
    thread.start()
    return thread
