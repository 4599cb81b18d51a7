"""`python -m lab experiment ...`: fewer-data, reproduce, drift (thin calls into the runners)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent.parent.parent / "docs" / "experiments"


def _fractions(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or any(not 0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected fractions in (0, 1] like 0.05,0.5,1, got "
                                         f"{text!r}")
    return values


def _cmd_fewer_data(args: argparse.Namespace) -> int:
    import json

    from lab.experiments import fewer_data as fd
    from lab.runs.store import Store

    out = Path(args.out)
    with Store() as store:
        if args.collect:
            manifest = Path(args.collect)
            data = json.loads(manifest.read_text())
            ids, plan = data["runs"], data["plan"]
        else:
            families = args.families.split(",") if args.families else list(fd.FAMILIES)
            plan_obj = fd.FewerDataPlan(dataset=args.dataset, families=families,
                                        fractions=args.fractions or fd.FRACTIONS,
                                        seeds=args.seeds, steps=args.steps,
                                        batch_size=args.batch_size)
            try:
                plan_obj.validate()
            except ValueError as e:
                args.parser.error(str(e))
            os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))  # inherited by workers
            manifest = (Path(store.home) / "experiments"
                        / f"{fd.NAME}-{time.strftime('%Y%m%d-%H%M%S')}.json")
            ids = fd.launch(plan_obj, store, manifest)
            plan = fd._plan_json(plan_obj)
            print(f"queued {len(ids)} runs named {fd.NAME}/<family>/<fraction>/<seed>; "
                  f"manifest {manifest}", file=sys.stderr)
            if args.no_wait:
                print(f"collect later with `python -m lab experiment fewer-data --collect "
                      f"{manifest}`", file=sys.stderr)
                return 0
        command = ("python -m lab experiment fewer-data " + shlex.join([
            "--dataset", plan["dataset"], "--families", ",".join(plan["families"]),
            "--fractions", ",".join(f"{f:g}" for f in plan["fractions"]),
            "--seeds", str(plan["seeds"]), "--steps", str(plan["steps"]),
            "--batch-size", str(plan["batch_size"])]))
        t0 = time.time()

        last: list[str] = []

        def report(counts: dict[str, int]) -> None:
            line = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            if [line] != last:  # only when something changed
                last[:] = [line]
                print(f"  {time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)

        fd.wait(ids, store, poll=args.poll, report=report)
        cells, missing = fd.collect(ids, store)
    path = fd.write_report(cells, missing, plan, out, command, seconds=time.time() - t0)
    print(fd.table(cells))
    print(f"wrote {path}", file=sys.stderr)
    return 0 if not missing else 1


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from core.data import DatasetNotFoundError
    from lab.experiments import reproduce as rp

    if args.estimate:
        num_classes = 100 if args.dataset == "cifar100" else 10
        print(rp.estimate(args.model, num_classes=num_classes, memory=args.memory,
                          device=args.device).text())
        return 0
    config = rp.recipe_config(args.model, args.dataset, memory=args.memory,
                              data_root=args.data_root, seed=args.seed)
    try:
        rp.check_dataset(args.dataset, args.data_root)
    except DatasetNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from lab.cli import _train_foreground
    from lab.runs import jobs
    from lab.runs.store import Store

    name = f"reproduce/{args.model}/{args.dataset}/{args.seed}"
    with Store() as store:
        if args.detach:
            run_id = jobs.launch(config, name=name, store=store)
            print(run_id)
            return 0
        run_id = jobs.start_foreground(config, name=name, store=store)
        return _train_foreground(store, run_id)


def _cmd_drift(args: argparse.Namespace) -> int:
    from lab.experiments import drift

    families = args.families.split(",") if args.families else list(drift.FAMILIES)
    command = "python -m lab experiment drift " + shlex.join([
        "--families", ",".join(families), "--blocks", str(args.blocks), "--train-steps",
        str(args.train_steps), "--anchor-every", str(args.anchor_every), "--seed", str(args.seed)])
    rows = drift.measure(families, blocks=args.blocks, train_steps=args.train_steps,
                         anchor_every=args.anchor_every, seed=args.seed)
    path = drift.write_report(rows, Path(args.out), command, blocks=args.blocks,
                              train_steps=args.train_steps, anchor_every=args.anchor_every)
    print(drift.table(rows, args.anchor_every))
    print(f"wrote {path}", file=sys.stderr)
    return 0


def add_experiment_command(sub: Any) -> None:
    """Register `experiment` and its three runners on the `python -m lab` parser."""
    p = sub.add_parser("experiment", help="the paper's experiments: fewer-data, reproduce, drift")
    exp = p.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")

    q = exp.add_parser("fewer-data", help="families x data fractions x seeds, steps constant")
    q.add_argument("--dataset", default="digits", choices=("digits", "shapes"))
    q.add_argument("--families", help="comma-separated (default hamiltonian,midpoint,leapfrog,"
                   "resnet)")
    q.add_argument("--fractions", type=_fractions, help="default 0.05,0.1,0.2,0.5,1")
    q.add_argument("--seeds", type=int, default=3, help="seeds per cell (default 3)")
    q.add_argument("--steps", type=int, default=300, help="optimizer steps of every run")
    q.add_argument("--batch-size", type=int, default=64)
    q.add_argument("--threads", type=int, default=1, help="torch threads per run process")
    q.add_argument("--poll", type=float, default=5.0, help="seconds between status checks")
    q.add_argument("--out", default=str(DOCS), help="folder for the table and figure")
    q.add_argument("--no-wait", action="store_true", help="queue the runs and return")
    q.add_argument("--collect", metavar="MANIFEST", help="wait for and tabulate the runs of an "
                   "earlier launch (its manifest JSON) instead of launching")
    q.set_defaults(func=_cmd_fewer_data, parser=q)

    q = exp.add_parser("reproduce", help="the paper's CIFAR recipe as a run in the store")
    q.add_argument("--dataset", default="cifar10", choices=("cifar10", "cifar100"))
    q.add_argument("--model", default="hamiltonian-74")
    q.add_argument("--memory", default="reversible",
                   choices=("standard", "checkpoint", "reversible"))
    q.add_argument("--data-root", help="folder holding the dataset files")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--device", default="cpu", help="for --estimate: cpu or cuda")
    q.add_argument("--detach", action="store_true", help="run as a background job")
    q.add_argument("--estimate", action="store_true",
                   help="time a few steps and print the expected time and memory; no training")
    q.set_defaults(func=_cmd_reproduce, parser=q)

    q = exp.add_parser("drift", help="float32 rebuild error of each family at depth")
    q.add_argument("--families", help="comma-separated (default hamiltonian,midpoint,leapfrog,"
                   "revnet)")
    q.add_argument("--blocks", type=int, default=100, help="blocks per stage (default 100)")
    q.add_argument("--train-steps", type=int, default=30, help="steps of training on shapes")
    q.add_argument("--anchor-every", type=int, default=10, help="anchor spacing for the "
                   "'with anchors' column")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", default=str(DOCS))
    q.set_defaults(func=_cmd_drift, parser=q)
