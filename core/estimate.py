"""How many activation bytes each memory mode keeps for backward, for a network config at a
batch shape, without building the real network: short copies are run and the result
extrapolated (``core.probe``); this module checks the request and answers it."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from core.memory import check_memory_mode, supported_modes
from core.network import NetworkConfig, ReversibleNet
from core.probe import saved_bytes

__all__ = ["estimate_activation_bytes"]


def estimate_activation_bytes(model_or_config, input_shape: Sequence[int],
                              modes: Sequence[str] | None = None, *,
                              dtype: torch.dtype | None = None) -> dict[str, int]:
    """Bytes each memory mode keeps for backward for one training batch of ``input_shape``.

    Exactly what ``SavedTensorMeter`` counts during a training-mode forward of the real model,
    computed without running it: saved bytes are affine in the batch size and, with every other
    stage fixed, in the number of identical blocks per stage. So a few short copies of the
    network (at most 3 blocks per stage) are run on the CPU at batch 1 and 2 (2 and 3 if the
    last feature map is one pixel), and the result extrapolated; ``reversible``-mode anchors add
    ``(n - 1) // k`` stored pairs per segment. Cost does not grow with depth or batch
    (hamiltonian-1202 at batch 128: well under a second).

    Args:
        model_or_config: a ``ReversibleNet`` (its config, dtype and anchors are used) or a
            ``NetworkConfig``.
        input_shape: ``(B, C, H, W)`` of one training batch.
        modes: memory modes to estimate; ``None``: every mode the family supports.
        dtype: parameter/activation dtype (default: the model's, or float32 for a config).

    Returns:
        ``{mode: bytes}``.
    """
    if isinstance(model_or_config, ReversibleNet):
        cfg = model_or_config.config
        if dtype is None:
            dtype = next(model_or_config.parameters()).dtype
    elif isinstance(model_or_config, NetworkConfig):
        cfg = model_or_config
    else:
        raise TypeError(f"estimate_activation_bytes takes a ReversibleNet or a NetworkConfig, "
                        f"got {type(model_or_config).__name__}")
    dtype = dtype or torch.float32
    shape = tuple(input_shape)
    if len(shape) != 4 or any(not isinstance(d, int) or d < 1 for d in shape):
        raise ValueError(f"input_shape={input_shape!r}: give (batch, channels, height, width), "
                         "four positive integers")
    # budget and auto have no single figure: they are planned per input shape (memory_plan)
    supported = [m for m in supported_modes(cfg) if m not in ("budget", "auto")]
    modes = list(supported if modes is None else modes)
    for mode in modes:
        check_memory_mode(mode)
        if mode not in supported:
            raise ValueError(f"mode {mode!r} cannot be estimated for {cfg.family} blocks; "
                             f"choose among {', '.join(supported)}"
                             + (f" (for {mode!r}, use model.memory_plan())"
                                if mode in ("budget", "auto") else ""))
    if shape[1] != cfg.in_channels:
        raise ValueError(f"input_shape={shape}: this model takes {cfg.in_channels}-channel images")
    if min(shape[2:]) < 2 ** (len(cfg.blocks) - 1):
        raise ValueError(f"input_shape={shape}: images are too small for "
                         f"{len(cfg.blocks) - 1} poolings")
    return saved_bytes(ReversibleNet, cfg, shape, modes, dtype)
