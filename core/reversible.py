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
import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from torch.utils.flop_counter import FlopCounterMode

from core.blocks import Coupling, ReversibleBlock
from core.budget import BlockCost, MiB, SegmentCosts, SegmentPlan, plan
from core.memory import SavedTensorMeter, check_memory_mode

_AUTOCAST_DEVICES = ("cpu", "cuda")
# The drift watch's warning line: a segment whose input, rebuilt from its output, is further
# than this from the stored forward input (relative L2 error) in this dtype. float32: 1e-3 sits
# above Hamiltonian/RevNet/Midpoint at 100 blocks per stage (3e-5 to 4e-4 measured,
# docs/experiments/drift.md) and below Leapfrog there (2.4e-3); float64 rounds 1e9x finer.
REBUILD_ERROR_THRESHOLD: dict[torch.dtype, float] = {
    torch.float64: 1e-10, torch.float32: 1e-3, torch.bfloat16: 1e-2, torch.float16: 1e-2}


def relative_error(a: Tensor, ref: Tensor) -> float:
    """``||a - ref|| / ||ref||`` in float64 (the absolute error when ``ref`` is zero)."""
    ref64 = ref.double()
    den = ref64.norm().item()
    num = (a.double() - ref64).norm().item()
    return num / den if den > 0 else num


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


def dropouts(module: nn.Module) -> list[nn.Module]:
    """Modules that draw random numbers in training: ``nn.Dropout*`` and attention dropout."""
    return [m for m in module.modules()
            if isinstance(m, (nn.modules.dropout._DropoutNd, nn.MultiheadAttention))]


