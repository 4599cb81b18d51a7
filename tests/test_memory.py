"""core.estimate.estimate_activation_bytes: equal to a real SavedTensorMeter measurement, fast."""

import time

import pytest
import torch

import core
from core.blocks import FAMILIES
from core.estimate import estimate_activation_bytes
from core.memory import MEMORY_MODES, SavedTensorMeter, default_mode, supported_modes


def metered(model, shape, mode):
    model.set_memory_mode(mode)
    x = torch.randn(*shape, dtype=next(model.parameters()).dtype)
    with SavedTensorMeter(exclude=model.parameters()) as meter:
        model(x)
    return meter.bytes


CASES = [  # family, blocks, widths, input shape, anchor_every
    ("hamiltonian", (5, 4, 3), (8, 8, 16, 32), (6, 3, 16, 16), 0),
    ("midpoint", (1, 2, 7), (8, 8, 16, 16), (3, 3, 8, 8), 0),
    ("revnet", (4, 1, 4), (8, 16, 16, 32), (5, 3, 16, 16), 0),
    ("resnet", (3, 3, 3), (8, 8, 16, 32), (4, 3, 16, 16), 0),
    ("leapfrog", (9, 2, 5), (8, 8, 16, 32), (4, 3, 8, 8), 3),
    ("hamiltonian", (3, 3), (8, 8, 16), (2, 3, 2, 2), 0),  # last map 1 pixel
]


@pytest.mark.parametrize("family,blocks,widths,shape,anchor", CASES)
def test_estimate_equals_metered_bytes(family, blocks, widths, shape, anchor):
    model = core.create_model(family, blocks=blocks, widths=widths, anchor_every=anchor)
    est = estimate_activation_bytes(model, shape)
    assert set(est) == ({"standard", "checkpoint"} | ({"reversible"} if family != "resnet"
                                                        else set()))
    for mode, nbytes in est.items():
        assert nbytes == metered(model, shape, mode), mode


def test_estimate_follows_dtype_and_config():
    cfg = core.model_config("hamiltonian", blocks=(3, 3, 3), widths=(8, 8, 16, 16))
    model = core.create_model("hamiltonian", blocks=(3, 3, 3), widths=(8, 8, 16, 16)).double()
    est64 = estimate_activation_bytes(model, (4, 3, 8, 8), ["standard"])
    assert est64 == {"standard": metered(model, (4, 3, 8, 8), "standard")}
    assert estimate_activation_bytes(cfg, (4, 3, 8, 8), ["standard"])["standard"] * 2 == \
        est64["standard"]


def test_estimate_is_fast_for_the_deepest_model():
    cfg = core.model_config("hamiltonian-1202")
    estimate_activation_bytes(core.model_config("hamiltonian"), (2, 3, 8, 8))  # warm kernels
    t0 = time.process_time()
    est = estimate_activation_bytes(cfg, (128, 3, 32, 32))
    cpu_s = time.process_time() - t0
    assert cpu_s < 1.0, cpu_s  # CPU seconds: immune to other processes' load
    assert est["standard"] > 100 * est["reversible"]


def test_estimate_rejects_bad_input():
    cfg = core.model_config("hamiltonian")
    with pytest.raises(ValueError, match="four positive integers"):
        estimate_activation_bytes(cfg, (3, 32, 32))
    with pytest.raises(ValueError, match="3-channel"):
        estimate_activation_bytes(cfg, (2, 1, 32, 32))
    with pytest.raises(ValueError, match="too small"):
        estimate_activation_bytes(cfg, (2, 3, 2, 2))
    with pytest.raises(ValueError, match="cannot be estimated for resnet"):
        estimate_activation_bytes(core.model_config("resnet"), (2, 3, 8, 8), ["reversible"])
    with pytest.raises(ValueError, match="unknown memory mode"):
        estimate_activation_bytes(cfg, (2, 3, 8, 8), ["fast"])
    with pytest.raises(TypeError, match="ReversibleNet or a NetworkConfig"):
        estimate_activation_bytes("hamiltonian", (2, 3, 8, 8))


# -- the one rule: which memory modes a model supports, and its default ----------------------

@pytest.mark.parametrize("family", list(FAMILIES))
def test_supported_modes_follow_the_block_registry(family):
    """Invertible (a ReversibleBlock) families take every mode; the others only those that
    rebuild nothing. A family name, a config and a model give the same answer."""
    rebuilding = issubclass(FAMILIES[family], core.ReversibleBlock)
    expected = MEMORY_MODES if rebuilding else ("standard", "checkpoint", "auto")
    cfg = core.model_config(family)
    assert supported_modes(family) == supported_modes(cfg) == expected
    assert supported_modes(core.ReversibleNet(cfg)) == expected
    assert default_mode(family) == ("reversible" if rebuilding else "standard")
    assert default_mode(family) in expected


def _site(site, family, mode):
    """Build or validate ``family`` in ``mode`` the way one site does."""
    from core.training import TrainConfig
    from lab.sweeps.sweep import SweepConfig

    extra = {"memory_mib": 8.0} if mode == "budget" else {}
    if site == "network":
        return core.model_config(family, memory=mode, **extra)
    if site == "training":
        return TrainConfig(model=family, memory=mode, **extra).validate()
    return SweepConfig(family=family, blocks=(1,), modes=(mode,), budget_mib=8.0).validate()


@pytest.mark.parametrize("site", ["network", "training", "sweep"])
@pytest.mark.parametrize("mode", MEMORY_MODES)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_site_reads_the_one_rule(family, mode, site):
    """NetworkConfig, TrainConfig and the sweeps accept exactly the modes core.memory supports
    for the family, and refuse the others naming the mode, the family and the choices."""
    modes = supported_modes(family)
    if site == "sweep" and mode == "auto":
        with pytest.raises(ValueError, match="'auto' picks standard, budget or reversible"):
            _site(site, family, mode)
        return
    if mode in modes:
        _site(site, family, mode)
        return
    with pytest.raises(ValueError, match=f"memory={mode!r} needs invertible blocks: {family} "
                       "blocks are not invertible") as e:
        _site(site, family, mode)
    assert all(repr(m) in str(e.value) for m in modes)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_form_and_the_depth_lab_offer_the_supported_modes(family):
    from lab.views import depth, train

    assert train.memory_modes(family)[0] == default_mode(family)
    assert sorted(train.memory_modes(family)) == sorted(supported_modes(family))
    assert depth.mode_choices(family) == [m for m in supported_modes(family) if m != "auto"]


def test_unknown_family_is_named():
    with pytest.raises(ValueError, match="unknown family 'dense'.*hamiltonian"):
        supported_modes("dense")
