"""The Train page's form logic: defaults, form -> config, the pre-launch preview."""

import pytest
import torch

import core
from core.memory import SavedTensorMeter
from core.training import TrainConfig
from lab.views import train as tf


def test_the_default_form_is_the_default_config():
    config = tf.config_from_form(tf.form_defaults())
    assert TrainConfig.from_dict(config).validate() == TrainConfig().validate()
    assert config["memory"] == "reversible" == TrainConfig().memory


def test_family_and_named_sources():
    d = tf.form_defaults()
    c = tf.config_from_form({**d, "family": "leapfrog", "blocks": "3, 1,2", "h": 0.5,
                             "lr": 0.05, "memory": "checkpoint"})
    assert c["model"] == "leapfrog" and c["memory"] == "checkpoint" and c["lr"] == 0.05
    assert c["model_kwargs"] == {"blocks": [3, 1, 2], "h": 0.5}  # widths: the default
    n = tf.config_from_form({**d, "source": "named", "named": "hamiltonian-74"})
    assert n["model"] == "hamiltonian-74" and n["model_kwargs"] == {}
    TrainConfig.from_dict(c).validate()
    TrainConfig.from_dict(n).validate()


@pytest.mark.parametrize("change,message", [
    ({"blocks": "2,x"}, "blocks per stage: '2,x'"),
    ({"blocks": "0,1,1"}, "positive whole numbers"),
    ({"widths": "8,8"}, "widths"),
    ({"family": "vgg"}, "family 'vgg'"),
])
def test_bad_form_values_say_what_to_fix(change, message):
    with pytest.raises(ValueError, match=message):
        tf.config_from_form({**tf.form_defaults(), **change})


def test_memory_modes_offer_only_what_the_blocks_support():
    assert tf.memory_modes("hamiltonian")[0] == "reversible"
    assert not {"reversible", "budget"} & set(tf.memory_modes("resnet-32"))
    for mode in tf.memory_modes("resnet-32") + tf.memory_modes("revnet-38"):
        for model in ("resnet-32", "revnet-38"):
            if mode in tf.memory_modes(model):  # every offered mode validates
                TrainConfig.from_dict({"model": model, "memory": mode, "memory_mib": 64.0
                                       if mode == "budget" else None}).validate()
    assert tf.memory_modes("resnet-32")[0] == "standard"


@pytest.mark.parametrize("name", ["hamiltonian-1202", "resnet-110", "midpoint-62", "revnet-38"])
def test_parameter_count_matches_the_built_model(name):
    cfg = core.model_config(name)
    expected = {"hamiltonian-1202": 9_699_306}.get(name)  # README/PAPER: too big to build here
    assert tf.count_parameters(cfg) == (expected or core.count_parameters(core.ReversibleNet(cfg)))


@pytest.mark.parametrize("name", ["digits", "shapes"])
def test_dataset_shapes_match_core_data(name):
    b = core.data.load_dataset(name, **({"train_size": 20, "test_size": 10}
                                        if name == "shapes" else {}))
    assert tf.DATASET_SHAPES[name] == (b.in_channels, b.image_size, b.num_classes)


def test_preview_memory_is_what_the_model_keeps():
    config = {**tf.config_from_form(tf.form_defaults()), "batch_size": 16}
    p = tf.preview(config)
    assert p.depth == 26 and p.input_shape == (16, 1, 8, 8)
    assert p.memory["reversible"] < p.memory["checkpoint"] < p.memory["standard"]
    net = core.create_model("hamiltonian", in_channels=1, num_classes=10)
    for mode in ("standard", "reversible"):
        net.set_memory_mode(mode)
        with SavedTensorMeter(exclude=net.parameters()) as meter:
            net(torch.randn(16, 1, 8, 8))
        assert p.memory[mode] == pytest.approx(meter.bytes, rel=0.05)


def test_compare_refuses_a_model_without_reversible_mode(monkeypatch):
    from lab.runs import jobs

    monkeypatch.setattr(jobs, "launch", lambda *a, **k: pytest.fail("nothing may start"))
    with pytest.raises(ValueError, match="no reversible mode"):
        tf.launch({"model": "resnet-32", "memory": "standard"}, compare=True)
