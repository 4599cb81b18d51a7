"""The memory-budget planner: which blocks of each segment to store so activations fit a budget.

In ``budget`` mode a segment of ``n`` blocks runs its first ``m`` blocks through the reversible
``autograd.Function`` (only the pair after block ``m`` is kept, plus anchors) and its last
``n - m`` blocks with plain autograd (every activation kept). The Function's saved output pair is
the same tensors the stored suffix takes as input, so the two share one boundary pair.

The plan is computed, not guessed: each distinct block (same ``repr`` and input shapes) is run
once at the real input shape under ``SavedTensorMeter`` (bytes it saves, and whether they
include its input or output halves) and ``FlopCounterMode`` (the cost of rebuilding it): that
measuring is ``core.reversible.measure_block``, since it runs the blocks. This module is the
arithmetic only: blocks are stored greedily, most rebuild flops saved per byte first, always
extending a segment's stored suffix, until the next one would exceed the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

MiB = 2**20


@dataclass(frozen=True)
class BlockCost:
    """What one block costs when stored (run with plain autograd) at one input shape."""

    saved_bytes: int    # bytes it saves for backward, its input halves' storages included
    a_bytes: int        # size of one input half ``a`` (the output half has the same size)
    b_bytes: int        # size of the other half ``b``
    saves_in: tuple[bool, bool]   # whether it saves its input a / b
    saves_out: tuple[bool, bool]  # whether it saves its own output a / b
    flops: int          # flops of one forward: the time a rebuild costs (0: not countable)

    @property
    def pair_bytes(self) -> int:
        return self.a_bytes + self.b_bytes

    def input_saved_bytes(self) -> int:
        return self.a_bytes * self.saves_in[0] + self.b_bytes * self.saves_in[1]


@dataclass(frozen=True)
class SegmentCosts:
    """A segment's blocks and what surrounds it in the network (all False when alone)."""

    costs: tuple[BlockCost, ...]
    anchor_every: int = 0
    input_saved_outside: tuple[bool, bool] = (False, False)   # a / b input kept by a layer before
    output_saved_outside: tuple[bool, bool] = (False, False)  # a / b output kept by a layer after

    def bytes(self, rebuilt: int) -> int:
        """Bytes this segment keeps with its first ``rebuilt`` blocks rebuilt, the rest stored."""
        costs, n = self.costs, len(self.costs)
        if n == 0:
            return 0
        pair = costs[0].pair_bytes
        k = self.anchor_every
        anchors = (rebuilt - 1) // k * pair if k and rebuilt > 0 else 0
        if rebuilt == n:
            return pair + anchors  # the Function keeps the output pair (+ anchors)
        total = sum(c.saved_bytes for c in costs[rebuilt:]) + anchors
        if rebuilt > 0:  # the Function's output pair is the stored suffix's input pair
            total += pair - costs[rebuilt].input_saved_bytes()
        else:  # inputs a layer before already keeps are not new
            first = costs[0]
            total -= sum(size for size, saved, outside in zip(
                (first.a_bytes, first.b_bytes), first.saves_in, self.input_saved_outside)
                if saved and outside)
        last = costs[-1]  # outputs a later layer keeps but the last block does not
        total += sum(size for size, saved, outside in zip(
            (last.a_bytes, last.b_bytes), last.saves_out, self.output_saved_outside)
            if outside and not saved)
        return total


@dataclass(frozen=True)
class SegmentPlan:
    """One segment's share of the plan: blocks ``[0, rebuilt)`` rebuilt, the rest stored."""

    blocks: int
    rebuilt: int
    bytes: int  # predicted bytes this segment keeps for backward

    @property
    def stored(self) -> range:
        return range(self.rebuilt, self.blocks)


