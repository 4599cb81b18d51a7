"""The network: stem -> stages of blocks -> transitions -> head, built from one config dataclass."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.blocks import FAMILIES, batch_norm
from core.budget import MemoryPlan, MiB, SegmentCosts, plan
from core.memory import check_memory_mode, check_supported, free_memory, invertible
from core.probe import saved_bytes, surroundings
from core.reversible import (
    ReversibleSegment,
    batch_norms,
    check_budget_mib,
    checkpoint_block,
    frozen_running_stats,
)


@dataclass
class NetworkConfig:
    """Everything that defines a network; ``dataclasses.asdict`` gives its JSON form."""

    family: str = "hamiltonian"         # one of FAMILIES
    blocks: tuple[int, ...] = (2, 2, 2)  # blocks per stage
    widths: tuple[int, ...] = (16, 16, 32, 64)  # channels: stem, then one per stage (both halves)
    h: float = 1.0                      # ODE step size of every block
    in_channels: int = 3                # image channels (1 grey, 3 RGB)
    num_classes: int = 10               # outputs of the linear head
    dropout: float = 0.0                # dropout after each block activation (0 = none)
    bn_eps: float = 1e-3                # PAPER.md recipe
    bn_momentum: float = 0.1            # running-average momentum (paper: 0.01 for 80k steps)
    prenorm: bool = True                # Hamiltonian: BN on each sub-step input (official code)
    late_downsample: bool = True        # first block of stages 2.. runs at the previous width
    memory: str = "standard"            # standard | checkpoint | reversible | budget | auto
    anchor_every: int = 0               # reversible mode: keep every k-th block state (0 = off)
    memory_mib: float | None = None     # budget mode: MiB of activations kept for backward
    memory_limit_mib: float | None = None  # auto: MiB the whole step may use (None: the device's
    #                                        free memory, less a margin; see ReversibleNet)

    def __post_init__(self) -> None:
        self.blocks = tuple(self.blocks)
        self.widths = tuple(self.widths)
        self.validate()

    @property
    def paired(self) -> bool:
        """Invertible blocks on a pair of channel halves (``core.memory.invertible``)."""
        return invertible(self.family)

    def saved_bytes_key(self) -> str:
        """The fields that decide the bytes saved for backward, as a hashable JSON string."""
        return json.dumps(dataclasses.asdict(dataclasses.replace(
            self, memory="standard", memory_mib=None, memory_limit_mib=None)))

    @property
    def depth(self) -> int:
        """Weight layers: 4 convolutions per reversible block (2 per ResNet block), stem, head."""
        return (4 if self.paired else 2) * sum(self.blocks) + 2

    def validate(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; choose one of {', '.join(FAMILIES)}")
        if not self.blocks or any(not isinstance(n, int) or n < 1 for n in self.blocks):
            raise ValueError(f"blocks={self.blocks!r}: every stage needs a whole number of blocks "
                             ">= 1, e.g. blocks=(2, 2, 2)")
        if len(self.widths) != len(self.blocks) + 1:
            raise ValueError(f"widths={self.widths!r} must list the stem width and one width per "
                             f"stage: {len(self.blocks) + 1} numbers for blocks={self.blocks!r}")
        if any(not isinstance(w, int) or w < 1 for w in self.widths):
            raise ValueError(f"widths={self.widths!r}: every width must be a positive integer")
        if any(w2 < w1 for w1, w2 in zip(self.widths, self.widths[1:])):
            raise ValueError(f"widths={self.widths!r} must not decrease: transitions zero-pad "
                             "channels, they cannot drop them")
        if self.paired and any(w % 2 for w in self.widths):
            raise ValueError(f"widths={self.widths!r}: {self.family} blocks split channels into "
                             "two equal halves, so every width must be even")
        if not (isinstance(self.h, (int, float)) and math.isfinite(self.h) and self.h > 0):
            raise ValueError(f"h={self.h!r}: the step size must be a finite number > 0")
        if not isinstance(self.in_channels, int) or self.in_channels < 1:
            raise ValueError(f"in_channels={self.in_channels!r} must be a positive integer")
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"num_classes={self.num_classes!r} must be a positive integer")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout={self.dropout!r} must be in [0, 1)")
        check_supported(self.memory, self.family)
        if self.memory == "budget":
            check_budget_mib(self.memory_mib)
        elif self.memory_mib is not None:
            check_budget_mib(self.memory_mib)
        if self.memory_limit_mib is not None:
            check_budget_mib(self.memory_limit_mib, "memory_limit_mib")
        if not isinstance(self.anchor_every, int) or self.anchor_every < 0:
            raise ValueError(f"anchor_every={self.anchor_every!r} must be an integer >= 0")


class Transition(nn.Module):
    """2x2 average pooling (stride 2) and zero-padding of channels, applied to each half."""

    def __init__(self, c_in: int, c_out: int, pool: bool):
        super().__init__()
        self.pad, self.pool = c_out - c_in, pool

    def forward(self, *xs: Tensor) -> tuple[Tensor, ...]:
        if self.pool:
            xs = tuple(F.avg_pool2d(x, 2) for x in xs)
        if self.pad:
            xs = tuple(F.pad(x, (0, 0, 0, 0, 0, self.pad)) for x in xs)
        return xs


class _PlainSegment(nn.Module):
    """A run of non-invertible (ResNet) blocks on a single tensor; standard or checkpoint."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.mode = "standard"

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            if self.mode == "checkpoint" and torch.is_grad_enabled():
                x = checkpoint_block(block, x)
            else:
                x = block(x)
        return x


