"""Every block: exact inverse, correct gradients, and the configuration errors users hit."""

import pytest
import torch

import core
from core.blocks import HamiltonianBlock, LeapfrogBlock, MidpointBlock, RevNetBlock

BLOCKS = [HamiltonianBlock, MidpointBlock, LeapfrogBlock, RevNetBlock]


def make(cls, channels=3, h=0.7, **kw):
    block = cls(channels, h, **kw).double()
    for m in block.modules():  # non-trivial BN affine parameters
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.5, 0.5)
    return block


@pytest.mark.parametrize("cls", BLOCKS)
@pytest.mark.parametrize("training", [True, False])
def test_inverse_of_forward_is_identity(cls, training):
    block = make(cls).train(training)
    a, b = (torch.randn(4, 3, 6, 6, dtype=torch.float64) for _ in range(2))
    with torch.no_grad():
        a2, b2 = block(a, b)  # in training mode BN uses batch statistics, in eval running ones
        ra, rb = block.inverse(a2, b2)
    assert not torch.allclose(a2, a)  # the block did something
    for x, rx in [(a, ra), (b, rb)]:
        assert ((rx - x).norm() / x.norm()).item() < 1e-12


@pytest.mark.parametrize("cls", BLOCKS)
def test_gradcheck(cls):
    block = make(cls, channels=2)
    a = torch.randn(3, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: block(a, b), (a, b))
    assert torch.autograd.gradcheck(lambda a, b: block.inverse(a, b), (a, b))


def test_hamiltonian_matches_paper_formula():
    """Y' = Y + h K1^T s(N1(K1 Z)); Z' = Z - h K2^T s(N2(K2 Y')), K^T the adjoint of K."""
    torch.manual_seed(1)
    h = 0.3
    block = make(HamiltonianBlock, channels=2, h=h, prenorm=False).eval()
    y, z = (torch.randn(2, 2, 5, 5, dtype=torch.float64) for _ in range(2))
    f1, f2 = block.couplings[0].f, block.couplings[1].f

    def term(f, x):
        kx = torch.nn.functional.conv2d(x, f.weight, padding=1)
        s = torch.relu(f.norm(kx))
        # K^T s as the adjoint: <K u, s> = <u, K^T s> for all u, so K^T s = grad_u <K u, s>
        u = torch.zeros_like(x, requires_grad=True)
        (ku_s,) = torch.autograd.grad((torch.nn.functional.conv2d(u, f.weight, padding=1) * s)
                                      .sum(), u)
        return ku_s

    y2 = y + h * term(f1, z)
    z2 = z - h * term(f2, y2)
    with torch.no_grad():
        out_y, out_z = block(y, z)
    torch.testing.assert_close(out_y, y2)
    torch.testing.assert_close(out_z, z2)


def test_midpoint_operator_is_antisymmetric():
    """<(K - K^T) u, u> = 0 for every u: eigenvalues of the linear part are imaginary."""
    f = MidpointBlock(3, 1.0).double().couplings[0].f
    w = f.weight - f.weight.transpose(0, 1).flip(2, 3)
    u = torch.randn(1, 3, 7, 7, dtype=torch.float64)
    au = torch.nn.functional.conv2d(u, w, padding=1)
    assert abs((au * u).sum().item()) < 1e-12 * au.norm().item() * u.norm().item()
    # and it equals conv(u, K) - conv_transpose(u, K)
    ref = (torch.nn.functional.conv2d(u, f.weight, padding=1)
           - torch.nn.functional.conv_transpose2d(u, f.weight, padding=1))
    torch.testing.assert_close(au, ref)


@pytest.mark.parametrize("family", ["hamiltonian", "midpoint", "leapfrog", "revnet", "resnet"])
def test_step_size_is_a_constructor_argument(family):
    model = core.create_model(family, h=0.25)
    blocks = [m for m in model.modules() if hasattr(m, "h") and isinstance(m, torch.nn.Module)
              and not isinstance(m, core.ReversibleNet)]
    assert blocks and all(b.h == 0.25 for b in blocks)


@pytest.mark.parametrize("kwargs, words", [
    (dict(name="hamiltonian-75"), ["hamiltonian-75", "hamiltonian-74"]),
    (dict(name="hamiltonian", blocks=(2, 0, 2)), ["blocks=(2, 0, 2)", ">= 1"]),
    (dict(name="hamiltonian", blocks=(-1,), widths=(8, 8)), ["blocks=(-1,)"]),
    (dict(name="hamiltonian", widths=(16, 16, 33, 64)), ["33", "even"]),
    (dict(name="leapfrog", widths=(16, 16, 32)), ["widths=(16, 16, 32)", "4 numbers"]),
    (dict(name="midpoint", widths=(16, 32, 16, 64)), ["must not decrease"]),
    (dict(name="hamiltonian", h=0), ["h=0", "> 0"]),
    (dict(name="hamiltonian", h=-0.5), ["h=-0.5"]),
    (dict(name="resnet-32", memory="reversible"), ["reversible", "resnet", "checkpoint"]),
    (dict(name="hamiltonian", memory="fast"), ["'fast'", "standard"]),
    (dict(name="hamiltonian", depth=3), ["depth", "allowed"]),
])
def test_bad_configuration_raises_value_error_naming_it(kwargs, words):
    name = kwargs.pop("name")
    with pytest.raises(ValueError) as err:
        core.create_model(name, **kwargs)
    for w in words:
        assert w in str(err.value)


def test_channel_mismatch_is_a_clear_value_error():
    model = core.create_model("hamiltonian", in_channels=3)
    with pytest.raises(ValueError, match=r"3-channel images .* got 1 channels.*in_channels=1"):
        model(torch.randn(2, 1, 16, 16))
    with pytest.raises(ValueError, match="too small"):
        model(torch.randn(2, 3, 2, 2))


def test_set_memory_mode_rejects_unknown_and_keeps_state():
    model = core.create_model("hamiltonian")
    with pytest.raises(ValueError, match="'rev'"):
        model.set_memory_mode("rev")
    assert model.memory_mode == "standard"
    model.set_memory_mode("reversible", anchor_every=2)
    assert model.memory_mode == "reversible" and model.config.anchor_every == 2
