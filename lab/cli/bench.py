"""`python -m lab bench SUITE [options]`: the benchmark suites own their options (lab.bench)."""

from __future__ import annotations

import argparse
from typing import Any


def run(argv: list[str]) -> int:
    """`python -m lab bench ...` with the suite's own arguments (argparse's REMAINDER cannot
    pass them on, so `main` calls this before parsing)."""
    from lab.bench import main as bench_main

    return bench_main(argv)


def _cmd_bench(args: argparse.Namespace) -> int:
    return run(args.bench_args)


def add_bench_command(sub: Any) -> None:
    """Register `bench` (for `python -m lab -h`) on the `python -m lab` sub-parsers."""
    p = sub.add_parser("bench", help="memory/time benchmarks (see `python -m lab bench -h`)",
                       add_help=False)
    p.add_argument("bench_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_bench)
