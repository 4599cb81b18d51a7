"""Memory modes and the meters that measure activation memory honestly."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import resource
import sys
from collections.abc import Iterable, Sequence
from typing import Literal, get_args

import torch

MemoryMode = Literal["standard", "checkpoint", "reversible", "budget"]
MEMORY_MODES: tuple[str, ...] = get_args(MemoryMode)


def check_memory_mode(mode: str) -> str:
    if mode not in MEMORY_MODES:
        raise ValueError(f"unknown memory mode {mode!r}; choose one of {', '.join(MEMORY_MODES)}")
    return mode


def _storage_key(t: torch.Tensor) -> tuple[str, int]:
    """Identifies a tensor's storage: its address, or (meta device, empty) the storage object."""
    storage = t.untyped_storage()
    ptr = storage.data_ptr()
    return (str(t.device), ptr) if ptr else ("storage", storage._cdata)


class SavedTensorMeter:
    """Counts the bytes autograd saves for backward while the context is open.

    Every tensor packed through ``torch.autograd.graph.saved_tensors_hooks`` is counted once per
    distinct storage (a tensor saved by two ops counts once), and storages that belong to
    ``exclude`` (the model's parameters) are not counted: parameters are not activations.

    Example::

        with SavedTensorMeter(exclude=model.parameters()) as meter:
            loss = F.cross_entropy(model(x), y)
        meter.bytes  # activation bytes held until loss.backward()
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()):
        self._exclude = {_storage_key(p) for p in exclude}
        self._seen: dict[tuple[str, int], int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in self._exclude:
            self._seen[key] = t.untyped_storage().nbytes()
        return t

    @property
    def bytes(self) -> int:
        return sum(self._seen.values())

    def holds(self, t: torch.Tensor) -> bool:
        """Whether a tensor sharing ``t``'s storage was saved."""
        return _storage_key(t) in self._seen

    def __enter__(self) -> SavedTensorMeter:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (CPU memory high-water mark)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def peak_memory_bytes(device: torch.device | str) -> int:
    """CUDA max allocated on a GPU device, else the process's peak RSS."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return peak_rss_bytes()


@contextlib.contextmanager
def _side_effect_free():
    """Measure without moving the caller's RNG (init, dropout draws), on one thread: tiny ops
    only pay a thread pool's synchronisation (30x slower on 2 busy cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads(threads)


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
    network (at most 3 blocks per stage) are run on the ``meta`` device (shapes only, no
    arithmetic) at batch 1 and 2 (2 and 3 if the last feature map is one pixel), and the result
    extrapolated; ``reversible``-mode
    anchors add ``(n - 1) // k`` stored pairs per segment. Cost does not grow with depth or
    batch (hamiltonian-1202 at batch 128: well under a second).

    Args:
        model_or_config: a ``ReversibleNet`` (its config, dtype and anchors are used) or a
            ``NetworkConfig``.
        input_shape: ``(B, C, H, W)`` of one training batch.
        modes: memory modes to estimate; ``None``: every mode the family supports.
        dtype: parameter/activation dtype (default: the model's, or float32 for a config).

    Returns:
        ``{mode: bytes}``.
    """
    from core.network import NetworkConfig, ReversibleNet

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
    supported = [m for m in ("standard", "checkpoint", "reversible")
                 if m != "reversible" or cfg.paired]
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
    cached = _estimate(_config_key(cfg), shape, tuple(modes), dtype)
    return dict(cached)


@functools.lru_cache(maxsize=64)
def _estimate(cfg_json: str, shape: tuple[int, ...], modes: tuple[str, ...],
              dtype: torch.dtype) -> tuple[tuple[str, int], ...]:
    from core.network import NetworkConfig, ReversibleNet, ReversibleSegment

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

    with _side_effect_free():
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


def segment_context(model_or_config, input_shape: Sequence[int],
                    dtype: torch.dtype = torch.float32) -> list[tuple[tuple[bool, bool], ...]]:
    """Per reversible segment of the network: whether layers outside it keep its input halves
    (a, b) and its output halves for backward, as ``((in_a, in_b), (out_a, out_b))``.

    Measured on a short copy of the network (the answer does not depend on depth); the budget
    planner uses it so that a boundary pair kept by a neighbour is counted once.
    """
    from core.network import NetworkConfig, ReversibleNet

    cfg = (model_or_config.config if isinstance(model_or_config, ReversibleNet)
           else model_or_config)
    if not isinstance(cfg, NetworkConfig):
        raise TypeError(f"segment_context takes a ReversibleNet or a NetworkConfig, got "
                        f"{type(model_or_config).__name__}")
    return list(_context(_config_key(cfg), tuple(input_shape), dtype))


def _config_key(cfg) -> str:
    """The parts of a NetworkConfig that decide saved bytes, as a hashable JSON string."""
    return json.dumps(dataclasses.asdict(dataclasses.replace(cfg, memory="standard",
                                                             memory_mib=None)))


@functools.lru_cache(maxsize=64)
def _context(cfg_json: str, shape: tuple[int, ...], dtype: torch.dtype):
    from core.network import NetworkConfig, ReversibleNet, ReversibleSegment

    cfg = NetworkConfig(**json.loads(cfg_json))
    short = tuple(min(n, 2) for n in cfg.blocks)
    c = dataclasses.replace(cfg, blocks=short, memory="standard", anchor_every=0)
    with _side_effect_free():
        net = ReversibleNet(c).to(dtype).train()
    phase = [0]
    saved: dict[tuple[str, int], set[int]] = {}
    ins, outs = [], []

    def pre(seg, args):
        phase[0] += 1
        ins.append(tuple(_storage_key(t) for t in args))

    def post(seg, args, out):
        phase[0] += 1
        outs.append(tuple(_storage_key(t) for t in out))

    def pack(t):
        saved.setdefault(_storage_key(t), set()).add(phase[0])
        return t

    segs = [m for m in net.modules() if isinstance(m, ReversibleSegment)]
    handles = [h for m in segs for h in (m.register_forward_pre_hook(pre),
                                         m.register_forward_hook(post))]
    pools = len(cfg.blocks) - 1
    b1 = 1 if (shape[2] >> pools) * (shape[3] >> pools) > 1 else 2
    try:
        with _side_effect_free(), torch.enable_grad(), \
                torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = net(torch.zeros(b1, *shape[1:], dtype=dtype))
        del out
    finally:
        for h in handles:
            h.remove()
    result = []
    for j, (i_keys, o_keys) in enumerate(zip(ins, outs)):
        inside = 2 * j + 1
        result.append((tuple(any(p != inside for p in saved.get(k, ())) for k in i_keys),
                       tuple(any(p > inside for p in saved.get(k, ())) for k in o_keys)))
    return tuple(result)
