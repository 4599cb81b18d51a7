"""Grids of runs: expansion, validation before anything is queued, statistics against values
worked out by hand, grouping with failed and missing runs, the store's experiment record."""

import json
import math
import sqlite3

import pytest

from lab.experiments import grid, stats
from lab.experiments import results as rs
from lab.runs import jobs
from lab.runs.store import Store


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "_spawn", lambda *a, **k: None)  # queue and claim, start nothing
    monkeypatch.setenv("LAB_MAX_JOBS", "1")
    with Store(tmp_path) as st:
        yield st


def finish(store, run_id, status="completed", **final):
    """Give a queued or running run an end (and final metrics) as a worker would."""
    store._conn.execute("UPDATE runs SET status = 'running' WHERE id = ?", (run_id,))
    store.finish(run_id, status, final=final or None)


# -- expansion ------------------------------------------------------------------------------------
def test_expansion_is_every_cell_times_seeds_seed_major():
    spec = grid.GridSpec(axes={"family": ["hamiltonian", "resnet"], "fraction": [0.1, 1.0]},
                         seeds=2, steps=7, family_kwargs={"resnet": {"widths": [8, 8, 16, 32]}})
    points = spec.points()
    assert spec.cells == 4 and spec.runs == 8 and len(points) == 8
    assert [s for _, s in points] == [0, 0, 0, 0, 1, 1, 1, 1]  # seed 0 of every cell first
    assert points[1] == ({"family": "hamiltonian", "fraction": 1.0}, 0)
    cfg = spec.config({"family": "resnet", "fraction": 0.1}, seed=1)
    assert (cfg["model"], cfg["fraction"], cfg["seed"], cfg["steps"]) == ("resnet", 0.1, 1, 7)
    assert cfg["model_kwargs"] == {"widths": [8, 8, 16, 32]}  # the family's own settings
    assert cfg["memory"] == "standard" and cfg["dataset"] == "digits"
    assert spec.config({"family": "hamiltonian", "fraction": 1.0}, 0)["model_kwargs"] == {}
    assert grid.run_name("fd", {"family": "resnet", "fraction": 0.1}, 3) == (
        "fd/family=resnet,fraction=0.1/seed3")


def test_an_axis_wins_over_the_family_settings():
    spec = grid.GridSpec(axes={"family": ["resnet"], "widths": [[4, 4, 8, 16]]},
                         family_kwargs={"resnet": {"widths": [8, 8, 16, 32], "h": 0.5}})
    assert spec.config({"family": "resnet", "widths": [4, 4, 8, 16]}, 0)["model_kwargs"] == {
        "widths": [4, 4, 8, 16], "h": 0.5}


def test_layers_become_blocks_per_family():
    # reversible blocks count 4 layers, ResNet blocks 2: 26 layers = 3 stages x 2 blocks x 4 + 2
    # for hamiltonian, 3 x 4 x 2 + 2 for resnet
    assert grid.blocks_for_layers("hamiltonian", 26) == [2, 2, 2]
    assert grid.blocks_for_layers("resnet", 26) == [4, 4, 4]
    assert grid.blocks_for_layers("leapfrog", 110) == [9, 9, 9]
    with pytest.raises(ValueError, match=r"layers=20 .*hamiltonian.*14, 26, 38"):
        grid.blocks_for_layers("hamiltonian", 20)
    spec = grid.preset("depth")
    assert spec.axes["layers"][0] == 14 and spec.axes["layers"][-1] >= 110
    assert spec.config({"family": "resnet", "layers": 110}, 0)["model_kwargs"]["blocks"] == [18] * 3


def test_parse_values():
    assert grid.parse_values("blocks", "2,2,2;6,6,6") == [[2, 2, 2], [6, 6, 6]]
    assert grid.parse_values("fraction", "0.05,1") == [0.05, 1.0]
    assert isinstance(grid.parse_values("fraction", "1")[0], float)
    assert grid.parse_values("family", "hamiltonian, resnet") == ["hamiltonian", "resnet"]
    assert grid.parse_values("augment", "true,false") == [True, False]
    with pytest.raises(ValueError, match="no values"):
        grid.parse_values("h", " ")


