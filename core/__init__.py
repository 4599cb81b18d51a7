"""Reversible, ODE-inspired deep networks (Chang et al., AAAI 2018) in PyTorch.

The front door: ``create_model``, ``list_models``, the blocks, the network config, and the
memory meter. Data, training and analysis live in ``core.data``, ``core.training`` and
``core.analysis``.
"""

from core.blocks import (
                         Coupling,
                         HamiltonianBlock,
                         LeapfrogBlock,
                         MidpointBlock,
                         ResNetBlock,
                         ReversibleBlock,
                         RevNetBlock,
)
from core.budget import MemoryPlan
from core.estimate import estimate_activation_bytes
from core.memory import MEMORY_MODES, SavedTensorMeter
from core.network import NetworkConfig, ReversibleNet
from core.reversible import ReversibleSegment
from core.zoo import count_parameters, create_model, list_models, model_config

__all__ = [
    "MEMORY_MODES", "Coupling", "HamiltonianBlock", "LeapfrogBlock", "MidpointBlock",
    "NetworkConfig", "MemoryPlan", "ResNetBlock", "RevNetBlock", "ReversibleBlock", "ReversibleNet",
    "ReversibleSegment", "SavedTensorMeter", "count_parameters", "create_model",
    "estimate_activation_bytes", "list_models", "model_config",
]


def __getattr__(name: str):
    """``core.data`` / ``core.training`` on first use, so ``import core`` stays light."""
    if name in ("data", "training", "analysis", "images"):
        import importlib

        return importlib.import_module(f"core.{name}")
    raise AttributeError(f"module 'core' has no attribute {name!r}")
