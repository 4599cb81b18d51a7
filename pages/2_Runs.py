"""Runs: every run in a sortable, filterable table; overlay curves, compare configs, act on runs."""

import streamlit as st

from lab.figures.runs import METRICS, overlay_figure
from lab.runs import jobs
from lab.runs.store import STATUSES, Store
from lab.runs.table import RUNS_COLUMNS, run_kind, run_rows
from lab.views import actions
from lab.views import runs as runs_view
from lab.views.navigation import open_page
from lab.views.tables import status_coloured

open_page("Runs")
actions.begin()  # the message of the last action, and the selection it left
jobs.reconcile()  # cheap: dead runs show as stale, queued ones start

with Store() as store:
    all_runs = store.list_runs()
if not all_runs:
    st.info("No runs yet: launch one on the Train page or with `python -m lab train`.")
    st.stop()

# -- filter and table -------------------------------------------------------------------------
kinds = sorted({run_kind(r) for r in all_runs})
f1, f2, f3 = st.columns([2, 2, 2])
text = f1.text_input("Filter", key="filter", placeholder="id, name, model, dataset, memory ...")
statuses = f2.multiselect("Status", STATUSES, key="statuses")
kind_sel = f3.multiselect("Kind", kinds, default=["train"] if "train" in kinds else [],
                          key="kinds", help="training runs; sweeps and other jobs have their own")
with Store() as store:
    exps = {e.id: e.name for e in store.list_experiments()}
exp_sel = None
if exps:  # the Experiments page links here with ?experiment=ID
    exp_ids = [None, *exps]
    asked = st.query_params.get("experiment")
    exp_sel = st.selectbox("Experiment", exp_ids, key="experiment",
                           index=exp_ids.index(asked) if asked in exps else 0,
                           format_func=lambda e: "any" if e is None else f"{exps[e]} · {e}")
runs = runs_view.filter_runs(all_runs, text=text, statuses=statuses, kinds=kind_sel,
                             experiment=exp_sel)
st.dataframe(status_coloured(run_rows(runs, RUNS_COLUMNS)), hide_index=True, width="stretch",
             key="runs_table")
st.caption(f"{len(runs)} of {len(all_runs)} runs; click a column header to sort.")

by_id = {r.id: r for r in runs}
# the selection lives in the URL (?run=a&run=b): a reload or a shared link shows the same runs
wanted = [r for r in st.query_params.get_all("run") if r in by_id]
st.session_state["selected"] = [r for r in st.session_state.get("selected", wanted) if r in by_id]
selected = st.multiselect(
    "Select runs to compare", list(by_id), key="selected",
    format_func=lambda i: f"{i} · {by_id[i].name or by_id[i].model} · {by_id[i].status}")
if selected != st.query_params.get_all("run"):
    st.query_params["run"] = selected
if not selected:
    st.stop()

# -- overlay ----------------------------------------------------------------------------------
st.header("Curves")
c1, c2, c3, c4 = st.columns([2, 2, 1, 1])
metric = c1.selectbox("Metric", list(METRICS), key="metric",
                      format_func=lambda m: METRICS[m][0])
smoothing = c2.slider("Smoothing", 0.0, 0.99, 0.6, 0.01, key="smoothing")
log_x = c3.checkbox("log x", key="log_x")
log_y = c4.checkbox("log y", key="log_y")
lives = runs_view.overlay_runs(selected)
fig = overlay_figure(lives, metric, smoothing=smoothing, log_x=log_x, log_y=log_y,
                     labels=runs_view.overlay_labels(lives))
st.plotly_chart(fig, key="overlay")
st.download_button("Download this figure (HTML)",
                   runs_view.figure_html(fig, st.context.url,
                                         st.get_option("server.baseUrlPath") or "",
                                         st.get_option("server.port")),
                   file_name=f"runs-{metric}.html", mime="text/html", key="fig_html",
                   help="a small file that loads plotly.js from this app: open it while the "
                        "app runs")

# -- configurations side by side ----------------------------------------------------------------
st.header("Configurations")
rows, differ = runs_view.config_diff([by_id[i] for i in selected])
only_diff = st.checkbox("Only the differences", key="only_diff",
                        help="the differences are highlighted either way")
shown = [r for r in rows if r["key"] in differ] if only_diff else rows
if shown:
    import pandas as pd

    frame = pd.DataFrame(shown)
    st.dataframe(frame.style.apply(
        lambda row: ["background-color: #fff3b0" if row["key"] in differ else ""] * len(row),
        axis=1), width="stretch", hide_index=True, key="config_diff",
        column_config={"key": st.column_config.TextColumn("key", width="large", pinned=True)})
else:
    st.caption("The selected runs have the same configuration.")

# -- one run at a time: details and actions -----------------------------------------------------
st.header("Details and actions")
for run_id in selected:
    run = by_id[run_id]
    with st.expander(f"{run_id} · {run.status} · {run.name or run.model}",
                     expanded=len(selected) == 1):
        if run.status in ("failed", "stale"):
            st.error(f"{run.status}: {run.reason or 'no reason recorded'}"
                     + (f"\n\n{run.error}" if run.error else ""))
        elif run.reason:
            st.caption(run.reason)
        with Store() as store:
            tail = runs_view.log_tail(store, run_id)
            csv = runs_view.metrics_csv(store, run_id)
        if run.status in ("failed", "stale", "interrupted", "cancelled") or tail:
            st.code(tail or "(the log is empty)", language="text")
        a1, a2, a3, _ = st.columns(4, vertical_alignment="center")
        a1.download_button("Metrics CSV", csv, file_name=f"{run_id}-metrics.csv",
                           mime="text/csv", key=f"csv-{run_id}")
        if run_kind(run) == "depth-sweep":
            a2.page_link("pages/3_Depth_lab.py", label="Open in the Depth lab",
                         query_params={"sweep": run_id})
        else:
            a2.page_link("pages/1_Train.py", label="Watch on Train", query_params={"run": run_id})
        try:
            if run.active and a3.button("Cancel", key=f"cancel-{run_id}"):
                actions.end(actions.cancel([run_id]))
        except (jobs.JobError, LookupError, ValueError) as e:
            st.error(f"{e}")
        if not run.active:  # Resume (where it can) and Delete, as on every page showing the run
            actions.ended_run_buttons(run_id, run.status)
