"""A warm launcher: one process that has imported torch and friends forks each run's process.

A run started the plain way (`python -m lab.runs.worker RUN`) spends seconds importing torch,
torchvision and scikit-learn before its first step. The launcher pays that once: the app starts
`python -m lab.runs.launcher` when a page that can launch is opened (`warm`), it
imports the heavy modules, then listens on a Unix socket (`$LAB_HOME/launcher.sock`, this user
only). `lab.runs.jobs` asks it to start a run (`fork_run`): it forks a child that becomes the run's
process (its own session and pid, recorded in the store as before: cancel, stale detection,
resume and the queue do not change), which runs the worker module as `python -m` would.

What it never does: take runs with it. Children are in their own sessions and get no signal
when the launcher dies; the launcher only reaps them. When it is gone, not ready yet, or cannot
serve a request exactly as a fresh process would (another interpreter, different import-time
environment such as OMP_NUM_THREADS, or source files changed since it started), `fork_run`
returns None and jobs falls back to a plain spawn. It stops by itself once the Streamlit
server(s) that own it have been gone `IDLE_EXIT_S` seconds (lab.runs.owners), and it never
touches CUDA, so forked runs initialise CUDA themselves.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from lab.runs import owners
from lab.runs.store import lab_home

STATE_NAME = "launcher.json"
LOG_NAME = "launcher.log"
SOCKET_NAME = "launcher.sock"
IDLE_EXIT_S = 10.0  # it stops this long after its last owner (a Streamlit server) is gone
START_WAIT_S = 20.0  # a launch waits this long at most for a launcher that is still importing
# what a run imports before its first step (the default run: digits from scikit-learn)
WARM_MODULES = ("torch", "torchvision", "sklearn.datasets", "core", "core.training", "core.data",
                "lab.runs.store", "lab.runs.jobs")
# environment read when libraries load: a run whose values differ gets a fresh process
IMPORT_TIME_PREFIXES = ("PYTHON", "LD_", "OMP_", "MKL_", "KMP_", "GOMP_", "OPENBLAS_", "TORCH",
                        "PYTORCH_", "CUDA_MODULE_LOADING", "NCCL_")
REPO = Path(__file__).resolve().parents[2]
_MAX_REQUEST = 1 << 20  # bytes: a request is argv, cwd, env and a log path


# -- where it lives ---------------------------------------------------------------------------
def socket_path(home: str | os.PathLike | None = None) -> Path:
    """`$LAB_HOME/launcher.sock`, or a private temp folder when that path is too long for a
    Unix socket (108 bytes on Linux)."""
    path = lab_home(home) / SOCKET_NAME
    if len(os.fsencode(str(path))) < 100:
        return path
    import hashlib

    private = Path(tempfile.gettempdir()) / f"lab-launcher-{os.getuid()}"
    private.mkdir(mode=0o700, exist_ok=True)
    digest = hashlib.sha256(os.fsencode(str(lab_home(home).resolve()))).hexdigest()[:16]
    return private / f"{digest}.sock"


def _state_path(home: str | os.PathLike | None) -> Path:
    return lab_home(home) / STATE_NAME


def read_state(home: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The recorded launcher ({"pid", "pid_start", "owners", ...}), alive or not; None if none."""
    try:
        data = json.loads(_state_path(home).read_text())
        return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None
    except (OSError, ValueError):
        return None


def _write_state(home: str | os.PathLike | None, state: dict[str, Any]) -> None:
    path = _state_path(home)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, sort_keys=True))
    os.replace(tmp, path)


