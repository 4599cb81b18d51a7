"""Experiments: define a grid of runs (or start from a preset), launch it, watch it, read it."""

import streamlit as st

from lab.experiments import cost
from lab.experiments.grid import PRESETS
from lab.runs import jobs
from lab.views import experiments as ev
from lab.views.navigation import open_page

open_page("Experiments",
          "A grid of runs: every combination of the axes' values, each trained once per seed, "
          "all with the same number of optimizer steps. The runs are ordinary queued runs "
          "(the Runs page lists them); the results group them by cell with a 95% interval "
          "and compare cells seed by seed.")
jobs.reconcile()  # cheap: dead runs show as stale, queued ones start
experiments = ev.list_experiments()
wanted = st.query_params.get("experiment")
FIELDS = ("family", "fraction", "layers", "blocks", "h", "lr", "other", "dataset", "seeds",
          "steps", "batch_size", "family_kwargs")


def fill_form() -> None:
    """Put the chosen preset's values into the form's widgets."""
    preset = st.session_state.get("preset")
    for key, value in ev.form_defaults(None if preset == "blank" else preset).items():
        st.session_state[f"form_{key}"] = value


if "form_seeds" not in st.session_state:
    fill_form()

with st.expander("New experiment", expanded=not experiments):
    st.selectbox("Start from", ["blank", *PRESETS], key="preset", on_change=fill_form,
                 help="a preset fills the form; change anything before launching")
    cols = st.columns(3)
    for i, (axis, label, placeholder) in enumerate(ev.FORM_AXES):
        cols[i % 3].text_input(label, key=f"form_{axis}", placeholder=placeholder)
    st.text_input("Other axes", key="form_other", placeholder="dropout=0,0.1; optimizer=sgd,adamw",
                  help="any TrainConfig field or model setting: key=values, ';' between axes")
    c1, c2, c3, c4 = st.columns(4)
    c1.selectbox("Dataset", ev.DATASETS, key="form_dataset")
    c2.number_input("Seeds per cell", min_value=1, max_value=100, key="form_seeds")
    c3.number_input("Steps per run", min_value=1, max_value=1_000_000, key="form_steps")
    c4.number_input("Batch size", min_value=1, max_value=4096, key="form_batch_size")
    st.text_input("Per-family settings", key="form_family_kwargs",
                  placeholder="resnet: widths=8,8,16,32",
                  help="model settings of one family, e.g. a ResNet of about equal parameters")
    name = st.text_input("Name (optional)", key="form_name", placeholder="fewer-data-digits")
    try:
        spec = ev.spec_from_form({k: st.session_state[f"form_{k}"] for k in FIELDS},
                                 preset=None if st.session_state.preset == "blank"
                                 else st.session_state.preset)
    except (ValueError, TypeError) as e:
        st.error(str(e))
        spec = None
    if spec is not None:
        estimate = ev.plan(spec)
        st.markdown(f"**{spec.runs} runs** ({spec.cells} cells × {spec.seeds} seeds, "
                    f"{spec.steps} steps each) · {estimate.text()}")
        if estimate.unknown and st.button("Estimate the wall time (times one step per model)",
                                          key="time_steps"):
            with st.spinner("timing a training step of each model"):
                st.markdown(f"Estimate: {ev.plan(spec, time_steps=True).text()}")
        if st.button("Launch", type="primary", key="launch"):
            try:
                exp_id = ev.launch(spec, name)
            except (ValueError, TypeError) as e:
                st.error(str(e))
            else:
                st.query_params["experiment"] = exp_id
                st.rerun()

if not experiments:
    st.info("No experiments yet: fill the form above (or start from a preset) and press "
            "**Launch**, or run `python -m lab experiment grid --family hamiltonian,resnet "
            "--fraction 0.1,1 --seeds 3`.")
    st.stop()

ids = [e.id for e in experiments]
labels = {e.id: f"{e.name} · {e.id}" for e in experiments}
exp_id = st.selectbox("Experiment", ids, index=ids.index(wanted) if wanted in ids else 0,
                      format_func=labels.get, key="experiment_pick")
if exp_id != wanted:
    st.query_params["experiment"] = exp_id
first = ev.view(exp_id)
metrics = first.results.metrics or [first.results.metric]
c1, c2 = st.columns(2)
metric = c1.selectbox("Metric", metrics, index=metrics.index(first.results.metric)
                      if first.results.metric in metrics else 0, key="metric")
x_axis = c2.selectbox("Against", ev.x_axes(first.results), key="x_axis")


@st.fragment(run_every=3 if first.active else None)
def show_experiment(exp_id: str, metric: str, x_axis: str, was_active: bool) -> None:
    v = ev.view(exp_id, metric)
    if was_active and not v.active:
        st.rerun()  # finished: redraw the whole page once, without the timer
    res = v.results
    p = v.progress
    total = sum(p.values())
    st.progress(p["done"] / total if total else 0.0, text=v.progress_text())
    cols = st.columns(5)
    for col, key in zip(cols, ("done", "running", "queued", "failed", "missing"), strict=True):
        col.metric(key, p[key])
    st.page_link("pages/2_Runs.py", label="These runs on the Runs page",
                 query_params={"experiment": exp_id})
    if v.active and st.button("Cancel the queued and running runs", key="cancel_all"):
        ev.cancel_active(res)
        st.rerun()

    st.subheader("Groups")
    st.caption(f"Mean of {metric} over seeds with the 95% Student-t interval of the mean; n = "
               "seeds with a result / seeds in the grid.")
    st.dataframe(ev.group_rows(res), hide_index=True, width="stretch", key="groups")
    d1, d2 = st.columns(2)
    d1.download_button("Table (CSV)", ev.table_csv(res), mime="text/csv", key="csv",
                       file_name=f"{res.experiment.name}-{metric}.csv")
    # built on click only: plotly.js inlined makes the file about 5 MB
    d2.download_button("Figures (HTML)", lambda: ev.figures_html(res, x_axis), mime="text/html",
                       key="html", file_name=f"{res.experiment.name}-{metric}.html")

    line, parallel = ev.figures(res, x_axis)
    st.plotly_chart(line, key="metric_vs_axis")
    st.plotly_chart(parallel, key="parallel")

    st.subheader("Paired comparisons")
    st.caption("Two cells that differ in one axis, paired by seed (same seed and other axes): "
               "mean difference a − b with its 95% t interval, the paired t-test's p-value "
               "(and Holm-adjusted over every comparison), the Wilcoxon signed-rank p-value, "
               "and Cohen's d_z.")
    axes = [a for a, vals in res.spec.axes.items() if len(vals) > 1]
    if not axes:
        st.caption("Every axis has one value: nothing to compare.")
        return
    along = st.selectbox("Along", axes, key="along")
    rows = ev.comparison_rows(res, along)
    st.dataframe(rows, hide_index=True, width="stretch", key="comparisons")


show_experiment(exp_id, metric, x_axis, first.active)
st.caption(f"Estimated times use {cost.parallel_runs()} run(s) at once (LAB_MAX_JOBS).")
