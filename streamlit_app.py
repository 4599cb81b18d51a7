"""The lab's entry: its pages with titles and icons (lab.views.navigation); Home first."""

import streamlit as st

from lab.views.navigation import SECTIONS

st.set_page_config(page_title="revlab", layout="wide")
st.navigation({section: [st.Page(p.file, title=p.title, icon=p.icon, url_path=p.url_path or None,
                                 default=not p.url_path) for p in pages]
               for section, pages in SECTIONS.items()}).run()