class ReversibleNet(nn.Module):
    """Stem -> [segment, transition]* -> head, for every block family.

    A *segment* is a maximal run of blocks between two transitions; in ``reversible`` mode it is
    the unit whose input is rebuilt, so only its output is kept.
    """

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = cfg = config
        eps, mom = cfg.bn_eps, cfg.bn_momentum
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, cfg.widths[0], 3, padding=1, bias=False),
            batch_norm(cfg.widths[0], eps, mom), nn.ReLU())
        split = 2 if cfg.paired else 1
        block_cls = FAMILIES[cfg.family]

        layers: list[nn.Module] = []
        run: list[nn.Module] = []
        width = cfg.widths[0]
        n_blocks = 0

        def make_block(w: int) -> nn.Module:
            nonlocal n_blocks
            kw = dict(dropout=cfg.dropout, eps=eps, momentum=mom)
            if cfg.family == "hamiltonian":
                kw["prenorm"] = cfg.prenorm and n_blocks > 0  # not in the network's first block
            n_blocks += 1
            return block_cls(w // split, cfg.h, **kw)

        live: int | None = None  # live channels per half of the next segment's input

        def close_run() -> None:
            if run:
                seg = (ReversibleSegment(run, "standard", anchor_every=cfg.anchor_every,
                                         input_live=live) if cfg.paired
                       else _PlainSegment(run))
                layers.append(seg)
                run.clear()

        for s, (n, w) in enumerate(zip(cfg.blocks, cfg.widths[1:])):
            first_here = 0
            if s > 0 and cfg.late_downsample:
                run.append(make_block(width))  # PAPER.md: runs at the previous stage's width
                first_here = 1
            if s > 0 or w != width:
                close_run()
                layers.append(Transition(width // split, w // split, pool=s > 0))
                live = width // split if w != width else None
                width = w
            run.extend(make_block(w) for _ in range(n - first_here))
        close_run()

        self.layers = nn.ModuleList(layers)
        self.num_pools = len(cfg.blocks) - 1
        self.head_norm = batch_norm(width, eps, mom)
        self.fc = nn.Linear(width, cfg.num_classes)
        self._plans: dict[tuple, MemoryPlan] = {}
        self._last_plan: MemoryPlan | None = None
        self._caps: dict[tuple, int] = {}  # auto: activation bytes allowed after an OOM re-plan
        self._optimizer_bytes: int | None = None  # auto: None = one buffer per parameter
        self._workspace_bytes = 0  # auto: workspace implied by a measured peak (observe_peak)
        self.set_memory_mode(cfg.memory, anchor_every=cfg.anchor_every, mib=cfg.memory_mib,
                             limit_mib=cfg.memory_limit_mib)

    # ------------------------------------------------------------------ memory modes
    @property
    def memory_mode(self) -> str:
        return self.config.memory

    def set_memory_mode(self, mode: str, anchor_every: int | None = None,
                        mib: float | None = None, limit_mib: float | None = None, *,
                        optimizer_bytes: int | None = None) -> ReversibleNet:
        """Switch between ``standard``, ``checkpoint``, ``reversible``, ``budget`` and ``auto``
        in place.

        ``anchor_every`` (reversible) keeps every k-th block state; see ReversibleSegment.
        ``mib`` (budget, required unless the config has ``memory_mib``): the MiB of activations
        the whole network may keep for backward; each segment then stores its last blocks and
        rebuilds the rest, planned once per input shape (``memory_plan()``).
        ``limit_mib`` (auto; None: the device's free memory less a margin): the MiB the whole
        training step may use. At each new input shape the network subtracts what the step
        needs besides activations (parameters, gradients, ``optimizer_bytes`` of optimizer
        state, default one buffer per parameter as SGD with momentum keeps, and a workspace
        allowance) and plans budget mode with the rest: everything stored when it fits,
        everything rebuilt at the minimum, the fastest plan between (ResNets: standard, else
        checkpoint). Below the minimum the forward raises ValueError naming both figures.
        """
        check_memory_mode(mode)
        new = dataclasses.replace(
            self.config, memory=mode,
            anchor_every=self.config.anchor_every if anchor_every is None else anchor_every,
            memory_mib=self.config.memory_mib if mib is None else mib,
            memory_limit_mib=self.config.memory_limit_mib if limit_mib is None else limit_mib)
        self.config = new  # replace() re-validates (e.g. resnet + reversible raises)
        if optimizer_bytes is not None:
            if isinstance(optimizer_bytes, bool) or not isinstance(optimizer_bytes, int) \
                    or optimizer_bytes < 0:
                raise ValueError(f"optimizer_bytes={optimizer_bytes!r} must be a whole number "
                                 "of bytes >= 0")
            self._optimizer_bytes = optimizer_bytes
        self._plans.clear()
        self._caps.clear()
        self._last_plan = None
        planned = mode in ("budget", "auto")  # the network plans for its segments
        for layer in self.layers:
            if isinstance(layer, ReversibleSegment):
                layer.set_memory_mode("standard" if planned else mode,
                                      anchor_every=new.anchor_every)
                layer.mode = "budget" if planned else mode
            elif isinstance(layer, _PlainSegment):
                layer.mode = "standard" if planned else mode
        return self

    def memory_plan(self, input_shape: tuple[int, ...] | None = None) -> MemoryPlan | None:
        """The budget or auto plan: per segment, which blocks are stored, the predicted bytes
        (auto: also what it chose and why).

        With ``input_shape`` (B, C, H, W) the plan for that shape (made now if needed); without,
        the plan of the last training forward (``None`` before one). Budget and auto modes.
        """
        if self.memory_mode not in ("budget", "auto"):
            raise ValueError(f"memory_plan() describes budget and auto modes; this model is in "
                             f"{self.memory_mode!r} mode (set_memory_mode('budget', mib=M) or "
                             "set_memory_mode('auto'))")
        if input_shape is None:
            return self._last_plan
        p = next(self.parameters())
        return self._plan_for(tuple(input_shape), p.dtype, p.device)

    def _plan_for(self, shape: tuple[int, ...], dtype: torch.dtype,
                  device: torch.device) -> MemoryPlan:
        """Plan budget/auto mode for inputs of ``shape``: every segment gets its blocks'
        measured costs at its real input shape; the layers around them come from
        ``core.probe``. ``dtype`` is the state's (the stem's output's) dtype."""
        key = (shape, dtype, device.type, self.training)
        if key in self._plans:
            self._last_plan = self._plans[key]
            return self._last_plan
        self.check_input(torch.empty(shape, device="meta"))
        cfg = self.config
        if not cfg.paired:  # auto for a ResNet: standard or checkpoint
            made = self._auto_plain(shape, dtype, device, key)
            self._plans[key] = self._last_plan = made
            return made
        outside, context = surroundings(ReversibleNet, cfg, shape, dtype)
        segments, costs = [], []
        c, h, w = cfg.widths[0] // 2, shape[2], shape[3]
        for layer in self.layers:
            if isinstance(layer, Transition):
                h, w = (h // 2, w // 2) if layer.pool else (h, w)
                c += layer.pad
            else:
                a = torch.zeros(shape[0], c, h, w, dtype=dtype, device=device)
                ins, outs = context[len(segments)]
                costs.append(layer.segment_costs(a, a, input_saved_outside=ins,
                                                 output_saved_outside=outs))
                segments.append((layer, layer._plan_key(a, a)))
        if cfg.memory == "auto":
            made = self._auto_paired(shape, dtype, device, key, costs, outside)
        else:
            made = plan(int(cfg.memory_mib * MiB), costs, outside, input_shape=shape)
        for (layer, seg_key), seg_plan in zip(segments, made.segments):
            layer._plans[seg_key] = seg_plan
        self._plans[key] = self._last_plan = made
        return made

    # -- auto: the engine decides --------------------------------------------------------
    def _auto_limit(self, device: torch.device, largest: int) -> tuple[int, str, dict[str, int]]:
        """(activation bytes the plan may use, where the limit came from, what is reserved and
        under "_limit" the limit), for a batch whose largest activation is ``largest`` bytes."""
        params = list(self.parameters())
        param_bytes = sum(p.numel() * p.element_size() for p in params)
        grad_bytes = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
        reserved = {
            "parameters": param_bytes, "gradients": grad_bytes,
            "optimizer state": grad_bytes if self._optimizer_bytes is None
            else self._optimizer_bytes,
            # The backward of one coupling holds the pair being rebuilt, its two gradients and
            # one evaluation of f: 4 of the largest activation. A measured step peak replaces
            # it when larger (observe_peak, CUDA).
            "workspace": max(4 * largest, self._workspace_bytes),
        }
        if self.config.memory_limit_mib is not None:
            limit = int(self.config.memory_limit_mib * MiB)
            source = f"memory_limit_mib={self.config.memory_limit_mib:g}"
        else:
            free, source = free_memory(device)
            # The parameters are on the device already, so the free figure excludes them.
            held = param_bytes if next(self.parameters()).device.type == device.type else 0
            margin = max(256 * MiB, free // 10)  # allocator slack, other processes' growth
            reserved["margin"] = margin
            limit = free + held
            source = f"{source}: {free / MiB:.0f} MiB free, plus {held / MiB:.1f} MiB of " \
                     f"parameters already held; margin max(256 MiB, 10%)"
        return limit - sum(reserved.values()), source, {**reserved, "_limit": limit}

    def _largest_activation(self, shape: tuple[int, ...], dtype: torch.dtype) -> int:
        """Bytes of the largest activation (both halves) of a batch of ``shape``."""
        cfg, (batch, _, h, w) = self.config, shape
        size = torch.empty((), dtype=dtype).element_size()
        return max(batch * width * (h >> s) * (w >> s) * size
                   for s, width in enumerate((cfg.widths[0], *cfg.widths[1:])))

    def _auto_paired(self, shape, dtype, device, key, costs: list[SegmentCosts],
                     outside: int) -> MemoryPlan:
        available, source, reserved = self._auto_limit(
            device, self._largest_activation(shape, dtype))
        limit = reserved.pop("_limit")
        everything = plan(2**62, costs, outside, input_shape=shape).predicted_bytes
        minimum = outside + sum(sc.bytes(len(sc.costs)) for sc in costs)
        if available < minimum:
            raise ValueError(self._below_minimum(shape, minimum, reserved, limit, source,
                                                 "the reversible minimum"))
        budget = min(available, self._caps.get(key, available))
        made = plan(budget, costs, outside, input_shape=shape)
        rebuilt = sum(s.rebuilt for s in made.segments)
        blocks = sum(s.blocks for s in made.segments)
        if rebuilt == 0:
            choice, why = "standard", (f"every activation fits ({everything / MiB:.2f} MiB "
                                       f"of {budget / MiB:.2f} MiB): standard speed")
        elif rebuilt == blocks:
            choice, why = "reversible", (f"only the minimum fits ({minimum / MiB:.2f} MiB of "
                                         f"{budget / MiB:.2f} MiB): every block rebuilt")
        else:
            choice, why = "budget", (f"{budget / MiB:.2f} MiB lies between the minimum "
                                     f"({minimum / MiB:.2f}) and storing everything "
                                     f"({everything / MiB:.2f}): {blocks - rebuilt} of "
                                     f"{blocks} blocks stored, the most rebuild time saved "
                                     "per byte first")
        if key in self._caps:
            why += f" (re-planned after running out of memory: capped at {budget / MiB:.2f} MiB)"
        return dataclasses.replace(made, mode="auto", choice=choice, limit_bytes=limit,
                                   limit_source=source, reserved=reserved, reason=why)

    def _auto_plain(self, shape, dtype, device, key) -> MemoryPlan:
        """auto for non-invertible blocks: standard if it fits, else checkpoint."""
        est = saved_bytes(ReversibleNet, self.config, shape, ("standard", "checkpoint"), dtype)
        available, source, reserved = self._auto_limit(
            device, self._largest_activation(shape, dtype))
        limit = reserved.pop("_limit")
        budget = min(available, self._caps.get(key, available))
        minimum = est["checkpoint"]
        if budget < minimum:
            raise ValueError(self._below_minimum(shape, minimum, reserved, limit, source,
                                                 "checkpoint's need"))
        choice = "standard" if est["standard"] <= budget else "checkpoint"
        why = (f"standard keeps {est['standard'] / MiB:.2f} MiB, checkpoint "
               f"{est['checkpoint'] / MiB:.2f} MiB; {budget / MiB:.2f} MiB may be used")
        return MemoryPlan(input_shape=shape, budget_bytes=budget, minimum_bytes=minimum,
                          predicted_bytes=est[choice], outside_bytes=0, mode="auto",
                          choice=choice, limit_bytes=limit, limit_source=source,
                          reserved=reserved, reason=why)

    def _below_minimum(self, shape, minimum: int, reserved: dict[str, int], limit: int,
                       source: str, what: str) -> str:
        need = minimum + sum(reserved.values())
        parts = ", ".join(f"{k} {v / MiB:.1f}" for k, v in reserved.items())
        return (f"memory='auto' cannot train input shape {shape} within the limit of "
                f"{limit / MiB:.1f} MiB ({source}): {what} is {minimum / MiB:.1f} MiB of "
                f"activations, plus {parts} MiB besides them, {need / MiB:.1f} MiB in all. "
                "Give a larger memory_limit_mib (--memory-limit-mib), a smaller batch, or "
                "free the device")

    def replan_smaller(self) -> MemoryPlan:
        """auto, after running out of memory: plan the last input shape again with half the
        activation bytes above the minimum (a ResNet: checkpoint instead of standard).

        Raises:
            ValueError: not in auto mode, no plan yet, or the plan is at its minimum already.
        """
        last = self._last_plan
        if self.memory_mode != "auto" or last is None:
            raise ValueError("replan_smaller() re-plans auto mode after a training forward; "
                             f"this model is in {self.memory_mode!r} mode"
                             + ("" if last else " with no plan yet"))
        if last.predicted_bytes <= last.minimum_bytes:
            raise ValueError(f"the auto plan for input {last.input_shape} is at its minimum "
                             f"already ({last.minimum_bytes / MiB:.2f} MiB of activations, "
                             f"{last.choice}); use a smaller batch")
        key = next(k for k, v in self._plans.items() if v is last)
        if self.config.paired:
            cap = last.minimum_bytes + (last.predicted_bytes - last.minimum_bytes) // 2
        else:
            cap = last.minimum_bytes  # checkpoint
        self._caps[key] = cap
        del self._plans[key]
        shape, dtype, _, _ = key
        return self._plan_for(shape, dtype, next(self.parameters()).device)

    def observe_peak(self, peak_bytes: int) -> MemoryPlan | None:
        """auto: a measured step peak (CUDA ``max_memory_allocated``) over the limit: take the
        workspace it implies, plan the last shape again and return the new plan (else None).

        Untested on a GPU here (CPU-only test machines); the CPU's peak RSS is no allocation
        peak, so the trainer calls this on CUDA only.
        """
        last = self._last_plan
        if self.memory_mode != "auto" or last is None or last.limit_bytes is None:
            return None
        if peak_bytes <= last.limit_bytes:
            return None
        known = sum(v for k, v in last.reserved.items() if k not in ("workspace", "margin"))
        self._workspace_bytes = max(self._workspace_bytes,
                                    peak_bytes - known - last.predicted_bytes)
        self._plans.clear()
        shape, dtype = last.input_shape, next(self.parameters()).dtype
        return self._plan_for(shape, dtype, next(self.parameters()).device)

    # -- the drift watch -----------------------------------------------------------------
    def reversible_segments(self) -> list[ReversibleSegment]:
        return [layer for layer in self.layers if isinstance(layer, ReversibleSegment)]

    def set_segment_anchors(self, index: int, anchor_every: int) -> None:
        """Keep every k-th block state in reversible segment ``index`` from the next forward on
        (budget and auto modes plan again: anchors cost memory)."""
        segs = self.reversible_segments()
        if not 0 <= index < len(segs):
            raise ValueError(f"segment {index!r}: this model has segments 0..{len(segs) - 1}")
        segs[index].set_anchor_every(anchor_every)
        self._plans.clear()

    def rebuild_errors(self, x: Tensor) -> list[float]:
        """Per reversible segment: its input rebuilt from its output (what this mode rebuilds:
        all blocks in reversible mode, the planned prefix in budget/auto, nothing otherwise)
        against the stored forward input, ``||rebuilt - input|| / ||input||``, on batch ``x``
        in the model's current mode. Nothing changes (no gradients, running statistics and
        RNG untouched); costs one forward plus the rebuild."""
        if not self.config.paired:
            return []
        self.check_input(x)
        mode = self.memory_mode
        devices = [x.device] if x.device.type == "cuda" else []
        errors = []
        with torch.no_grad(), frozen_running_stats(batch_norms(self)), \
                torch.random.fork_rng(devices=devices, device_type="cuda"):
            h = self.stem(x)
            if h.device.type != "meta" and torch.is_autocast_enabled(h.device.type):
                h = h.float()
            c = h.shape[1] // 2
            state: tuple[Tensor, ...] = (h[:, :c], h[:, c:])
            for layer in self.layers:
                if isinstance(layer, ReversibleSegment):
                    n = len(layer.blocks)
                    if mode in ("budget", "auto"):
                        seg_plan = layer._plans.get(layer._plan_key(*state))
                        n = seg_plan.rebuilt if seg_plan is not None else n
                    elif mode != "reversible":
                        n = 0
                    err, state = layer._rebuild_error(*state, n=n)
                    errors.append(err)
                else:
                    state = layer(*state)
        return errors

    # ------------------------------------------------------------------ forward
    def check_input(self, x: Tensor) -> None:
        cfg = self.config
        if x.dim() != 4:
            raise ValueError(f"expected a batch of images (B, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != cfg.in_channels:
            raise ValueError(
                f"this model takes {cfg.in_channels}-channel images (in_channels="
                f"{cfg.in_channels}) but got {x.shape[1]} channels (input shape "
                f"{tuple(x.shape)}); build the model with in_channels={x.shape[1]} or convert "
                "the images")
        smallest = 2 ** self.num_pools
        if min(x.shape[2:]) < smallest:
            raise ValueError(f"images of {x.shape[2]}x{x.shape[3]} pixels are too small for "
                             f"{self.num_pools} poolings; use at least {smallest}x{smallest}")

    def features(self, x: Tensor) -> Tensor:
        """Everything but the classifier: (B, C, H, W) -> (B, widths[-1], H', W')."""
        self.check_input(x)
        shape = tuple(x.shape)
        x = self.stem(x)
        if self.config.paired:
            if x.device.type != "meta" and torch.is_autocast_enabled(x.device.type):
                x = x.float()  # keep the state in fp32 so reversal stays exact under autocast
            if self.config.memory in ("budget", "auto") and torch.is_grad_enabled():
                self._plan_for(shape, x.dtype, x.device)
            c = x.shape[1] // 2
            state: tuple[Tensor, ...] = (x[:, :c], x[:, c:])
        else:
            if self.config.memory == "auto":
                mode = (self._plan_for(shape, x.dtype, x.device).choice
                        if torch.is_grad_enabled() else "standard")
                for layer in self.layers:
                    if isinstance(layer, _PlainSegment):
                        layer.mode = mode
            state = (x,)
        for layer in self.layers:
            out = layer(*state)
            state = out if isinstance(out, tuple) else (out,)
        return torch.cat(state, dim=1) if len(state) > 1 else state[0]

    def forward(self, x: Tensor) -> Tensor:
        z = F.relu(self.head_norm(self.features(x)))
        return self.fc(z.mean(dim=(2, 3)))

    def extra_repr(self) -> str:
        c = self.config
        return (f"family={c.family}, blocks={c.blocks}, widths={c.widths}, h={c.h}, "
                f"memory={c.memory}")


