"""The memory-saving backward: one ``autograd.Function`` for a run of reversible blocks.

What is stored: the segment's output pair (and, if ``anchor_every=k > 0``, the pair after every
k-th block). Nothing else: not the input, no intermediate activation.

Zero-padded inputs: a transition before the segment zero-pads channels, and a zero channel has
zero batch variance, so batch norm in the first coupling's ``f`` would amplify the rebuild's
rounding noise in it by 1/sqrt(eps) (float32 gradient errors of 1e-2 on some batches of
hamiltonian-74). The network tells the segment how many input channels are live
(``input_live``); the rebuilt input's padded channels are set back to their exact zeros
(float32 errors 1e-5).

What is rebuilt: walking blocks from last to first, each coupling ``new = p*old + q*other +
r*f(other)`` is undone with ONE evaluation of ``f(other)`` under ``enable_grad``; that same
evaluation gives the vector-Jacobian product for ``other`` and for the coupling's parameters.

How gradients leave: parameters are inputs of the Function, so their gradients are returned
from ``backward`` and accumulated by autograd (``post_accumulate_grad`` hooks and DDP's
reducer fire once per parameter and step). No ``.grad`` writes, no nested ``.backward()``.

State replay: batch-norm running statistics are frozen during the rebuild (updated once, in
forward); the RNG state before each sub-function is captured in forward only when the segment
contains active dropout and restored (inside ``fork_rng``) for the rebuild; the autocast state of
forward is re-entered in backward.

Not supported: double backward (``create_graph=True``) through the segment; blocks whose
sub-functions hold state other than batch-norm statistics.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from core.blocks import Coupling, ReversibleBlock

_AUTOCAST_DEVICES = ("cpu", "cuda")


@contextlib.contextmanager
def frozen_running_stats(bns: Sequence[nn.modules.batchnorm._BatchNorm]) -> Iterator[None]:
    """Re-run batch norms (batch statistics, same saved tensors) but undo any running-stat update.

    The buffers are snapshotted and restored rather than the module switched off, so a
    recomputation saves exactly the tensors of the original forward (checkpoint checks that).
    """
    buffers = [t for bn in bns for t in (bn.running_mean, bn.running_var, bn.num_batches_tracked)
               if t is not None]
    snapshot = [t.clone() for t in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for t, s in zip(buffers, snapshot):
                t.copy_(s)


def batch_norms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def dropouts(module: nn.Module) -> list[nn.modules.dropout._DropoutNd]:
    return [m for m in module.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


@contextlib.contextmanager
def _replayed_rng(state: tuple[Tensor, Tensor | None] | None, device: torch.device):
    if state is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda"):
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], device)
        yield


def _autocast_state() -> list[tuple[str, bool, torch.dtype]]:
    return [(d, torch.is_autocast_enabled(d), torch.get_autocast_dtype(d))
            for d in _AUTOCAST_DEVICES]


def _autocast(state: list[tuple[str, bool, torch.dtype]]) -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    for device_type, enabled, dtype in state:
        stack.enter_context(torch.autocast(device_type, dtype=dtype, enabled=enabled))
    return stack


class ReversibleSegment(nn.Module):
    """A run of reversible blocks between two non-invertible transitions.

    ``forward(a, b)`` runs the blocks in the segment's memory mode:
    ``standard`` (plain autograd), ``checkpoint`` (``torch.utils.checkpoint`` per block,
    non-reentrant, running statistics frozen during recomputation) or ``reversible``.

    Args:
        blocks: the reversible blocks, in order.
        anchor_every: in ``reversible`` mode keep the state after every k-th block (0 = off).
            Anchors bound how far rebuild error travels (it restarts from an exact state every k
            blocks) at the price of storing ``n / k`` extra pairs: memory grows with depth again,
            k times more slowly than in ``standard`` mode.
        input_live: if the input halves are zero-padded, how many leading channels are live;
            the rebuild restores the exact zeros of the rest.
    """

    def __init__(self, blocks: Sequence[ReversibleBlock], anchor_every: int = 0,
                 input_live: int | None = None):
        super().__init__()
        self.input_live = input_live  # channels per half before zero-padding (None: no padding)
        self.blocks = nn.ModuleList(blocks)
        self.mode = "standard"
        self.anchor_every = anchor_every
        index = {id(p): n for n, p in enumerate(self.blocks.parameters())}
        # for block i, coupling j: positions of its parameters in self.blocks.parameters()
        self.coupling_params = [[[index[id(p)] for p in c.parameters()] for c in b.couplings]
                                for b in self.blocks]
        self.norms = batch_norms(self.blocks)  # frozen during the rebuild
        self.dropouts = dropouts(self.blocks)  # their RNG is replayed in the rebuild

    def forward(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        if self.mode == "reversible" and torch.is_grad_enabled():
            return _ReversibleFn.apply(self, a, b, *self.blocks.parameters())
        if self.mode == "checkpoint" and torch.is_grad_enabled():
            for block in self.blocks:
                a, b = checkpoint(block, a, b, use_reentrant=False,
                                  context_fn=recompute_context(block))
            return a, b
        for block in self.blocks:
            a, b = block(a, b)
        return a, b


def recompute_context(block: nn.Module):
    """``context_fn`` for ``torch.utils.checkpoint``: freeze BN running stats when recomputing."""
    bns = batch_norms(block)
    return lambda: (contextlib.nullcontext(), frozen_running_stats(bns))


def _coupling_backward(c: Coupling, new: Tensor, other: Tensor, g_new: Tensor, g_other: Tensor,
                       params: list[Tensor]) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
    """Undo one coupling and push gradients through it with one evaluation of ``c.f``.

    For ``new = p*old + q*other + r*f(other)``: ``g_old = p*g_new`` and
    ``g_other += q*g_new + r * vjp_f(g_new)``; ``r`` is applied to the (linear) vjp results so
    the activation-sized gradient costs one fused ``add`` instead of a scale and an add.
    Returns ``(old, g_old, g_other, param_grads)``.
    """
    other = other.detach().requires_grad_(True)
    with torch.enable_grad():
        f_other = c.f(other)
    grads = torch.autograd.grad(f_other, (other, *params), g_new, allow_unused=True)
    old = c.uncombine(new, other.detach(), f_other.detach())
    g_other = torch.add(g_other, grads[0], alpha=c.r)
    if c.q != 0:
        g_other.add_(g_new, alpha=c.q)
    g_old = g_new if c.p == 1 else g_new * c.p
    param_grads = [g if c.r == 1 or g is None else g.mul_(c.r) for g in grads[1:]]
    return old, g_old, g_other, param_grads


class _ReversibleFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, seg: ReversibleSegment, a: Tensor, b: Tensor, *params: Tensor):
        stochastic = seg.training and any(m.p > 0 for m in seg.dropouts)
        rng_states: list | None = [] if stochastic else None
        anchors: list[Tensor] = []
        k = seg.anchor_every
        state = [a, b]
        for i, block in enumerate(seg.blocks):
            for j, c in enumerate(block.couplings):  # coupling j updates half j from half 1-j
                if rng_states is not None:
                    rng_states.append(_rng_state(a.device))
                state[j] = c(state[j], state[1 - j])
            if k and (i + 1) % k == 0 and i + 1 < len(seg.blocks):
                anchors += state
        ctx.seg, ctx.params, ctx.rng_states = seg, params, rng_states
        ctx.autocast = _autocast_state()
        ctx.save_for_backward(*state, *anchors)
        return state[0], state[1]

    @staticmethod
    def backward(ctx, g_a: Tensor, g_b: Tensor):
        seg: ReversibleSegment = ctx.seg
        saved = ctx.saved_tensors
        state, anchors = [saved[0], saved[1]], saved[2:]
        grad = [g_a, g_b]
        needs = ctx.needs_input_grad[3:]
        all_params = ctx.params
        param_grads: list[Tensor | None] = [None] * len(all_params)
        k, device = seg.anchor_every, state[0].device
        rng = iter(reversed(ctx.rng_states)) if ctx.rng_states is not None else None

        with _autocast(ctx.autocast), frozen_running_stats(seg.norms):
            for i in range(len(seg.blocks) - 1, -1, -1):
                if k and (i + 1) % k == 0 and i + 1 < len(seg.blocks):
                    m = 2 * ((i + 1) // k - 1)
                    state = [anchors[m], anchors[m + 1]]  # exact state: drop rebuild error
                block = seg.blocks[i]
                for j in (1, 0):
                    ids = [n for n in seg.coupling_params[i][j] if needs[n]]
                    with _replayed_rng(next(rng) if rng else None, device):
                        old, g_old, g_other, pg = _coupling_backward(
                            block.couplings[j], state[j], state[1 - j], grad[j], grad[1 - j],
                            [all_params[n] for n in ids])
                    state[j], grad[j], grad[1 - j] = old, g_old, g_other
                    for n, g in zip(ids, pg):
                        param_grads[n] = g
                    if i == 0 and j == 1 and seg.input_live is not None:
                        state[1][:, seg.input_live:] = 0  # exact zeros of the padding
        return None, grad[0], grad[1], *param_grads
