"""torch.compile(model) trains in every memory mode and matches eager gradients (float32)."""

import copy
import os

import pytest
import torch
import torch.nn.functional as F
from conftest import randomize_batchnorm, rel_err

import core

MODES = [("standard", {}), ("checkpoint", {}), ("reversible", {}), ("budget", {"mib": 0.2})]
# inductor (the default) compiles C++ kernels: minutes per mode on 2 busy cores; "aot_eager"
# checks the same graph capture and AOT autograd without code generation
BACKEND = os.environ.get("REVLAB_COMPILE_BACKEND", "inductor")


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("mode,kw", MODES)
def test_compiled_model_trains_like_eager(mode, kw):
    torch.manual_seed(0)
    model = core.create_model("hamiltonian", blocks=(2, 2, 2), widths=(8, 8, 16, 16),
                              num_classes=5).set_memory_mode(mode, **kw)
    randomize_batchnorm(model)
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4,))
    eager, compiled_model = copy.deepcopy(model), copy.deepcopy(model)
    compiled = torch.compile(compiled_model, backend=BACKEND)
    opts = [torch.optim.SGD(m.parameters(), lr=0.05) for m in (eager, compiled_model)]
    for _ in range(2):  # two steps: the second runs on weights the first compiled step updated
        grads = []
        for m, opt in zip((eager, compiled), opts):
            opt.zero_grad()
            F.cross_entropy(m(x), y).backward()
            grads.append([p.grad.clone() for p in opt.param_groups[0]["params"]])
            opt.step()
        for g_e, g_c in zip(*grads):
            assert rel_err(g_c, g_e) < 1e-5
    for (n, b_e), b_c in zip(eager.named_buffers(), compiled_model.buffers()):
        assert torch.allclose(b_e.float(), b_c.float(), rtol=1e-5, atol=1e-6), n