def running(home: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The recorded launcher if its process is alive (it may still be importing)."""
    from lab.runs.process import is_alive

    state = read_state(home)
    return state if state is not None and is_alive(state["pid"], state.get("pid_start")) else None


def source_stamp() -> dict[str, float]:
    """Modification times of the repository's modules this process has imported (what a fork
    would run from memory instead of reading the files again)."""
    root, stamp = str(REPO) + os.sep, {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and path.startswith(root):
            with contextlib.suppress(OSError):
                stamp[path] = os.stat(path).st_mtime
    return stamp


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def import_time_env(env: dict[str, str]) -> dict[str, str]:
    """The part of an environment that takes effect when libraries load (see the prefixes)."""
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME_PREFIXES)}


def worker_env(home: str | os.PathLike) -> dict[str, str]:
    """The environment jobs gives a run (LAB_HOME, and the repository on PYTHONPATH)."""
    env = dict(os.environ, LAB_HOME=str(home))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


# -- the app's side -----------------------------------------------------------------------------
def enabled() -> bool:
    """False when `LAB_LAUNCHER=0` (tests/conftest.py sets it: no launcher per AppTest)."""
    return os.environ.get("LAB_LAUNCHER", "1") != "0"


def warm(home: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """What the app's entry calls on every page run: `ensure_started` unless disabled. Cheap
    when the launcher is up (a file read and a /proc look-up)."""
    return ensure_started(home) if enabled() else None


def ensure_started(home: str | os.PathLike | None = None) -> dict[str, Any]:
    """Make sure a launcher for this lab is running or starting, owned by this process (the
    Streamlit server); returns its state. Never waits for it to be ready."""
    root = lab_home(home)
    root.mkdir(parents=True, exist_ok=True)
    me = owners.me()
    with open(root / f".{STATE_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two tabs, or two servers, start one launcher
        state = running(root)
        if state is not None:
            listed = [tuple(o) for o in state.get("owners", [])]
            if me not in listed:  # another server started it: own it too
                state["owners"] = [o for o in listed if owners.any_alive([o])] + [list(me)]
                _write_state(root, state)
            return state
        with contextlib.suppress(FileNotFoundError):
            socket_path(root).unlink()  # a dead launcher's: nobody answers there
        env = worker_env(root)
        with open(root / LOG_NAME, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "lab.runs.launcher", "--owner", owners.format_owner(me),
                 "--owners-file", str(_state_path(root)), "--idle-exit", str(IDLE_EXIT_S)],
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        from lab.runs.process import process_start

        state = {"pid": proc.pid, "pid_start": process_start(proc.pid), "owners": [list(me)],
                 "socket": str(socket_path(root)), "started_at": time.time()}
        _write_state(root, state)
        return state


def ready(home: str | os.PathLike | None = None) -> bool:
    """Whether a launcher answers on this lab's socket now."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(socket_path(home)))
        except OSError:
            return False
    return True


def stop(home: str | os.PathLike | None = None, grace: float = 10.0) -> bool:
    """Stop the recorded launcher (its runs keep running); True if one was alive."""
    from lab.runs.process import is_alive

    state = running(home)
    if state is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(state["pid"], signal.SIGTERM)
    deadline = time.monotonic() + grace
    while is_alive(state["pid"], state.get("pid_start")) and time.monotonic() < deadline:
        time.sleep(0.05)
    if is_alive(state["pid"], state.get("pid_start")):
        os.kill(state["pid"], signal.SIGKILL)
    return True


# -- jobs' side --------------------------------------------------------------------------------
def fork_run(home: str | os.PathLike, argv: list[str], *, cwd: str | None, env: dict[str, str],
             log: str | os.PathLike, timeout: float = 10.0,
             start_wait: float = START_WAIT_S) -> int | None:
    """Ask the lab's launcher to start `python -m argv[0] argv[1:]` as a run's process.

    Returns the new process's pid, or None when there is no launcher or it declines (then start
    the process the plain way). A launcher that is still importing is waited for, up to
    `start_wait` seconds: it started before a fresh process would, so it is ready sooner. The
    process is the launcher's child in a session of its own.
    """
    path = socket_path(home)
    request = json.dumps({"argv": argv, "cwd": cwd or os.getcwd(), "env": env,
                          "log": str(log), "executable": sys.executable}).encode() + b"\n"
    deadline = time.monotonic() + start_wait
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            while True:
                try:
                    s.connect(str(path))
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    if time.monotonic() > deadline or running(home) is None:
                        return None
                    time.sleep(0.05)
            s.sendall(request)
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
        answer = json.loads(reply)
    except (OSError, ValueError):
        return None
    pid = answer.get("pid") if isinstance(answer, dict) else None
    return pid if isinstance(pid, int) and pid > 0 else None


