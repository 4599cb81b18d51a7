"""`python -m lab runs|show|export|cancel|delete`: the run store from the terminal."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lab.runs.store import ACTIVE, STATUSES
from lab.runs.table import CLI_COLUMNS, duration_text, text_rows, when


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def text_table(rows: list[list[str]], header: list[str], *, rule: bool = False) -> str:
    """A plain fixed-width text table; `rule`: a line of dashes under the header."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [header, *([["-" * w for w in widths]] if rule else []), *rows]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in lines)


def _cmd_runs(args: argparse.Namespace) -> int:
    from lab.runs import jobs
    from lab.runs.store import Store

    with Store() as store:
        jobs.reconcile(store)
        runs = store.list_runs(status=args.status, limit=args.limit)
    if not runs:
        print("no runs yet; start one with `python -m lab train`", file=sys.stderr)
        return 0
    print(text_table(text_rows(runs), list(CLI_COLUMNS.values())))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from lab.runs import jobs
    from lab.runs.store import LOG_NAME, Store

    with Store() as store:
        run_id = store.resolve(args.run)
        jobs.reconcile(store)
        run = store.require_run(run_id)
        epochs = store.epoch_metrics(run_id)
        folder = store.run_dir(run_id)
    lines = [f"run {run.id}" + (f" ({run.name})" if run.name else ""),
             f"status:   {run.status}" + (f" - {run.reason}" if run.reason else "")]
    if run.error:
        lines.append(f"error:    {run.error}")
    lines += [f"created:  {when(run.created_at) or '-'}   started: {when(run.started_at) or '-'}"
              f"   duration: {duration_text(run.duration)}   attempts: {run.attempts}",
              f"folder:   {folder}   (log: {LOG_NAME})",
              "config:", *(f"  {k}: {json.dumps(v)}" for k, v in sorted(run.config.items()))]
    if epochs:
        rows = [[str(e["epoch"]), f"{e['train_loss']:.4f}" if e["train_loss"] is not None else "-",
                 _pct(e["train_acc"]), f"{e['test_loss']:.4f}" if e["test_loss"] is not None
                 else "-", _pct(e["test_acc"])] for e in epochs]
        lines += ["epochs:", text_table(rows, ["EPOCH", "TRAIN LOSS", "TRAIN ACC", "TEST LOSS",
                                           "TEST ACC"])]
    lines += ["final metrics:", *(f"  {k}: {json.dumps(v)}" for k, v in sorted(
        (run.final or {}).items()))] if run.final else ["final metrics: none (not completed)"]
    print("\n".join(lines))
    return 0




def _cmd_export(args: argparse.Namespace) -> int:
    from lab.runs.export import write_metrics_csv
    from lab.runs.store import Store

    with Store() as store:
        run_id = store.resolve(args.run)
        if args.output in (None, "-"):
            write_metrics_csv(store, run_id, sys.stdout)
            return 0
        with open(args.output, "w", newline="") as f:
            n = write_metrics_csv(store, run_id, f)
    print(f"wrote {n} rows to {args.output}", file=sys.stderr)
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    from lab.runs import jobs
    from lab.runs.store import Store

    if (args.run is None) == (not args.all):
        args.parser.error("name one RUN to cancel, or --all for every queued and running run")
    with Store() as store:
        if not args.all:
            run_id = store.resolve(args.run)
            status = jobs.cancel(run_id, store=store, grace=args.grace)
            print(f"run {run_id} {status}")
            return 0
        jobs.reconcile(store, schedule_queue=False)  # dead runs are stale, not cancellable
        # queued ones first, so none of them starts in a slot that a cancel frees
        active = sorted(store.list_runs(status=ACTIVE),
                        key=lambda r: r.status != "queued")
        for run in active:
            try:
                status = jobs.cancel(run.id, store=store, grace=args.grace)
            except jobs.JobError:  # it ended meanwhile
                status = store.require_run(run.id).status
            print(f"run {run.id} {status}")
    if not active:
        print("no queued or running runs", file=sys.stderr)
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    from lab.runs import jobs
    from lab.runs.store import Store

    with Store() as store:
        run_id = store.resolve(args.run)
        jobs.delete(run_id, store=store, force=args.force)
    print(f"run {run_id} deleted")
    return 0


def add_runs_commands(sub: Any) -> None:
    """Register `runs`, `show`, `export`, `cancel` and `delete` on the sub-parsers."""
    p = sub.add_parser("runs", help="table of runs, newest first")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--limit", type=int, help="show at most this many")
    p.set_defaults(func=_cmd_runs)

    p = sub.add_parser("show", help="a run's status, config and final metrics")
    p.add_argument("run", help="run id (or a unique prefix)")
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser("export", help="a run's step and epoch metrics as CSV")
    p.add_argument("run", help="run id (or a unique prefix)")
    p.add_argument("-o", "--output", help="file to write (default: stdout)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("cancel", help="cancel a queued or running run (or --all of them)",
                       description="Runs are their own processes and keep training after the "
                       "app or terminal that started them is gone; this stops them (each "
                       "checkpoints first).")
    p.add_argument("run", nargs="?", help="run id (or a unique prefix)")
    p.add_argument("--all", action="store_true", help="every queued and running run")
    p.add_argument("--grace", type=float, default=10.0,
                   help="seconds to wait after SIGTERM before SIGKILL (default 10)")
    p.set_defaults(func=_cmd_cancel, parser=p)

    p = sub.add_parser("delete", help="delete a run's records and folder")
    p.add_argument("run", help="run id (or a unique prefix)")
    p.add_argument("--force", action="store_true", help="kill it first if it is running")
    p.set_defaults(func=_cmd_delete)