def _draws(m: nn.Module) -> bool:
    return (m.p if isinstance(m, nn.modules.dropout._DropoutNd) else m.dropout) > 0


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
    """A run of reversible blocks: the unit whose activations are rebuilt in backward.

    Works on any pair of tensors whose shapes the blocks preserve (image halves, token
    sequences, ...). ``forward(a, b) -> (a, b)`` runs the blocks in the segment's memory mode:

    - ``standard``: plain autograd, every activation kept;
    - ``checkpoint``: ``torch.utils.checkpoint`` per block (non-reentrant), batch-norm running
      statistics restored after the recomputation;
    - ``reversible``: only the output pair is kept (plus every k-th pair with ``anchor_every``);
    - ``budget``: the last blocks are stored and the first ones rebuilt, as many stored as
      ``mib`` MiB of saved activations allow; planned once per input shape (``memory_plan``).

    Example::

        seg = core.ReversibleSegment([core.ReversibleBlock(core.Coupling(f1), core.Coupling(g1)),
                                      ...], memory="reversible")
        y1, y2 = seg(x1, x2)
        seg.set_memory_mode("budget", mib=64)

    Args:
        blocks: the reversible blocks (``ReversibleBlock``), in order.
        memory: the memory mode (see above).
        mib: the ``budget`` mode's MiB of activations.
        anchor_every: in ``reversible`` mode (and the rebuilt part of ``budget`` mode) keep the
            state after every k-th block (0 = off). Anchors bound how far rebuild error travels
            at the price of ``n / k`` extra pairs.
        input_live: if the input halves are zero-padded channels (dim 1), how many leading
            channels are live; the rebuild restores the exact zeros of the rest.
        preserve_rng: always replay the RNG in the rebuild; needed only for randomness other
            than ``nn.Dropout*`` and ``nn.MultiheadAttention`` dropout (found automatically).
    """

    def __init__(self, blocks: Sequence[ReversibleBlock], memory: str = "reversible", *,
                 mib: float | None = None, anchor_every: int = 0, input_live: int | None = None,
                 preserve_rng: bool = False):
        super().__init__()
        blocks = list(blocks)
        for i, block in enumerate(blocks):
            if not isinstance(block, ReversibleBlock) or len(getattr(block, "couplings", ())) != 2:
                raise TypeError(f"block {i} is a {type(block).__name__}; a ReversibleSegment "
                                "takes ReversibleBlock(coupling_a, coupling_b) instances")
        self.input_live = input_live  # channels per half before zero-padding (None: no padding)
        self.preserve_rng = bool(preserve_rng)
        self.blocks = nn.ModuleList(blocks)
        index = {id(p): n for n, p in enumerate(self.blocks.parameters())}
        # for block i, coupling j: positions of its parameters in self.blocks.parameters()
        self.coupling_params = [[[index[id(p)] for p in c.parameters()] for c in b.couplings]
                                for b in self.blocks]
        self.norms = batch_norms(self.blocks)  # frozen during the rebuild
        self.dropouts = dropouts(self.blocks)  # their RNG is replayed in the rebuild
        self.mode, self.mib, self.anchor_every = "standard", None, 0
        self._plans: dict[tuple, SegmentPlan] = {}
        self._costs: dict[tuple, tuple[BlockCost, ...]] = {}
        self._last_plan: SegmentPlan | None = None
        self.set_memory_mode(memory, mib=mib, anchor_every=anchor_every)

    def set_memory_mode(self, mode: str, *, mib: float | None = None,
                        anchor_every: int | None = None) -> ReversibleSegment:
        """Switch mode without rebuilding; ``budget`` needs ``mib`` (MiB of saved activations)."""
        check_memory_mode(mode)
        if mode == "auto":
            raise ValueError("memory mode 'auto' is planned by the network (ReversibleNet) from "
                             "a memory limit; a ReversibleSegment takes standard, checkpoint, "
                             "reversible or budget (with mib=M)")
        if anchor_every is not None:
            self.set_anchor_every(anchor_every)
        if mode == "budget":
            check_budget_mib(mib)
        self.mode, self.mib = mode, (float(mib) if mode == "budget" else None)
        self._plans.clear()
        self._last_plan = None
        return self

    def set_anchor_every(self, anchor_every: int) -> ReversibleSegment:
        """Keep the state after every k-th block (0 = off) from the next forward on; a budget
        plan is made again (anchors cost a pair each)."""
        if isinstance(anchor_every, bool) or not isinstance(anchor_every, int) or anchor_every < 0:
            raise ValueError(f"anchor_every={anchor_every!r} must be an integer >= 0")
        self.anchor_every = anchor_every
        self._plans.clear()
        self._last_plan = None
        return self

    @property
    def memory_mode(self) -> str:
        return self.mode

    def rebuild_inputs(self, a: Tensor, b: Tensor, *, n: int | None = None,
                       anchors: dict[int, tuple[Tensor, Tensor]] | None = None,
                       rng_states: list | None = None) -> list[tuple[Tensor, Tensor]]:
        """The inputs of blocks ``0..n-1`` rebuilt from the state ``(a, b)`` after block
        ``n - 1``, walking back with the couplings' inverse exactly as the reversible backward
        does: ``anchors[i]`` (the exact state after block ``i``) replaces the rebuilt one, the
        zero-padded input channels are restored, and ``rng_states`` (one per coupling, in
        forward order) replays dropout. Runs as called (callers use ``no_grad`` and freeze the
        batch-norm statistics); returns ``[(a_i, b_i)]`` for ``i = 0..n-1``."""
        n = len(self.blocks) if n is None else n
        state = [a, b]
        rng = iter(reversed(rng_states)) if rng_states is not None else None
        out: list[tuple[Tensor, Tensor]] = [None] * n  # type: ignore[list-item]
        for i in range(n - 1, -1, -1):
            if anchors and i in anchors and i + 1 < n:
                state = list(anchors[i])  # an anchor: the exact state, rebuild error dropped
            block = self.blocks[i]
            for j in (1, 0):
                with _replayed_rng(next(rng) if rng else None, state[0].device):
                    state[j] = block.couplings[j].inverse(state[j], state[1 - j])
                if i == 0 and j == 1 and self.input_live is not None:
                    state[1][:, self.input_live:] = 0  # exact zeros of the padding
            out[i] = (state[0], state[1])
        return out

    def rebuild_error(self, a: Tensor, b: Tensor, n: int | None = None) -> float:
        """How far the segment's input ``(a, b)``, rebuilt from the state after its first ``n``
        blocks (default all), is from itself: ``||rebuilt - input|| / ||input||``.

        What the reversible backward would rebuild for this batch, in the segment's current
        mode (train: batch statistics), with its anchors and dropout replay. Nothing changes:
        no gradients, batch-norm running statistics restored, the caller's RNG untouched.
        """
        return self._rebuild_error(a, b, n)[0]

    def _rebuild_error(self, a: Tensor, b: Tensor, n: int | None = None
                       ) -> tuple[float, tuple[Tensor, Tensor]]:
        """``rebuild_error`` and the segment's output (all blocks run), from one forward."""
        n = len(self.blocks) if n is None else n
        k = self.anchor_every
        stochastic = self.training and (self.preserve_rng or any(map(_draws, self.dropouts)))
        devices = [a.device] if a.device.type == "cuda" else []
        with torch.no_grad(), frozen_running_stats(self.norms), \
                torch.random.fork_rng(devices=devices, device_type="cuda"):
            rng_states: list | None = [] if stochastic else None
            anchors: dict[int, tuple[Tensor, Tensor]] = {}
            state = [a, b]
            for i in range(n):
                for j, c in enumerate(self.blocks[i].couplings):
                    if rng_states is not None:
                        rng_states.append(_rng_state(a.device))
                    state[j] = c(state[j], state[1 - j])
                if k and (i + 1) % k == 0 and i + 1 < n:
                    anchors[i] = (state[0], state[1])
            error = 0.0  # nothing rebuilt
            if n:
                a0, b0 = self.rebuild_inputs(state[0], state[1], n=n, anchors=anchors,
                                             rng_states=rng_states)[0]
                error = relative_error(torch.cat([a0, b0], 1), torch.cat([a, b], 1))
            for block in self.blocks[n:]:
                state = list(block(*state))
        return error, (state[0], state[1])

    def _plan_key(self, a: Tensor, b: Tensor) -> tuple:
        return (tuple(a.shape), tuple(b.shape), a.dtype, b.dtype, a.device.type, self.training)

    def segment_costs(self, a: Tensor, b: Tensor, **context) -> SegmentCosts:
        """Each block's stored cost at the shapes of ``(a, b)`` (measured, see core.budget)."""
        key = self._plan_key(a, b)
        if key not in self._costs:  # depends on the blocks' structure, not weights or budget
            self._costs[key] = tuple(block_costs(self.blocks, a, b))
        return SegmentCosts(self._costs[key], self.anchor_every, **context)

    def memory_plan(self, a: Tensor | None = None, b: Tensor | None = None) -> SegmentPlan | None:
        """The budget plan for inputs shaped like ``(a, b)`` (made now if needed), or the plan
        of the last forward when no tensors are given (``None`` before one)."""
        if a is None or b is None:
            return self._last_plan
        return self._plan_for(a, b)

    def _plan_for(self, a: Tensor, b: Tensor) -> SegmentPlan:
        key = self._plan_key(a, b)
        found = self._plans.get(key)
        if found is None:
            if self.mib is None:
                raise RuntimeError("this segment's budget is planned by the network that holds "
                                   "it; call the network, not the segment")
            made = plan(int(self.mib * MiB), [self.segment_costs(a, b)],
                        input_shape=(tuple(a.shape), tuple(b.shape)))
            found = self._plans[key] = made.segments[0]
        self._last_plan = found
        return found

    def forward(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        grad = torch.is_grad_enabled()
        if self.mode == "reversible" and grad:
            return _ReversibleFn.apply(self, len(self.blocks), a, b, *self.blocks.parameters())
        if self.mode == "checkpoint" and grad:
            for block in self.blocks:
                a, b = checkpoint_block(block, a, b)
            return a, b
        first = 0
        if self.mode == "budget" and grad:
            first = self._plan_for(a, b).rebuilt
            if first:
                a, b = _ReversibleFn.apply(self, first, a, b, *self.blocks.parameters())
        for block in self.blocks[first:]:
            a, b = block(a, b)
        return a, b

    def extra_repr(self) -> str:
        return f"memory={self.mode}" + (f", mib={self.mib:g}" if self.mib is not None else "")


def check_budget_mib(mib, name: str = "mib") -> float:
    """``mib`` for budget mode (or ``name``, e.g. auto's limit): a finite number > 0, else
    ValueError/TypeError saying so."""
    if mib is None:
        raise ValueError("memory mode 'budget' needs mib=M, the MiB of activations it may keep "
                         "for backward, e.g. set_memory_mode('budget', mib=256)")
    if isinstance(mib, bool) or not isinstance(mib, (int, float)):
        raise TypeError(f"{name}={mib!r} must be a number of MiB")
    if not (math.isfinite(mib) and mib > 0):
        raise ValueError(f"{name}={mib!r} must be a finite number of MiB > 0")
    return float(mib)


def checkpoint_block(block: nn.Module, *args: Tensor):
    """``torch.utils.checkpoint`` of one block, BN running statistics updated once.

    Eager: ``context_fn`` restores the statistics after the recomputation. Under
    ``torch.compile`` (which rejects a ``context_fn``) the compiled graph's recomputation does
    not replay buffer updates, so none is needed.
    """
    if torch.compiler.is_compiling():
        return checkpoint(block, *args, use_reentrant=False)
    return checkpoint(block, *args, use_reentrant=False, context_fn=recompute_context(block))


def recompute_context(block: nn.Module):
    """``context_fn`` for ``torch.utils.checkpoint``: freeze BN running stats when recomputing."""
    bns = batch_norms(block)
    return lambda: (contextlib.nullcontext(), frozen_running_stats(bns))


def measure_block(block: nn.Module, a: Tensor, b: Tensor) -> BlockCost:
    """Run ``block`` once on copies of ``(a, b)`` and record what it saves (state untouched:
    batch-norm running statistics are restored, the RNG is forked)."""
    a = a.detach().clone().requires_grad_(a.is_floating_point())
    b = b.detach().clone().requires_grad_(b.is_floating_point())
    devices = [a.device] if a.device.type == "cuda" else []
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.random.fork_rng(devices=devices, device_type="cuda"))
        stack.enter_context(frozen_running_stats(batch_norms(block)))
        stack.enter_context(torch.enable_grad())
        flops = stack.enter_context(FlopCounterMode(display=False))
        meter = stack.enter_context(SavedTensorMeter(exclude=block.parameters()))
        a2, b2 = block(a, b)
    return BlockCost(saved_bytes=meter.bytes, a_bytes=a.untyped_storage().nbytes(),
                     b_bytes=b.untyped_storage().nbytes(),
                     saves_in=(meter.holds(a), meter.holds(b)),
                     saves_out=(meter.holds(a2), meter.holds(b2)),
                     flops=int(flops.get_total_flops()))


