"""The app's pages in sidebar order: file, title, Material icon, URL path and section.

`streamlit_app.py` builds `st.navigation` from `SECTIONS`; tests use it to find every page by
title and URL. Icons are Streamlit's Material Symbols (a web font served by Streamlit itself),
so they show in browsers without an emoji font.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # PageSpec.file is relative to it

@dataclass(frozen=True)
class PageSpec:
    file: str  # relative to the repository root (where streamlit_app.py is)
    title: str  # the sidebar label and the browser tab's title
    icon: str  # ":material/<name>:"
    url_path: str  # "" for the default page; deep links are /<url_path>?run=<id>


SECTIONS: dict[str, list[PageSpec]] = {
    "": [PageSpec("pages/0_Home.py", "Home", ":material/home:", "")],
    "Train and compare": [
        PageSpec("pages/1_Train.py", "Train", ":material/model_training:", "Train"),
        PageSpec("pages/2_Runs.py", "Runs", ":material/table_rows:", "Runs"),
        PageSpec("pages/6_Experiments.py", "Experiments", ":material/science:", "Experiments"),
    ],
    "Look inside": [
        PageSpec("pages/3_Depth_lab.py", "Depth lab", ":material/stacked_line_chart:",
                 "Depth_lab"),
        PageSpec("pages/4_ODE_reversal.py", "ODE reversal", ":material/undo:", "ODE_reversal"),
        PageSpec("pages/5_Classify.py", "Classify", ":material/image_search:", "Classify"),
    ],
}


def all_pages() -> list[PageSpec]:
    """Every page, in sidebar order."""
    return [p for pages in SECTIONS.values() for p in pages]


def favicon(size: int = 32):
    """The browser tab's icon, drawn here (no file, no network): the pair (a, b) that every
    reversible block updates, as two bars."""
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    third = size // 3
    draw.rounded_rectangle((2, 2, third + 2, size - 3), radius=3, fill=(31, 119, 180, 255))
    draw.rounded_rectangle((size - third - 3, 2, size - 3, size - 3), radius=3,
                           fill=(255, 127, 14, 255))
    return img


def open_page(title: str, caption: str | None = None) -> None:
    """How every page but Home opens: the entry first (:func:`entry_first`), the browser tab's
    title, the page's title and what it is for."""
    import streamlit as st

    entry_first()
    st.set_page_config(page_title=f"{title} · revlab", layout="wide")  # before any element
    st.title(title)
    if caption:
        st.caption(caption)


def entry_first() -> None:
    """Call first in every page file: make sure the entry (`streamlit_app.py`) runs.

    With a `pages/` folder next to the entry, a fresh Streamlit server starts in its old
    folder-scanning mode and stays there until some run calls `st.navigation`: a first visitor
    who opens a page's URL (a bookmark, `/Train?run=ID`) gets that page file run directly,
    without the entry's navigation, titles, tab icon and run launcher (AppTest runs an entry this
    way on every rerun). This turns that mode off and runs the entry in this very run, which
    opens the same page (widget values and query parameters kept), then ends this run. (Streamlit
    1.67's `PagesManager.uses_pages_directory`; nothing happens where it is absent or already off,
    as after the first run of a served app.)
    """
    import runpy

    import streamlit as st

    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:
        return
    if getattr(PagesManager, "uses_pages_directory", None):
        PagesManager.uses_pages_directory = False
        runpy.run_path(str(REPO / "streamlit_app.py"), run_name="__main__")
        st.stop()
