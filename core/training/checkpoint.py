"""Checkpoint files of a run folder, each written atomically and read without unpickling.

A run folder holds:

- ``config.json``: the TrainConfig (``TrainConfig.to_dict()``);
- ``model.safetensors``: the latest weights and buffers (for inference and analysis), with the
  step in the safetensors metadata;
- ``state.pt``: everything a resume needs, self-contained: the model state again, optimizer,
  scheduler, RNG states, data position, running metrics. Only tensors, dicts, lists, numbers,
  strings, booleans and None, so ``torch.load(path, weights_only=True)`` reads it. It carries its
  own copy of the weights so that a kill between two file replacements can never pair new
  weights with an old optimizer state;
- ``meta.json``: step, epoch, position, status and the last epoch's metrics (for humans and the
  run store).

Each file goes to a temporary name in the same folder, is flushed and fsynced, then moved over
the old one with ``os.replace``; a crash leaves either the old or the new file, never half.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
STATE = "state.pt"
META = "meta.json"


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write a file through ``write(fileobj)`` so that readers see the old or the new file only."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform lets a folder be opened.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    data = (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()
    atomic_write(path, lambda f: f.write(data))


def write_config(run_dir: str | os.PathLike, config: dict[str, Any]) -> Path:
    """The run folder's ``config.json`` (a ``TrainConfig.to_dict()``), written atomically."""
    path = Path(run_dir) / CONFIG
    write_json(path, config)
    return path


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def cpu_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies (safetensors refuses shared or strided storage)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def save_checkpoint(run_dir: str | os.PathLike, *, weights: dict[str, torch.Tensor],
                    state: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write state.pt, then model.safetensors, then meta.json; return the weights' path."""
    run_dir = Path(run_dir)
    weights = cpu_tensors(weights)
    state = {**state, "model": weights}
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(run_dir / STATE, lambda f: f.write(buf.getbuffer()))
    blob = safetensors_bytes(weights, metadata={"step": str(meta.get("step", ""))})
    atomic_write(run_dir / WEIGHTS, lambda f: f.write(blob))
    write_json(run_dir / META, meta)
    return run_dir / WEIGHTS


def has_checkpoint(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / STATE).is_file()


def load_state(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The resume state; safe loading only (a file that needs pickled objects is refused)."""
    return torch.load(Path(run_dir) / STATE, map_location="cpu", weights_only=True)


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Weights from a ``model.safetensors`` file (or the run folder holding one)."""
    path = Path(path)
    return load_file(path / WEIGHTS if path.is_dir() else path)


def load_trained_model(run_dir: str | os.PathLike, *, num_classes: int | None = None,
                       in_channels: int | None = None) -> torch.nn.Module:
    """The network a run folder's checkpoint holds, its weights loaded, in eval mode.

    Only ``config.json``, ``meta.json`` and ``model.safetensors`` are read (no pickle). A
    multi-level run grows while it trains, so the network recorded in ``meta.json`` wins over
    ``config.json``'s model, which only says where training started; runs without it are built
    from ``config.json`` and need ``num_classes`` and ``in_channels`` (their data's). The model
    comes back in ``standard`` memory mode. Raises ValueError naming what is missing or wrong.
    """
    import core
    from core.network import NetworkConfig, ReversibleNet

    folder = Path(run_dir)
    if not (folder / WEIGHTS).is_file():
        raise ValueError(f"{folder} has no {WEIGHTS} yet; wait for the run's first checkpoint")
    meta = read_json(folder / META) if (folder / META).is_file() else {}
    if meta.get("network"):
        model = ReversibleNet(NetworkConfig(**{**meta["network"], "memory": "standard",
                                               "memory_mib": None}))
    else:
        if num_classes is None or in_channels is None:
            raise ValueError(f"{folder / META} records no network: pass num_classes and "
                             "in_channels (the run's dataset's) to build it from config.json")
        config = read_json(folder / CONFIG)
        model = core.create_model(config["model"], num_classes=num_classes,
                                  in_channels=in_channels, memory="standard",
                                  **config.get("model_kwargs", {}))
    try:
        model.load_state_dict(load_weights(folder), strict=True)
    except RuntimeError as e:
        raise ValueError(f"the weights in {folder / WEIGHTS} do not fit the recorded network: "
                         f"{str(e)[:200]}") from None
    return model.eval()
