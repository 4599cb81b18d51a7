"""Measuring a network on short copies of itself: the bytes each memory mode saves for
backward, and what the layers around its reversible segments keep.

Blocks within a stage are identical, so saved bytes are affine in the number of blocks per
stage and in the batch size: a copy with at most 3 blocks per stage, run at batch 1 and 2 on the
CPU, gives the exact figure for any depth and batch. The network class is passed in (``build``,
e.g. ``ReversibleNet``), so this module sits below ``core.network`` (which plans its ``budget``
and ``auto`` modes with it) and ``core.estimate`` (the public estimate) without an import
circle.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from core.memory import SavedTensorMeter, side_effect_free, storage_key
from core.reversible import ReversibleSegment

Build = Callable[[Any], nn.Module]  # a network config -> the network (the ReversibleNet class)


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



def saved_bytes(build: Build, cfg: Any, shape: tuple[int, ...], modes: Sequence[str],
                dtype: torch.dtype) -> dict[str, int]:
    """Bytes each of ``modes`` keeps for backward in a training forward of ``build(cfg)`` at
    input ``shape``: short copies (at most 3 blocks per stage) at batch b1 and b1 + 1, the
    result extrapolated in depth and batch (both affine), plus ``reversible``-mode anchors."""
    return dict(_saved_bytes(build, type(cfg), cfg.saved_bytes_key(), tuple(shape),
                             tuple(modes), dtype))


@functools.lru_cache(maxsize=64)
def _saved_bytes(build: Build, cfg_cls: type, cfg_json: str, shape: tuple[int, ...],
                 modes: tuple[str, ...], dtype: torch.dtype) -> tuple[tuple[str, int], ...]:
    cfg = cfg_cls(**json.loads(cfg_json))
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
        net = build(c).to(dtype).train()
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




def surroundings(build: Build, cfg: Any, shape: tuple[int, ...], dtype: torch.dtype
                 ) -> tuple[int, tuple[tuple[tuple[bool, bool], tuple[bool, bool]], ...]]:
    """``(outside bytes, context)`` of ``build(cfg)`` at input ``shape``; see ``_surroundings``.
    """
    return _surroundings(build, type(cfg), cfg.saved_bytes_key(), tuple(shape), dtype)


@functools.lru_cache(maxsize=64)
def _surroundings(build: Build, cfg_cls: type, cfg_json: str, shape: tuple[int, ...],
                  dtype: torch.dtype
                  ) -> tuple[int, tuple[tuple[tuple[bool, bool], tuple[bool, bool]], ...]]:
    """What the layers around the reversible segments (stem, transitions, head) keep for
    backward at input ``shape``: their bytes, and per segment whether they keep its input halves
    and its output halves, ``((in_a, in_b), (out_a, out_b))``, so that the budget planner counts
    a boundary pair kept by a neighbour once.

    Measured on a short copy of the network (at most 2 blocks per stage: neither answer depends
    on depth) at batch b1 and b1 + 1; the bytes, affine in the batch, are extrapolated. The
    bytes are those a ``reversible``-mode forward saves beyond each segment's output pair.
    """
    cfg = cfg_cls(**json.loads(cfg_json))
    short = dataclasses.replace(cfg, blocks=tuple(min(n, 2) for n in cfg.blocks),
                                anchor_every=0)
    with side_effect_free():
        net = build(short).to(dtype).train()
    pools = len(cfg.blocks) - 1
    b1 = 1 if (shape[2] >> pools) * (shape[3] >> pools) > 1 else 2  # BN: 2 values per channel
    phase = [0]
    saved: dict[tuple[str, int], set[int]] = {}
    ins: list[tuple] = []
    outs: list[tuple] = []
    pairs: dict[tuple[str, int], int] = {}

    def pre(seg, args):
        phase[0] += 1
        ins.append(tuple(storage_key(t) for t in args))

    def post(seg, args, out):
        phase[0] += 1
        outs.append(tuple(storage_key(t) for t in out))
        pairs.update((storage_key(t), t.untyped_storage().nbytes()) for t in out)

    def pack(t):
        saved.setdefault(storage_key(t), set()).add(phase[0])
        return t

    segs = [m for m in net.modules() if isinstance(m, ReversibleSegment)]
    handles = [h for m in segs for h in (m.register_forward_pre_hook(pre),
                                         m.register_forward_hook(post))]
    outside = []
    try:
        with side_effect_free(), torch.enable_grad():
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                out = net(torch.zeros(b1, *shape[1:], dtype=dtype))  # standard: who saves what
            del out
            context_ins, context_outs = list(ins), list(outs)
            net.set_memory_mode("reversible")
            for b in (b1, b1 + 1):
                pairs.clear()
                with SavedTensorMeter(exclude=net.parameters()) as meter:
                    out = net(torch.zeros(b, *shape[1:], dtype=dtype))
                del out
                outside.append(meter.bytes - sum(pairs.values()))
    finally:
        for h in handles:
            h.remove()
    context = []
    for j, (i_keys, o_keys) in enumerate(zip(context_ins, context_outs)):
        inside = 2 * j + 1  # the phase while segment j runs
        context.append((tuple(any(p != inside for p in saved.get(k, ())) for k in i_keys),
                        tuple(any(p > inside for p in saved.get(k, ())) for k in o_keys)))
    lo, hi = outside
    return lo + (shape[0] - b1) * (hi - lo), tuple(context)

