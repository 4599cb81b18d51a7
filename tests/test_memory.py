"""core.memory.estimate_activation_bytes: equal to a real SavedTensorMeter measurement, fast."""

import time

import pytest
import torch

import core
from core.memory import SavedTensorMeter, estimate_activation_bytes


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
