"""core.analysis: spectra (the paper's stability argument), trajectories and their rebuild,
interpolation (multi-level growth)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import core
from core import reversible
from core.analysis import (
    block_spectrum,
    interpolate,
    norm_growth,
    relative_error,
    rhs_spectrum,
    spectrum,
    trajectory,
)
from core.blocks import HamiltonianBlock, ResNetBlock

REVERSIBLE = ["hamiltonian", "midpoint", "leapfrog", "revnet"]


def _random_stats(module: torch.nn.Module) -> None:
    """Eval-mode batch norms with positive scale, off their init (the paper's N)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 2.0)
                m.bias.normal_()
    module.eval()


def test_hamiltonian_rhs_eigenvalues_are_imaginary_and_resnet_are_not():
    z = torch.randn(1, 6, 5, 5, dtype=torch.float64)
    ham = HamiltonianBlock(3, h=1.0, prenorm=False).double()  # K^T s(N(K .)), no input norm
    _random_stats(ham)
    s = rhs_spectrum(ham, z, method="exact")
    assert s.method == "exact" and s.size == z.numel()
    assert np.abs(s.eigenvalues).max() > 1e-3  # not a trivially zero Jacobian
    assert s.max_real_ratio < 1e-6
    res = ResNetBlock(6).double()
    _random_stats(res)
    assert rhs_spectrum(res, z, method="exact").max_real_ratio > 1e-2


def test_hamiltonian_block_map_preserves_volume():
    """Both couplings are shears, so the step's Jacobian has determinant 1."""
    ham = HamiltonianBlock(2, h=0.5, prenorm=False).double()
    _random_stats(ham)
    s = block_spectrum(ham, torch.randn(1, 4, 4, 4, dtype=torch.float64))
    assert np.prod(s.moduli) == pytest.approx(1.0, rel=1e-8)


def test_arnoldi_finds_the_largest_exact_eigenvalues():
    ham = HamiltonianBlock(2, h=1.0, prenorm=False).double()
    _random_stats(ham)
    z = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    exact = np.sort(np.abs(rhs_spectrum(ham, z, method="exact").eigenvalues))[-4:]
    arnoldi = rhs_spectrum(ham, z, method="arnoldi", k=4)
    assert arnoldi.method == "arnoldi"
    np.testing.assert_allclose(np.sort(np.abs(arnoldi.eigenvalues)), exact, rtol=1e-6)


def test_spectrum_rejects_unknown_method():
    with pytest.raises(ValueError, match="method="):
        spectrum(lambda v: v, torch.zeros(3), method="qr")


def _model(family, **kw):
    kw = {"blocks": (2, 2, 2), "widths": (8, 8, 16, 32), "in_channels": 1, **kw}
    model = core.create_model(family, **kw)
    core_randomize(model)
    return model


def core_randomize(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)


@pytest.mark.parametrize("family", REVERSIBLE)
def test_trajectory_float64_rebuilds_every_state(family):
    model = _model(family)
    x = torch.randn(4, 1, 8, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tr = trajectory(model, x, dtype="float64")
    assert len(tr.error) == 6 and tr.labels[0] == "s1 b1" and tr.labels[-1] == "s3 b2"
    assert tr.inputs[0].dtype == torch.float64
    assert max(tr.error) < 1e-10
    assert all(e > 0 or e == 0 for e in tr.error)
    for k, v in model.state_dict().items():  # running statistics untouched
        assert torch.equal(v, before[k]), k
    # the float32 rebuild is worse than float64 but still small at this depth
    tr32 = trajectory(model, x)
    assert 1e-10 < tr32.max_error < 1e-4


def test_trajectory_of_a_resnet_has_no_rebuild():
    tr = trajectory(_model("resnet"), torch.randn(2, 1, 8, 8), with_logits=True)
    assert tr.rebuilt == [None] * 6 and tr.max_error is None
    assert tr.logits.shape == (2, 10)


def test_trajectory_logits_match_the_model():
    model = _model("hamiltonian").eval()
    x = torch.randn(3, 1, 8, 8)
    tr = trajectory(model, x, with_logits=True)
    torch.testing.assert_close(tr.logits, model(x))


def test_trajectory_rejects_bad_arguments():
    model = _model("hamiltonian")
    with pytest.raises(ValueError, match="dtype"):
        trajectory(model, torch.randn(2, 1, 8, 8), dtype="float16")
    with pytest.raises(ValueError, match="anchor_every"):
        trajectory(model, torch.randn(2, 1, 8, 8), anchor_every=-1)
    with pytest.raises(ValueError, match="channel"):
        trajectory(model, torch.randn(2, 3, 8, 8))


def _backward_rebuilds(model, x):
    """The block inputs the reversible backward actually rebuilt, recorded from inside it."""
    owner = {}
    blocks = [b for layer in model.layers if hasattr(layer, "blocks") for b in layer.blocks]
    for i, block in enumerate(blocks):
        for j, c in enumerate(block.couplings):
            owner[id(c)] = (i, j)
    seen = {}
    original = reversible._coupling_backward

    def recording(c, *args, **kw):
        result = original(c, *args, **kw)
        seen[owner[id(c)]] = result[0]  # the rebuilt half (zeroed in place later if padded)
        return result

    model.set_memory_mode("reversible")
    reversible._coupling_backward = recording
    try:
        F.cross_entropy(model(x), torch.arange(x.shape[0]) % 10).backward()
    finally:
        reversible._coupling_backward = original
    return [torch.cat([seen[(i, 0)], seen[(i, 1)]], dim=1) for i in range(len(blocks))]


@pytest.mark.parametrize("family", REVERSIBLE)
@pytest.mark.parametrize("anchor_every", [0, 1])
def test_trajectory_float32_errors_match_the_reversible_backward(family, anchor_every):
    model = _model(family, anchor_every=anchor_every)
    x = torch.randn(4, 1, 8, 8)
    tr = trajectory(model, x)  # train mode, like the backward of a training step
    seen = _backward_rebuilds(model, x)
    for j, (mine, theirs) in enumerate(zip(tr.rebuilt, seen)):
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-6)
        err_backward = relative_error(theirs, tr.inputs[j])
        assert tr.error[j] == pytest.approx(err_backward, rel=0.05, abs=1e-9), j


def test_anchors_bound_the_rebuild_error_at_depth():
    model = _model("leapfrog", blocks=(12, 1, 1))
    x = torch.randn(4, 1, 8, 8)
    free = trajectory(model, x, anchor_every=0)
    anchored = trajectory(model, x, anchor_every=1)
    assert anchored.error[0] < free.error[0]


def _interpolation_changes(family, late_downsample):
    """(||grown - model|| / ||model||, the same over the blocks' own effect) for h = .2, .1, .05."""
    x = torch.randn(8, 1, 8, 8)
    absolute, relative = [], []
    for h in (0.2, 0.1, 0.05):
        torch.manual_seed(0)
        model = _model(family, h=h, late_downsample=late_downsample)
        model.train()
        with torch.no_grad():  # some running statistics, then eval mode
            model(x)
        model.eval()
        grown = interpolate(model).eval()
        assert grown.config.blocks == (4, 4, 4) and grown.config.h == pytest.approx(h / 2)
        flat = core.create_model(family, **{**_kw(model), "h": 1e-12}).eval()
        flat.load_state_dict(model.state_dict())
        with torch.no_grad():
            f, g, f0 = model.features(x), grown.features(x), flat.features(x)
        absolute.append(((g - f).norm() / f.norm()).item())
        relative.append(((g - f).norm() / (f - f0).norm()).item())
    return absolute, relative


def _halves(values):
    return all(1.4 < a / b < 2.8 for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("family", ["hamiltonian", "midpoint", "revnet", "resnet"])
def test_interpolate_changes_the_output_by_order_h(family):
    """Default layout: the output moves by O(h) (halving h halves the change)."""
    absolute, _ = _interpolation_changes(family, late_downsample=True)
    assert absolute[-1] < 0.02 and _halves(absolute), absolute


@pytest.mark.parametrize("family", ["hamiltonian", "revnet"])
def test_interpolate_is_a_finer_grid_of_the_same_ode(family):
    """Without late downsampling every copy is exact: the change is O(h) *relative to what the
    blocks do*, i.e. the grown network is the same ODE on a grid twice as fine."""
    _, relative = _interpolation_changes(family, late_downsample=False)
    assert relative[-1] < 0.05 and _halves(relative), relative


def _kw(model):
    c = model.config
    return {"blocks": c.blocks, "widths": c.widths, "in_channels": c.in_channels,
            "late_downsample": c.late_downsample}


def test_interpolate_gives_a_model_its_config_rebuilds_and_it_trains():
    torch.manual_seed(0)
    model = _model("hamiltonian", memory="reversible")
    state = torch.get_rng_state()
    grown = interpolate(model)
    assert torch.equal(torch.get_rng_state(), state)  # no hidden draws from the caller's RNG
    assert grown.memory_mode == "reversible"
    again = core.create_model("hamiltonian", **_kw(grown), h=grown.config.h)
    again.load_state_dict(grown.state_dict())  # strict: same names and shapes
    x, y = torch.randn(32, 1, 8, 8), torch.arange(32) % 10
    opt = torch.optim.SGD(grown.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(15):
        loss = F.cross_entropy(grown(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < 0.7 * losses[0], losses


def test_interpolate_rejects_other_modules():
    with pytest.raises(TypeError, match="ReversibleNet"):
        interpolate(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("family", [*REVERSIBLE, "resnet"])
def test_norm_growth_covers_every_block(family):
    g = norm_growth(_model(family), torch.randn(4, 1, 8, 8))
    assert len(g.feature_norm) == len(g.grad_norm) == 6
    assert g.grad_norm[-1] == pytest.approx(1.0)
    assert all(np.isfinite(g.feature_norm)) and min(g.feature_norm) > 0
