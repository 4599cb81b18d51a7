"""The lab's entry: its pages with titles and icons (lab.views.navigation); Home first."""

import streamlit as st

from lab.runs import launcher
from lab.views.chrome import connection_lost_script
from lab.views.navigation import SECTIONS, favicon

# The tab icon is served by this server: with none set, Streamlit would show the page's Material
# icon and fetch it from fonts.gstatic.com (the sidebar's icons come from a bundled font).
st.set_page_config(page_title="revlab", page_icon=favicon(), layout="wide")
# A process with torch imported that forks each launched run (started once, replaced if it died;
# it stops by itself soon after this server does): the first point of a run comes in seconds.
launcher.warm()
# Streamlit's connection-lost dialog asks about the internet; the lab says its server stopped
st.html(connection_lost_script(), unsafe_allow_javascript=True)
st.navigation({section: [st.Page(p.file, title=p.title, icon=p.icon, url_path=p.url_path or None,
                                 default=not p.url_path) for p in pages]
               for section, pages in SECTIONS.items()}).run()
