"""TrainConfig.steps (a total-steps budget) and .levels (multi-level growth), with exact resume."""

import json

import pytest
import torch

from core.training import Callback, TrainConfig, Trainer
from core.training.checkpoint import load_trained_model

TINY = {"model": "hamiltonian", "model_kwargs": {"blocks": [1, 1, 1], "widths": [8, 8, 16, 32]},
        "dataset": "digits", "memory": "standard", "augment": False}


class Record(Callback):
    def __init__(self, stop_at=None):
        self.lrs, self.levels, self.events, self.stop_at, self.trainer = [], [], [], stop_at, None

    def on_step(self, m):
        self.lrs.append(m["lr"])
        self.levels.append(m.get("level"))
        if self.stop_at is not None and m["step"] == self.stop_at:
            self.trainer.request_stop("test")

    def on_event(self, kind, message):
        self.events.append((kind, message))


def _fit(tmp, resume=False, stop_at=None, **kw):
    cb = Record(stop_at)
    trainer = Trainer(TrainConfig.from_dict({**TINY, **kw}), tmp, [cb])
    cb.trainer = trainer
    return trainer, trainer.fit(resume=resume), cb


def test_steps_override_epochs_and_the_schedule_follows_them(tmp_path):
    trainer, result, cb = _fit(tmp_path, steps=5, epochs=15)
    assert result.status == "completed" and result.final["step"] == 5
    assert cb.lrs == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.001])  # /10 at 50% and 75% of 5
    assert json.loads((tmp_path / "meta.json").read_text())["status"] == "completed"


def test_steps_beyond_one_epoch_repeat_a_small_training_set(tmp_path):
    _, result, _ = _fit(tmp_path, steps=7, fraction=0.05, batch_size=32)  # 70 images: 2/epoch
    assert result.status == "completed" and result.final["step"] == 7
    assert result.final["epochs_done"] == 4  # 2+2+2+1: the last epoch ends with the budget


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10"])
def test_bad_steps_and_levels_are_refused(bad):
    with pytest.raises((ValueError, TypeError), match="steps"):
        TrainConfig(steps=bad).validate(check_names=False)
    with pytest.raises((ValueError, TypeError), match="levels"):
        TrainConfig(levels=bad).validate(check_names=False)


def test_levels_grow_the_model_during_training(tmp_path):
    trainer, result, cb = _fit(tmp_path, steps=9, levels=3)
    assert result.status == "completed"
    assert cb.levels == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    grows = [m for k, m in cb.events if k == "grow"]
    assert len(grows) == 2 and "level 3 of 3" in grows[1] and "blocks [4, 4, 4]" in grows[1]
    assert trainer.model.config.blocks == (4, 4, 4) and trainer.model.config.h == 0.25
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["level"] == 3 and meta["network"]["blocks"] == [4, 4, 4]
    assert cb.lrs[3] == pytest.approx(0.1) and cb.lrs[-1] == pytest.approx(0.001)
    # the classifier and the ODE page load the grown network, not config.json's starting one
    loaded = load_trained_model(tmp_path, num_classes=10, in_channels=1)
    assert loaded.config.blocks == (4, 4, 4) and not loaded.training
    x = torch.randn(3, 1, 8, 8)
    trainer.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), trainer.model(x))


def test_a_run_without_a_recorded_network_is_built_from_its_config(tmp_path):
    _fit(tmp_path, steps=2)
    meta = json.loads((tmp_path / "meta.json").read_text())
    del meta["network"]  # as written before multi-level training existed
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="num_classes and in_channels"):
        load_trained_model(tmp_path)
    assert load_trained_model(tmp_path, num_classes=10, in_channels=1).config.blocks == (1, 1, 1)
    with pytest.raises(ValueError, match="do not fit"):
        load_trained_model(tmp_path, num_classes=7, in_channels=1)


# stop before the growth (it happens after step 4) and after it
@pytest.mark.parametrize("stop_at", [2, pytest.param(6, marks=pytest.mark.slow)])
def test_resume_across_a_growth_is_exact(tmp_path, stop_at):
    kw = dict(steps=8, levels=2, checkpoint_every=1)
    full, result, _ = _fit(tmp_path / "full", **kw)
    assert result.status == "completed"
    _, first, _ = _fit(tmp_path / "cut", stop_at=stop_at, **kw)
    assert first.status == "interrupted"
    resumed, second, cb = _fit(tmp_path / "cut", resume=True, **kw)
    assert second.status == "completed"
    assert [k for k, _ in cb.events].count("grow") == (1 if stop_at <= 4 else 0)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_cli_passes_steps_and_levels():
    from lab.cli import build_parser
    from lab.cli.train import config_from_args

    args = build_parser().parse_args(["train", "--steps", "300", "--levels", "3"])
    config = config_from_args(args)
    assert config["steps"] == 300 and config["levels"] == 3
    TrainConfig.from_dict(config).validate()
