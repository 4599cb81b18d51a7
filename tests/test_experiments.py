"""The experiment runners end to end on tiny configurations, and their CLI."""

import json

import pytest

from lab.cli import main
from lab.experiments import drift, fewer_data, reproduce
from lab.runs.store import Store


@pytest.fixture
def lab_home(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return tmp_path


def test_fewer_data_end_to_end(lab_home, capsys):
    out = lab_home / "docs"
    rc = main(["experiment", "fewer-data", "--families", "resnet", "--fractions",
               "0.05,1", "--seeds", "2", "--steps", "3", "--poll", "0.2", "--out", str(out)])
    assert rc == 0
    table = capsys.readouterr().out
    assert "| 5% |" in table and "| 100% |" in table and "(n=2)" in table
    report = json.loads((out / "fewer-data-digits.json").read_text())
    assert report["missing"] == [] and len(report["cells"]) == 2
    assert all(len(c["accs"]) == 2 for c in report["cells"])
    assert "<html>" in (out / "fewer-data-digits.html").read_text()
    assert "python -m lab experiment fewer-data --dataset digits" in (
        out / "fewer-data-digits.md").read_text()
    with Store() as st:
        runs = st.list_runs()
    names = sorted(r.name for r in runs)
    assert len(runs) == 4 and names[0] == "fewer-data/resnet/0.05/0"
    assert {r.config["steps"] for r in runs} == {3}  # steps held constant across fractions
    assert {r.config["fraction"] for r in runs} == {0.05, 1.0}


def test_fewer_data_plan_is_seed_major_and_validated():
    plan = fewer_data.FewerDataPlan(seeds=2, fractions=(0.1, 1.0), families=("resnet",))
    names = [n for n, _ in plan.configs()]
    assert names == ["fewer-data/resnet/0.1/0", "fewer-data/resnet/1/0",
                     "fewer-data/resnet/0.1/1", "fewer-data/resnet/1/1"]
    assert fewer_data.parse_name(names[1]) == ("resnet", 1.0, 0)
    assert fewer_data.parse_name("other/run") is None
    with pytest.raises(ValueError, match="families"):
        fewer_data.FewerDataPlan(families=("vgg",)).validate()
    with pytest.raises(ValueError, match="dataset"):
        fewer_data.FewerDataPlan(dataset="cifar10").validate()


def test_fewer_data_table_reports_mean_and_spread():
    cells = [fewer_data.Cell("hamiltonian", 0.05, [0.5, 0.7]),
             fewer_data.Cell("hamiltonian", 1.0, [0.9])]
    text = fewer_data.table(cells)
    assert "| 5% | 60.0 ± 14.1 (n=2) |" in text and "| 100% | 90.0 ± 0.0 (n=1) |" in text


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
