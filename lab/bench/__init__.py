"""Benchmarks: `python -m lab bench [modes|peers|scaling|budget|auto|drift] [options]`; results
go to docs/bench/.

Each suite writes <suite>[-<tag>].json (the payload, with machine and command), .md (tables)
and .html (its plotly figure, built by lab.figures.bench from the payload; plotly.js is one
shared plotly.min.js file: see lab.figures.style.to_html).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from lab.bench import auto, budget, drift, modes, peers, scaling
from lab.bench.common import save_results

SUITES = {"modes": modes, "peers": peers, "scaling": scaling, "budget": budget, "auto": auto,
          "drift": drift}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    suite = argv.pop(0) if argv and argv[0] in SUITES else "modes"
    parser = argparse.ArgumentParser(prog=f"python -m lab bench {suite}",
                                     description=SUITES[suite].__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    SUITES[suite].add_arguments(parser)
    parser.add_argument("--out", default="docs/bench", help="folder for the .json, .md, .html")
    parser.add_argument("--tag", default=None, help="file name suffix, e.g. the device")
    args = parser.parse_args(argv)
    payload, md = SUITES[suite].run(args)
    command = "python -m lab bench " + shlex.join([suite, *argv])
    payload["command"] = command
    stem = suite + (f"-{args.tag}" if args.tag else "")
    md = f"Command: `{command}`\n\nFigure: [{stem}.html]({stem}.html)\n\n{md}"
    print(md)
    out = Path(args.out)
    paths = save_results(out, stem, payload, md)
    from lab.figures.bench import figure  # plotly only when saving
    from lab.figures.style import to_html

    build = getattr(SUITES[suite], "figure", figure)  # a suite may draw its own figure
    paths.append(out / f"{stem}.html")
    to_html(build(payload), paths[-1], plotlyjs="directory")
    for path in paths:
        print(f"saved {path}")
    return 0
