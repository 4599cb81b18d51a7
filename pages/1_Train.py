"""Train: configure a run, see what it costs, launch it, watch it live (?run=<id> reattaches)."""

import streamlit as st

import core
from lab.figures.runs import LIVE_TERMS, live_figures, overlay_figure
from lab.runs import jobs
from lab.runs.live import LiveRun
from lab.runs.table import run_kind
from lab.views import actions
from lab.views import train as train_form
from lab.views.navigation import open_page

open_page("Train")
actions.begin()  # the message of the last action (launch, cancel, resume, delete)
jobs.reconcile()  # cheap: marks dead runs stale, starts queued ones

run_id = st.query_params.get("run")
compare_id = st.query_params.get("compare")


# -- the form ---------------------------------------------------------------------------------
@st.cache_data(show_spinner="Computing parameters and activation memory ...", max_entries=64)
def cached_preview(config_json: str) -> train_form.Preview:
    import json

    return train_form.preview(json.loads(config_json))


def form() -> None:
    d = train_form.form_defaults()
    v: dict = {}
    c1, c2, c3 = st.columns(3)
    with c1:
        st.subheader("Model")
        v["source"] = st.radio("Build from", ["family", "named"], key="source", horizontal=True,
                               format_func={"family": "a family", "named": "a named model"}.get)
        if v["source"] == "family":
            fams = list(train_form.FAMILY_LABELS)
            v["family"] = st.selectbox("Family", fams, index=fams.index(d["family"]),
                                       format_func=train_form.FAMILY_LABELS.get, key="family")
            v["blocks"] = st.text_input("Blocks per stage", d["blocks"], key="blocks",
                                        help="comma-separated, one number per stage")
            v["widths"] = st.text_input("Widths", d["widths"], key="widths",
                                        help="stem width, then one per stage")
            model = v["family"]
        else:
            named = [n for n in core.list_models() if n not in train_form.FAMILY_LABELS]
            v["named"] = st.selectbox("Named model", named, key="named")
            model = v["named"]
        v["h"] = st.number_input("Step size h", 0.01, 10.0, d["h"], 0.1, key="h")
        modes = train_form.memory_modes(model)
        v["memory"] = st.selectbox("Memory mode", modes, key="memory")
        v["memory_mib"] = (st.number_input("Memory budget (MiB)", 1.0, 1e6, d["memory_mib"],
                                           key="memory_mib") if v["memory"] == "budget" else None)
        v["memory_limit_mib"] = (st.number_input(
            "Memory limit (MiB)", 1.0, 1e7, None, key="memory_limit_mib",
            placeholder="the device's free memory",
            help=train_form.AUTO_HELP) if v["memory"] == "auto" else None)
    with c2:
        st.subheader("Data")
        names = core.data.list_datasets()
        v["dataset"] = st.selectbox("Dataset", names, index=names.index(d["dataset"]),
                                    key="dataset")
        if v["dataset"] == "imagefolder":
            v["data_root"] = st.text_input(
                "Image folder", key="data_root", placeholder="/path/to/images",
                help="a folder with one sub-folder of images per class (or train/ and test/ "
                     "folders laid out that way)")
        elif v["dataset"] in train_form.DOWNLOADABLE:
            v["download"] = st.checkbox(
                "Download if missing", key="download",
                help=f"torchvision fetches the files and checks their md5, into "
                     f"{train_form.data_folder(v['dataset'])} (set LAB_DATA to choose)")
        data_problem = train_form.dataset_problem(
            {"dataset": v["dataset"], "data_root": v.get("data_root")},
            download=bool(v.get("download")))
        if data_problem:
            st.error(data_problem, icon=":material/folder_off:")
        v["fraction"] = st.slider("Training fraction", 0.05, 1.0, d["fraction"], 0.05,
                                  key="fraction")
        v["epochs"] = st.number_input("Epochs", 1, 10_000, d["epochs"], key="epochs")
        v["batch_size"] = st.number_input("Batch size", 1, 8192, d["batch_size"], key="batch")
    with c3:
        st.subheader("Optimizer")
        v["optimizer"] = st.selectbox("Optimizer", ["sgd", "adamw"], key="optimizer")
        v["lr"] = st.number_input("Learning rate (0: the optimizer's default)", 0.0, 10.0, 0.0,
                                  format="%.4g", key="lr")
        v["seed"] = st.number_input("Seed", 0, 2**31 - 1, d["seed"], key="seed")
        devices = jobs.visible_devices()
        v["nproc"] = (st.number_input("Processes (one per GPU)", 1, devices, 1, key="nproc")
                      if devices > 1 else 1)
    try:
        config = train_form.config_from_form(v)
    except (ValueError, TypeError) as e:
        st.error(f"{e}")
        return
    import json

    p = cached_preview(json.dumps(config, sort_keys=True))
    m1, m2, m3 = st.columns(3)
    m1.metric("Parameters", f"{p.params:,}")
    m2.metric("Depth", f"{p.depth} layers")
    m3.metric("Batch shape", "×".join(map(str, p.input_shape)))
    if p.memory:
        st.dataframe(train_form.memory_rows(p), hide_index=True, key="preview_memory")
    if p.note:
        st.caption(p.note)
    b1, b2, _ = st.columns([1, 2, 3])
    launch = b1.button("Launch", type="primary", key="launch", disabled=bool(data_problem),
                       help=data_problem and "the dataset is missing: see the message under "
                                             "Dataset")
    compare = b2.button("Compare memory modes", key="compare",
                        help="the same configuration twice, standard and reversible, overlaid",
                        disabled=bool(data_problem)
                        or "reversible" not in train_form.memory_modes(config["model"]))
    if launch or compare:
        try:
            with st.spinner("Fetching the dataset's missing files (torchvision checks every "
                            "file's md5; this can take minutes) ..." if v.get("download")
                            else "Launching ..."):
                ids = train_form.launch(config, nproc=int(v["nproc"]), compare=compare,
                                        download=bool(v.get("download")))
        except (ValueError, TypeError, jobs.JobError) as e:
            st.error(f"Could not launch: {e}")
            return
        st.query_params.clear()  # the new run replaces whatever the URL showed
        actions.end(actions.launched(ids, "runs" if compare else "run",
                                     show={"run": ids[-1], "compare": ids[0]} if compare
                                     else {"run": ids[-1]}))


