"""Forward trajectory of a network's blocks and its rebuild backwards with the blocks' inverse."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.network import ReversibleNet, Transition
from core.reversible import (
    ReversibleSegment,
    batch_norms,
    frozen_running_stats,
    relative_error,
)

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class Trajectory:
    """Per block ``j`` (network order): its input and output state, rebuilt input and error.

    States are ``(B, C, H, W)`` with the pair's halves concatenated along channels (one tensor
    for ResNet blocks). ``rebuilt`` and ``error`` are None for non-invertible (ResNet) blocks.
    """

    labels: list[str]                 # "s1 b2": stage and block within the stage, 1-based
    stage: list[int]                  # stage of each block (0-based)
    segment: list[int]                # segment (run of blocks between transitions), 0-based
    inputs: list[Tensor]              # the state entering each block, forward
    outputs: list[Tensor]             # the state leaving each block, forward
    rebuilt: list[Tensor | None]      # the input rebuilt from the segment's output, backwards
    error: list[float | None]         # ||rebuilt - input|| / ||input|| per block
    dtype: torch.dtype = torch.float32
    anchor_every: int = 0             # the rebuild restarted from the exact state every k blocks
    logits: Tensor | None = field(default=None, repr=False)

    @property
    def max_error(self) -> float | None:
        errs = [e for e in self.error if e is not None]
        return max(errs) if errs else None


@contextlib.contextmanager
def _untouched(model: nn.Module) -> Iterator[None]:
    """Run the model in its current mode, leaving batch-norm running statistics as they were."""
    with frozen_running_stats(batch_norms(model)):
        yield


def _stage_of_blocks(model: ReversibleNet) -> list[int]:
    return [s for s, n in enumerate(model.config.blocks) for _ in range(n)]


def trajectory(model: ReversibleNet, x: Tensor, *, dtype: str | torch.dtype = "float32",
               anchor_every: int | None = None, with_logits: bool = False) -> Trajectory:
    """Run ``x`` forward block by block, then rebuild each segment backwards from its output.

    The rebuild is exactly what the reversible backward does (``core.reversible``): the blocks'
    own ``inverse`` from the last block to the first, the segment's zero-padded input channels
    set back to zero after its first block, and with ``anchor_every=k`` a restart from the exact
    state after every k-th block. The model keeps its mode (train: batch statistics, as in the
    backward of a training step; eval: running statistics) and its running statistics are not
    changed. Everything runs under ``no_grad``.

    Args:
        model: a ``core.ReversibleNet`` (any family; ResNet blocks have no rebuild).
        x: images ``(B, C, H, W)``.
        dtype: "float32" or "float64" (the model is copied in that precision).
        anchor_every: anchor spacing for the rebuild; None: the model's own ``anchor_every``.
        with_logits: also run the head and keep the logits.
    """
    if not isinstance(model, ReversibleNet):
        raise TypeError(f"trajectory expects a core.ReversibleNet, got {type(model).__name__}")
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r}: choose one of {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype={dtype!r}: choose torch.float32 or torch.float64")
    k = model.config.anchor_every if anchor_every is None else anchor_every
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"anchor_every={k!r} must be an integer >= 0 (0: no anchors)")
    model.check_input(x)
    param = next(model.parameters())
    net = model if param.dtype == dtype else copy.deepcopy(model).to(dtype)
    x = x.to(device=param.device, dtype=dtype)

    stages = _stage_of_blocks(net)
    per_stage: dict[int, int] = {}
    labels = []
    for s in stages:
        per_stage[s] = per_stage.get(s, 0) + 1
        labels.append(f"s{s + 1} b{per_stage[s]}")
    out = Trajectory(labels=labels, stage=stages, segment=[], inputs=[], outputs=[], rebuilt=[],
                     error=[], dtype=dtype, anchor_every=k)

    with torch.no_grad(), _untouched(net):
        h = net.stem(x)
        paired = net.config.paired
        state: tuple[Tensor, ...] = (h[:, : h.shape[1] // 2], h[:, h.shape[1] // 2:]) \
            if paired else (h,)
        seg_index = 0
        for layer in net.layers:
            if isinstance(layer, Transition):
                state = layer(*state)
                continue
            ins, outs = [], []
            for block in layer.blocks:
                ins.append(state)
                result = block(*state)
                state = result if isinstance(result, tuple) else (result,)
                outs.append(state)
            rebuilt = (_rebuild(layer, outs, ins, k) if isinstance(layer, ReversibleSegment)
                       else [None] * len(ins))
            for i_state, o_state, r_state in zip(ins, outs, rebuilt):
                inp = torch.cat(i_state, dim=1)
                out.inputs.append(inp)
                out.outputs.append(torch.cat(o_state, dim=1))
                out.segment.append(seg_index)
                if r_state is None:
                    out.rebuilt.append(None)
                    out.error.append(None)
                else:
                    reb = torch.cat(r_state, dim=1)
                    out.rebuilt.append(reb)
                    out.error.append(relative_error(reb, inp))
            seg_index += 1
        if with_logits:
            feats = torch.cat(state, dim=1)
            out.logits = net.fc(F.relu(net.head_norm(feats)).mean(dim=(2, 3)))
    return out


def _rebuild(seg: ReversibleSegment, outs: list[tuple[Tensor, Tensor]],
             ins: list[tuple[Tensor, Tensor]], k: int) -> list[tuple[Tensor, Tensor]]:
    """The inputs of the segment's blocks, rebuilt from its output as the backward does
    (``ReversibleSegment.rebuild_inputs``), restarting from the exact state every k blocks."""
    n = len(seg.blocks)
    anchors = {i: outs[i] for i in range(n - 1) if k and (i + 1) % k == 0}
    return seg.rebuild_inputs(*outs[-1], anchors=anchors)
