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


def test_switching_to_a_resnet_turns_the_rebuilt_toggle_off(lab_home):
    at = AppTest.from_file("../pages/4_ODE_reversal.py", default_timeout=60).run(timeout=180)
    at.toggle(key="show_rebuilt").set_value(True).run(timeout=180)
    assert at.toggle(key="show_rebuilt").value is True
    at.selectbox[0].set_value("untrained:resnet:digits").run(timeout=180)
    assert not at.exception, at.exception
    toggle = at.toggle(key="show_rebuilt")
    assert toggle.value is False and toggle.disabled


def test_captions_print_the_ratio_they_talk_about_and_explain_the_legend(lab_home):
    at = AppTest.from_file("../pages/4_ODE_reversal.py", default_timeout=60).run(timeout=180)
    captions = " ".join(c.value for c in at.caption)
    assert "max |Re λ| / max |λ|" in captions and "Hamiltonian block: " in captions
    assert "lie on the imaginary axis" not in captions  # a claim, not a measurement
    for term in ("**segment**", "**anchors every k**", "**forward / rebuilt**"):
        assert term in captions, term


@pytest.mark.parametrize("ratio, words", [(0.0, "on the imaginary axis"),
                                          (1.7e-2, "near the imaginary axis (real parts up to "
                                                   "1.7%"),
                                          (0.98, "off the imaginary axis")])
def test_axis_position_says_what_the_ratio_shows(ratio, words):
    assert av.axis_position(ratio).startswith(words)


def test_a_resnet_feature_map_is_never_labelled_rebuilt():
    from lab.figures.analysis import feature_maps_figure, trajectory_figure

    model = av.load("untrained:resnet:digits").model
    x, _, _ = av.images("digits", n=1)
    tr = av.analyse(model, x[0]).main
    assert "output of" in feature_maps_figure(tr, 0, rebuilt=True).layout.title.text
    assert "rebuilt" not in trajectory_figure(tr).layout.title.text
