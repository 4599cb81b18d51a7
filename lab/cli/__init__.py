"""The `python -m lab` command line: one sub-command per verb, each a thin call into lab/core."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from lab.runs.store import ACTIVE, STATUSES
from lab.runs.table import CLI_COLUMNS, duration_text, text_rows, when

# core.memory.MEMORY_MODES, spelled out so `python -m lab -h` needs no torch (a test keeps the two
# equal)
MEMORY_MODES = ("standard", "checkpoint", "reversible", "budget", "auto")


def _cmd_models(args: argparse.Namespace) -> int:
    from lab.cli.models import models_table

    print(models_table())
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from lab.bench import main as bench_main

    return bench_main(args.bench_args)


# -- training and the run store (owner: lab/store.py, lab/jobs.py, lab/worker.py) ------------------
def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers like 2,2,2, got {text!r}")
    return values


# how the command line asks for a download (named in the message of a refused launch)
DOWNLOAD_HOW = "`--download`"
_CONFIG_FLAGS = ("model", "dataset", "epochs", "batch_size", "memory", "fraction", "lr", "seed",
                 "device", "optimizer", "data_root", "steps", "levels", "memory_mib",
                 "memory_limit_mib", "drift_every", "drift_anchor")
_MODEL_FLAGS = ("blocks", "widths", "h")


def _config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Only the flags given; TrainConfig's defaults fill the rest (the small Hamiltonian net)."""
    config = {k: getattr(args, k) for k in _CONFIG_FLAGS if getattr(args, k) is not None}
    model_kwargs = {k: getattr(args, k) for k in _MODEL_FLAGS if getattr(args, k) is not None}
    if model_kwargs:
        if args.model is None:  # tweaking the default model: keep its other settings
            from core.training import TrainConfig

            model_kwargs = {**TrainConfig().model_kwargs, **model_kwargs}
        config["model_kwargs"] = model_kwargs
    elif args.model is not None:
        config["model_kwargs"] = {}  # a named model brings its own depth and widths
    if args.memory is None and args.model is not None:
        import core
        from core.memory import default_mode
        from core.training import TrainConfig

        try:  # the model's own default (core.memory): reversible, or standard for ResNets
            mode = default_mode(core.model_config(args.model))
        except ValueError:
            mode = None  # an unknown model name: validation reports it with the list of names
        if mode is not None and mode != TrainConfig.memory:
            config["memory"] = mode
    return config


def _cmd_train(args: argparse.Namespace) -> int:
    from lab.runs import jobs
    from lab.runs.store import Store

    if args.resume:
        given = [f"--{k.replace('_', '-')}" for k in (*_CONFIG_FLAGS, *_MODEL_FLAGS, "name")
                 if getattr(args, k) is not None]
        if given:
            args.parser.error(f"--resume continues a run with its stored config; drop "
                              f"{', '.join(given)}")
        with Store() as store:
            run_id = store.resolve(args.resume)
            nproc = store.require_run(run_id).nproc
            if args.nproc is not None and args.nproc != nproc:
                args.parser.error(f"run {run_id} trains with {nproc} process(es); --resume "
                                  f"continues at the same world size (drop --nproc {args.nproc})")
            from lab.runs import multinode

            # its ranks run under torchrun: resume through the queue, follow it
            if nproc > 1 or multinode.read(store.run_dir(run_id)):
                jobs.resume(run_id, store=store)
                return _follow(store, run_id, detach=args.detach)
            if args.detach:
                jobs.resume(run_id, store=store)
                print(run_id)
                return 0
            jobs.resume_foreground(run_id, store=store)
            return _train_foreground(store, run_id)
    config = _config_from_args(args)
    with Store() as store:
        from lab.runs import multinode

        try:  # DDP under torchrun, via the queue: N processes here, or this machine of several
            ddp = args.nproc not in (None, 1) or multinode.nnodes_from_env() > 1
        except ValueError as e:
            args.parser.error(str(e))
        try:
            if args.download:
                print("checking the dataset's files (downloading what is missing) ...",
                      file=sys.stderr)
            # refused here (exit 2, nothing recorded) when the data is missing
            jobs.check_dataset(jobs.validate_config(config), download=args.download,
                               how=DOWNLOAD_HOW)
            if ddp:
                run_id = jobs.launch(config, nproc=1 if args.nproc is None else args.nproc,
                                     name=args.name, store=store)
            elif args.detach:
                run_id = jobs.launch(config, name=args.name, store=store)
                print(f"run {run_id} is {store.require_run(run_id).status}; follow it with "
                      f"`python -m lab show {run_id}`", file=sys.stderr)
                print(run_id)
                return 0
            else:
                run_id = jobs.start_foreground(config, name=args.name, store=store)
        except (ValueError, TypeError) as e:
            args.parser.error(str(e))
        if ddp:
            return _follow(store, run_id, detach=args.detach)
        return _train_foreground(store, run_id)


