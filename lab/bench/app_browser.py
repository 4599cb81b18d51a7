"""The app in a real browser: serve the lab, drive Debian's Chromium, time what a user waits for.

`python -m lab.bench.app_browser [--out docs/bench --tag cpu]` measures the issue's two browser
targets: the first page rendered within 3 s of the server being up (from the first healthy
``/_stcore/health`` answer to the Home page's title drawn in the browser) and, on the default
configuration, the first live point within 3 s of launch (from the click on Train's "Launch" to
the first point of the accuracy curve in the page, the run forked by the warm launcher). The
helpers (``serve``, ``browser``, ``wait_idle``, ``curve_points``) also serve tests/e2e.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from lab.runs.ports import free_port
from lab.runs.store import ACTIVE

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parents[2]
LOCAL_HOSTS = {"127.0.0.1"}
# schemes that never reach the network
_LOCAL_SCHEMES = {"data", "blob", "about", "chrome", "chrome-extension", "devtools"}


@dataclass
class Server:
    """A running `streamlit run streamlit_app.py` on 127.0.0.1."""

    url: str
    proc: subprocess.Popen
    up_at: float        # time.monotonic() of the first healthy answer
    log: Path


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def serve(lab_home: str | os.PathLike, *, port: int | None = None, timeout: float = 90,
          log: str | os.PathLike | None = None,
          env: dict[str, str] | None = None) -> Iterator[Server]:
    """Start the lab app with ``LAB_HOME=lab_home`` and wait until it answers its health check.

    ``env`` adds environment variables for the server and the runs it launches. The warm run
    launcher is on, as for a user (``LAB_LAUNCHER=1``), unless ``env`` says otherwise.
    Stops it (and nothing else) on exit. Raises RuntimeError with the server's log tail if it
    does not come up within ``timeout`` seconds.
    """
    port = port or free_port()
    log_path = Path(log) if log else Path(lab_home) / "streamlit.log"
    env = {**os.environ, "LAB_HOME": str(lab_home), "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "LAB_LAUNCHER": "1",
           **(env or {})}
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py",
             "--server.address", "127.0.0.1", "--server.port", str(port),
             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"streamlit did not come up on {url} "
                                   f"(exit code {proc.poll()}); log:\n{tail}")
            time.sleep(0.05)
        yield Server(url, proc, time.monotonic(), log_path)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)  # its own session: the server and nothing else
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(5)


@dataclass
class Browser:
    """A Playwright context on Debian's Chromium that records every URL the pages ask for."""

    context: object
    requests: list[str] = field(default_factory=list)

    def foreign(self) -> list[str]:
        """Every recorded request that leaves 127.0.0.1."""
        out = []
        for url in self.requests:
            u = urlparse(url)
            if u.scheme not in _LOCAL_SCHEMES and u.hostname not in LOCAL_HOSTS:
                out.append(url)
        return out


def chromium_available() -> bool:
    return os.access(CHROMIUM, os.X_OK)


@contextlib.contextmanager
def browser(user_data_dir: str | os.PathLike) -> Iterator[Browser]:
    """Headless Chromium with a fresh profile in ``user_data_dir``; records requests and sockets."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(user_data_dir), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000})
        b = Browser(context)
        context.on("request", lambda r: b.requests.append(r.url))
        context.on("page", lambda page: page.on(
            "websocket", lambda ws: b.requests.append(ws.url)))
        for page in context.pages:
            page.on("websocket", lambda ws: b.requests.append(ws.url))
        try:
            yield b
        finally:
            context.close()


_SCRIPT_STATE = ("() => { const a = document.querySelector('[data-testid=\"stApp\"]');"
                 " return a ? a.getAttribute('data-test-script-state') : null; }")


def wait_idle(page, timeout: float = 120) -> None:
    """Wait until the page's script has run to its end: the app root's
    ``data-test-script-state`` reads ``notRunning`` twice, 0.3 s apart (fragments rerun too)."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 2:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page at {page.url} was still running after {timeout} s")
        quiet = quiet + 1 if page.evaluate(_SCRIPT_STATE) == "notRunning" else 0
        page.wait_for_timeout(300)


CURVE_POINTS_JS = """(title) => {
    let n = 0;
    for (const gd of document.querySelectorAll('.js-plotly-plot')) {
        const t = gd.layout && gd.layout.title && gd.layout.title.text;
        if (t !== undefined && t !== null && String(t).includes(title)) {
            // _fullData: plotly's decoded traces (data may hold base64 'bdata' objects)
            for (const tr of (gd._fullData || [])) {
                const y = tr.y && tr.y.length !== undefined ? Array.from(tr.y) : [];
                n += y.filter(v => v !== null && !Number.isNaN(v)).length;
            }
        }
    }
    return n;
}"""


def curve_points(page, title: str) -> int:
    """Points drawn in the page's plotly charts whose title contains ``title``."""
    return page.evaluate(CURVE_POINTS_JS, title)


def wait_curve(page, title: str, timeout: float) -> None:
    """Wait until a chart titled ``title`` shows at least one point."""
    page.wait_for_function(f"({CURVE_POINTS_JS})({json.dumps(title)}) > 0",
                           timeout=timeout * 1000)


# ---------------------------------------------------------------- the benchmark


def _cancel_all(home: Path) -> None:
    from lab.runs import jobs
    from lab.runs.store import Store

    with Store(home) as store:
        for run in store.list_runs(status=ACTIVE):
            jobs.cancel(run.id, store=store, grace=5)


