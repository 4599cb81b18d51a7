"""Benchmark: launching a grid of 200 runs, and the results view of 200 finished runs.

`python -m lab.bench.experiments [--repeats 5] [--page] [--tag cpu] [--out docs/bench]`

1. Launch: ``lab.experiments.grid.launch`` of the fewer-data preset (4 families x 5 fractions x
   10 seeds = 200 runs) into a fresh temporary LAB_HOME, as the page's Launch button does it
   (validation, the experiment record, 200 queued runs); the queue starts the first worker for
   real (LAB_MAX_JOBS=1) and every run is cancelled afterwards. Also the whole command line,
   ``python -m lab experiment fewer-data``, as a fresh process (interpreter and torch imports
   included). Target: under 2 s.
2. Results: 200 *finished* runs whose final metrics are made up here (written straight into a
   temporary store: a timing benchmark of the view, not a training result), then what the
   Experiments page computes on every refresh: read the runs, group them, statistics (t
   intervals, 70 paired comparisons with t and Wilcoxon tests, Holm), the table rows, CSV, and
   both figures serialised to JSON as ``st.plotly_chart`` sends them. Target: under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAUNCH_TARGET_S = 2.0
VIEW_TARGET_S = 1.0
REPO = Path(__file__).resolve().parents[2]


def _stats(values: list[float]) -> dict:
    values = sorted(values)
    return {"n": len(values), "median": statistics.median(values),
            "p90": values[min(len(values) - 1, int(0.9 * len(values)))], "max": values[-1]}


def time_launch(repeats: int) -> list[float]:
    """Seconds of grid.launch(200 runs) into a fresh store, ``repeats`` times."""
    from lab.experiments import grid
    from lab.runs import jobs
    from lab.runs.store import ACTIVE, Store

    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as home, Store(home) as st:
            spec = grid.preset("fewer-data")
            t = time.perf_counter()
            exp_id = grid.launch(spec, store=st, name="bench")
            times.append(time.perf_counter() - t)
            assert len(st.list_runs(experiment=exp_id)) == spec.runs == 200
            for run in st.list_runs(status=ACTIVE):
                jobs.cancel(run.id, store=st, grace=5)
    return times


def time_import(repeats: int) -> list[float]:
    """Seconds of `python -c "import core"` (interpreter and torch): the floor of any command."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import core"], cwd=REPO, check=True)
        times.append(time.perf_counter() - t)
    return times


def time_cli(repeats: int) -> list[float]:
    """Seconds of `python -m lab experiment fewer-data --name ...` (200 runs) in a new process."""
    from lab.runs import jobs
    from lab.runs.store import ACTIVE, Store

    times = []
    for i in range(repeats):
        with tempfile.TemporaryDirectory() as home:
            env = dict(os.environ, LAB_HOME=home, LAB_MAX_JOBS="1")
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "lab", "experiment", "fewer-data",
                                  "--name", f"cli{i}"], cwd=REPO, env=env, check=True,
                                 capture_output=True, text=True)
            times.append(time.perf_counter() - t)
            with Store(home) as st:
                assert len(st.list_runs(experiment=out.stdout.strip())) == 200
                for run in st.list_runs(status=ACTIVE):
                    jobs.cancel(run.id, store=st, grace=5)
    return times


def fill_finished(home: str) -> str:
    """The fewer-data grid (200 runs) with made-up final metrics and 10 epoch rows per run."""
    from lab.experiments import grid
    from lab.runs import jobs
    from lab.runs.store import Store

    real_spawn = jobs._spawn
    jobs._spawn = lambda *a, **k: None  # queue only: no worker trains these
    rng = random.Random(0)
    try:
        with Store(home) as st:
            exp_id = grid.launch(grid.preset("fewer-data"), store=st, name="bench")
            for run_id, p in st.require_experiment(exp_id).points.items():
                st._conn.execute("UPDATE runs SET status = 'running' WHERE id = ?", (run_id,))
                acc = min(0.999, 0.85 + 0.12 * p["axes"]["fraction"] + rng.gauss(0, 0.01))
                st.finish(run_id, "completed",
                          final={"test_acc": acc, "test_loss": 1 - acc, "step": 300,
                                 "num_params": 32000, "time": 10.0 + rng.random()},
                          epochs=[{"epoch": e, "test_acc": acc * e / 10} for e in range(1, 11)])
    finally:
        jobs._spawn = real_spawn
    return exp_id


def time_view(home: str, exp_id: str, repeats: int) -> tuple[list[float], list[float], dict]:
    """(wall s, CPU s) of the page's server-side work per refresh, and the last sizes."""
    from lab.runs.store import Store
    from lab.views import experiments as ev

    walls, cpus, sizes = [], [], {}
    for _ in range(repeats + 1):  # the first warms imports up, not counted
        t, c = time.perf_counter(), time.process_time()
        with Store(home) as st:
            v = ev.view(exp_id, store=st)
        groups = ev.group_rows(v.results)
        comps = ev.comparison_rows(v.results)
        csv = ev.table_csv(v.results)
        line, parallel = ev.figures(v.results, "fraction")
        payload = line.to_json() + parallel.to_json()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
        sizes = {"groups": len(groups), "comparisons": len(comps), "csv_bytes": len(csv),
                 "figure_json_bytes": len(payload), "runs": len(v.results.points)}
    return walls[1:], cpus[1:], sizes


