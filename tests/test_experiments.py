"""The experiment runners end to end on tiny configurations, and their CLI."""

import json

import pytest

from lab.cli import main
from lab.experiments import drift, reproduce
from lab.runs.store import Store


@pytest.fixture
def lab_home(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return tmp_path


def test_tiny_grid_end_to_end_through_the_cli(lab_home, capsys):
    out = lab_home / "docs"
    rc = main(["experiment", "grid", "--family", "hamiltonian,resnet", "--fraction", "1",
               "--seeds", "2", "--steps", "3", "--name", "tiny", "--wait", "--poll", "0.2",
               "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    exp_id = printed.splitlines()[0]
    assert "tiny" in printed and "hamiltonian" in printed and "2/2" in printed
    with Store() as st:
        assert st.require_experiment("tiny").id == exp_id
        runs = st.list_runs(experiment=exp_id)
    assert len(runs) == 4 and {r.status for r in runs} == {"completed"}
    assert {r.final["step"] for r in runs} == {3}  # the steps budget, not epochs
    assert {r.config["model"] for r in runs} == {"hamiltonian", "resnet"}

    assert main(["experiment", "results", "tiny", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"groups", "comparisons"}
    assert [g["axes"] for g in data["groups"]] == [{"family": "hamiltonian", "fraction": 1.0},
                                                   {"family": "resnet", "fraction": 1.0}]
    assert all(g["n"] == 2 and len(g["runs"]) == 2 and len(g["ci95"]) == 2
               for g in data["groups"])
    (c,) = data["comparisons"]
    assert c["n_pairs"] == 2 and c["test"].startswith("paired t")
    assert c["a"]["family"] == "hamiltonian" and c["b"]["family"] == "resnet"
    md = (out / "tiny.md").read_text()
    assert "python -m lab experiment grid --family hamiltonian,resnet" in md
    assert "<html>" in (out / "tiny.html").read_text()
    assert json.loads((out / "tiny.json").read_text())["groups"] == data["groups"]
    assert main(["experiment", "results", "nope"]) == 2
    assert "no experiment 'nope'" in capsys.readouterr().err


def test_presets_and_bad_values_through_the_cli(lab_home, capsys, monkeypatch):
    from lab.runs import jobs

    monkeypatch.setattr(jobs, "_spawn", lambda *a, **k: None)  # queue, start nothing
    assert main(["experiment", "fewer-data", "--family", "resnet", "--fraction", "0.05,1",
                 "--seeds", "2", "--steps", "3", "--name", "fd"]) == 0
    exp_id = capsys.readouterr().out.strip()
    with Store() as st:
        runs = st.list_runs(experiment=exp_id)
        assert st.require_experiment(exp_id).spec["preset"] == "fewer-data"
    assert len(runs) == 4 and {r.config["steps"] for r in runs} == {3}
    assert {r.config["fraction"] for r in runs} == {0.05, 1.0}
    assert {tuple(r.config["model_kwargs"]["widths"]) for r in runs} == {(8, 8, 16, 32)}
    assert sorted(r.name for r in runs)[0] == "fd/family=resnet,fraction=0.05/seed0"
    with pytest.raises(SystemExit):
        main(["experiment", "grid", "--family", "hamiltonian", "--fraction", "0.5,2"])
    assert "axis 'fraction' value 2.0 is refused" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["experiment", "depth", "--layers", "14,20", "--family", "leapfrog"])
    assert "axis 'layers' value 20" in capsys.readouterr().err
    with Store() as st:
        assert len(st.list_runs()) == 4 and len(st.list_experiments()) == 1
    assert main(["experiment", "grid", "--layers", "14,26", "--family", "hamiltonian,resnet",
                 "--set", "batch_size=16", "--set", "model_kwargs.widths=8,8,16,32",
                 "--set", "dataset_options.test_size=50", "--family-set",
                 "resnet: widths=4,4,8,16 h=0.5", "--dataset", "shapes", "--seeds", "1",
                 "--name", "nested"]) == 0
    with Store() as st:
        configs = {(r.config["model"], tuple(r.config["model_kwargs"]["blocks"])): r.config
                   for r in st.list_runs(experiment=capsys.readouterr().out.strip())}
    assert set(configs) == {("hamiltonian", (1, 1, 1)), ("hamiltonian", (2, 2, 2)),
                            ("resnet", (2, 2, 2)), ("resnet", (4, 4, 4))}
    ham, res = configs["hamiltonian", (1, 1, 1)], configs["resnet", (2, 2, 2)]
    assert ham["model_kwargs"]["widths"] == [8, 8, 16, 32] and ham["batch_size"] == 16
    assert res["model_kwargs"] == {"widths": [4, 4, 8, 16], "h": 0.5, "blocks": [2, 2, 2]}
    assert res["dataset_options"] == {"test_size": 50} and res["dataset"] == "shapes"
    with pytest.raises(SystemExit):
        main(["experiment", "grid", "--h", "1", "--family-set", "resnet widths=4"])
    assert "write 'family: key=value'" in capsys.readouterr().err
    assert main(["experiment", "extend", "fd", "--seeds", "3"]) == 0
    assert capsys.readouterr().out.strip() == exp_id
    assert main(["experiment", "list"]) == 0
    assert "fd" in capsys.readouterr().out


def test_reproduce_without_the_dataset_says_where_to_put_it(lab_home, capsys):
    rc = main(["experiment", "reproduce", "--dataset", "cifar10", "--model", "hamiltonian-74",
               "--data-root", str(lab_home / "nowhere")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "cifar" in err.lower() and "nowhere" in err
    with Store() as st:
        assert st.list_runs() == []  # nothing recorded for a run that cannot start


def test_reproduce_recipe_is_the_papers():
    cfg = reproduce.recipe_config("hamiltonian-74", "cifar10")
    assert (cfg["steps"], cfg["batch_size"], cfg["lr"], cfg["weight_decay"]) == (80000, 100, 0.1,
                                                                                  2e-4)
    assert cfg["model_kwargs"] == {"bn_momentum": 0.01} and cfg["schedule"] == "step"
    big = reproduce.recipe_config("hamiltonian-1202", "cifar100")
    assert (big["steps"], big["batch_size"], big["weight_decay"]) == (240000, 32, 5e-4)
    from core.training import TrainConfig

    TrainConfig.from_dict(cfg).validate()
    with pytest.raises(ValueError, match="cifar10"):
        reproduce.recipe_config("hamiltonian-74", "digits")


def test_reproduce_estimate_measures_a_step():
    est = reproduce.estimate("resnet-32", timed_steps=1)
    assert est.seconds_per_step > 0 and est.saved_bytes > 0 and est.steps == 80000
    assert "estimate" in est.text()


def test_drift_end_to_end(tmp_path, capsys):
    rc = main(["experiment", "drift", "--families", "hamiltonian,leapfrog", "--blocks", "2",
               "--train-steps", "1", "--anchor-every", "1", "--out", str(tmp_path)])
    assert rc == 0
    text = (tmp_path / "drift.md").read_text()
    assert "| hamiltonian | init |" in text and "| leapfrog | trained (1 steps) |" in text
    assert "python -m lab experiment drift" in text
    rows = drift.measure(["midpoint"], blocks=1, train_steps=1, anchor_every=1, train_size=32)
    assert len(rows) == 2 and all(0 < r.free < 1e-4 for r in rows)
