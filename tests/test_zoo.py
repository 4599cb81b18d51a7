"""Every registered model builds, runs, and trains; named models match the paper's sizes."""

import pytest
import torch
import torch.nn.functional as F

import core

PAPER_PARAMS = {  # PAPER.md, from the official code (CIFAR-10 head, 3 input channels)
    "hamiltonian-74": 0.43e6,
    "hamiltonian-110": 0.81e6,
    "hamiltonian-218": 1.69e6,
    "hamiltonian-1202": 9.70e6,
}
DEPTH = {name: int(name.split("-")[1]) for name in core.list_models() if "-" in name}


@pytest.mark.parametrize("name", core.list_models())
def test_every_model_runs_and_every_parameter_gets_a_gradient(name):
    reduced = name.endswith(("1202", "218", "110"))  # keep the sweep fast: same code paths
    kw = dict(blocks=(2, 2, 2)) if reduced else {}
    model = core.create_model(name, num_classes=7, in_channels=3, **kw)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    F.cross_entropy(out, torch.tensor([0, 3])).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.parametrize("name", sorted(DEPTH))
def test_named_depth_matches_name(name):
    assert core.model_config(name).depth == DEPTH[name]


@pytest.mark.parametrize("name, expected", sorted(PAPER_PARAMS.items()))
def test_parameter_counts_within_3_percent_of_paper(name, expected):
    n = core.count_parameters(core.create_model(name, num_classes=10, in_channels=3))
    assert abs(n - expected) / expected < 0.03, n


@pytest.mark.parametrize("size", [8, 28, 32, 96])
def test_input_sizes_from_8_to_96_pixels(size):
    model = core.create_model("midpoint", in_channels=1, num_classes=3, memory="reversible")
    x = torch.randn(2, 1, size, size, requires_grad=True)
    model(x).sum().backward()
    assert x.grad.shape == x.shape


def test_generic_model_takes_custom_depth_and_width():
    model = core.create_model("hamiltonian", blocks=(1, 3), widths=(8, 12, 20), h=0.5,
                              num_classes=4, in_channels=2)
    assert model.config.depth == 4 * 4 + 2
    assert model(torch.randn(3, 2, 16, 16)).shape == (3, 4)


def test_list_models_names_the_design_names():
    names = core.list_models()
    for n in ["hamiltonian-74", "hamiltonian-110", "hamiltonian-218", "hamiltonian-1202",
              "midpoint-62", "midpoint-110", "leapfrog-62", "leapfrog-110", "resnet-32",
              "resnet-110", "revnet-38", "revnet-110", "hamiltonian", "midpoint", "leapfrog",
              "resnet", "revnet"]:
        assert n in names


def test_memory_mode_argument_and_switch():
    model = core.create_model("hamiltonian-74", memory="reversible")
    assert model.memory_mode == "reversible"
    model.set_memory_mode("checkpoint")
    assert model.memory_mode == "checkpoint"
