"""The `python -m lab join RUN` sub-command: this machine's processes of a multi-node run."""

from __future__ import annotations

import argparse
from typing import Any


def _cmd_join(args: argparse.Namespace) -> int:
    from lab.runs import supervisor

    try:
        return supervisor.join(args.run, nproc=args.nproc, timeout=args.timeout)
    except ValueError as e:
        args.parser.error(str(e))


def add_join_command(sub: Any) -> None:
    """Register `join` on the `python -m lab` sub-parsers."""
    p = sub.add_parser(
        "join", help="join a multi-node run started on node 0 (LAB_NNODES > 1)",
        description="Start this machine's ranks of a run that node 0 launched with LAB_NNODES=N "
        "and LAB_RDZV_ENDPOINT=host:port. The nodes, processes per node and endpoint come from "
        "the run's folder in LAB_HOME (share it between the machines), else from LAB_NNODES, "
        "LAB_RDZV_ENDPOINT and --nproc. Exits 0 once this node's ranks are done; 1 with the "
        "endpoint named if the nodes do not all meet within the join timeout.")
    p.add_argument("run", help="run id (or a unique prefix) as node 0 printed it")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="processes on this node (default: the run's, else 1)")
    p.add_argument("--timeout", type=int, metavar="SECONDS",
                   help="wait at most this long for all nodes (default: the run's, else "
                   "LAB_JOIN_TIMEOUT or 300)")
    p.set_defaults(func=_cmd_join, parser=p)