# -- the launcher process ------------------------------------------------------------------------
class Launcher:
    """The serving loop: one request at a time, single-threaded (forking with other threads
    running could copy a held lock into the child)."""

    def __init__(self, path: Path, watch: owners.OwnerWatch | None, startup_env: dict[str, str]):
        self.path, self.watch, self.stamp = path, watch, source_stamp()
        self.env = import_time_env(startup_env)  # before the imports, which add a few
        # what importing added (e.g. KMP_INIT_AT_FORK): a fresh process would have it too
        self.added = {k: v for k, v in os.environ.items() if k not in startup_env}
        self.children: set[int] = set()
        self.stopping: str | None = None

    def decline(self, request: dict[str, Any]) -> str | None:
        """Why this request needs a fresh process instead of a fork, or None."""
        if request.get("executable") != sys.executable:
            return f"another interpreter ({request.get('executable')} vs {sys.executable})"
        env = request.get("env")
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            return "env must map names to strings"
        theirs = import_time_env({k: v for k, v in env.items() if k not in self.added})
        if theirs != self.env:
            keys = sorted(k for k in set(theirs) | set(self.env)
                          if theirs.get(k) != self.env.get(k))
            return f"a different import-time environment ({', '.join(keys)})"
        if any(_mtime(f) != t for f, t in self.stamp.items()):
            self.stopping = "source files changed since it started; the next one loads them"
            return "source files changed since the launcher started"
        argv = request.get("argv")
        if (not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv)
                or not all(p.isidentifier() for p in argv[0].split("."))):
            return f"argv {argv!r} is not [module, args...]"
        if not isinstance(request.get("cwd"), str) or not isinstance(request.get("log"), str):
            return "cwd and log must be paths"
        return None

    def serve(self) -> int:
        rd, wr = os.pipe()  # SIGCHLD/SIGTERM wake the select below
        for fd in (rd, wr):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wr)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a dead launcher's socket (ensure_started holds the lock)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket file: this user only
        try:
            listener.bind(str(self.path))
        finally:
            os.umask(old)
        listener.listen(16)
        print(f"[lab.runs.launcher] pid {os.getpid()} ready at {self.path}", file=sys.stderr,
              flush=True)
        try:
            while self.stopping is None:
                ready, _, _ = select.select([listener, rd], [], [], 1.0)
                if rd in ready:
                    with contextlib.suppress(BlockingIOError):
                        os.read(rd, 4096)
                self._reap()
                if listener in ready:
                    conn, _ = listener.accept()
                    with conn:
                        self._handle(conn, listener, (rd, wr))
                if self.watch is not None and self.stopping is None:
                    self.stopping = self.watch.gone()
        finally:
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        print(f"[lab.runs.launcher] stopping: {self.stopping}; its runs keep running",
              file=sys.stderr, flush=True)
        return 0

    def _on_stop(self, signum: int, frame: Any) -> None:
        self.stopping = f"{signal.Signals(signum).name}"

    def _reap(self) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ChildProcessError):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    self.children.discard(pid)
                    print(f"[lab.runs.launcher] run process {pid} exited "
                          f"({os.waitstatus_to_exitcode(status)})", file=sys.stderr, flush=True)

    def _handle(self, conn: socket.socket, listener: socket.socket, pipe: tuple[int, int]) -> None:
        conn.settimeout(5.0)
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                    struct.calcsize("3i"))
            _, uid, _ = struct.unpack("3i", creds)
            if uid != os.getuid():
                return  # the socket's mode already keeps other users out
            data = b""
            while not data.endswith(b"\n") and len(data) < _MAX_REQUEST:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            if not data:
                return  # a readiness probe (`ready`)
            request = json.loads(data)
            why = self.decline(request) if isinstance(request, dict) else "not a JSON object"
            if why is not None:
                print(f"[lab.runs.launcher] declined (a plain process starts instead): {why}",
                      file=sys.stderr, flush=True)
                conn.sendall(json.dumps({"declined": why}).encode() + b"\n")
                return
            pid = self._fork(request, [conn, listener], pipe)
            self.children.add(pid)
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        except (OSError, ValueError) as e:
            print(f"[lab.runs.launcher] bad request: {e}", file=sys.stderr, flush=True)

    def _fork(self, request: dict[str, Any], sockets: list[socket.socket],
              pipe: tuple[int, int]) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        sync_r, sync_w = os.pipe()  # the reply waits until the child leads its own session
        pid = os.fork()
        if pid:
            os.close(sync_w)
            with contextlib.suppress(OSError):
                select.select([sync_r], [], [], 5.0)
            os.close(sync_r)
            return pid
        code = 1
        try:  # the child: become the run's process, as `python -m MODULE ARGS` from cwd would
            os.setsid()
            os.close(sync_r)
            os.close(sync_w)  # wakes the launcher
            signal.set_wakeup_fd(-1)
            for s in sockets:
                s.close()
            for fd in pipe:
                os.close(fd)
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT
                              else signal.default_int_handler)
            code = _become({**request, "env": {**self.added, **request["env"]}})
        except BaseException:  # noqa: B036 - the child must never return into the loop
            with contextlib.suppress(BaseException):
                traceback.print_exc()
        finally:
            with contextlib.suppress(BaseException):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)