def test_presets():
    fd = grid.preset("fewer-data")
    assert fd.runs == 4 * 5 * 10 and fd.axes["fraction"] == [0.05, 0.1, 0.2, 0.5, 1.0]
    assert grid.preset("fewer-data", dataset="shapes", fraction=[0.05, 0.2, 1.0], seeds=2).runs == (
        4 * 3 * 2)
    assert grid.preset("step-size").axes["h"][0] < 1 < grid.preset("step-size").axes["h"][-1]
    with pytest.raises(ValueError, match="unknown preset 'nope'.*fewer-data"):
        grid.preset("nope")


# -- validation: refused before anything is queued ------------------------------------------------
@pytest.mark.parametrize("axes, message", [
    ({"fraction": [0.5, 1.5]}, r"axis 'fraction' value 1.5 is refused.*\(0, 1\]"),
    ({"family": ["hamiltonian", "vgg"]}, r"axis 'family' value 'vgg' is refused.*hamiltonian"),
    ({"h": [1.0, -1.0]}, r"axis 'h' value -1.0 is refused.*step size"),
    ({"optimizer": ["sgd", "lbfgs"]}, r"axis 'optimizer' value 'lbfgs'.*adamw"),
    ({"colour": ["red"]}, r"unknown axis 'colour'; allowed: family, model, layers"),
    ({"fraction": []}, r"axis 'fraction' needs a non-empty list"),
    ({"fraction": [0.1, 0.1]}, r"lists a value twice"),
    ({"family": ["hamiltonian", "resnet"], "memory": ["standard", "reversible"]},
     r"cell family=resnet memory=reversible is refused.*invertible"),
    ({"family": ["hamiltonian"], "layers": [14, 20]}, r"axis 'layers' value 20 is refused"),
    # the bad value is named even when it comes first and other axes are checked before it
    ({"h": [0.5, 1.0], "fraction": [1.5, 0.5]}, r"axis 'fraction' value 1.5 is refused"),
    ({"family": ["hamiltonian", "resnet"], "widths": [[16, 16, 32, 64], [3, 3, 6, 12]]},
     r"cell family=hamiltonian widths=3-3-6-12 is refused.*even"),
])
def test_bad_values_are_refused_by_name_and_nothing_is_queued(store, axes, message):
    spec = grid.GridSpec(axes=axes, seeds=2)
    with pytest.raises(ValueError, match=message):
        grid.launch(spec, store=store, name="bad")
    assert store.list_runs() == [] and store.list_experiments() == []


def test_a_value_that_fits_one_family_is_taken():
    # odd widths suit a ResNet (no channel halves); only the cells with them are checked so
    spec = grid.GridSpec(axes={"family": ["resnet"], "widths": [[3, 3, 6, 12]],
                               "layers": [20]})  # 20 = 6 x 3 + 2: a ResNet depth, not an ODE one
    assert spec.validate() is spec


def test_spec_level_errors():
    with pytest.raises(ValueError, match="seeds=0"):
        grid.GridSpec(axes={"h": [1.0]}, seeds=0).validate()
    with pytest.raises(ValueError, match="steps"):
        grid.GridSpec(axes={"h": [1.0]}, steps=1.5).validate()
    with pytest.raises(ValueError, match="at least one axis"):
        grid.GridSpec().validate()
    with pytest.raises(ValueError, match="seeds come from"):
        grid.GridSpec(axes={"h": [1.0]}, base={"seed": 3}).validate()
    with pytest.raises(ValueError, match="unknown grid key"):
        grid.GridSpec.from_dict({"axes": {}, "colour": 1})


