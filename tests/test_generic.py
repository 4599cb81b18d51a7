"""The public generic engine on token sequences: a reversible transformer (examples/)."""

import copy
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from conftest import rel_err

import core

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "reversible_transformer.py"


def load_example():
    spec = importlib.util.spec_from_file_location("reversible_transformer", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ex = load_example()


def seg_grads(seg, a, b, seed=0):
    a, b = (t.detach().clone().requires_grad_(True) for t in (a, b))
    torch.manual_seed(seed)
    y1, y2 = seg(a, b)
    loss = (y1 * torch.linspace(-1, 1, y1.shape[-1], dtype=y1.dtype)).square().sum() + y2.sum()
    loss.backward()
    out = [loss.detach(), a.grad, b.grad, *(p.grad for p in seg.parameters())]
    seg.zero_grad(set_to_none=True)  # the next call (or a deepcopy) starts from no gradient
    return out


def pair(batch=3, tokens=5, channels=8, dtype=torch.float64):
    return (torch.randn(batch, tokens, channels, dtype=dtype),
            torch.randn(batch, tokens, channels, dtype=dtype))


@pytest.mark.parametrize("mode,kw", [("reversible", {}), ("checkpoint", {}),
                                     ("budget", {"mib": 0.05}), ("reversible",
                                                                 {"anchor_every": 2})])
def test_transformer_gradients_equal_standard_float64(mode, kw):
    seg = ex.reversible_transformer(channels=8, blocks=6, heads=2, memory="standard").double()
    a, b = pair()
    ref = seg_grads(seg, a, b)
    got = seg_grads(copy.deepcopy(seg).set_memory_mode(mode, **kw), a, b)
    for r, g in zip(ref, got):
        assert rel_err(g, r) < 1e-9
    if mode == "budget":
        plan = seg.set_memory_mode("budget", **kw).memory_plan(a, b)
        assert 0 < plan.rebuilt < 6  # really a mix of rebuilt and stored blocks


def saved(seg, a, b):
    with core.SavedTensorMeter(exclude=seg.parameters()) as meter:
        seg(a.requires_grad_(True), b)
    return meter.bytes


def test_saved_bytes_flat_in_depth():
    a, b = pair(dtype=torch.float32)
    six = saved(ex.reversible_transformer(channels=8, blocks=6, heads=2), a, b)
    many = saved(ex.reversible_transformer(channels=8, blocks=48, heads=2), a, b)
    std = saved(ex.reversible_transformer(channels=8, blocks=6, heads=2, memory="standard"),
                a, b)
    assert many <= 1.05 * six
    assert six < std / 5


@pytest.mark.parametrize("mlp_dropout", [0.3, 0.0])  # 0.0: only attention's own dropout
def test_dropout_replays(mlp_dropout):
    seg = core.ReversibleSegment(
        [core.ReversibleBlock(core.Coupling(ex.SelfAttention(8, 2, dropout=0.3)),
                              core.Coupling(ex.MLP(8, 16, dropout=mlp_dropout)))
         for _ in range(4)], memory="standard").double()
    a, b = pair()
    ref = seg_grads(seg, a, b, seed=3)
    other = seg_grads(seg, a, b, seed=4)
    assert rel_err(other[0], ref[0]) > 1e-6  # the masks really differ by seed
    for mode, kw in [("reversible", {}), ("budget", {"mib": 0.03})]:
        got = seg_grads(copy.deepcopy(seg).set_memory_mode(mode, **kw), a, b, seed=3)
        for r, g in zip(ref, got):
            assert rel_err(g, r) < 1e-9, mode


def test_budget_plan_fits_and_names_minimum():
    seg = ex.reversible_transformer(channels=8, blocks=8, heads=2, memory="budget", mib=0.04)
    a, b = pair(dtype=torch.float32)
    n = saved(seg, a, b)
    plan = seg.memory_plan()
    assert n == plan.bytes <= 0.04 * 2**20
    seg.set_memory_mode("budget", mib=1e-5)
    with pytest.raises(ValueError, match="rebuilding every block needs"):
        seg(a, b)


def test_generic_api_rejects_bad_parts():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        core.Coupling(lambda x: x)
    with pytest.raises(ValueError, match="p != 0"):
        core.Coupling(torch.nn.Identity(), p=0)
    with pytest.raises(TypeError, match="two core.Coupling"):
        core.ReversibleBlock(core.Coupling(torch.nn.Identity()), torch.nn.Identity())
    with pytest.raises(TypeError, match="block 0 is a Linear"):
        core.ReversibleSegment([torch.nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="needs mib=M"):
        core.ReversibleSegment([], memory="budget")


def test_example_runs_and_learns():
    out = ex.main(steps=20, blocks=4, channels=16, batch=32, tokens=12)
    assert out["after"] < out["before"] - 0.05
    s = out["saved"]
    assert s["reversible"] < s["checkpoint"] < s["standard"]
    assert s["reversible"] <= s["budget"] <= 4 * 2**20
