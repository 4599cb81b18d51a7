"""`python -m lab experiment ...`: grids of runs and their results, the presets (fewer-data,
depth, step-size), reproduce and drift (thin calls into lab.experiments)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent.parent.parent / "docs" / "experiments"


# -- grids ----------------------------------------------------------------------------------------
# flags that give an axis's values (comma-separated; blocks and widths: ';' between values)
AXIS_FLAGS = ("family", "model", "layers", "blocks", "widths", "h", "fraction", "lr", "optimizer",
              "memory", "batch_size", "schedule", "weight_decay")


def _add_grid_flags(q: argparse.ArgumentParser, preset: str | None) -> None:
    axes = q.add_argument_group("axes (comma-separated values; blocks and widths: "
                                "'2,2,2;6,6,6')")
    axes.add_argument("--family", "--families", dest="family",
                      help="model families or names, e.g. hamiltonian,resnet")
    axes.add_argument("--model", help="named models, e.g. hamiltonian-74,resnet-32 (or --family)")
    axes.add_argument("--layers", help="depths in weight layers, turned into blocks per stage "
                      "for each family, e.g. 14,26,50,110")
    axes.add_argument("--blocks", help="blocks per stage, e.g. '2,2,2;6,6,6'")
    axes.add_argument("--widths", help="stem and stage widths, e.g. '16,16,32,64;32,32,64,128'")
    axes.add_argument("--h", help="ODE step sizes, e.g. 0.5,1")
    axes.add_argument("--fraction", "--fractions", dest="fraction",
                      help="shares of the training set, e.g. 0.05,0.2,1")
    axes.add_argument("--lr", help="learning rates, e.g. 0.05,0.1")
    axes.add_argument("--optimizer", help="sgd,adamw")
    axes.add_argument("--memory", help="memory modes (ResNet: standard or checkpoint)")
    axes.add_argument("--batch-size", help="samples per step, e.g. 32,64")
    axes.add_argument("--schedule", help="step,cosine,constant")
    axes.add_argument("--weight-decay", help="e.g. 0,5e-4")
    axes.add_argument("--axis", action="append", default=[], metavar="KEY=VALUES",
                      help="any other axis, e.g. --axis dropout=0,0.1 (repeatable)")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a fixed TrainConfig setting of every run, e.g. --set augment=false; "
                   "nested: --set model_kwargs.widths=8,8,16,32 --set "
                   "dataset_options.test_size=500 (repeatable)")
    q.add_argument("--family-set", metavar="'FAMILY: KEY=VALUE ...; ...'",
                   help="model settings of one family (they win over --set model_kwargs.*), "
                   "e.g. 'resnet: widths=4,4,8,16' (the presets: a ResNet of about equal "
                   "parameters)")
    q.add_argument("--dataset", help="dataset of every run (default: "
                   + (grid_preset_dataset(preset) if preset else "digits") + ")")
    q.add_argument("--download", action="store_true", help="cifar10/cifar100/stl10: fetch "
                   "missing files (torchvision, md5-verified) into $LAB_DATA before queueing")
    q.add_argument("--seeds", type=int, help="seeds per cell, 0..N-1 (default "
                   + (str(grid_preset_field(preset, "seeds")) if preset else "3") + ")")
    q.add_argument("--steps", type=int, help="optimizer steps of every run, whatever the data "
                   "(default " + (str(grid_preset_field(preset, "steps")) if preset else "300")
                   + ")")
    q.add_argument("--name", help="the experiment's name (default: <preset or grid>-<time>)")
    q.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    q.add_argument("--wait", action="store_true", help="wait for every run, then print results")
    q.add_argument("--poll", type=float, default=5.0, help="seconds between checks with --wait")
    q.add_argument("--out", help="with --wait: write the report (Markdown, JSON, HTML) here, e.g. "
                   "docs/experiments")
    q.set_defaults(func=_cmd_grid, parser=q, preset=preset)


def grid_preset_field(preset: str, name: str) -> Any:
    from lab.experiments.grid import preset as make

    return getattr(make(preset), name)


def grid_preset_dataset(preset: str) -> str:
    from lab.experiments.grid import preset as make

    return make(preset).base.get("dataset", "digits")


def _spec_from_args(args: argparse.Namespace) -> Any:
    """The GridSpec of the flags (on top of the preset, if any); ValueError for a bad one."""
    from lab.experiments import grid

    axes: dict[str, list] = {}
    for flag in AXIS_FLAGS:
        text = getattr(args, flag)
        if text is not None:
            axes[flag] = grid.parse_values(flag, text)
    for item in args.axis:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--axis {item!r}: write KEY=VALUES, e.g. dropout=0,0.1")
        axes[key.strip()] = grid.parse_values(key.strip(), text)
    base: dict[str, Any] = {}
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: write KEY=VALUE, e.g. augment=false")
        *outer, last = key.strip().split(".")
        where = base
        for k in outer:  # dataset_options.test_size=500 -> {"dataset_options": {...}}
            where = where.setdefault(k, {})
        (where[last],) = grid.parse_values(last, text) or [None]
    if args.preset:
        spec = grid.preset(args.preset, seeds=args.seeds, steps=args.steps, dataset=args.dataset,
                           **axes)
        spec.base.update(base)
    else:
        if args.dataset:
            base["dataset"] = args.dataset
        spec = grid.GridSpec(axes=axes, base=base, seeds=3 if args.seeds is None else args.seeds,
                             steps=300 if args.steps is None else args.steps)
    if args.family_set is not None:
        spec.family_kwargs = grid.parse_family_kwargs(args.family_set)
    return spec


def _grid_command(args: argparse.Namespace, spec: Any) -> str:
    from lab.experiments.grid import fmt

    parts = ["python -m lab experiment", args.preset or "grid"]

    for axis, values in spec.axes.items():
        sep = ";" if axis in ("blocks", "widths") else ","
        text = sep.join(",".join(map(fmt, v)) if isinstance(v, list) else fmt(v)
                        for v in values)
        if axis in AXIS_FLAGS:
            parts += [f"--{axis.replace('_', '-')}", shlex.quote(text)]
        else:
            parts += ["--axis", shlex.quote(f"{axis}={text}")]
    parts += ["--dataset", str(spec.base.get("dataset", "digits")), "--seeds", str(spec.seeds),
              "--steps", str(spec.steps)]
    parts += [f"--set {shlex.quote(item)}" for item in args.set]
    if args.family_set is not None:
        parts += ["--family-set", shlex.quote(args.family_set)]
    return " ".join(parts)


def _cmd_grid(args: argparse.Namespace) -> int:
    from lab.experiments import grid
    from lab.runs.store import Store

    try:
        spec = _spec_from_args(args)
        spec.validate()
    except (ValueError, TypeError) as e:
        args.parser.error(str(e))
    if spec.runs > 5000:
        args.parser.error(f"{spec.runs} runs: more than 5000 is surely a mistake; narrow the axes")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))  # inherited by the workers
    with Store() as store:
        try:
            exp_id = grid.launch(spec, name=args.name, store=store, download=args.download,
                                 how="`--download`")
        except ValueError as e:
            args.parser.error(str(e))
        exp = store.require_experiment(exp_id)
        print(exp_id, flush=True)
        print(f"queued {spec.runs} runs ({spec.cells} cells x {spec.seeds} seeds) of experiment "
              f"{exp.name}; results: `python -m lab experiment results {exp.name}`",
              file=sys.stderr)
        if not args.wait:
            return 0
        return _wait_and_report(store, exp.id, args, _grid_command(args, spec))


def _wait_and_report(store: Any, exp_id: str, args: argparse.Namespace, command: str) -> int:
    from lab.experiments import results as rs
    from lab.runs import jobs

    t0, last = time.time(), ""
    try:
        while True:
            jobs.reconcile(store)
            res = rs.collect(store, exp_id)
            counts = res.progress()
            line = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
            if line != last:
                last = line
                print(f"  {time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)
            if not counts["running"] and not counts["queued"]:
                break
            time.sleep(args.poll)
    except KeyboardInterrupt:
        print("stopped waiting; the runs go on (`python -m lab experiment results "
              f"{res.experiment.name}`)", file=sys.stderr)
        return 130
    _print_results(res)
    if args.out:
        from lab.experiments.report import write_report

        path = write_report(store, res, Path(args.out), command=command,
                            seconds=time.time() - t0)
        print(f"wrote {path}", file=sys.stderr)
    return 0 if counts["done"] == len(res.points) else 1


def _print_results(res: Any) -> None:
    from lab.experiments import results as rs

    counts = res.progress()
    print(f"experiment {res.experiment.name} ({res.experiment.id}), metric {res.metric}: "
          + ", ".join(f"{k} {v}" for k, v in counts.items() if v))
    print(rs.plain(*rs.group_table(res)))
    line_axis = next((a for a in ("family", "model") if a in res.spec.axes), None)
    header, rows = rs.comparison_table(res, line_axis)
    if rows:
        print(f"\npaired comparisons by seed along {line_axis or 'each axis'} (a - b); "
              "all of them: --json")
        print(rs.plain(header, rows))


def _cmd_results(args: argparse.Namespace) -> int:
    import json

    from lab.experiments import results as rs
    from lab.runs import jobs
    from lab.runs.store import Store

    with Store() as store:
        jobs.reconcile(store)
        try:
            res = rs.collect(store, args.ref, args.metric)
        except (LookupError, ValueError) as e:
            print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps(res.to_json(), indent=1))
        else:
            _print_results(res)
        if args.report:
            from lab.experiments.report import write_report

            print(f"wrote {write_report(store, res, Path(args.report), command=args.command)}",
                  file=sys.stderr)
    return 0


def _cmd_extend(args: argparse.Namespace) -> int:
    from lab.experiments import grid
    from lab.runs.store import Store

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    with Store() as store:
        try:
            ids = grid.extend(args.ref, args.seeds, store=store)
        except (LookupError, ValueError) as e:
            args.parser.error(e.args[0] if e.args else str(e))
        exp = store.require_experiment(args.ref)
        print(f"queued {len(ids)} more runs of {exp.name}", file=sys.stderr)
        print(exp.id)
        if args.wait:
            return _wait_and_report(store, exp.id, args, f"python -m lab experiment extend "
                                    f"{exp.name} --seeds {args.seeds}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from lab.experiments import results as rs
    from lab.runs.store import Store

    with Store() as store:
        rows = []
        for exp in store.list_experiments():
            counts = rs.collect(store, exp.id).progress()
            rows.append([exp.id, exp.name, str(sum(counts.values())),
                         " ".join(f"{k} {v}" for k, v in counts.items() if v),
                         time.strftime("%Y-%m-%d %H:%M", time.localtime(exp.created_at))])
    if not rows:
        print("no experiments yet: `python -m lab experiment grid --family hamiltonian,resnet "
              "--fraction 0.1,1 --seeds 3`")
        return 0
    print(rs.plain(["ID", "NAME", "RUNS", "STATUS", "CREATED"], rows))
    return 0


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
        rp.check_dataset(args.dataset, args.data_root, download=args.download)
    except DatasetNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from lab.cli.train import train_foreground
    from lab.runs import jobs
    from lab.runs.store import Store

    name = f"reproduce/{args.model}/{args.dataset}/{args.seed}"
    with Store() as store:
        if args.detach:
            run_id = jobs.launch(config, name=name, store=store)
            print(run_id)
            return 0
        run_id = jobs.start_foreground(config, name=name, store=store)
        return train_foreground(store, run_id)


def _cmd_drift(args: argparse.Namespace) -> int:
    from lab.experiments import drift

    families = args.families.split(",") if args.families else list(drift.FAMILIES)
    command = "python -m lab experiment drift " + shlex.join([
        "--families", ",".join(families), "--blocks", str(args.blocks), "--train-steps",
        str(args.train_steps), "--anchor-every", str(args.anchor_every), "--seed", str(args.seed)])
    rows = drift.measure(families, blocks=args.blocks, train_steps=args.train_steps,
                         anchor_every=args.anchor_every, seed=args.seed,
                         progress_every=args.progress_every)
    path = drift.write_report(rows, Path(args.out), command, blocks=args.blocks,
                              train_steps=args.train_steps, anchor_every=args.anchor_every)
    print(drift.table(rows, args.anchor_every))
    print(f"wrote {path}", file=sys.stderr)
    return 0


def add_experiment_command(sub: Any) -> None:
    """Register `experiment` and its verbs on the `python -m lab` parser."""
    p = sub.add_parser("experiment", help="grids of runs and the paper's experiments: grid, "
                       "results, fewer-data, depth, step-size, reproduce, drift")
    exp = p.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")

    q = exp.add_parser("grid", help="a grid of runs: axes x seeds, the same steps for each")
    _add_grid_flags(q, None)
    for name, text in (("fewer-data", "each family on 5-100%% of the data, same steps (preset)"),
                       ("depth", "each family from 14 to 110 layers, same steps (preset)"),
                       ("step-size", "the reversible families over the step size h (preset)")):
        _add_grid_flags(exp.add_parser(name, help=text), name)

    q = exp.add_parser("results", help="an experiment's grouped table, or --json")
    q.add_argument("ref", metavar="NAME|ID")
    q.add_argument("--metric", default="test_acc", help="a final metric (default test_acc)")
    q.add_argument("--json", action="store_true", help="groups and paired comparisons as JSON")
    q.add_argument("--report", metavar="DIR", help="also write Markdown, JSON and HTML there")
    q.add_argument("--command", default="python -m lab experiment ...",
                   help="with --report: the command that ran the experiment, for the record")
    q.set_defaults(func=_cmd_results, parser=q)

    q = exp.add_parser("extend", help="more seeds for an experiment (queues the missing runs)")
    q.add_argument("ref", metavar="NAME|ID")
    q.add_argument("--seeds", type=int, required=True, help="seeds per cell from now on")
    q.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    q.add_argument("--wait", action="store_true")
    q.add_argument("--poll", type=float, default=5.0)
    q.add_argument("--out", help="with --wait: write the report here")
    q.set_defaults(func=_cmd_extend, parser=q)

    q = exp.add_parser("list", help="experiments and their runs' progress")
    q.set_defaults(func=_cmd_list, parser=q)

    q = exp.add_parser("reproduce", help="the paper's CIFAR recipe as a run in the store")
    q.add_argument("--dataset", default="cifar10", choices=("cifar10", "cifar100"))
    q.add_argument("--model", default="hamiltonian-74")
    q.add_argument("--memory", default="reversible",
                   choices=("standard", "checkpoint", "reversible"))
    q.add_argument("--data-root", help="folder holding the dataset files")
    q.add_argument("--download", action="store_true", help="fetch missing files (torchvision, "
                   "md5-verified) into --data-root or $LAB_DATA first")
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
    q.add_argument("--progress-every", type=int, default=50, metavar="N",
                   help="print the training loss every N steps (0: quiet)")
    q.add_argument("--out", default=str(DOCS))
    q.set_defaults(func=_cmd_drift, parser=q)
