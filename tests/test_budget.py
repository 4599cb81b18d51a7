"""Budget memory mode: exact gradients, planned bytes equal metered bytes and fit the budget."""

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import RTOL, randomize_batchnorm, rel_err

import core
import core.budget
from core.estimate import estimate_activation_bytes
from core.memory import SavedTensorMeter

MiB = 2**20
SHAPE = (4, 3, 8, 8)


def small(family="hamiltonian", dtype=torch.float64, blocks=(3, 2, 2), **kw):
    model = core.create_model(family, blocks=blocks, widths=(4, 4, 8, 8), num_classes=5,
                              in_channels=3, **kw).to(dtype)
    randomize_batchnorm(model)
    return model


def budget_between(model, frac, shape=SHAPE):
    est = estimate_activation_bytes(model, shape, ["standard", "reversible"])
    return (est["reversible"] + frac * (est["standard"] - est["reversible"])) / MiB


def grads(model, x):
    x = x.detach().clone().requires_grad_(True)
    loss = model(x).square().sum()
    loss.backward()
    return loss.detach(), x.grad, {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("family", ["hamiltonian", "midpoint", "leapfrog", "revnet"])
def test_budget_gradients_equal_standard(family, dtype):
    model = small(family, dtype)
    x = torch.randn(*SHAPE, dtype=dtype)
    ref_loss, ref_x, ref_p = grads(copy.deepcopy(model), x)
    splits = set()
    for frac in (0.0, 0.3, 0.7, 1.0):
        m = copy.deepcopy(model).set_memory_mode("budget", mib=budget_between(model, frac))
        loss, gx, gp = grads(m, x)
        splits.add(tuple(s.rebuilt for s in m.memory_plan().segments))
        assert rel_err(loss, ref_loss) < RTOL[dtype]
        assert rel_err(gx, ref_x) < RTOL[dtype], frac
        for name in ref_p:
            assert rel_err(gp[name], ref_p[name]) < RTOL[dtype], (frac, name)
    assert len(splits) == 4  # every budget really split the segments differently


@pytest.mark.parametrize("frac", [0.0, 0.2, 0.5, 0.8, 1.0])
def test_planned_bytes_equal_metered_and_fit_the_budget(frac):
    model = small(dtype=torch.float32, blocks=(5, 4, 3))
    mib = budget_between(model, frac)
    model.set_memory_mode("budget", mib=mib)
    with SavedTensorMeter(exclude=model.parameters()) as meter:
        model(torch.randn(*SHAPE))
    plan = model.memory_plan()
    assert plan.predicted_bytes == meter.bytes
    assert meter.bytes <= mib * MiB
    est = estimate_activation_bytes(model, SHAPE, ["standard", "reversible"])
    if frac == 0.0:
        assert meter.bytes == est["reversible"]
    if frac == 1.0:  # standard's need stores every block: plain autograd everywhere
        assert meter.bytes == est["standard"]
        assert all(s.rebuilt == 0 for s in plan.segments)


def test_more_budget_stores_more_blocks():
    model = small(dtype=torch.float32, blocks=(6, 6, 6))
    rebuilt = []
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        model.set_memory_mode("budget", mib=budget_between(model, frac))
        rebuilt.append(sum(s.rebuilt for s in model.memory_plan(SHAPE).segments))
    assert rebuilt == sorted(rebuilt, reverse=True) and rebuilt[0] > rebuilt[-1] == 0


def test_plan_is_made_once_per_input_shape(monkeypatch):
    model = small(dtype=torch.float32).set_memory_mode("budget", mib=1.0)
    calls = []
    real = core.reversible.measure_block
    monkeypatch.setattr(core.reversible, "measure_block", lambda *a: calls.append(1) or real(*a))
    for _ in range(3):
        model(torch.randn(*SHAPE)).sum().backward()
    first = len(calls)
    assert first > 0
    model(torch.randn(6, 3, 8, 8)).sum().backward()
    assert len(calls) > first  # a new shape is planned
    n = len(calls)
    model(torch.randn(*SHAPE)).sum().backward()
    assert len(calls) == n
    assert model.memory_plan().input_shape == SHAPE


def test_budget_below_minimum_names_it():
    model = small(dtype=torch.float32).set_memory_mode("budget", mib=1e-4)
    minimum = estimate_activation_bytes(model, SHAPE, ["reversible"])["reversible"] / MiB
    with pytest.raises(ValueError, match=f"{minimum:.2f} MiB that rebuilding every block"):
        model(torch.randn(*SHAPE))


def test_budget_configuration_errors():
    model = small()
    with pytest.raises(ValueError, match="needs mib=M"):
        model.set_memory_mode("budget")
    with pytest.raises(ValueError, match="finite number of MiB > 0"):
        model.set_memory_mode("budget", mib=-3)
    with pytest.raises(ValueError, match="needs invertible blocks"):
        core.create_model("resnet", memory="budget", memory_mib=10)
    with pytest.raises(ValueError, match="describes budget and auto modes"):
        model.set_memory_mode("reversible").memory_plan()
    m = core.create_model("hamiltonian", memory="budget", memory_mib=64)
    assert m.memory_mode == "budget" and m.config.memory_mib == 64


def test_budget_updates_batchnorm_once_and_replays_dropout():
    model = small(dropout=0.3)
    x, y = torch.randn(*SHAPE, dtype=torch.float64), torch.randint(0, 5, (4,))
    finals = {}
    for mode in ("standard", "budget"):
        m = copy.deepcopy(model)
        m.set_memory_mode(mode, **({"mib": budget_between(model, 0.5)} if mode == "budget"
                                   else {}))
        torch.manual_seed(5)
        opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(m(x), y).backward()
            opt.step()
        finals[mode] = {**{n: b.clone() for n, b in m.named_buffers()},
                        **{n: p.detach().clone() for n, p in m.named_parameters()}}
    plan = m.memory_plan()
    assert any(0 < s.rebuilt for s in plan.segments) and any(s.stored for s in plan.segments)
    for name, value in finals["standard"].items():
        if value.is_floating_point():
            assert rel_err(finals["budget"][name], value) < 1e-9, name
        else:
            assert torch.equal(finals["budget"][name], value), name


def test_trainer_and_config_take_a_budget(tmp_path):
    from core.training import TrainConfig, Trainer

    with pytest.raises(ValueError, match="needs mib=M"):
        TrainConfig(model="hamiltonian", memory="budget").validate()
    with pytest.raises(ValueError, match="needs invertible blocks"):
        TrainConfig(model="resnet", memory="budget", memory_mib=8.0).validate()
    net = core.model_config("hamiltonian", blocks=(2, 2), widths=(8, 8, 16), in_channels=1)
    est = estimate_activation_bytes(net, (16, 1, 8, 8))
    mib = (est["standard"] + est["reversible"]) / 2 / MiB
    cfg = TrainConfig(model="hamiltonian", model_kwargs={"blocks": [2, 2], "widths": [8, 8, 16]},
                      dataset="digits", fraction=0.1, steps=2, batch_size=16, device="cpu",
                      memory="budget", memory_mib=mib)
    trainer = Trainer(cfg, tmp_path)
    res = trainer.fit()
    assert res.status == "completed", res.reason
    assert trainer.model.memory_mode == "budget" and trainer.model.config.memory_mib == mib
    plan = trainer.model.memory_plan()
    assert plan.predicted_bytes <= mib * MiB
    assert any(s.rebuilt for s in plan.segments) and any(s.stored for s in plan.segments)