# -- statistics against hand-computed values ------------------------------------------------------
def test_mean_ci_by_hand():
    # [1, 2, 3]: mean 2, sample SD 1, SE 1/sqrt(3) = 0.57735; t(0.975, df=2) = 4.303 (t table)
    # half width 4.302653 * 0.57735 = 2.484138 -> [-0.484138, 4.484138]
    s = stats.mean_ci([1, 2, 3])
    assert (s.n, s.mean, s.sd) == (3, 2.0, 1.0)
    assert s.ci95 == pytest.approx((-0.484138, 4.484138), abs=1e-6)
    assert stats.t_critical(2) == pytest.approx(4.303, abs=5e-4)
    # [0.90, 0.94]: mean 0.92, SD 0.028284, SE 0.02; t(0.975, df=1) = 12.706 -> ± 0.254124
    s = stats.mean_ci([0.90, 0.94])
    assert s.ci95 == pytest.approx((0.92 - 0.254124, 0.92 + 0.254124), abs=1e-6)
    assert stats.mean_ci([0.5]) == stats.Summary(1, 0.5, None, None)  # no interval from one
    assert stats.mean_ci([]).mean is None
    with pytest.raises(ValueError, match="finite"):
        stats.mean_ci([1.0, math.nan])


def test_paired_by_hand():
    # a - b = [1, 2, 3, 4]: mean 2.5, SD sqrt(5/3) = 1.290994, SE 0.645497, t = 3.872983, df 3.
    # t(0.975, 3) = 3.182446 -> CI 2.5 ± 2.054260; two-sided p from the t table: 0.0305.
    # Cohen's d_z = 2.5 / 1.290994 = 1.936492. Wilcoxon: all four differences positive, so
    # W+ = 1+2+3+4 = 10, the largest of 2^4 = 16 equally likely sign patterns: p = 2/16 = 0.125.
    r = stats.paired([3, 5, 7, 9], [2, 3, 4, 5])
    assert (r.n_pairs, r.mean_diff) == (4, 2.5)
    assert r.sd_diff == pytest.approx(1.290994, abs=1e-6)
    assert r.t == pytest.approx(3.872983, abs=1e-6)
    assert r.ci95 == pytest.approx((0.445740, 4.554260), abs=1e-6)
    assert r.p_value == pytest.approx(0.0305, abs=5e-4)
    assert r.cohens_dz == pytest.approx(1.936492, abs=1e-6)
    assert r.wilcoxon_p == pytest.approx(0.125)
    assert r.test == "paired t-test (two-sided)"
    # a - b = [1, -2, 3]: ranks 1, 2, 3; W+ = 1 + 3 = 4, W- = 2. Patterns with W+ <= 4 among
    # the 8: {}, {1}, {2}, {3}, {1,2}, {1,3} -> 6; with W+ >= 4: {1,3}, {2,3}, {1,2,3} -> 3;
    # p = 2 * min(6, 3) / 8 = 0.75.
    assert stats.paired([1, 0, 3], [0, 2, 0]).wilcoxon_p == pytest.approx(0.75)


def test_paired_edge_cases():
    same = stats.paired([1, 2, 3], [0, 1, 2])  # every pair differs by exactly 1
    assert same.mean_diff == 1 and same.sd_diff == 0 and same.p_value is None
    assert same.cohens_dz is None and same.t is None
    assert stats.paired([0.5], [0.4]).ci95 is None
    assert stats.paired([], []).n_pairs == 0
    assert stats.paired([1, 1], [1, 1]).wilcoxon_p is None  # no nonzero difference
    with pytest.raises(ValueError, match="equal lengths"):
        stats.paired([1, 2], [1])


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 with m = 3: 3 * 0.01 = 0.03; 2 * 0.03 = 0.06; 1 * 0.04 = 0.04,
    # raised to the running maximum 0.06
    assert stats.holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    assert stats.holm([0.6, 0.9]) == [1.0, 1.0]