def block_costs(blocks: Sequence[nn.Module], a: Tensor, b: Tensor) -> list[BlockCost]:
    """``measure_block`` for each block, once per distinct block (same repr and mode)."""
    seen: dict[tuple[str, bool], BlockCost] = {}
    out = []
    for block in blocks:
        key = (repr(block), block.training)
        if key not in seen:
            seen[key] = measure_block(block, a, b)
        out.append(seen[key])
    return out



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
    def forward(ctx, seg: ReversibleSegment, n: int, a: Tensor, b: Tensor, *params: Tensor):
        stochastic = seg.training and (seg.preserve_rng or any(map(_draws, seg.dropouts)))
        rng_states: list | None = [] if stochastic else None
        anchors: list[Tensor] = []
        k = seg.anchor_every
        state = [a, b]
        for i in range(n):  # the first n blocks
            for j, c in enumerate(seg.blocks[i].couplings):  # coupling j: half j from half 1-j
                if rng_states is not None:
                    rng_states.append(_rng_state(a.device))
                state[j] = c(state[j], state[1 - j])
            if k and (i + 1) % k == 0 and i + 1 < n:
                anchors += state
        ctx.seg, ctx.n, ctx.k, ctx.params, ctx.rng_states = seg, n, k, params, rng_states
        ctx.autocast = _autocast_state()
        ctx.save_for_backward(*state, *anchors)
        return state[0], state[1]

    @staticmethod
    def backward(ctx, g_a: Tensor, g_b: Tensor):
        seg: ReversibleSegment = ctx.seg
        saved = ctx.saved_tensors
        state, anchors = [saved[0], saved[1]], saved[2:]
        grad = [g_a, g_b]
        needs = ctx.needs_input_grad[4:]
        all_params = ctx.params
        param_grads: list[Tensor | None] = [None] * len(all_params)
        n, k, device = ctx.n, ctx.k, state[0].device
        rng = iter(reversed(ctx.rng_states)) if ctx.rng_states is not None else None

        with _autocast(ctx.autocast), frozen_running_stats(seg.norms):
            for i in range(n - 1, -1, -1):
                if k and (i + 1) % k == 0 and i + 1 < n:
                    m = 2 * ((i + 1) // k - 1)
                    state = [anchors[m], anchors[m + 1]]  # exact state: drop rebuild error
                block = seg.blocks[i]
                for j in (1, 0):
                    ids = [p for p in seg.coupling_params[i][j] if needs[p]]
                    with _replayed_rng(next(rng) if rng else None, device):
                        old, g_old, g_other, pg = _coupling_backward(
                            block.couplings[j], state[j], state[1 - j], grad[j], grad[1 - j],
                            [all_params[p] for p in ids])
                    state[j], grad[j], grad[1 - j] = old, g_old, g_other
                    for p, g in zip(ids, pg):  # a weight shared by couplings sums its grads
                        if g is not None:
                            param_grads[p] = g if param_grads[p] is None else param_grads[p] + g
                    if i == 0 and j == 1 and seg.input_live is not None:
                        state[1][:, seg.input_live:] = 0  # exact zeros of the padding
        return None, None, grad[0], grad[1], *param_grads
