"""What the trainer watches besides the loss: rebuild drift, and memory (the optimizer's share,
and what to say when a run runs out of it).

The drift watch: every ``drift_every`` steps, in reversible, budget and auto modes, each
segment's input is rebuilt from its output on the current batch (``rebuild_errors``: no
gradients, nothing changed) and recorded as step metrics ``rebuild_error`` (the largest) and
``rebuild_error_s{j}``; above ``core.reversible.REBUILD_ERROR_THRESHOLD`` for the dtype a
``warning`` event is recorded and, with ``drift_anchor``, the segment keeps anchors from the
next step (every ``isqrt(n)`` blocks, halved at each further warning).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from core.training import distributed
from core.training.config import TrainConfig
from core.training.metrics import DRIFT_KEY, DRIFT_SEGMENT_KEY

MiB = 2**20


class DriftWatch:
    """The drift watch of one run; ``event(kind, message)`` records what a human should read."""

    def __init__(self, cfg: TrainConfig, event: Callable[[str, str], None],
                 dist: distributed.DistInfo):
        self.cfg, self.event, self.dist = cfg, event, dist
        self.drifting: set[int] = set()  # segments whose last rebuild error was too large

    def due(self, model: nn.Module, step: int) -> bool:
        cfg = self.cfg
        return (cfg.drift_every > 0 and step % cfg.drift_every == 0
                and cfg.memory in ("reversible", "budget", "auto")
                and hasattr(model, "rebuild_errors"))

    def measure(self, model: nn.Module, x: torch.Tensor, step: int) -> dict:
        """Each segment's rebuild error on this batch (mean over ranks) as step metrics; a
        warning above the dtype's threshold, and anchors with ``drift_anchor``."""
        from core.reversible import REBUILD_ERROR_THRESHOLD

        cfg, device = self.cfg, x.device
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp):
            errors = model.rebuild_errors(x)
        if not errors:
            return {}
        if self.dist.enabled:  # every rank decides the same anchors
            t = torch.tensor(errors, dtype=torch.float64, device=device)
            errors = (distributed.all_reduce_sum(t, self.dist) / self.dist.world_size).tolist()
        dtype = next(model.parameters()).dtype
        threshold = REBUILD_ERROR_THRESHOLD.get(dtype, REBUILD_ERROR_THRESHOLD[torch.float32])
        segments = model.reversible_segments()
        for j, err in enumerate(errors):
            above = err > threshold
            if above and (j not in self.drifting or cfg.drift_anchor):
                msg = (f"step {step}: segment {j}'s rebuild error {err:.2e} is above the "
                       f"{str(dtype).removeprefix('torch.')} threshold {threshold:.0e}")
                k_now, root = segments[j].anchor_every, math.isqrt(len(segments[j].blocks))
                if cfg.drift_anchor and k_now != 1:
                    k = max(1, root) if not k_now or k_now > root else max(1, k_now // 2)
                    model.set_segment_anchors(j, k)
                    msg += f"; segment {j} keeps anchors every {k} blocks from step {step + 1}"
                elif cfg.drift_anchor:
                    msg += f"; segment {j} keeps every block's state already"
                else:
                    msg += "; drift_anchor=True would keep anchors in it"
                self.event("warning", msg)
            if above:
                self.drifting.add(j)
            else:
                self.drifting.discard(j)
        return {DRIFT_KEY: max(errors),
                **{DRIFT_SEGMENT_KEY.format(j): e for j, e in enumerate(errors)}}


def optimizer_state_bytes(model: nn.Module, cfg: TrainConfig) -> int:
    """Bytes of state the trainer's optimizer keeps: SGD one momentum buffer per trainable
    parameter (none without momentum), AdamW two."""
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    if cfg.optimizer == "sgd":
        return trainable if cfg.momentum > 0 else 0
    return 2 * trainable


def oom_reason(cfg: TrainConfig, model: nn.Module, e: BaseException, step: int,
               shape: tuple[int, ...], ddp: bool) -> str:
    """Why a run failed out of memory at ``step``, and what would fit: auto, or reversible's
    (a ResNet: checkpoint's) activation bytes at this batch shape."""
    first = str(e).splitlines()[0] if str(e) else "out of memory"
    head = f"out of memory at step {step} with memory={cfg.memory!r} ({first})"
    if cfg.memory == "auto":
        if ddp:
            return (f"{head}; under DDP auto does not re-plan mid-run (the other ranks wait in "
                    "the gradient all-reduce): give memory_limit_mib below the device's "
                    "memory, or a smaller batch_size")
        return (f"{head}; re-planning once with less memory did not help: use a smaller "
                "batch_size or a lower memory_limit_mib")
    try:
        from core.estimate import estimate_activation_bytes

        est = estimate_activation_bytes(model, shape)
    except (TypeError, ValueError, AttributeError):  # a model of the caller's own
        return f"{head}; try memory='auto' or a smaller batch_size"
    kept = est.get(cfg.memory)
    now = f" where {cfg.memory!r} keeps {kept / MiB:.1f} MiB" if kept is not None else ""
    lean = "reversible" if "reversible" in est else "checkpoint"
    return (f"{head}: at batch shape {shape} memory={lean!r} keeps {est[lean] / MiB:.1f} MiB "
            f"of activations for backward{now}. Try memory='auto' (it plans the fastest mode "
            f"that fits the device) or memory={lean!r}, or a smaller batch_size")


def plan_line(plan: Any) -> str:
    """One line of an auto plan, for events."""
    if plan is None:
        return "no plan"
    rebuilt = sum(s.rebuilt for s in plan.segments)
    blocks = sum(s.blocks for s in plan.segments)
    where = f", {rebuilt} of {blocks} blocks rebuilt" if blocks else ""
    return f"{plan.choice}, {plan.predicted_bytes / MiB:.2f} MiB of activations{where}"
