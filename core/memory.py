"""Memory modes: their names, which modes a model supports and its default, and the meters that
measure activation memory honestly (bytes saved for backward, peak memory).

The rule "which memory modes a model supports" has its home here: ``supported_modes`` and
``default_mode``, read by the network config, the training config, the command line, the Train
form, the Depth lab and the sweeps. A family's invertibility comes from one place, the block
registry ``core.blocks.FAMILIES`` (invertible = its block is a ``ReversibleBlock``).
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, get_args

import torch

from core.blocks import FAMILIES, ReversibleBlock

MemoryMode = Literal["standard", "checkpoint", "reversible", "budget", "auto"]
MEMORY_MODES: tuple[str, ...] = get_args(MemoryMode)
REBUILDING_MODES = ("reversible", "budget")  # rebuild activations: need invertible blocks
# "auto" suits every family: the network picks standard/budget/reversible (invertible blocks)
# or standard/checkpoint (the others) from the memory it may use; see ReversibleNet.


def check_memory_mode(mode: str) -> str:
    if mode not in MEMORY_MODES:
        raise ValueError(f"unknown memory mode {mode!r}; choose one of {', '.join(MEMORY_MODES)}")
    return mode


def _family(model: Any) -> str:
    """The block family of a family name, a ``NetworkConfig`` or a ``ReversibleNet``."""
    family = model if isinstance(model, str) else getattr(
        model, "family", getattr(getattr(model, "config", None), "family", None))
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r} (from {model!r}); choose one of "
                         f"{', '.join(FAMILIES)}")
    return family


def invertible(model: Any) -> bool:
    """Whether a family (name, ``NetworkConfig`` or ``ReversibleNet``) has invertible blocks."""
    return issubclass(FAMILIES[_family(model)], ReversibleBlock)


def invertible_families() -> tuple[str, ...]:
    return tuple(f for f in FAMILIES if invertible(f))


def supported_modes(model: Any) -> tuple[str, ...]:
    """The memory modes a family (name, ``NetworkConfig`` or ``ReversibleNet``) supports, in
    ``MEMORY_MODES`` order: all of them for invertible blocks, else those that rebuild nothing
    (and ``auto``, which then chooses between standard and checkpoint)."""
    ok = invertible(model)
    return tuple(m for m in MEMORY_MODES if ok or m not in REBUILDING_MODES)


def default_mode(model: Any) -> str:
    """The mode a run takes when none is given: ``reversible`` for invertible blocks (memory
    flat in depth), else ``standard``."""
    return "reversible" if invertible(model) else "standard"


def check_supported(mode: str, model: Any) -> str:
    """``mode`` if ``model``'s family supports it; else ValueError naming both and the choices."""
    check_memory_mode(mode)
    modes = supported_modes(model)
    if mode not in modes:
        family = _family(model)
        raise ValueError(f"memory={mode!r} needs invertible blocks: {family} blocks are not "
                         f"invertible, so {family} takes memory {' or '.join(map(repr, modes))}; "
                         f"for {mode!r} pick a family among {', '.join(invertible_families())}")
    return mode
def storage_key(t: torch.Tensor) -> tuple[str, int]:
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
        self._exclude = {storage_key(p) for p in exclude}
        self._seen: dict[tuple[str, int], int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        key = storage_key(t)
        if key not in self._exclude:
            self._seen[key] = t.untyped_storage().nbytes()
        return t

    @property
    def bytes(self) -> int:
        return sum(self._seen.values())

    def holds(self, t: torch.Tensor) -> bool:
        """Whether a tensor sharing ``t``'s storage was saved."""
        return storage_key(t) in self._seen

    def __enter__(self) -> SavedTensorMeter:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


def free_memory(device: torch.device | str) -> tuple[int, str]:
    """Bytes this process could still use on ``device`` now, and where the figure comes from.

    CUDA: ``torch.cuda.mem_get_info``'s free bytes plus what this process's caching allocator
    holds unused (reserved - allocated), since both can serve new tensors. Not run on a GPU in
    this project's tests (CPU-only machines): the CUDA branch is untested.
    CPU: the kernel's ``MemAvailable`` (``/proc/meminfo``), capped by a cgroup v2 limit
    (``memory.max - memory.current``) when the process runs under one; elsewhere the free
    physical pages (``os.sysconf``).
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + cached), (f"free CUDA memory on {device} (mem_get_info, plus this "
                                    "process's unused cache)")
    avail, source = None, "free RAM (sysconf)"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail, source = int(line.split()[1]) * 1024, "available RAM (MemAvailable)"
                break
    except OSError:
        pass
    if avail is None:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        used = int((cgroup / "memory.current").read_text())
        if limit != "max" and int(limit) - used < avail:
            avail, source = int(limit) - used, "the cgroup's memory limit (memory.max)"
    except (OSError, ValueError):
        pass
    return int(avail), source


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
def side_effect_free():
    """Measure without moving the caller's RNG (init, dropout draws), on one thread: tiny ops
    only pay a thread pool's synchronisation (30x slower on 2 busy cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads(threads)
