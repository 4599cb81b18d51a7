"""The lab's entry page: recent runs and the model zoo."""

import streamlit as st

from lab.home import run_rows
from lab.models import model_rows

st.set_page_config(page_title="revlab", layout="wide")
st.title("revlab: reversible, ODE-inspired deep networks")
st.caption("Hamiltonian, Midpoint and Leapfrog networks (Chang et al., AAAI 2018) of any depth, "
           "with a memory-saving backward whose activation memory does not grow with depth.")

st.header("Runs")
runs = run_rows()
if runs:
    st.dataframe(runs, hide_index=True, width="stretch")
else:
    st.info("No runs yet. Start one with `python -m lab train` (default: a small Hamiltonian "
            "network on the embedded digits dataset) and it appears here.")

st.header("Models")
st.dataframe(st.cache_data(model_rows)(), hide_index=True, width="stretch")
st.caption("Generic names take blocks=, widths=, h= (shown: their defaults). Parameters for "
           "10 classes and 3 input channels; `python -m lab models` prints the same table.")