def _follow(store: Any, run_id: str, *, detach: bool) -> int:
    """Print the run id (--detach), or show a queued multi-process run's progress until it ends;
    Ctrl-C cancels it (every rank checkpoints and stops)."""
    from lab.cli.progress import ProgressBar
    from lab.runs import jobs, multinode

    run = store.require_run(run_id)
    print(f"run {run_id} ({run.nproc} processes) is {run.status}; follow it with "
          f"`python -m lab show {run_id}`", file=sys.stderr)
    rdzv = multinode.read(store.run_dir(run_id))
    if rdzv:
        print(f"this is node 0 of {rdzv['nnodes']} (rendezvous {rdzv['endpoint']}): on each "
              f"other node, with this LAB_HOME, run `python -m lab join {run_id}` (within "
              f"{rdzv['join_timeout']} s)", file=sys.stderr, flush=True)
    if detach:
        print(run_id)
        return 0
    bar = ProgressBar(epochs=run.epochs)
    last_step = last_epoch = None
    try:
        while True:
            for m in store.step_metrics(run_id, after_step=last_step):
                bar.on_step(m)
                last_step = m["step"]
            for m in store.epoch_metrics(run_id, after_epoch=last_epoch):
                bar.on_epoch(m)
                last_epoch = m["epoch"]
            run = store.require_run(run_id)
            if not run.active:
                break
            jobs.reconcile(store)
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\ncancelling: every rank checkpoints and stops", file=sys.stderr)
        jobs.cancel(run_id, store=store)
        run = store.require_run(run_id)
    finally:
        bar.close()
    print(f"run {run_id} {run.status}" + (f" ({run.error or run.reason})"
                                          if run.status != "completed" else ""), file=sys.stderr)
    return {"completed": 0, "failed": 1}.get(run.status, 130)


def _train_foreground(store: Any, run_id: str) -> int:
    from lab.cli.progress import ProgressBar
    from lab.runs import jobs, worker

    run = store.require_run(run_id)
    print(f"run {run_id}: {run.model} on {run.dataset}, {run.epochs} epochs "
          f"(folder {store.run_dir(run_id)})", file=sys.stderr)
    bar = ProgressBar(epochs=run.epochs)
    try:
        status = worker.execute(store, run_id, callbacks=[bar], foreground=True)
    finally:
        bar.close()
        jobs.schedule(store)
    run = store.require_run(run_id)
    acc = run.final_test_acc
    print(f"run {run_id} {status}" + (f": test acc {acc:.4f}" if acc is not None else "")
          + (f" ({run.error or run.reason})" if status != "completed" else ""), file=sys.stderr)
    return {"completed": 0, "failed": 1}.get(status, 130)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [header, *rows])


