"""Memory modes and the meters that measure activation memory honestly."""

from __future__ import annotations

import resource
import sys
from collections.abc import Iterable
from typing import Literal, get_args

import torch

MemoryMode = Literal["standard", "checkpoint", "reversible"]
MEMORY_MODES: tuple[str, ...] = get_args(MemoryMode)


def check_memory_mode(mode: str) -> str:
    if mode not in MEMORY_MODES:
        raise ValueError(f"unknown memory mode {mode!r}; choose one of {', '.join(MEMORY_MODES)}")
    return mode


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
        self._exclude = {p.untyped_storage().data_ptr() for p in exclude}
        self._seen: dict[tuple[str, int], int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self._exclude:
            self._seen[(str(t.device), ptr)] = storage.nbytes()
        return t

    @property
    def bytes(self) -> int:
        return sum(self._seen.values())

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
