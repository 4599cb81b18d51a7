"""The Runs page's logic: table rows and kinds, filters, config diffs, log tails, CSV export."""

import csv
import io

import pytest

from lab.runs.store import LOG_NAME, Store
from lab.runs.table import run_rows
from lab.views import runs as runs_view


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path) as st:
        yield st


def test_rows_kinds_and_filters(store):
    a = store.create_run({"model": "hamiltonian", "dataset": "digits", "memory": "reversible",
                          "model_kwargs": {"blocks": [3, 3, 3]}, "epochs": 2}, name="mine")
    b = store.create_run({"model": "resnet-32", "dataset": "shapes", "memory": "standard"})
    s = store.create_run({"kind": "depth-sweep", "family": "hamiltonian"},
                         worker="lab.sweeps.worker")
    runs = store.list_runs()
    rows = {r["run"]: r for r in run_rows(runs)}
    assert rows[a]["kind"] == "train" and rows[a]["blocks"] == "3-3-3" and rows[a]["name"] == "mine"
    assert rows[s]["kind"] == "depth-sweep" and rows[s]["model"] == ""
    ids = lambda rs: {r.id for r in rs}  # noqa: E731
    assert ids(runs_view.filter_runs(runs, kinds=["train"])) == {a, b}
    assert ids(runs_view.filter_runs(runs, text="SHAPES")) == {b}
    assert ids(runs_view.filter_runs(runs, text="reversible", kinds=["train"])) == {a}
    assert ids(runs_view.filter_runs(runs, statuses=["completed"])) == set()


def test_config_diff_marks_the_keys_that_differ(store):
    a = store.create_run({"model": "hamiltonian", "seed": 0, "model_kwargs": {"h": 0.5}})
    b = store.create_run({"model": "hamiltonian", "seed": 1, "model_kwargs": {"h": 0.5},
                          "lr": 0.1})
    rows, differ = runs_view.config_diff([store.get_run(a), store.get_run(b)])
    assert set(differ) == {"seed", "lr"}
    by_key = {r["key"]: r for r in rows}
    assert by_key["model_kwargs.h"][a] == by_key["model_kwargs.h"][b] == "0.5"
    assert by_key["lr"][a] == "—"


def test_log_tail_reads_the_end_of_the_worker_log(store):
    rid = store.create_run({"model": "hamiltonian"})
    assert runs_view.log_tail(store, rid) == ""
    folder = store.run_dir(rid)
    folder.mkdir(parents=True)
    (folder / LOG_NAME).write_text("".join(f"line {i}\n" for i in range(5000)))
    tail = runs_view.log_tail(store, rid, max_bytes=100)
    assert tail.endswith("line 4999\n") and tail.startswith("line ") and len(tail) <= 100


def test_metrics_csv_has_step_and_epoch_rows(store):
    rid = store.create_run({"model": "hamiltonian"}, status="running")
    store.write_metrics(rid, [{"step": 0, "loss": 2.0}, {"step": 1, "loss": 1.5}],
                        [{"epoch": 0, "test_acc": 0.5}])
    rows = list(csv.DictReader(io.StringIO(runs_view.metrics_csv(store, rid).decode())))
    assert [r["kind"] for r in rows] == ["step", "step", "epoch"]
    assert rows[1]["loss"] == "1.5" and rows[2]["test_acc"] == "0.5"


def test_figure_download_loads_plotly_from_the_app_and_stays_small(store, tmp_path, monkeypatch):
    import numpy as np

    from lab.figures.runs import overlay_figure
    from lab.runs.live import LiveRun

    monkeypatch.setattr(runs_view, "STATIC", tmp_path / "static")
    lives = []
    for _ in range(3):
        rid = store.create_run({"model": "hamiltonian"}, status="running")
        store.write_metrics(rid, [{"step": s, "loss": float(np.exp(-s / 500)), "time": s * 0.1}
                                  for s in range(1, 2001)])
        lives.append(LiveRun(rid))
        lives[-1].refresh(store)
    html = runs_view.figure_html(overlay_figure(lives, "loss"), "http://127.0.0.1:8612/Runs?run=a",
                                 "")
    size = len(html.encode())
    assert size < 200_000, size
    (js,) = (tmp_path / "static").glob("plotly-*.min.js")
    assert f'src="http://127.0.0.1:8612/app/static/{js.name}"' in html
    assert js.stat().st_size > 3_000_000 and "start the lab app" in html


@pytest.mark.parametrize("url, base, expected", [
    ("http://127.0.0.1:8501/Runs?run=x", "", "http://127.0.0.1:8501/app/static/"),
    ("http://host:9/lab/Runs", "/lab/", "http://host:9/lab/app/static/")])
def test_static_url(url, base, expected):
    assert runs_view.static_url(url, base) == expected


def test_config_diff_treats_every_empty_value_as_the_same(store):
    a = store.create_run({"model": "hamiltonian", "model_kwargs": {}, "lr": None})
    b = store.create_run({"model": "hamiltonian", "dataset_options": {}})
    c = store.create_run({"model": "hamiltonian", "model_kwargs": {"h": 0.5}})
    rows, differ = runs_view.config_diff([store.get_run(a), store.get_run(b)])
    assert differ == [] and {r["key"] for r in rows} == {"model"}
    rows, differ = runs_view.config_diff([store.get_run(a), store.get_run(c)])
    assert differ == ["model_kwargs.h"]
    by_key = {r["key"]: r for r in rows}
    assert by_key["model_kwargs.h"][a] == "—" and by_key["model_kwargs.h"][c] == "0.5"


def test_overlay_reads_the_selected_runs_and_labels_them(store):
    a = store.create_run({"model": "hamiltonian"}, status="running", name="mine")
    b = store.create_run({"model": "resnet-32"}, status="running")
    store.write_metrics(a, [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}])
    lives = runs_view.overlay_runs([a, b], store)
    assert [len(lv.series("loss")[0]) for lv in lives] == [2, 0]
    assert runs_view.overlay_labels(lives) == [f"{a} mine", f"{b} resnet-32"]
