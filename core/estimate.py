"""How many activation bytes each memory mode keeps for backward, for a network config at a
batch shape, without building the real network: a few short copies are run and the result
extrapolated (see ``estimate_activation_bytes``)."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence

import torch

from core.memory import SavedTensorMeter, check_memory_mode, side_effect_free, supported_modes
from core.network import NetworkConfig, ReversibleNet
from core.reversible import ReversibleSegment

__all__ = ["estimate_activation_bytes"]


def _plain_bytes(net, x: torch.Tensor, modes: Sequence[str]) -> dict[str, int]:
    """Bytes ``SavedTensorMeter`` counts for one forward of ``net`` on ``x``, per mode."""
    out = {}
    for mode in modes:
        net.set_memory_mode(mode)
        with SavedTensorMeter(exclude=net.parameters()) as meter:
            y = net(x)
        del y
        out[mode] = meter.bytes
    return out


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
    # budget mode has no single figure: it is planned per input shape (memory_plan)
    supported = [m for m in supported_modes(cfg) if m != "budget"]
    modes = list(supported if modes is None else modes)
    for mode in modes:
        check_memory_mode(mode)
        if mode not in supported:
            raise ValueError(f"mode {mode!r} cannot be estimated for {cfg.family} blocks; "
                             f"choose among {', '.join(supported)}"
                             + (" (for 'budget', use model.memory_plan())"
                                if mode == "budget" else ""))
    if shape[1] != cfg.in_channels:
        raise ValueError(f"input_shape={shape}: this model takes {cfg.in_channels}-channel images")
    if min(shape[2:]) < 2 ** (len(cfg.blocks) - 1):
        raise ValueError(f"input_shape={shape}: images are too small for "
                         f"{len(cfg.blocks) - 1} poolings")
    cached = _estimate(cfg.saved_bytes_key(), shape, tuple(modes), dtype)
    return dict(cached)


@functools.lru_cache(maxsize=64)
def _estimate(cfg_json: str, shape: tuple[int, ...], modes: tuple[str, ...],
              dtype: torch.dtype) -> tuple[tuple[str, int], ...]:
    cfg = NetworkConfig(**json.loads(cfg_json))
    batch, _, height, width = shape
    pools = len(cfg.blocks) - 1
    b1 = 1 if (height >> pools) * (width >> pools) > 1 else 2  # BN needs 2 values per channel

    short = tuple(min(n, 2) for n in cfg.blocks)
    variants = {s: tuple(3 if t == s else k for t, k in enumerate(short))
                for s, n in enumerate(cfg.blocks) if n > 2}

    def measure(blocks: tuple[int, ...]) -> tuple[dict[str, int], list[tuple[int, int]]]:
        """Bytes per mode at batch ``batch`` (affine extrapolation from b1, b1+1) and the
        (length, per-sample pair bytes) of each reversible segment."""
        c = dataclasses.replace(cfg, blocks=blocks, memory="standard", anchor_every=0)
        net = ReversibleNet(c).to(dtype).train()
        per_batch, segs = [], []
        hook_out: list[tuple[int, int]] = []

        def hook(seg, args):
            hook_out.append((len(seg.blocks), 2 * args[0][0].numel() * args[0].element_size()))

        handles = [m.register_forward_pre_hook(hook) for m in net.modules()
                   if isinstance(m, ReversibleSegment)]
        with torch.enable_grad():
            for b in (b1, b1 + 1):
                hook_out.clear()
                per_batch.append(_plain_bytes(net, torch.zeros(b, *shape[1:], dtype=dtype), modes))
                segs = list(hook_out[:len(handles)])
        for h in handles:
            h.remove()
        lo, hi = per_batch
        return {m: lo[m] + (batch - b1) * (hi[m] - lo[m]) for m in modes}, segs

    with side_effect_free():
        base, base_segs = measure(short)
        measured = {s: measure(blocks) for s, blocks in variants.items()}
    total = dict(base)
    lengths = [n for n, _ in base_segs]
    for s, (more, segs) in measured.items():
        extra = cfg.blocks[s] - short[s]
        for m in modes:
            total[m] += extra * (more[m] - base[m])
        lengths = [n + extra * (m - b) for n, (m, _), (b, _) in zip(lengths, segs, base_segs)]
    if "reversible" in total and cfg.anchor_every:
        total["reversible"] += sum((n - 1) // cfg.anchor_every * pair * batch
                                   for n, (_, pair) in zip(lengths, base_segs))
    return tuple(total.items())

