"""`python -m lab models`: the table of model names, depths and parameters."""

from __future__ import annotations

import argparse
from typing import Any

from lab.cli.runs import text_table


def models_table() -> str:
    from core.zoo import describe_models  # torch only when the table is asked for

    rows = describe_models()
    for r in rows:
        r["params"] = f"{r['params'] / 1e6:.3f}M"
    note = ("\ngeneric names take blocks=, widths=, h= (shown: their defaults); "
            "parameters for 10 classes, 3 input channels")
    columns = ["name", "family", "depth", "blocks", "widths", "params"]
    return text_table([[str(r[c]) for c in columns] for r in rows], columns, rule=True) + note


def _cmd_models(args: argparse.Namespace) -> int:
    print(models_table())
    return 0


def add_models_command(sub: Any) -> None:
    """Register `models` on the `python -m lab` sub-parsers."""
    p = sub.add_parser("models", help="table of model names, depth and parameters")
    p.set_defaults(func=_cmd_models)
