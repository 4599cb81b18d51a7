"""The model table behind `python -m lab models`."""

from __future__ import annotations


def model_rows() -> list[dict]:
    """One row per registered model: name, family, blocks, widths, depth, parameters."""
    import core  # here, not at import: the Home page draws its top before torch is loaded

    rows = []
    for name in core.list_models():
        cfg = core.model_config(name)
        model = core.ReversibleNet(cfg)
        rows.append(dict(name=name, family=cfg.family, blocks="-".join(map(str, cfg.blocks)),
                         widths="-".join(map(str, cfg.widths)), depth=cfg.depth,
                         params=core.count_parameters(model)))
    return rows


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A plain fixed-width text table."""
    cells = [[str(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)])


def models_table() -> str:
    rows = model_rows()
    for r in rows:
        r["params"] = f"{r['params'] / 1e6:.3f}M"
    note = ("\ngeneric names take blocks=, widths=, h= (shown: their defaults); "
            "parameters for 10 classes, 3 input channels")
    return format_table(rows, ["name", "family", "depth", "blocks", "widths", "params"]) + note
