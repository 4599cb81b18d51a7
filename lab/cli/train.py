"""`python -m lab train`: flags -> a TrainConfig, a run in the foreground with a progress bar,
or through the queue (--detach, --nproc, several nodes); --resume."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

# core.memory.MEMORY_MODES, spelled out so `python -m lab -h` needs no torch (a test keeps the two
# equal)
MEMORY_MODES = ("standard", "checkpoint", "reversible", "budget", "auto")


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


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
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
            return train_foreground(store, run_id)
    config = config_from_args(args)
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
        return train_foreground(store, run_id)


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


def train_foreground(store: Any, run_id: str) -> int:
    """Train run `run_id` in this process with a progress bar; the exit status."""
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


def add_train_command(sub: Any) -> None:
    """Register `train` on the `python -m lab` sub-parsers."""
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