def _cmd_runs(args: argparse.Namespace) -> int:
    from lab.runs import jobs
    from lab.runs.store import Store

    with Store() as store:
        jobs.reconcile(store)
        runs = store.list_runs(status=args.status, limit=args.limit)
    if not runs:
        print("no runs yet; start one with `python -m lab train`", file=sys.stderr)
        return 0
    print(_table(text_rows(runs), list(CLI_COLUMNS.values())))
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
        lines += ["epochs:", _table(rows, ["EPOCH", "TRAIN LOSS", "TRAIN ACC", "TEST LOSS",
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


def _add_run_commands(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model (default: small Hamiltonian net on digits)",
                       description="Train in the foreground with a progress bar, or with "
                       "--detach as a background job through the queue. Flags not given take "
                       "TrainConfig's defaults.")
    p.add_argument("--model", help="model name (see `python -m lab models`)")
    p.add_argument("--dataset", help="digits, shapes, cifar10, cifar100, stl10, imagefolder")
    p.add_argument("--epochs", type=int, help="passes over the training set")
    p.add_argument("--steps", type=int, help="total optimizer steps (overrides --epochs; the lr "
                   "schedule follows it)")
    p.add_argument("--levels", type=int, help="multi-level training: start with the model as "
                   "given and double its blocks (halving h) LEVELS-1 times during training")
    p.add_argument("--batch-size", type=int, help="samples per optimizer step")
    p.add_argument("--memory", choices=MEMORY_MODES,
                   help="activation memory strategy (default: reversible)")
    p.add_argument("--memory-mib", type=float, help="--memory budget: MiB of activations kept "
                   "for backward (the last blocks of each segment are stored, the rest rebuilt)")
    p.add_argument("--memory-limit-mib", type=float, metavar="M",
                   help="--memory auto: MiB the whole training step may use (default: the "
                   "device's free memory less a margin); auto then keeps every activation if "
                   "they fit, rebuilds them all at the minimum, or plans the fastest mix")
    p.add_argument("--drift-every", type=int, metavar="N",
                   help="measure each segment's rebuild error every N steps in reversible, "
                   "budget and auto modes (default 50; 0: off)")
    p.add_argument("--drift-anchor", action="store_true", default=None,
                   help="when a segment's rebuild error passes the drift threshold, keep "
                   "anchors in it from the next step")
    p.add_argument("--fraction", type=float, help="share of the training set, in (0, 1]")
    p.add_argument("--lr", type=float, help="peak learning rate (default: per optimizer)")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--optimizer", help="sgd or adamw")
    p.add_argument("--blocks", type=_int_list, help="blocks per stage, e.g. 2,2,2")
    p.add_argument("--widths", type=_int_list, help="stem and stage widths, e.g. 16,16,32,64")
    p.add_argument("--h", type=float, help="step size of the ODE-inspired blocks")
    p.add_argument("--data-root", help="folder holding dataset files (default $LAB_DATA, else "
                   "./data); for imagefolder, the folder with one sub-folder per class")
    p.add_argument("--download", action="store_true",
                   help="cifar10/cifar100/stl10: fetch missing files with torchvision (md5-"
                   "verified) into the data folder before the run starts")
    p.add_argument("--name", help="a label for the run")
    p.add_argument("--resume", metavar="RUN", help="continue a failed/interrupted/stale/"
                   "cancelled run from its last checkpoint")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="train with DistributedDataParallel in N processes under torchrun "
                   "(one per GPU on CUDA, gloo on CPU); the batch size stays global. Runs "
                   "through the queue, taking N of its slots; --resume keeps the run's N")
    p.add_argument("--detach", action="store_true",
                   help="run as a background job (queued under the concurrency limit); "
                   "prints the run id")
    p.set_defaults(func=_cmd_train, parser=p)

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="table of model names, depth and parameters")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("bench", help="memory/time benchmarks (see `python -m lab bench -h`)",
                       add_help=False)
    p.add_argument("bench_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_bench)

    _add_run_commands(sub)
    from lab.cli.classify import add_classify_command

    add_classify_command(sub)
    from lab.cli.join import add_join_command

    add_join_command(sub)
    from lab.cli.experiment import add_experiment_command

    add_experiment_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # the bench suites own their options (argparse REMAINDER can't)
        from lab.bench import main as bench_main

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    from lab.runs.jobs import JobError
    from lab.runs.store import RunNotFoundError

    try:
        return args.func(args)
    except RunNotFoundError as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    except JobError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `python -m lab export RUN | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
