"""The one way from a device name ("auto", "cpu", "cuda", "cuda:N") to a ``torch.device``."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda if available, else cpu; "cpu"; "cuda" or "cuda:N" when that GPU exists.

    Raises:
        ValueError: an unknown name, or a CUDA device this machine does not have (the message
            names the value and the choices).
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(name, str) or not (name == "cpu" or name == "cuda"
                                         or (name.startswith("cuda:") and name[5:].isdigit())):
        raise ValueError(f"device={name!r} is not a device; choose 'auto', 'cpu', 'cuda' or "
                         "'cuda:N'")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={name!r} but no CUDA device is available; use 'auto' or "
                             "'cpu'")
        count = torch.cuda.device_count()
        if name != "cuda" and int(name[5:]) >= count:
            raise ValueError(f"device={name!r} but this machine has {count} CUDA device(s), "
                             f"cuda:0 to cuda:{count - 1}; use one of those, 'auto' or 'cpu'")
    return torch.device(name)