# -- results of a stored experiment ---------------------------------------------------------------
def test_results_group_pair_and_say_what_is_missing(store):
    spec = grid.GridSpec(axes={"family": ["hamiltonian", "resnet"]}, seeds=3, steps=2)
    exp_id = grid.launch(spec, store=store, name="two")
    exp = store.require_experiment("two")
    by_point = {(p["axes"]["family"], p["seed"]): rid for rid, p in exp.points.items()}
    values = {"hamiltonian": [0.90, 0.80, 0.70], "resnet": [0.85, 0.70, 0.68]}
    for fam, accs in values.items():
        for seed, acc in enumerate(accs):
            if (fam, seed) != ("resnet", 2):
                finish(store, by_point[fam, seed], test_acc=acc)
    finish(store, by_point["resnet", 2], "failed")
    res = rs.collect(store, exp_id)
    ham, res_group = res.groups
    assert ham.summary.n == 3 and ham.summary.mean == pytest.approx(0.8)
    assert res_group.summary.n == 2 and res_group.expected == 3
    assert res_group.not_completed == {"failed": 1}
    assert "1 of 3 seeds without a result (1 failed): the mean is over 2" == res_group.note()
    (c,) = res.comparisons
    # only seeds 0 and 1 pair: differences 0.05 and 0.10 -> mean 0.075
    assert c.seeds == [0, 1] and c.result.n_pairs == 2
    assert c.result.mean_diff == pytest.approx(0.075)
    out = res.to_json()
    assert set(out) == {"groups", "comparisons"}
    g = out["groups"][1]
    assert {"axes", "n", "mean", "ci95", "runs"} <= set(g) and g["axes"] == {"family": "resnet"}
    assert g["n"] == 2 and len(g["runs"]) == 3 and len(g["ci95"]) == 2
    cj = out["comparisons"][0]
    assert {"a", "b", "n_pairs", "mean_diff", "ci95", "p_value", "test"} <= set(cj)
    assert cj["a"] == {"family": "hamiltonian"} and cj["b"] == {"family": "resnet"}
    json.dumps(out)  # plain JSON
    # a deleted run is missing, not silently dropped
    jobs.delete(by_point["hamiltonian", 2], store=store)
    res = rs.collect(store, exp_id)
    assert res.groups[0].not_completed == {"missing": 1} and res.progress()["missing"] == 1
    header, rows = rs.group_table(res)
    assert not any(c in ("None", "nan") for row in rows for c in row)
    with pytest.raises(ValueError, match="metric='loss'.*test_acc"):
        rs.collect(store, exp_id, "loss")


def test_extend_queues_the_new_seeds_and_lost_runs(store):
    spec = grid.GridSpec(axes={"h": [0.5, 1.0]}, seeds=1, steps=2)
    grid.launch(spec, store=store, name="e")
    first = store.list_runs()
    jobs.cancel(first[0].id, store=store)  # a cancelled run stays: it can be resumed
    new = grid.extend("e", 3, store=store)
    assert len(new) == 2 * 2  # seeds 1 and 2 of both cells
    exp = store.require_experiment("e")
    assert exp.spec["seeds"] == 3 and len(exp.points) == 6
    assert sorted(p["seed"] for p in exp.points.values()) == [0, 0, 1, 1, 2, 2]
    jobs.delete(new[0], store=store, force=True)
    assert len(grid.extend("e", 3, store=store)) == 1  # the deleted one again
    with pytest.raises(ValueError, match="extend to a whole number >= 3"):
        grid.extend("e", 2, store=store)


def test_names_are_unique_and_runs_point_to_their_experiment(store):
    spec = grid.GridSpec(axes={"h": [1.0]}, seeds=2, steps=2)
    exp_id = grid.launch(spec, store=store, name="x")
    with pytest.raises(ValueError, match="named 'x' exists"):
        grid.launch(spec, store=store, name="x")
    runs = store.list_runs(experiment=exp_id)
    assert len(runs) == 2 and {r.experiment for r in runs} == {exp_id}
    assert store.get_experiment(exp_id[:4]).name == "x"  # id prefix, like runs
    with pytest.raises(ValueError, match="no such experiment"):
        store.create_run({"model": "resnet"}, experiment="nope")


