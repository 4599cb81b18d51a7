"""ODE reversal: a model's trajectory through its blocks, its rebuild backwards, eigenvalues."""

import json

import streamlit as st

from lab.figures import analysis as fig
from lab.runs.store import Store
from lab.views import ode as av
from lab.views.navigation import open_page

open_page("ODE reversal",
          "Each block is a step of an ODE. Forward, the image's state moves through the blocks; "
          "backwards, the blocks' inverses rebuild every state from the output, as the "
          "memory-saving backward does. How exact is that, where does drift grow, and why is "
          "the Hamiltonian block stable? (Eval-mode batch norm, one test image.)")


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def _model(key: str) -> av.LoadedModel:
    with Store() as store:
        return av.load(key, store)


@st.cache_data(show_spinner="Loading images…", max_entries=8)
def _images(dataset: str, options_json: str):
    return av.images(dataset, json.loads(options_json), n=16)


@st.cache_data(show_spinner="Running forward and backwards, computing eigenvalues…",
               max_entries=16)
def _analysis(key: str, index: int, anchor_every: int, spectrum_block: int) -> av.Analysis:
    loaded = _model(key)
    x, _, _ = _images(loaded.dataset, json.dumps(loaded.dataset_options, sort_keys=True))
    return av.analyse(loaded.model, x[index], anchor_every=anchor_every,
                      spectrum_block=spectrum_block)


with Store() as store:
    options = av.choices(store)
keys = list(options)
default = st.query_params.get("model", keys[0])
left, mid, right = st.columns([3, 2, 1])
key = left.selectbox("Model", keys, index=keys.index(default) if default in keys else 0,
                     format_func=options.get)
try:
    loaded = _model(key)
except (ValueError, OSError) as e:
    st.error(f"Cannot load this model: {e}")
    st.stop()
x, labels, names = _images(loaded.dataset, json.dumps(loaded.dataset_options, sort_keys=True))
index = mid.selectbox("Test image", list(range(len(labels))),
                      format_func=lambda i: f"#{i} ({names[labels[i]]})")
anchor_every = right.number_input("Anchors every", min_value=1, max_value=64, value=2)
n_blocks = sum(loaded.model.config.blocks)
spectrum_block = st.session_state.get("block", 1) - 1
result = _analysis(key, int(index), int(anchor_every), int(spectrum_block))
tr = result.main
worst = av.summary(result)

c1, c2 = st.columns(2)
c1.plotly_chart(fig.trajectory_figure(tr), key="trajectory")
c1.caption(av.terms("segment", "forward / rebuilt") if tr.rebuilt[0] is not None
           else av.terms("segment"))
if tr.rebuilt[0] is None:
    c2.info("ResNet blocks are not invertible: there is nothing to rebuild backwards. "
            "Pick a Hamiltonian, Midpoint, Leapfrog or RevNet model.")
else:
    c2.plotly_chart(fig.rebuild_error_figure(result.errors, tr.labels), key="errors")
    c2.caption("Worst per-block error: " + ", ".join(
        f"{k}: {v:.1e}" for k, v in worst["worst_error"].items() if v is not None)
        + ".  \n" + av.terms("anchors every k", "float32 / float64"))

block = st.slider("Block whose feature maps are shown (and whose Jacobian is analysed)", 1,
                  n_blocks, key="block")
c3, c4 = st.columns(2)
invertible = tr.rebuilt[0] is not None
if not invertible:  # a ResNet has no rebuilt input: the toggle reads off, not "on but disabled"
    st.session_state["show_rebuilt"] = False
show_rebuilt = c3.toggle("Show the rebuilt input instead of the output", key="show_rebuilt",
                         disabled=not invertible,
                         help=None if invertible else "ResNet blocks have no inverse")
c3.plotly_chart(fig.feature_maps_figure(tr, block - 1, rebuilt=show_rebuilt), key="maps")
c4.plotly_chart(fig.eigenvalue_figure(result.spectra), key="eigen")
c4.caption(av.spectrum_caption(result))
