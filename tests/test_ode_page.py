"""AppTest of pages/4_ODE_reversal.py, and loading a (grown) run's checkpoint for it."""

import pytest
import torch
from streamlit.testing.v1 import AppTest

from lab.views import ode as av


@pytest.fixture
def lab_home(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_HOME", str(tmp_path))
    return tmp_path


def test_page_shows_the_reversal_of_the_default_model(lab_home):
    at = AppTest.from_file("../pages/4_ODE_reversal.py", default_timeout=60).run(timeout=180)
    assert not at.exception, at.exception
    assert at.selectbox[0].value == "untrained:hamiltonian:digits"
    assert at.slider[0].value == 1
    assert any("Worst per-block error" in c.value for c in at.caption)
    at.slider[0].set_value(3).run(timeout=180)
    assert not at.exception, at.exception


def test_resnet_has_nothing_to_rebuild(lab_home):
    at = AppTest.from_file("../pages/4_ODE_reversal.py", default_timeout=60)
    at.query_params["model"] = "untrained:resnet:digits"
    at.run(timeout=180)
    assert not at.exception, at.exception
    assert any("not invertible" in i.value for i in at.info)


def test_a_grown_runs_checkpoint_loads_with_its_network(lab_home):
    from core.training import TrainConfig, Trainer
    from lab.runs.store import Store

    config = {"model": "hamiltonian", "model_kwargs": {"blocks": [1, 1, 1],
              "widths": [8, 8, 16, 32]}, "steps": 2, "levels": 2, "memory": "standard"}
    with Store() as st:
        run_id = st.create_run(TrainConfig.from_dict(config).to_dict(), name="grown")
        Trainer(TrainConfig.from_dict(config), st.run_dir(run_id)).fit()
        loaded = av.load_run(st, run_id)
    assert loaded.model.config.blocks == (2, 2, 2) and loaded.dataset == "digits"
    x, _, _ = av.images("digits", n=2)
    an = av.analyse(loaded.model, x[0])
    assert an.main.max_error < 1e-4 and "ResNet block" in an.spectra
    assert torch.isfinite(loaded.model(x)).all()
