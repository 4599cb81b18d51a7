"""The `python -m lab` command line: one sub-command per verb, each a thin call into lab/core.

This module holds the parser and `main`; each verb group has its own module (train, runs,
models, bench, classify, join, experiment).
"""

from __future__ import annotations

import argparse
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    from lab.cli.bench import add_bench_command
    from lab.cli.classify import add_classify_command
    from lab.cli.experiment import add_experiment_command
    from lab.cli.join import add_join_command
    from lab.cli.models import add_models_command
    from lab.cli.runs import add_runs_commands
    from lab.cli.train import add_train_command

    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_models_command(sub)
    add_bench_command(sub)
    add_train_command(sub)
    add_runs_commands(sub)
    add_classify_command(sub)
    add_join_command(sub)
    add_experiment_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # the bench suites own their options (argparse REMAINDER can't)
        from lab.cli import bench

        return bench.run(argv[1:])
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
