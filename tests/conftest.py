"""Shared fixtures: deterministic seed, devices (CUDA only when present), tolerances by dtype."""

import os
import time

import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
# AppTest pages would start a warm run launcher per test's LAB_HOME (lab.runs.launcher); tests of
# the launcher start theirs explicitly, and the browser tests' app (lab.bench.app_browser.serve)
# turns it back on
os.environ.setdefault("LAB_LAUNCHER", "0")

# relative tolerance for "same result" comparisons, by dtype
RTOL = {torch.float64: 1e-9, torch.float32: 1e-4}

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """Tiny models on two shared cores: OpenMP barriers of 2+ threads stall for whole
    timeslices, and results stay independent of the core count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


def usage_error(main, argv: list[str], capsys) -> str:
    """Run the command line ``main(argv)``, expect argparse's exit status 2 with no traceback,
    and return what it wrote to stderr."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| (absolute when b is zero)."""
    denom = b.norm().item()
    diff = (a - b).norm().item()
    return diff / denom if denom > 0 else diff


def randomize_batchnorm(model: torch.nn.Module) -> None:
    """Move BN affine parameters off their init (weight 1, bias 0).

    With zero bias, a zero-padded (constant) channel puts ReLU exactly at its kink, where any
    rounding in a rebuilt input picks a different subgradient; equivalence is only meaningful
    away from such ties.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)


def wait_for(predicate, timeout: float = 30.0, what: str = "condition", poll: float = 0.02):
    """Poll ``predicate`` until it returns something truthy (returned) or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
