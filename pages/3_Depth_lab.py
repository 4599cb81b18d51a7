"""Depth lab: sweep a family over depths in a background job; memory and step time vs depth."""

import streamlit as st

from core.network import FAMILIES
from lab.figures.depth import depth_figure
from lab.runs import jobs
from lab.runs.store import ACTIVE
from lab.views import actions
from lab.views import depth as depth_lab
from lab.views.navigation import open_page
from lab.views.tables import cells

open_page("Depth lab",
          "How activation memory and training-step time grow with depth in each memory mode. "
          "A sweep runs as a background job (queued with the training runs, so it never "
          "competes with them for the CPU), is stored, and can be reopened below at any time.")
actions.begin()  # the message of the last action, and the selection it left
jobs.reconcile()
sweeps = depth_lab.list_sweeps()

with st.expander("New sweep", expanded=not sweeps):
    left, right = st.columns(2)
    family = left.selectbox("Family", list(FAMILIES))
    depths = right.text_input(f"Depths in layers (up to {depth_lab.MAX_LAYERS})",
                              ", ".join(map(str, depth_lab.DEFAULT_LAYERS)))
    choices = depth_lab.mode_choices(family)
    modes = st.multiselect("Memory modes", choices, default=[m for m in choices if m != "budget"])
    mode_mib = (st.number_input("Budget mode: MiB of activations", min_value=1.0, value=64.0)
                if "budget" in modes else None)
    c1, c2, c3 = st.columns(3)
    batch = c1.number_input("Batch size", min_value=1, max_value=1024, value=32)
    size = c2.selectbox("Image side (pixels, 3 channels)", [32, 16, 64])
    repeats = c3.number_input("Timed steps per mode (median)", min_value=1, max_value=20,
                              value=3)
    peak = st.checkbox("Also measure peak memory (a fresh process per case: slower)")
    if st.button("Run sweep", type="primary"):
        try:
            config = depth_lab.sweep_config(family, depths, modes, batch=int(batch), size=size,
                                            repeats=int(repeats), peak=peak, budget_mib=mode_mib)
            run_id = depth_lab.launch_sweep(config)
        except (ValueError, TypeError) as e:
            st.error(str(e))
        else:  # the URL names the new sweep; the picker follows the URL
            actions.end(actions.launched([run_id], "sweep", show={"sweep": run_id}))

if not sweeps:
    st.info("No sweeps yet: choose a family and depths above and press **Run sweep**. "
            "The default (14, 74, 218 layers) takes about a minute on a laptop CPU.")
    st.stop()

ids = [r.id for r in sweeps]
labels = {r.id: f"{r.id} · {r.name} · {r.status}" for r in sweeps}  # statuses: the store's
wanted = st.query_params.get("sweep")  # the URL says which sweep is shown
pick = actions.picker_key("sweep_pick", labels.values())  # a new picker when a label changes
if pick not in st.session_state:
    st.session_state[pick] = wanted if wanted in ids else ids[0]
run_id = st.selectbox("Sweep", ids, format_func=labels.get, key=pick)
if run_id != wanted:
    st.query_params["sweep"] = run_id
budget = st.number_input("Memory budget: MiB of activations", min_value=0.1, value=256.0,
                         help="The largest depth whose activation memory fits, per mode.")
drawn = tuple((r.id, r.status) for r in sweeps)


@st.fragment(run_every=2 if any(s in ACTIVE for _, s in drawn) else None)
def show_sweep(run_id: str, budget: float) -> None:
    if tuple((r.id, r.status) for r in depth_lab.list_sweeps()) != drawn:
        st.rerun()  # a sweep started, ended or went: redraw the page (labels, timer) once
    v = depth_lab.view(run_id)
    done, total, message = v.progress
    st.markdown(f"**{v.run.name}** · status **{v.run.status}**"
                + (f" · {v.run.reason}" if v.run.reason else ""))
    try:
        if v.active:
            st.progress(done / total if total else 0.0,
                        text=f"{done} of {total or '?'} cases measured · "
                             f"{message or 'starting'}")
            if st.button("Cancel sweep", key="cancel_sweep"):
                actions.end(actions.cancel([v.run.id]))
        else:
            actions.ended_run_buttons(v.run.id, v.run.status, noun="sweep",
                                      resume_label="Resume sweep (keeps finished depths)",
                                      delete_label="Delete sweep")
    except (jobs.JobError, LookupError, ValueError) as e:
        st.error(f"{e}")
    if not v.rows:
        st.info("No depth measured yet." if v.active else "This sweep measured nothing.")
        return
    st.plotly_chart(depth_figure(v.payload, budget, uirevision=f"depth-{v.run.id}"),
                    key=f"depth-figure-{v.run.id}")
    st.caption(depth_lab.LEGEND)
    st.subheader(f"Deepest network within {budget:g} MiB")
    st.dataframe(cells(depth_lab.deepest_within(v.payload, budget)), hide_index=True,
                 width="stretch")
    st.subheader("Measurements")
    st.dataframe(depth_lab.result_table(v.rows), hide_index=True, width="stretch")


show_sweep(run_id, budget)
