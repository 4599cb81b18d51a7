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


def test_preview_table_divides_by_standard():
    p = tf.Preview(1, 14, (1, 1, 8, 8), {"standard": 4 * 2**20, "reversible": 2**20})
    assert tf.memory_rows(p) == [
        {"memory mode": "standard", "activation memory kept (MiB)": 4.0, "vs standard": "1.00x"},
        {"memory mode": "reversible", "activation memory kept (MiB)": 1.0,
         "vs standard": "0.25x"}]
    assert tf.memory_rows(tf.Preview(1, 14, (1, 1, 8, 8), None, "failed")) == []


def test_live_panel_text_and_what_cancel_stops(tmp_path, monkeypatch):
    from lab.runs.live import LiveRun, Progress
    from lab.runs.store import Store

    monkeypatch.setenv("LAB_HOME", str(tmp_path))
    with Store() as store:
        done = store.create_run({"epochs": 1}, status="running")
        store.write_metrics(done, epochs=[{"epoch": 1, "test_acc": 0.5}])
        store.finish(done, "completed", final={"test_acc": 0.975})
        running = store.create_run({"epochs": 1, "memory": "standard"}, status="running")
        queued = store.create_run({"epochs": 1})
    lives = [LiveRun(r) for r in (done, running, queued)]
    tf.refresh(lives, active=True)
    assert tf.status_note(lives[0].run) == ("success", "completed: test accuracy 97.50%")
    assert tf.status_note(lives[1].run) is None
    assert tf.status_note(lives[2].run)[0] == "info"
    assert tf.active_ids(lives) == [running, queued]
    assert tf.compare_labels(lives[1:2]) == [f"{running} standard"]
    prog = Progress(step=40, total_steps=132, eta_s=65.2, step_s=0.5)
    assert tf.progress_text(lives[1].run, prog) == (
        "running · step 40/132 · ETA 1m05s at 0.5 s/step (average of the recent steps)")
    assert tf.progress_text(lives[2].run, Progress(None, None, None)) == "queued · step 0/?"
    assert tf.watch(done) == (False, False)
    assert tf.watch(running) == (True, True)  # no point yet: looked at 4 times a second
    with Store() as store:
        store.write_metrics(running, steps=[{"step": 1, "loss": 1.0}])
    assert tf.watch(running, done) == (True, False)