def _become(request: dict[str, Any]) -> int:
    """In the forked child: stdio to the run's log, cwd and environment, then run the module."""
    import runpy

    log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    module, *args = request["argv"]
    sys.argv = [module, *args]
    sys.path[0] = os.getcwd()
    sys.modules.pop(module, None)  # run it fresh as __main__ (its imports stay warm)
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    return 0


def _warm() -> None:
    """Import what a run needs before its first step; never initialise CUDA."""
    import importlib

    for name in WARM_MODULES:
        importlib.import_module(name)
    maps = Path("/proc/self/maps")
    if maps.exists() and "libcuda.so" in maps.read_text():
        raise RuntimeError("the CUDA driver was loaded while importing; forked runs could not "
                           "use the GPU, so this launcher does not serve")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.runs.launcher", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--owner", action="append", default=[], metavar="PID[:START]",
                   help="stop once this process (and every other owner) is gone; repeatable")
    p.add_argument("--owners-file", metavar="FILE", help="more owners (see lab.runs.owners)")
    p.add_argument("--idle-exit", type=float, default=IDLE_EXIT_S, metavar="SECONDS",
                   help=f"with owners: stop after this long with none alive "
                   f"(default {IDLE_EXIT_S:g})")
    args = p.parse_args(argv)
    try:
        found = [owners.parse_owner(o) for o in args.owner]
    except ValueError as e:
        p.error(str(e))
    started, startup_env = time.monotonic(), dict(os.environ)
    try:
        _warm()
    except Exception as e:  # runs then start the plain way
        print(f"[lab.runs.launcher] not serving: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"[lab.runs.launcher] imported {', '.join(WARM_MODULES)} in "
          f"{time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    watch = owners.OwnerWatch(found, args.owners_file, args.idle_exit) if (
        found or args.owners_file) else None
    return Launcher(socket_path(), watch, startup_env).serve()


if __name__ == "__main__":
    sys.exit(main())
