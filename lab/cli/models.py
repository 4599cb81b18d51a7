"""The model table behind `python -m lab models`."""

from __future__ import annotations


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A plain fixed-width text table."""
    cells = [[str(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)])


def models_table() -> str:
    from core.zoo import describe_models  # torch only when the table is asked for

    rows = describe_models()
    for r in rows:
        r["params"] = f"{r['params'] / 1e6:.3f}M"
    note = ("\ngeneric names take blocks=, widths=, h= (shown: their defaults); "
            "parameters for 10 classes, 3 input channels")
    return format_table(rows, ["name", "family", "depth", "blocks", "widths", "params"]) + note
