"""Benchmarks: `python -m lab bench [modes|peers|scaling] [options]`; results go to docs/bench/."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from lab.bench import modes
from lab.bench.common import save_results

SUITES = {"modes": modes}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    suite = argv.pop(0) if argv and argv[0] in SUITES else "modes"
    parser = argparse.ArgumentParser(prog=f"python -m lab bench {suite}",
                                     description=SUITES[suite].__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    SUITES[suite].add_arguments(parser)
    parser.add_argument("--out", default="docs/bench", help="folder for the .json and .md")
    parser.add_argument("--tag", default=None, help="file name suffix, e.g. the device")
    args = parser.parse_args(argv)
    payload, md = SUITES[suite].run(args)
    command = "python -m lab bench " + shlex.join([suite, *argv])
    payload["command"] = command
    md = f"Command: `{command}`\n\n{md}"
    print(md)
    stem = suite + (f"-{args.tag}" if args.tag else "")
    for path in save_results(Path(args.out), stem, payload, md):
        print(f"saved {path}")
    return 0
