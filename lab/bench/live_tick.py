"""Benchmark: one live tick of the Train page, server side, with a big store.

`python -m lab.bench.live_tick [--runs 100] [--steps 20000] [--tag cpu]` fills a temporary
LAB_HOME with ``--runs`` finished runs plus one running run of ``--steps`` steps, then times
what the Train page's live fragment does each second: open the store, read the new metric rows
(``after_step=``), rebuild the four live figures (each trace downsampled to at most
``lab.runs.live.MAX_POINTS`` points) and serialise them to JSON as ``st.plotly_chart`` sends them.
Between ticks a writer appends ``--new`` steps, as a training process would. It also times the
attach after a browser reload (a fresh reader takes the whole run) and, with ``--page``, the
whole Train page script through Streamlit's AppTest. Target: a tick under 200 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

TARGET_MS = 200.0


def _step(i: int) -> dict:
    return {"step": i, "epoch": i // 1000, "loss": 2.0 / (1 + i / 500),
            "acc": min(0.1 + i / 2e4, 1.0),
            "lr": 0.1, "samples_per_sec": 3000.0 + (i % 7), "peak_mem_bytes": 900 << 20,
            "saved_bytes": (17 << 20) + (i % 3), "time": 0.02 * i}


def fill_store(home: Path, runs: int, steps: int) -> str:
    """``runs`` completed runs (300 steps, 15 epochs each) and one running run of ``steps``."""
    from lab.runs.store import Store

    with Store(home) as st:
        for k in range(runs):
            rid = st.create_run({"model": "hamiltonian", "dataset": "digits", "epochs": 15,
                                 "memory": "reversible", "seed": k}, status="running")
            st.finish(rid, "completed", final={"test_acc": 0.99},
                      steps=[_step(i) for i in range(300)],
                      epochs=[{"epoch": e, "test_acc": 0.9 + e / 200} for e in range(15)])
        rid = st.create_run({"model": "hamiltonian-218", "dataset": "shapes", "epochs": 20,
                             "memory": "reversible"}, status="running")
        st.add_event(rid, "start", json.dumps({"total_steps": steps * 2}))
        for lo in range(0, steps, 5000):
            st.write_metrics(rid, [_step(i) for i in range(lo, min(lo + 5000, steps))])
        st.write_metrics(rid, [], [{"epoch": e, "train_acc": 0.5 + e / 40, "test_acc": 0.5 + e / 50}
                                   for e in range(steps // 1000)])
    return rid


def tick(home: Path, live, figs: dict) -> tuple[float, float]:
    """One fragment rerun's server-side work, as pages/1_Train.py does it: (wall s, CPU s).

    ``figs`` holds the last tick's figures (the page keeps them in st.session_state).
    """
    import plotly.io as pio

    from lab.figures.runs import live_figures
    from lab.runs.store import Store

    t0, c0 = time.perf_counter(), time.process_time()
    with Store(home) as st:
        live.refresh(st)
    live.progress()
    figs.update(live_figures(live, previous=figs))
    for fig in figs.values():  # what st.plotly_chart does with a figure
        pio.to_json(fig.to_dict(), validate=False)
    return time.perf_counter() - t0, time.process_time() - c0


def _stats(seconds: list[float]) -> dict:
    ms = sorted(s * 1e3 for s in seconds)
    return {"n": len(ms), "median_ms": statistics.median(ms),
            "p90_ms": ms[min(int(0.9 * len(ms)), len(ms) - 1)], "max_ms": ms[-1]}


def page_runs(home: Path, run_id: str, repeats: int) -> list[float]:
    """Full Train-page script reruns attached to the run (AppTest, in this process)."""
    from streamlit.testing.v1 import AppTest

    page = Path(__file__).resolve().parents[2] / "pages" / "1_Train.py"
    out = []
    for i in range(repeats + 1):
        at = AppTest.from_file(str(page), default_timeout=300)
        at.query_params["run"] = run_id
        t0 = time.perf_counter()
        at.run()
        if at.exception:
            raise RuntimeError(f"the Train page failed: {at.exception[0].message}")
        if i:  # the first run imports torch and fills caches
            out.append(time.perf_counter() - t0)
    return out


def run(args: argparse.Namespace) -> tuple[dict, str]:
    from lab.runs.live import LiveRun
    from lab.runs.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        os.environ["LAB_HOME"] = str(home)
        t0 = time.perf_counter()
        rid = fill_store(home, args.runs, args.steps)
        fill_s = time.perf_counter() - t0
        attach = [tick(home, LiveRun(rid), {})  # a reload: read all, build every figure
                  for _ in range(args.attach_repeats)]
        live, figs = LiveRun(rid), {}
        tick(home, live, figs)
        ticks, step = [], args.steps
        with Store(home) as writer:
            for _ in range(args.repeats):
                writer.write_metrics(rid, [_step(i) for i in range(step, step + args.new)])
                step += args.new
                ticks.append(tick(home, live, figs))
        page = page_runs(home, rid, args.page) if args.page else []
    payload = {
        "benchmark": "live-tick", "target_ms": TARGET_MS, "runs_in_store": args.runs + 1,
        "steps": args.steps, "new_steps_per_tick": args.new, "fill_store_s": fill_s,
        "tick": _stats([w for w, _ in ticks]), "tick_cpu": _stats([c for _, c in ticks]),
        "attach": _stats([w for w, _ in attach]), "attach_cpu": _stats([c for _, c in attach]),
        "page": _stats(page) if page else None,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]},
    }
    t = payload["tick"]
    row = lambda what, s: (f"| {what} | {s['n']} | {s['median_ms']:.1f} | "  # noqa: E731
                           f"{s['p90_ms']:.1f} | {s['max_ms']:.1f} |")
    lines = [
        f"Store: {args.runs} completed runs (300 steps each) + one running run of {args.steps} "
        f"steps; the writer appends {args.new} steps before each tick.", "",
        "| what | n | median ms | p90 ms | max ms |", "|---|---|---|---|---|",
        row("live tick, wall (read new rows, update 4 figures, serialise)", t),
        row("live tick, CPU time of this process", payload["tick_cpu"]),
        row(f"attach after a reload, wall (read all {args.steps} steps, build 4 figures)",
            payload["attach"]),
        row("attach after a reload, CPU time", payload["attach_cpu"]),
    ]
    if page:
        lines.append(row("whole Train page script attached to the run (AppTest), wall",
                         payload["page"]))
    verdict = "meets" if t["p90_ms"] < TARGET_MS else "misses"
    lines += ["", f"Target: one live tick under {TARGET_MS:.0f} ms server-side: p90 "
              f"{t['p90_ms']:.1f} ms ({verdict} it). 1-minute load average during the run: "
              f"{payload['machine']['load_avg_1m']:.1f} on {os.cpu_count()} CPUs."]
    return payload, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.bench.live_tick", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100, help="finished runs in the store")
    parser.add_argument("--steps", type=int, default=20_000, help="steps of the live run")
    parser.add_argument("--new", type=int, default=50, help="steps appended before each tick")
    parser.add_argument("--repeats", type=int, default=50, help="ticks timed")
    parser.add_argument("--attach-repeats", type=int, default=5, help="reload attaches timed")
    parser.add_argument("--page", type=int, default=0, help="also time N whole page reruns")
    parser.add_argument("--out", default="docs/bench", help="folder for the .json and .md")
    parser.add_argument("--tag", default=None, help="file name suffix, e.g. cpu")
    args = parser.parse_args(argv)
    for name in ("runs", "steps", "new", "repeats", "attach_repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    payload, md = run(args)
    command = "python -m lab.bench.live_tick " + shlex.join(sys.argv[1:] if argv is None
                                                             else argv)
    payload["command"] = command
    md = f"# Live tick (server side)\n\nCommand: `{command}`\n\n{md}\n"
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "live-tick" + (f"-{args.tag}" if args.tag else "")
    (out / f"{stem}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (out / f"{stem}.md").write_text(md)
    print(f"saved {out / (stem + '.json')} and {out / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