# -- the live view ----------------------------------------------------------------------------
def live_run(rid: str) -> LiveRun:
    """This tab's incremental reader of a run (a reload starts a fresh one: it reads it all)."""
    key = f"live:{rid}"
    if key not in st.session_state:
        st.session_state[key] = LiveRun(rid)
    return st.session_state[key]


def panel(rid: str, other: str | None, active: bool, waiting: bool = False) -> None:
    live = live_run(rid)
    lives = [live_run(other), live] if other else [live]
    train_form.refresh(lives, active)
    if live.run is None:
        st.error(f"Run {rid} is not in this lab (deleted, or another LAB_HOME). Start a new one "
                 "below.")
        return
    run = live.run
    if run_kind(run) == "depth-sweep":
        st.info(f"Run {rid} is a depth sweep, not a training run: open it on the "
                f"[Depth lab](Depth_lab?sweep={rid}) page.")
        return
    prog = live.progress()
    label = run.name or f"{run.model} on {run.dataset}"
    st.subheader(f"Run {rid}: {label}")
    st.progress(prog.fraction, text=train_form.progress_text(run, prog))
    note = train_form.status_note(run)
    if note:
        {"info": st.info, "warning": st.warning, "success": st.success}[note[0]](note[1])
    try:
        if run.active:
            if st.button("Cancel", key=f"cancel-{rid}"):
                actions.end(actions.cancel(train_form.active_ids(lives)))
        else:  # an ended run: resume it (where it can be) or delete it, here as on Runs
            actions.ended_run_buttons(rid, run.status)
    except (jobs.JobError, LookupError, ValueError) as e:
        st.error(f"{e}")
    if other and lives[0].run is not None:
        st.caption(f"Compare memory modes: {other} ({lives[0].run.config.get('memory')}) against "
                   f"{rid} ({run.config.get('memory')}): same curves, different memory.")
        c1, c2 = st.columns(2)
        for col, metric in ((c1, "acc"), (c2, "saved_bytes")):
            col.plotly_chart(overlay_figure(lives, metric, by_mode=True, uirevision=rid,
                                            labels=train_form.compare_labels(lives)),
                             key=f"cmp-{metric}-{rid}")
    figs = live_figures(live, previous=st.session_state.get(f"figs:{rid}"))
    st.session_state[f"figs:{rid}"] = figs  # next tick replaces only the data
    c1, c2 = st.columns(2)
    c1.plotly_chart(figs["accuracy"], key=f"live-accuracy-{rid}")
    c2.plotly_chart(figs["loss"], key=f"live-loss-{rid}")
    c1.plotly_chart(figs["memory"], key=f"live-memory-{rid}")
    if "drift" in figs:  # the drift watch has measured: rebuild error beside memory
        c2.plotly_chart(figs["drift"], key=f"live-drift-{rid}")
        c1.plotly_chart(figs["throughput"], key=f"live-throughput-{rid}")
    else:
        c2.plotly_chart(figs["throughput"], key=f"live-throughput-{rid}")
    st.caption("  \n".join(f"**{term}**: {what}" for term, what in LIVE_TERMS.items()))
    if active and not train_form.active_ids(lives):
        st.rerun(scope="app")  # the run ended: redraw once without the timer
    if waiting and prog.step is not None:
        st.rerun(scope="app")  # the first point is in: back to one tick a second


if run_id:
    active, waiting = train_form.watch(run_id, compare_id)
    st.fragment(run_every=(0.25 if waiting else 1.0) if active else None)(panel)(
        run_id, compare_id, active, waiting)
    with st.expander("New run", expanded=False):
        form()
else:
    form()