@dataclass(frozen=True)
class MemoryPlan:
    """The plan for one input shape: per segment, which blocks are stored.

    In ``budget`` mode the budget is given; in ``auto`` mode the network derived it from a
    memory limit, and the fields after ``segments`` say what it chose and why.
    """

    input_shape: tuple[int, ...]
    budget_bytes: int       # activation bytes the plan may keep for backward
    minimum_bytes: int      # everything rebuilt (reversible mode; checkpoint for ResNets)
    predicted_bytes: int    # what this plan keeps for backward
    outside_bytes: int      # kept by layers outside the segments (stem, transitions, head)
    segments: tuple[SegmentPlan, ...] = field(default_factory=tuple)
    mode: str = "budget"    # "budget", or "auto"
    choice: str = ""        # auto: "standard", "budget", "reversible" or "checkpoint"
    limit_bytes: int | None = None  # auto: memory the whole training step may use
    limit_source: str = ""  # auto: where the limit came from
    reserved: dict[str, int] = field(default_factory=dict)  # auto: bytes besides activations
    reason: str = ""        # auto: why this choice, in one sentence

    def as_dict(self) -> dict:
        d = asdict(self)
        for s, seg in zip(d["segments"], self.segments):
            s["stored"] = [seg.rebuilt, seg.blocks] if seg.rebuilt < seg.blocks else []
        return d

    def __str__(self) -> str:
        lines = [f"memory plan for input {self.input_shape}: predicted "
                 f"{self.predicted_bytes / MiB:.2f} MiB of a {self.budget_bytes / MiB:.2f} MiB "
                 f"budget (minimum {self.minimum_bytes / MiB:.2f} MiB)"]
        if self.mode == "auto":
            lines.append(f"  auto chose {self.choice}: {self.reason}")
            if self.limit_bytes is not None:
                kept = ", ".join(f"{k} {v / MiB:.2f}" for k, v in self.reserved.items())
                lines.append(f"  limit {self.limit_bytes / MiB:.2f} MiB ({self.limit_source}); "
                             f"reserved besides activations (MiB): {kept}")
        for i, s in enumerate(self.segments):
            stored = (f"blocks {s.rebuilt}..{s.blocks - 1} stored" if s.rebuilt < s.blocks
                      else "none stored")
            lines.append(f"  segment {i}: {s.blocks} blocks, {s.rebuilt} rebuilt, {stored}, "
                         f"{s.bytes / MiB:.2f} MiB")
        return "\n".join(lines)


def plan(budget_bytes: int, segments: Sequence[SegmentCosts], outside_bytes: int = 0,
         input_shape: tuple[int, ...] = ()) -> MemoryPlan:
    """Store as many trailing blocks per segment as ``budget_bytes`` allows.

    Raises:
        ValueError: the budget is below what rebuilding everything needs (the message names it).
    """
    rebuilt = [len(s.costs) for s in segments]
    current = [s.bytes(n) for s, n in zip(segments, rebuilt)]
    minimum = outside_bytes + sum(current)
    if budget_bytes < minimum:
        raise ValueError(
            f"a memory budget of {budget_bytes / MiB:.2f} MiB is below the "
            f"{minimum / MiB:.2f} MiB that rebuilding every block needs at input shape "
            f"{input_shape}; give mib >= {minimum / MiB:.2f} (or a smaller batch)")
    total = minimum
    while True:
        best, best_score = None, None
        for j, seg in enumerate(segments):
            if rebuilt[j] == 0:
                continue
            cost = seg.bytes(rebuilt[j] - 1) - current[j]
            if total + cost > budget_bytes:
                continue
            score = seg.costs[rebuilt[j] - 1].flops / max(cost, 1)
            if best_score is None or score >= best_score:  # ties: the later segment
                best, best_score = j, score
        if best is None:
            break
        rebuilt[best] -= 1
        new = segments[best].bytes(rebuilt[best])
        total += new - current[best]
        current[best] = new
    return MemoryPlan(
        input_shape=tuple(input_shape), budget_bytes=int(budget_bytes), minimum_bytes=minimum,
        predicted_bytes=total, outside_bytes=outside_bytes,
        segments=tuple(SegmentPlan(len(s.costs), r, c)
                       for s, r, c in zip(segments, rebuilt, current)))
