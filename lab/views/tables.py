"""The one way a page turns rows into a table: an empty value reads "–", never "None" or "nan".

Streamlit's dataframe draws every null cell as a grey "None" (a constant in its front end; no
option or Styler ``na_rep`` changes it). So :func:`cells` leaves a column whose values are all
present as it is (numbers stay numbers: right-aligned, sorted by value), and writes a column with
a missing value as text, "–" where it is missing (the table's "smart" sort still orders numeric
text by value). Every ``st.dataframe`` of the lab's pages goes through it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

EMPTY = "–"


def missing(value: Any) -> bool:
    """None, NaN or an empty string."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    return isinstance(value, float) and math.isnan(value)  # numpy's float64 is a float too


def text(value: Any, digits: int = 4) -> str:
    """One cell as text: "–" for a missing value, floats to ``digits`` significant digits."""
    if missing(value):
        return EMPTY
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def cells(rows: Iterable[Mapping[str, Any]], digits: int = 4) -> list[dict[str, Any]]:
    """Rows ready for ``st.dataframe``: columns with a missing value become text with "–"."""
    rows = [dict(r) for r in rows]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    gappy = {c for c in columns if any(missing(r.get(c)) for r in rows)}
    return [{c: text(r.get(c), digits) if c in gappy else r.get(c) for c in columns}
            for r in rows]


def status_coloured(rows: Iterable[Mapping[str, Any]], column: str = "status",
                    digits: int = 4) -> Any:
    """`cells(rows)` as a table whose ``column`` shows each run status as its word in its colour
    (lab.runs.table.STATUS_COLOURS): text and colour, which every browser draws (emoji are empty
    boxes where the system has no emoji font). A pandas Styler, for ``st.dataframe``."""
    import pandas as pd

    from lab.runs.table import STATUS_COLOURS

    frame = pd.DataFrame(cells(rows, digits))
    if column not in frame.columns:
        return frame
    floats = [c for c in frame.columns if frame[c].dtype.kind == "f"]  # a Styler shows 6 decimals
    return frame.style.format(lambda v: text(v, digits), subset=floats).map(
        lambda s: f"color: {STATUS_COLOURS[s]}; font-weight: 600" if s in STATUS_COLOURS
        else "", subset=[column])
