"""The classifier app as a background process, started on demand and found again across reruns.

The Streamlit Classify page calls `ensure_server()` on every rerun: it reuses the process named in
`$LAB_HOME/classify_server.json` while that process lives and answers, and starts
`python -m lab classify` otherwise. Failures raise `ServerError` with what to do.

The calling process (the Streamlit server) is the classifier's owner: the classifier stops by
itself `IDLE_EXIT_S` seconds after its last owner is gone (lab.runs.owners), so stopping
the app leaves no classifier behind. A Streamlit server that reuses a running classifier adds
itself to the owners listed in the state file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.runs import owners
from lab.runs.ports import port_free
from lab.runs.store import Store, lab_home

STATE_NAME = "classify_server.json"
LOG_NAME = "classify_server.log"
DEFAULT_PORT = 7860  # Gradio's usual port; LAB_CLASSIFY_PORT overrides it
IDLE_EXIT_S = 10.0  # the classifier stops this long after its last owner (Streamlit) is gone
REPO = Path(__file__).resolve().parents[2]


class ServerError(RuntimeError):
    """The classifier app cannot be started or reached; the message says why and what to do."""


class NoRunsError(ServerError):
    """There is no completed run to classify with (not a fault: train one first)."""


@dataclass(frozen=True)
class ServerInfo:
    """A running classifier process."""

    pid: int
    pid_start: int | None  # /proc start time: tells the process from a later one with its pid
    host: str
    port: int
    started_at: float
    owners: tuple[tuple[int, int | None], ...] = ()  # (pid, start): the servers using it

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"


def _state_path(home: str | Path | None) -> Path:
    return lab_home(home) / STATE_NAME


def read_state(home: str | Path | None = None) -> ServerInfo | None:
    """The recorded server, alive or not (None if none was recorded or the file is unreadable)."""
    try:
        data = json.loads(_state_path(home).read_text())
        data["owners"] = tuple((int(p), None if s is None else int(s))
                               for p, s in data.get("owners", ()))
        return ServerInfo(**data)
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _write_state(home: str | Path | None, info: ServerInfo) -> None:
    from core.training.checkpoint import write_json

    write_json(_state_path(home), asdict(info))


def _alive(info: ServerInfo) -> bool:
    from lab.runs.process import is_alive

    return is_alive(info.pid, info.pid_start)


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether an HTTP server answers 200 at `url`."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback URL
            return r.status == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


def running_server(home: str | Path | None = None) -> ServerInfo | None:
    """The recorded server if its process is alive (it may still be starting)."""
    info = read_state(home)
    return info if info is not None and _alive(info) else None


def ensure_server(home: str | Path | None = None, *, host: str = "127.0.0.1",
                  port: int | None = None, timeout: float = 120.0) -> ServerInfo:
    """Return the live classifier server, starting one if none is alive.

    Raises:
        ServerError: no completed run to classify with, the port is taken by another program,
            the process died while starting, or it did not answer within `timeout` seconds.
    """
    root = lab_home(home)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{STATE_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two browser tabs at once start one server
        me = owners.me()
        info = running_server(home)
        if info is not None:
            if me not in info.owners:  # another Streamlit server started it: own it too
                info = ServerInfo(**{**asdict(info), "owners": tuple(
                    o for o in info.owners if owners.any_alive([o])) + (me,)})
                _write_state(home, info)
            return _wait_ready(info, None, root / LOG_NAME, timeout)
        with Store(home) as store:
            from lab.classify.model import completed_runs

            if not completed_runs(store):
                raise NoRunsError("No completed run yet, so there is nothing to classify "
                                  "with. Train one on the Train page (or `python -m lab "
                                  "train`), then come back.")
        port = port or int(os.environ.get("LAB_CLASSIFY_PORT") or DEFAULT_PORT)
        if not port_free(host, port):
            raise ServerError(f"Port {port} on {host} is in use by another program, so the "
                              f"classifier cannot start. Stop that program, or set "
                              f"LAB_CLASSIFY_PORT to a free port and reload.")
        env = {**os.environ, "LAB_HOME": str(root), "GRADIO_ANALYTICS_ENABLED": "False",
               "HF_HUB_OFFLINE": "1",
               "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get(
                   "PYTHONPATH")) if p)}
        with open(root / LOG_NAME, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "lab", "classify", "--host", host, "--port", str(port),
                 "--owner", owners.format_owner(me),
                 "--owners-file", str(_state_path(home)), "--idle-exit", str(IDLE_EXIT_S)],
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)  # survives Streamlit reruns
        from lab.runs.process import process_start

        info = ServerInfo(pid=proc.pid, pid_start=process_start(proc.pid), host=host,
                          port=port, started_at=time.time(), owners=(me,))
        _write_state(home, info)
        return _wait_ready(info, proc, root / LOG_NAME, timeout)


def _wait_ready(info: ServerInfo, proc: subprocess.Popen | None, log: Path,
                timeout: float) -> ServerInfo:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers(info.url):
            return info
        code = proc.poll() if proc is not None else None
        if code is not None or not _alive(info):
            raise ServerError(f"The classifier process exited while starting (exit code "
                              f"{code if code is not None else 'unknown'}). Last log lines "
                              f"({log}):\n{_tail(log)}")
        time.sleep(0.25)
    raise ServerError(f"The classifier did not answer at {info.url} within {timeout:.0f} s; "
                      f"it may still be starting (reload in a moment). Log: {log}")


def _tail(path: Path, lines: int = 12) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def stop_server(home: str | Path | None = None, grace: float = 10.0) -> bool:
    """Stop the recorded server (SIGTERM, then SIGKILL after `grace` s); True if one ran."""
    info = read_state(home)
    with contextlib.suppress(FileNotFoundError):
        _state_path(home).unlink()
    if info is None or not _alive(info):
        return False
    os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _alive(info) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(info):
        os.kill(info.pid, signal.SIGKILL)
    return True