# The store's schema 2 (before experiments), as lab.db files written then have it
SCHEMA_V2 = """
CREATE TABLE runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- FIFO order of the queue
    id TEXT NOT NULL UNIQUE,                 -- short random hex, also the run folder's name
    name TEXT,
    config TEXT NOT NULL,                    -- JSON, as validated by TrainConfig
    status TEXT NOT NULL,
    worker TEXT NOT NULL DEFAULT 'lab.runs.worker',  -- python module run as `python -m WORKER ID`
    cwd TEXT,                                -- working directory of the launcher
    created_at REAL NOT NULL,                -- unix seconds
    started_at REAL,
    ended_at REAL,
    pid INTEGER,
    pid_start INTEGER,                       -- process start time (/proc ticks), guards pid reuse
    own_session INTEGER NOT NULL DEFAULT 0,  -- 1: pid leads its own process group (killpg)
    slot INTEGER,                            -- concurrency slot (GPU index when there are GPUs)
    heartbeat_at REAL,
    cancel_requested_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,     -- process starts, >1 after a resume
    checkpoint TEXT,                         -- last checkpoint reported by the trainer
    reason TEXT,                             -- why the run ended (human readable)
    error TEXT,                              -- last line of the traceback when failed
    final TEXT,                              -- JSON final metrics, set with status completed
    nproc INTEGER NOT NULL DEFAULT 1         -- processes (torchrun world size), queue slots held
);
CREATE INDEX runs_status ON runs(status, seq);
CREATE TABLE step_metrics (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    epoch INTEGER, loss REAL, acc REAL, lr REAL, samples_per_sec REAL,
    peak_mem_bytes INTEGER, saved_bytes INTEGER, time REAL,
    extra TEXT,
    PRIMARY KEY (run_id, step)
) WITHOUT ROWID;
CREATE TABLE epoch_metrics (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    train_loss REAL, train_acc REAL, test_loss REAL, test_acc REAL, lr REAL, epoch_time REAL,
    peak_mem_bytes INTEGER, time REAL,
    extra TEXT,
    PRIMARY KEY (run_id, epoch)
) WITHOUT ROWID;
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    message TEXT
);
CREATE INDEX events_run ON events(run_id, id);
"""


def test_an_old_store_gains_experiments_and_keeps_its_runs(tmp_path):
    db = sqlite3.connect(tmp_path / "lab.db")
    db.executescript(SCHEMA_V2 + "PRAGMA user_version = 2;")
    db.execute("INSERT INTO runs (id, name, config, status, created_at) VALUES "
               "('0ld0', 'before', '{\"model\": \"hamiltonian\"}', 'completed', 1.0)")
    db.commit()
    db.close()
    with Store(tmp_path) as st:
        assert st._conn.execute("PRAGMA user_version").fetchone()[0] == 3
        run = st.get_run("0ld0")
        assert run.name == "before" and run.experiment is None and run.nproc == 1
        exp = st.create_experiment("later", {"axes": {}})
        st.create_run({"model": "hamiltonian"}, experiment=exp)
        assert len(st.list_runs(experiment=exp)) == 1 and len(st.list_runs()) == 2
    with Store(tmp_path) as st:  # opening again migrates nothing
        assert st.get_experiment("later").id == exp


def test_runs_view_filters_by_experiment(store):
    from lab.views.runs import filter_runs

    exp_id = grid.launch(grid.GridSpec(axes={"h": [1.0]}, seeds=2, steps=2), store=store,
                         name="f")
    store.create_run({"model": "hamiltonian"}, name="alone")
    runs = store.list_runs()
    assert len(filter_runs(runs, experiment=exp_id)) == 2 and len(filter_runs(runs)) == 3