def time_page(home: str, exp_id: str, repeats: int) -> list[float]:
    """Wall seconds of the whole Experiments page script (AppTest, through the app's
    navigation), attached to the experiment."""
    from streamlit.testing.v1 import AppTest

    os.environ["LAB_HOME"] = home
    times = []
    for _ in range(repeats + 1):
        at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120)
        at.query_params["experiment"] = exp_id
        at.run()
        t = time.perf_counter()
        at.switch_page("pages/6_Experiments.py").run()
        times.append(time.perf_counter() - t)
        assert not at.exception, at.exception
    return times[1:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.bench.experiments", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--page", action="store_true", help="also time the whole page (AppTest)")
    p.add_argument("--tag", default=None)
    p.add_argument("--out", default="docs/bench")
    args = p.parse_args(argv)
    os.environ.setdefault("LAB_MAX_JOBS", "1")

    launches = time_launch(args.repeats + 1)  # the first imports torch and core: cold
    cold, launch = launches[0], _stats(launches[1:])
    cli = _stats(time_cli(max(1, args.repeats // 2)))
    imports = _stats(time_import(max(1, args.repeats // 2)))
    with tempfile.TemporaryDirectory() as home:
        exp_id = fill_finished(home)
        walls, cpus, sizes = time_view(home, exp_id, args.repeats * 2)
        page = _stats(time_page(home, exp_id, 3)) if args.page else None
    view, view_cpu = _stats(walls), _stats(cpus)
    load = os.getloadavg()[0]
    rows = [("launch 200 runs: grid.launch in the app's process, wall", launch),
            ("the same, the process's first launch (imports torch and core), wall",
             _stats([cold])),
            ("launch 200 runs: `python -m lab experiment fewer-data`, fresh process, wall", cli),
            ("for reference: `python -c 'import core'` (interpreter and torch), wall", imports),
            ("results view, 200 finished runs: group, statistics, tables, CSV, 2 figures "
             "to JSON, wall", view),
            ("results view, CPU time of this process", view_cpu)]
    if page:
        rows.append(("whole Experiments page script attached to the experiment (AppTest), wall",
                     page))
    command = "python -m lab.bench.experiments " + shlex.join(argv if argv is not None
                                                             else sys.argv[1:])
    md = ["# Experiments: launch and results view (server side)", "",
          f"Command: `{command}`", "",
          "Launch: the fewer-data preset (4 families x 5 fractions x 10 seeds = 200 runs) into a "
          "fresh store; the queue starts the first worker (LAB_MAX_JOBS=1), then every run is "
          "cancelled. Results: 200 finished runs whose final metrics were made up and written "
          "straight into a temporary store (a timing benchmark of the view, not a training "
          f"result): {sizes['groups']} groups, {sizes['comparisons']} paired comparisons.", "",
          "| what | n | median s | p90 s | max s |", "|---|---|---|---|---|"]
    md += [f"| {what} | {s['n']} | {s['median']:.3f} | {s['p90']:.3f} | {s['max']:.3f} |"
           for what, s in rows]
    md += ["", f"Targets: launching 200 runs under {LAUNCH_TARGET_S:g} s: in the app "
           f"p90 {launch['p90']:.2f} s ({'meets' if launch['p90'] < LAUNCH_TARGET_S else 'misses'}"
           f" it); the command line, interpreter and torch imports included, median "
           f"{cli['median']:.2f} s ({'meets' if cli['median'] < LAUNCH_TARGET_S else 'misses'} "
           f"it: importing torch alone takes {imports['median']:.2f} s). The results view "
           f"under {VIEW_TARGET_S:g} s: p90 {view['p90']:.2f} s "
           f"({'meets' if view['p90'] < VIEW_TARGET_S else 'misses'} it). 1-minute load "
           f"average at the end: {load:.1f} on {os.cpu_count()} CPUs (a machine shared with "
           "other jobs).", ""]
    text = "\n".join(md)
    print(text)
    payload = {"command": command, "machine": platform.platform(), "cpus": os.cpu_count(),
               "load_1min": load, "launch_s": launch, "launch_cold_s": cold, "cli_s": cli,
               "import_core_s": imports, "view_s": view,
               "view_cpu_s": view_cpu, "page_s": page, "sizes": sizes,
               "targets_s": {"launch": LAUNCH_TARGET_S, "view": VIEW_TARGET_S}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "experiments" + (f"-{args.tag}" if args.tag else "")
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(f"saved {out / stem}.md, .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
