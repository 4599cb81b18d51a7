"""The network: stem -> stages of blocks -> transitions -> head, built from one config dataclass."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.blocks import FAMILIES, batch_norm
from core.budget import MemoryPlan, MiB, plan
from core.memory import (
    SavedTensorMeter,
    check_memory_mode,
    check_supported,
    invertible,
    side_effect_free,
    storage_key,
)
from core.reversible import ReversibleSegment, check_budget_mib, checkpoint_block


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
    memory: str = "standard"            # "standard" | "checkpoint" | "reversible" | "budget"
    anchor_every: int = 0               # reversible mode: keep every k-th block state (0 = off)
    memory_mib: float | None = None     # budget mode: MiB of activations kept for backward

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
        return json.dumps(dataclasses.asdict(dataclasses.replace(self, memory="standard",
                                                                 memory_mib=None)))

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
        self.set_memory_mode(cfg.memory, anchor_every=cfg.anchor_every, mib=cfg.memory_mib)

    # ------------------------------------------------------------------ memory modes
    @property
    def memory_mode(self) -> str:
        return self.config.memory

    def set_memory_mode(self, mode: str, anchor_every: int | None = None,
                        mib: float | None = None) -> ReversibleNet:
        """Switch between ``standard``, ``checkpoint``, ``reversible`` and ``budget`` in place.

        ``anchor_every`` (reversible) keeps every k-th block state; see ReversibleSegment.
        ``mib`` (budget, required unless the config has ``memory_mib``): the MiB of activations
        the whole network may keep for backward; each segment then stores its last blocks and
        rebuilds the rest, planned once per input shape (``memory_plan()``).
        """
        check_memory_mode(mode)
        new = dataclasses.replace(
            self.config, memory=mode,
            anchor_every=self.config.anchor_every if anchor_every is None else anchor_every,
            memory_mib=self.config.memory_mib if mib is None else mib)
        self.config = new  # replace() re-validates (e.g. resnet + reversible raises)
        self._plans.clear()
        self._last_plan = None
        for layer in self.layers:
            if isinstance(layer, ReversibleSegment):
                layer.set_memory_mode(mode if mode != "budget" else "standard",
                                      anchor_every=new.anchor_every)
                layer.mode = mode  # budget: the network plans for its segments
            elif isinstance(layer, _PlainSegment):
                layer.mode = mode
        return self

    def memory_plan(self, input_shape: tuple[int, ...] | None = None) -> MemoryPlan | None:
        """The budget plan: per segment, which blocks are stored, and the predicted bytes.

        With ``input_shape`` (B, C, H, W) the plan for that shape (made now if needed); without,
        the plan of the last training forward (``None`` before one). Budget mode only.
        """
        if self.memory_mode != "budget":
            raise ValueError(f"memory_plan() describes budget mode; this model is in "
                             f"{self.memory_mode!r} mode (set_memory_mode('budget', mib=M))")
        if input_shape is None:
            return self._last_plan
        p = next(self.parameters())
        return self._plan_for(tuple(input_shape), p.dtype, p.device)

    def _plan_for(self, shape: tuple[int, ...], dtype: torch.dtype,
                  device: torch.device) -> MemoryPlan:
        """Plan budget mode for inputs of ``shape``: every segment gets its blocks' measured
        costs at its real input shape; the layers around them come from ``_surroundings``."""
        key = (shape, dtype, device.type, self.training)
        if key in self._plans:
            self._last_plan = self._plans[key]
            return self._last_plan
        self.check_input(torch.empty(shape, device="meta"))
        cfg = self.config
        outside, context = _surroundings(cfg.saved_bytes_key(), shape, dtype)
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
        made = plan(int(cfg.memory_mib * MiB), costs, outside, input_shape=shape)
        for (layer, seg_key), seg_plan in zip(segments, made.segments):
            layer._plans[seg_key] = seg_plan
        self._plans[key] = self._last_plan = made
        return made

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
            if self.config.memory == "budget" and torch.is_grad_enabled():
                self._plan_for(shape, x.dtype, x.device)
            c = x.shape[1] // 2
            state: tuple[Tensor, ...] = (x[:, :c], x[:, c:])
        else:
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



@functools.lru_cache(maxsize=64)
def _surroundings(cfg_json: str, shape: tuple[int, ...], dtype: torch.dtype
                  ) -> tuple[int, tuple[tuple[tuple[bool, bool], tuple[bool, bool]], ...]]:
    """What the layers around the reversible segments (stem, transitions, head) keep for
    backward at input ``shape``: their bytes, and per segment whether they keep its input halves
    and its output halves, ``((in_a, in_b), (out_a, out_b))``, so that the budget planner counts
    a boundary pair kept by a neighbour once.

    Measured on a short copy of the network (at most 2 blocks per stage: neither answer depends
    on depth) at batch b1 and b1 + 1; the bytes, affine in the batch, are extrapolated. The
    bytes are those a ``reversible``-mode forward saves beyond each segment's output pair.
    """
    cfg = NetworkConfig(**json.loads(cfg_json))
    short = dataclasses.replace(cfg, blocks=tuple(min(n, 2) for n in cfg.blocks),
                                memory="standard", memory_mib=None, anchor_every=0)
    with side_effect_free():
        net = ReversibleNet(short).to(dtype).train()
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
