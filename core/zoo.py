"""Named models (the paper's depths), ``create_model`` and ``list_models``."""

from __future__ import annotations

import dataclasses

from core.network import FAMILIES, NetworkConfig, ReversibleNet

# name -> (family, blocks per stage, widths: stem then one per stage). PAPER.md.
NAMED: dict[str, tuple[str, tuple[int, ...], tuple[int, ...]]] = {
    "hamiltonian-74": ("hamiltonian", (6, 6, 6), (32, 32, 64, 112)),
    "hamiltonian-110": ("hamiltonian", (9, 9, 9), (32, 32, 64, 128)),
    "hamiltonian-218": ("hamiltonian", (18, 18, 18), (32, 32, 64, 128)),
    "hamiltonian-1202": ("hamiltonian", (100, 100, 100), (32, 32, 64, 128)),
    "midpoint-62": ("midpoint", (5, 5, 5), (32, 32, 64, 112)),
    "midpoint-110": ("midpoint", (9, 9, 9), (32, 32, 64, 128)),
    "leapfrog-62": ("leapfrog", (5, 5, 5), (32, 32, 64, 112)),
    "leapfrog-110": ("leapfrog", (9, 9, 9), (32, 32, 64, 128)),
    "resnet-32": ("resnet", (5, 5, 5), (16, 16, 32, 64)),
    "resnet-110": ("resnet", (18, 18, 18), (16, 16, 32, 64)),
    "revnet-38": ("revnet", (3, 3, 3), (32, 32, 64, 112)),
    "revnet-110": ("revnet", (9, 9, 9), (32, 32, 64, 128)),
}
# "hamiltonian", ...: take blocks=, widths=, h= (defaults: NetworkConfig)
GENERIC = tuple(FAMILIES)
_OPTIONS = {f.name for f in dataclasses.fields(NetworkConfig)} - {"family"}


def list_models() -> list[str]:
    """Every name ``create_model`` accepts: the named models, then the generic families."""
    return [*NAMED, *GENERIC]


def model_config(name: str, **overrides) -> NetworkConfig:
    """The ``NetworkConfig`` of a model name, with keyword overrides applied."""
    if name in NAMED:
        family, blocks, widths = NAMED[name]
        base = dict(family=family, blocks=blocks, widths=widths)
    elif name in GENERIC:
        base = dict(family=name)
    else:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    unknown = sorted(set(overrides) - _OPTIONS)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for create_model({name!r}); "
                         f"allowed: {', '.join(sorted(_OPTIONS))}")
    return NetworkConfig(**{**base, **overrides})


def create_model(name: str, *, num_classes: int = 10, in_channels: int = 3,
                 memory: str = "standard", **overrides) -> ReversibleNet:
    """Build a model by name.

    Example::

        model = core.create_model("hamiltonian-74", num_classes=10, memory="reversible")
        model = core.create_model("hamiltonian", blocks=(2, 2, 2), widths=(8, 8, 16, 32),
                                  h=1.0, num_classes=10, in_channels=1)
    """
    cfg = model_config(name, num_classes=num_classes, in_channels=in_channels, memory=memory,
                       **overrides)
    return ReversibleNet(cfg)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def describe_models() -> list[dict]:
    """One row per registered model: name, family, blocks, widths, depth and parameters (for 10
    classes and 3 input channels): the models table of ``python -m lab models`` and Home."""
    rows = []
    for name in list_models():
        cfg = model_config(name)
        rows.append(dict(name=name, family=cfg.family, blocks="-".join(map(str, cfg.blocks)),
                         widths="-".join(map(str, cfg.widths)), depth=cfg.depth,
                         params=count_parameters(ReversibleNet(cfg))))
    return rows
