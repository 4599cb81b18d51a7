"""The `python -m lab classify` sub-command: serve the Gradio classifier."""

from __future__ import annotations

import argparse
from typing import Any


def _cmd_classify(args: argparse.Namespace) -> int:
    from lab.classify.app import serve

    return serve(host=args.host, port=args.port, owners=args.owner, owners_file=args.owners_file,
                 idle_exit=args.idle_exit)


def _owner(text: str) -> tuple[int, int | None]:
    from lab.runs.owners import parse_owner

    try:
        return parse_owner(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def add_classify_command(sub: Any) -> None:
    """Register `classify` on the `python -m lab` sub-parsers."""
    p = sub.add_parser("classify", help="serve the image classifier (Gradio) for trained runs",
                       description="Classify your own images with a completed run: upload "
                       "images, draw a digit, or pick an example. Serves on loopback only "
                       "unless --host says otherwise.")
    p.add_argument("--port", type=int, help="port (default: 7860, or the next free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--owner", type=_owner, action="append", metavar="PID[:START]",
                   help="stop once this process (and every other owner) is gone: the Streamlit "
                   "app passes its own pid; repeatable")
    p.add_argument("--owners-file", metavar="FILE",
                   help="JSON {\"pid\": <this server's pid>, \"owners\": [[pid, start], ...]}: "
                   "more owners, re-read every second (the app adds itself when it reuses the "
                   "server)")
    p.add_argument("--idle-exit", type=_seconds, default=10.0, metavar="SECONDS",
                   help="with owners: stop after this long with none of them alive (default 10)")
    p.set_defaults(func=_cmd_classify)
