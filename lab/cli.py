"""The `python -m lab` command line: one sub-command per verb, each a thin call into lab/core."""

from __future__ import annotations

import argparse
import sys


def _cmd_models(args: argparse.Namespace) -> int:
    from lab.models import models_table

    print(models_table())
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from lab.bench import main as bench_main

    return bench_main(args.bench_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="table of model names, depth and parameters")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("bench", help="memory/time benchmarks (see `python -m lab bench -h`)",
                       add_help=False)
    p.add_argument("bench_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return args.func(args)
