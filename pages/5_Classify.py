"""Classify: the Gradio image classifier, started on demand as its own process and embedded."""

import streamlit as st

from lab.classify.embed import FALLBACK_HEIGHT, frame_sizer_script
from lab.views.classify import NoRunsError, ServerError, ensure_server, stop_server
from lab.views.navigation import open_page

open_page("Classify",
          "Pick a completed run, then upload images, draw a digit or click an example: the "
          "classifier shows the top 5 classes and the picture as the model sees it.")

try:
    with st.spinner("Starting the classifier (the first time takes 10-30 s) ..."):
        server = ensure_server()
except NoRunsError as e:
    st.info(str(e))
except ServerError as e:
    st.error(str(e))
else:
    st.iframe(server.url, height=FALLBACK_HEIGHT)
    # the frame then takes the height the app reports (lab.classify.embed): no inner scrolling
    st.html(frame_sizer_script(server.url), unsafe_allow_javascript=True)
    left, right = st.columns([4, 1])
    left.caption(f"Served on this machine at {server.url} (process {server.pid}); "
                 f"it keeps running when this page reloads. `python -m lab classify` serves "
                 f"the same app on its own.")
    if right.button("Restart classifier", key="restart_classifier",
                    help="stop the classifier process; it starts afresh on the next load"):
        stop_server()
        st.rerun()
