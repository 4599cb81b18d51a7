"""Multi-level growth (Chang et al., ICLR 2018): double every stage's blocks and halve h."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from core.network import ReversibleNet


def network_blocks(model: ReversibleNet) -> list[list[nn.Module]]:
    """The model's blocks grouped by stage, in the order the builder created them.

    A stage's first block may sit in the previous segment (``late_downsample``); counting by
    ``config.blocks`` over the flat block order assigns it to its own stage.
    """
    flat = [b for layer in model.layers if hasattr(layer, "blocks") for b in layer.blocks]
    stages, start = [], 0
    for n in model.config.blocks:
        stages.append(flat[start:start + n])
        start += n
    assert start == len(flat), "block count and config.blocks disagree"
    return stages


def _copy_into(dst: Tensor, src: Tensor, name: str) -> None:
    """Copy ``src`` into the leading corner of ``dst``; conv weights are zero elsewhere.

    Only a block that moves from a stage's previous width to its own width (the copy of a
    late-downsample block) has a larger ``dst``: zero kernel entries and batch norms at their
    fresh values (weight 1, bias 0, mean 0, variance 1) keep the padded channels at zero.
    """
    if dst.shape == src.shape:
        dst.copy_(src)
        return
    if dst.dim() != src.dim() or any(d < s for d, s in zip(dst.shape, src.shape)):
        raise ValueError(f"cannot embed {name} of shape {tuple(src.shape)} into "
                         f"{tuple(dst.shape)}")
    if dst.dim() == 4:
        dst.zero_()
    dst[tuple(slice(0, s) for s in src.shape)].copy_(src)


def _identity_prenorm(old: nn.Module, new: nn.Module) -> None:
    """Eval-mode identity for a pre-norm the copied block did not have (the network's first).

    The network's first Hamiltonian block has no input batch norm; its copy (the second block)
    does. Running mean 0 and variance ``1 - eps`` make that norm the identity in eval mode.
    """
    for (_, m_old), (_, m_new) in zip(old.named_modules(), new.named_modules()):
        if isinstance(m_old, nn.Identity) and isinstance(m_new, nn.BatchNorm2d):
            with torch.no_grad():
                m_new.running_mean.zero_()
                m_new.running_var.fill_(1.0 - m_new.eps)
                m_new.weight.fill_(1.0)
                m_new.bias.zero_()


def interpolate(model: ReversibleNet) -> ReversibleNet:
    """A new model with each block followed by a copy of itself, every step size halved.

    Block ``i`` of a stage becomes blocks ``2i`` and ``2i+1`` of the grown stage, both with the
    weights of block ``i`` and ``h/2``: the same ODE on a grid twice as fine, so (in eval mode)
    the output moves by O(h). The grown model is exactly what ``core.create_model`` builds from
    ``blocks=2*blocks, h=h/2`` (its ``config`` says so), so its checkpoints load like any other.

    Two approximations: the copy of a stage's first block, which the layout runs before the
    downsampling at the previous width, runs after it at the stage's width (weights
    zero-padded); and the copy of the network's very first Hamiltonian block gets an input batch
    norm that is the identity in eval mode only.
    """
    if not isinstance(model, ReversibleNet):
        raise TypeError(f"interpolate expects a core.ReversibleNet, got {type(model).__name__}")
    cfg = model.config
    new_cfg = dataclasses.replace(cfg, blocks=tuple(2 * n for n in cfg.blocks), h=cfg.h / 2)
    param = next(model.parameters())
    with torch.random.fork_rng(devices=[]):  # the throwaway init must not move the caller's RNG
        grown = ReversibleNet(new_cfg).to(device=param.device, dtype=param.dtype)
    grown.train(model.training)

    old_state = model.state_dict()
    new_state = grown.state_dict()
    with torch.no_grad():
        for name, t in new_state.items():  # stem, transitions, head: same names
            if not name.startswith("layers.") and name in old_state:
                t.copy_(old_state[name])
        for old_stage, new_stage in zip(network_blocks(model), network_blocks(grown)):
            for i, old in enumerate(old_stage):
                for new in (new_stage[2 * i], new_stage[2 * i + 1]):
                    src = old.state_dict()
                    for name, t in new.state_dict().items():
                        if name in src:
                            _copy_into(t, src[name], name)
                    _identity_prenorm(old, new)
    return grown
