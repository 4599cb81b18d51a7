"""The `python -m lab classify` sub-command: serve the Gradio classifier."""

from __future__ import annotations

import argparse
from typing import Any


def _cmd_classify(args: argparse.Namespace) -> int:
    from lab.classify.app import serve

    return serve(host=args.host, port=args.port)


def add_classify_command(sub: Any) -> None:
    """Register `classify` on the `python -m lab` sub-parsers."""
    p = sub.add_parser("classify", help="serve the image classifier (Gradio) for trained runs",
                       description="Classify your own images with a completed run: upload "
                       "images, draw a digit, or pick an example. Serves on loopback only "
                       "unless --host says otherwise.")
    p.add_argument("--port", type=int, help="port (default: 7860, or the next free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default 127.0.0.1: this machine only)")
    p.set_defaults(func=_cmd_classify)
