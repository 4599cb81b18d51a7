"""Home: what the lab is, the latest runs, one-click default training, the point."""

import streamlit as st

from lab.figures.home import memory_vs_depth
from lab.runs import jobs
from lab.views import actions
from lab.views.home import launch_default_run, model_rows, scaling_payload, sections
from lab.views.navigation import entry_first
from lab.views.tables import cells, status_coloured

entry_first()  # a deep link to a fresh server: the entry runs first
st.set_page_config(page_title="revlab", layout="wide")  # before any element
st.title("revlab: reversible, ODE-inspired deep networks")
st.markdown(
    "revlab trains Hamiltonian, Midpoint and Leapfrog networks (Chang et al., AAAI 2018): "
    "residual networks read as discretised ODEs whose blocks can be run backwards. "
    "Because every block's input can be rebuilt from its output, training only keeps each "
    "stage's output, so activation memory stays flat however deep the network grows. "
    "Here you configure and launch runs, watch them live, compare memory modes and depths, "
    "and inspect how exactly the reversal works.")
jobs.reconcile()  # cheap: dead runs show as stale, queued ones start

left, right = st.columns([3, 2])
with left:
    if st.button("Train the default model", type="primary", key="train_default",
                 help="a small Hamiltonian network on the embedded digits; about 10-30 s on a "
                      "laptop CPU"):
        actions.end(actions.launched([launch_default_run()]), page="pages/1_Train.py")
    st.caption("Runs are processes of their own: they keep training when you close the browser "
               "or stop the app, and show up here again when it restarts. Stop them with "
               "`python -m lab cancel RUN`, or all at once with `python -m lab cancel --all`.")
with right:
    payload = scaling_payload()
    if payload is not None:
        st.plotly_chart(memory_vs_depth(payload), key="home_scaling")
        st.caption("Measured with `" + payload.get("command", "python -m lab bench scaling")
                   + "` (docs/bench/scaling-cpu.md): the reversible backward keeps the same "
                   "memory at 1202 layers as at 14. **standard**: every activation kept · "
                   "**checkpoint**: recomputed per block · **reversible**: rebuilt from each "
                   "segment's output.")
    else:
        st.info("No recorded benchmark: run `python -m lab bench scaling --tag cpu` to draw "
                "activation memory against depth here.")

tables = sections(limit=10)  # training runs; sweeps and experiments apart
st.header("Latest runs")
if tables["runs"]:
    st.dataframe(status_coloured(tables["runs"]), hide_index=True, width="stretch",
                 key="latest_runs")
    st.page_link("pages/2_Runs.py", label="All runs, curves and comparisons")
else:
    st.info("No training runs yet. Press the button above, or start one with `python -m lab "
            "train` (default: a small Hamiltonian network on the embedded digits dataset).")
if tables["sweeps"]:  # full width, like the runs: side by side they did not fit at 1400 px
    st.subheader("Depth sweeps")
    st.dataframe(status_coloured(tables["sweeps"]), hide_index=True, width="stretch",
                 key="latest_sweeps")
    st.page_link("pages/3_Depth_lab.py", label="Open them in the Depth lab")
if tables["experiments"]:
    st.subheader("Experiments")
    st.dataframe(cells(tables["experiments"]), hide_index=True, width="stretch",
                 key="latest_experiments")
    st.page_link("pages/6_Experiments.py", label="Their results on Experiments")

st.header("Models")
st.dataframe(st.cache_data(model_rows)(), hide_index=True, width="stretch", key="models")
st.caption("Generic names take blocks=, widths=, h= (shown: their defaults). Parameters for "
           "10 classes and 3 input channels; `python -m lab models` prints the same table.")