def measure_once(work: Path, launcher: bool = True) -> dict:
    """One fresh server and browser: seconds to the first page and to the first live point."""
    home = work / "lab_home"
    home.mkdir(parents=True)
    with browser(work / "profile") as b:
        page = b.context.new_page()
        with serve(home, env={"LAB_LAUNCHER": "1" if launcher else "0"}) as server:
            page.goto(server.url + "/", wait_until="commit")
            page.get_by_role("heading", level=1).first.wait_for(timeout=60_000)
            first_page = time.monotonic() - server.up_at
            page.goto(server.url + "/Train")
            wait_idle(page)
            button = page.get_by_role("button", name="Launch", exact=True)
            button.wait_for(timeout=60_000)
            launcher_ready = (_wait_launcher(home, server.up_at)  # a user reading the form
                              if launcher else None)
            clicked = time.monotonic()
            button.click()
            try:
                wait_curve(page, "Accuracy", timeout=300)
                first_point = time.monotonic() - clicked
            finally:
                _cancel_all(home)  # the launched run: its process outlives the server
        foreign = b.foreign()
    return dict(first_page_s=first_page, first_live_point_s=first_point,
                launcher_ready_s=launcher_ready, requests=len(b.requests),
                foreign_requests=foreign)


def _wait_launcher(home: Path, since: float, timeout: float = 120) -> float | None:
    """Seconds from `since` until the app's warm run launcher answers (None: it never did, so
    the launch will start a fresh process and pay for the imports)."""
    from lab.runs import launcher

    deadline = time.monotonic() + timeout
    while not launcher.ready(home):
        if time.monotonic() > deadline or (launcher.read_state(home) is not None
                                           and launcher.running(home) is None):
            return None
        time.sleep(0.05)
    return time.monotonic() - since


def _fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.bench.app_browser", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="fresh server + browser each")
    p.add_argument("--out", default="docs/bench", help="folder for app-<tag>.md/.json")
    p.add_argument("--tag", default="cpu")
    p.add_argument("--note", default="", help="a line about the machine's state (e.g. load)")
    p.add_argument("--no-launcher", action="store_true",
                   help="LAB_LAUNCHER=0: each run a fresh process (the figure before the warm "
                   "launcher, for a comparison on the same machine)")
    args = p.parse_args(argv)
    if not chromium_available():
        print(f"{CHROMIUM} not found: install it (apt-get install -y chromium)", file=sys.stderr)
        return 2
    runs = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="lab-app-bench-") as tmp:
            runs.append(measure_once(Path(tmp), launcher=not args.no_launcher))
        print(f"  run {i + 1}: first page {runs[-1]['first_page_s']:.2f} s, first live point "
              f"{runs[-1]['first_live_point_s']:.2f} s, launcher ready "
              f"{_fmt(runs[-1]['launcher_ready_s'])} s after server up", flush=True)
    command = "python -m lab.bench.app_browser " + shlex.join(argv if argv is not None
                                                                else sys.argv[1:])
    med = {k: statistics.median(r[k] for r in runs) for k in ("first_page_s",
                                                              "first_live_point_s")}
    load = os.getloadavg()
    payload = dict(benchmark="app-browser", command=command.strip(),
                   date=dt.datetime.now().isoformat(timespec="seconds"), cores=os.cpu_count(),
                   loadavg=load, note=args.note, runs=runs, median=med,
                   targets={"first_page_s": 3.0, "first_live_point_s": 3.0})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"app-{args.tag}.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [f"Command: `{payload['command']}`", "",
             f"{payload['date']}, {os.cpu_count()} cores, load average "
             f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)"
             + (f"; {args.note}" if args.note else ""), "",
             "| run | first page after server up (s) | first live point after Launch (s) "
             "| run launcher ready after server up (s) |",
             "|---|---|---|---|"]
    lines += [f"| {i + 1} | {r['first_page_s']:.2f} | {r['first_live_point_s']:.2f} "
              f"| {_fmt(r['launcher_ready_s'])} |" for i, r in enumerate(runs)]
    lines += [f"| median | {med['first_page_s']:.2f} | {med['first_live_point_s']:.2f} | |", "",
              f"Targets: first page <= 3 s ({'met' if med['first_page_s'] <= 3 else 'NOT met'}),"
              f" first live point <= 3 s "
              f"({'met' if med['first_live_point_s'] <= 3 else 'NOT met'}).", "",
              "First page: from the first healthy `/_stcore/health` answer of a fresh `streamlit "
              "run streamlit_app.py` to the Home page's title drawn in headless Chromium (browser "
              "already started, the page requested at that moment). First live point: from the "
              "click on Train's **Launch** (default configuration) to the first point of the "
              "accuracy curve in the page: the run queued, its process started, data and model "
              "built, the first steps recorded in the store and read by the live fragment. "
              + ("Measured with `--no-launcher` (LAB_LAUNCHER=0): every run a fresh Python "
                 "process importing torch, torchvision and scikit-learn itself, for comparison."
                 if args.no_launcher else
                 "The run's process is forked by the app's warm run launcher (lab.runs.launcher: "
                 "torch, torchvision and scikit-learn already imported). The click waits until "
                 "that launcher answers (it starts with the server's first page; the last "
                 "column), as a user reading the form would; a click before that waits for it "
                 "inside the launch.")
              + " Requests leaving 127.0.0.1 over all runs: "
              f"{sum(len(r['foreign_requests']) for r in runs)}."]
    (out / f"app-{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
