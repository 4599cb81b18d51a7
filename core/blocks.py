"""The blocks: Hamiltonian, Midpoint and Leapfrog ODE steps, the RevNet coupling, the ResNet block.

Every reversible block carries a pair of tensors ``(a, b)`` (two channel halves) and is made of
two additive *couplings*; coupling 1 updates ``a`` from ``b``, coupling 2 updates ``b`` from the
new ``a``. A coupling is ``new = p*old + q*other + r*f(other)`` with ``p != 0``, so it is undone
with one evaluation of ``f``. The blocks know nothing about memory; ``core.reversible`` uses
``block.couplings`` and the same convention to rebuild inputs during backward.

Maths (PAPER.md; ``K^T`` is the transposed convolution sharing ``K``'s weight, ``N`` batch norm,
``sigma`` ReLU):

- Hamiltonian: ``Y' = Y + h K1^T s(N1(K1 Z))``,  ``Z' = Z - h K2^T s(N2(K2 Y'))``
- Midpoint (two time steps): ``Y1 = Y-1 + 2h s(N((K1-K1^T) Y0))``,
  ``Y2 = Y0 + 2h s(N((K2-K2^T) Y1))``
- Leapfrog (two time steps): ``Y1 = 2Y0 - Y-1 - h^2 K1^T s(N(K1 Y0))``, and the same with K2
- RevNet: ``y1 = x1 + F(x2)``, ``y2 = x2 + G(y1)`` with F, G = BN-ReLU-conv-BN-ReLU-conv

``FAMILIES`` names each block class (the registry ``NetworkConfig.family`` picks from).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def batch_norm(channels: int, eps: float, momentum: float) -> nn.BatchNorm2d:
    """Batch norm with the project's settings (PAPER.md: eps 1e-3)."""
    return nn.BatchNorm2d(channels, eps=eps, momentum=momentum)


def _conv_weight(channels: int) -> nn.Parameter:
    """A square 3x3 kernel, initialised like ``nn.Conv2d`` (Kaiming-uniform, a=sqrt(5))."""
    w = torch.empty(channels, channels, 3, 3)
    nn.init.kaiming_uniform_(w, a=5**0.5)
    return nn.Parameter(w)


def _dropout(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()


class Coupling(nn.Module):
    """One additive sub-step on a pair: ``new = p*old + q*other + r*f(other)``.

    ``forward`` and ``inverse`` mirror each other; ``combine``/``uncombine`` take an already
    evaluated ``f(other)`` so that one evaluation can serve both the rebuild and the gradient.
    """

    def __init__(self, f: nn.Module, p: float = 1.0, q: float = 0.0, r: float = 1.0):
        super().__init__()
        if not isinstance(f, nn.Module):
            raise TypeError(f"Coupling(f): f must be a torch.nn.Module (its parameters are "
                            f"trained and rebuilt), got {type(f).__name__}")
        for name, v in (("p", p), ("q", q), ("r", r)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise TypeError(f"Coupling {name}={v!r} must be a finite number")
        if p == 0:
            raise ValueError("a coupling needs p != 0 to be invertible")
        self.f, self.p, self.q, self.r = f, float(p), float(q), float(r)

    def combine(self, old: Tensor, other: Tensor, f_other: Tensor) -> Tensor:
        if self.p == 1:
            out = torch.add(old, f_other, alpha=self.r)
        else:
            out = self.p * old + self.r * f_other
        return out if self.q == 0 else out.add_(other, alpha=self.q)

    def uncombine(self, new: Tensor, other: Tensor, f_other: Tensor) -> Tensor:
        out = torch.sub(new, f_other, alpha=self.r)
        if self.q != 0:
            out.sub_(other, alpha=self.q)
        return out if self.p == 1 else out.div_(self.p)

    def forward(self, old: Tensor, other: Tensor) -> Tensor:
        return self.combine(old, other, self.f(other))

    def inverse(self, new: Tensor, other: Tensor) -> Tensor:
        return self.uncombine(new, other, self.f(other))


class ReversibleBlock(nn.Module):
    """Two couplings on a pair: ``a2 = coupling_a(a, b)``, then ``b2 = coupling_b(b, a2)``.

    ``ReversibleBlock(Coupling(f), Coupling(g))`` makes any two shape-preserving modules a
    reversible block (``f`` maps ``b`` to ``a``'s shape, ``g`` maps ``a2`` to ``b``'s shape);
    subclasses pass nothing and set ``self.couplings`` themselves.
    """

    couplings: nn.ModuleList  # [updates a from b, updates b from the new a]

    def __init__(self, coupling_a: Coupling | None = None, coupling_b: Coupling | None = None):
        super().__init__()
        given = [c for c in (coupling_a, coupling_b) if c is not None]
        if not given:
            return
        if len(given) != 2 or not all(isinstance(c, Coupling) for c in given):
            raise TypeError("ReversibleBlock(coupling_a, coupling_b) takes two core.Coupling "
                            f"modules, got {type(coupling_a).__name__} and "
                            f"{type(coupling_b).__name__}; wrap a module f as Coupling(f)")
        self.couplings = nn.ModuleList(given)

    def forward(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        a2 = self.couplings[0](a, b)
        b2 = self.couplings[1](b, a2)
        return a2, b2

    def inverse(self, a2: Tensor, b2: Tensor) -> tuple[Tensor, Tensor]:
        b = self.couplings[1].inverse(b2, a2)
        a = self.couplings[0].inverse(a2, b)
        return a, b


# ---------------------------------------------------------------- sub-functions


class KTSigmaNK(nn.Module):
    """``K^T sigma(N(K x))`` (optionally ``N0`` on the input first): the Hamiltonian/Leapfrog term.

    ``K^T`` is ``conv_transpose2d`` with K's own weight: the exact adjoint of ``K``.
    """

    def __init__(self, channels: int, *, prenorm: bool, dropout: float, eps: float,
                 momentum: float):
        super().__init__()
        self.pre = batch_norm(channels, eps, momentum) if prenorm else nn.Identity()
        self.weight = _conv_weight(channels)
        self.norm = batch_norm(channels, eps, momentum)
        self.drop = _dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        z = F.conv2d(self.pre(x), self.weight, padding=1)
        z = self.drop(F.relu(self.norm(z)))
        return F.conv_transpose2d(z, self.weight, padding=1)


class SigmaNAntisym(nn.Module):
    """``sigma(N((K - K^T) x))``: the Midpoint term, with an antisymmetric operator.

    ``K - K^T`` is applied as one convolution whose kernel is ``W`` minus the adjoint kernel
    ``W^T`` (in/out swapped, spatially flipped); that equals ``conv(x, W) - conv_transpose(x, W)``
    exactly, at half the cost.
    """

    def __init__(self, channels: int, *, dropout: float, eps: float, momentum: float):
        super().__init__()
        self.weight = _conv_weight(channels)
        self.norm = batch_norm(channels, eps, momentum)
        self.drop = _dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight - self.weight.transpose(0, 1).flip(2, 3)
        return self.drop(F.relu(self.norm(F.conv2d(x, w, padding=1))))


class PreActResidual(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3: RevNet's F and G."""

    def __init__(self, channels: int, *, dropout: float, eps: float, momentum: float):
        super().__init__()
        self.body = nn.Sequential(
            batch_norm(channels, eps, momentum), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            batch_norm(channels, eps, momentum), nn.ReLU(), _dropout(dropout),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


# ---------------------------------------------------------------- the blocks


class HamiltonianBlock(ReversibleBlock):
    """Two-layer Hamiltonian (Verlet) step; ``channels`` is the width of one half."""

    def __init__(self, channels: int, h: float = 1.0, *, prenorm: bool = True,
                 dropout: float = 0.0, eps: float = 1e-3, momentum: float = 0.1):
        super().__init__()
        kw = dict(prenorm=prenorm, dropout=dropout, eps=eps, momentum=momentum)
        self.h = h
        self.couplings = nn.ModuleList([
            Coupling(KTSigmaNK(channels, **kw), r=h),    # Y' = Y + h K1^T s(N1(K1 Z))
            Coupling(KTSigmaNK(channels, **kw), r=-h),   # Z' = Z - h K2^T s(N2(K2 Y'))
        ])


class MidpointBlock(ReversibleBlock):
    """Two leapfrog-midpoint time steps on the pair ``(Y_{j-1}, Y_j)``."""

    def __init__(self, channels: int, h: float = 1.0, *, dropout: float = 0.0,
                 eps: float = 1e-3, momentum: float = 0.1):
        super().__init__()
        kw = dict(dropout=dropout, eps=eps, momentum=momentum)
        self.h = h
        self.couplings = nn.ModuleList([
            Coupling(SigmaNAntisym(channels, **kw), r=2 * h),  # Y_{j+1} = Y_{j-1} + 2h f1(Y_j)
            Coupling(SigmaNAntisym(channels, **kw), r=2 * h),  # Y_{j+2} = Y_j + 2h f2(Y_{j+1})
        ])


class LeapfrogBlock(ReversibleBlock):
    """Two leapfrog time steps of ``Y'' = -K^T s(N(K Y))`` on the pair ``(Y_{j-1}, Y_j)``."""

    def __init__(self, channels: int, h: float = 1.0, *, dropout: float = 0.0,
                 eps: float = 1e-3, momentum: float = 0.1):
        super().__init__()
        kw = dict(prenorm=False, dropout=dropout, eps=eps, momentum=momentum)
        self.h = h
        self.couplings = nn.ModuleList([
            # Y_{j+1} = -Y_{j-1} + 2 Y_j - h^2 K1^T s(N1(K1 Y_j))
            Coupling(KTSigmaNK(channels, **kw), p=-1.0, q=2.0, r=-h * h),
            # Y_{j+2} = -Y_j + 2 Y_{j+1} - h^2 K2^T s(N2(K2 Y_{j+1}))
            Coupling(KTSigmaNK(channels, **kw), p=-1.0, q=2.0, r=-h * h),
        ])


class RevNetBlock(ReversibleBlock):
    """RevNet additive coupling (Gomez et al. 2017), residuals scaled by ``h`` (1 = original)."""

    def __init__(self, channels: int, h: float = 1.0, *, dropout: float = 0.0,
                 eps: float = 1e-3, momentum: float = 0.1):
        super().__init__()
        kw = dict(dropout=dropout, eps=eps, momentum=momentum)
        self.h = h
        self.couplings = nn.ModuleList([
            Coupling(PreActResidual(channels, **kw), r=h),   # y1 = x1 + F(x2)
            Coupling(PreActResidual(channels, **kw), r=h),   # y2 = x2 + G(y1)
        ])


class ResNetBlock(nn.Module):
    """The standard basic block ``relu(x + h * BN(conv(relu(BN(conv(x))))))``; not invertible."""

    def __init__(self, channels: int, h: float = 1.0, *, dropout: float = 0.0,
                 eps: float = 1e-3, momentum: float = 0.1):
        super().__init__()
        self.h = h
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            batch_norm(channels, eps, momentum), nn.ReLU(), _dropout(dropout),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            batch_norm(channels, eps, momentum),
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(torch.add(x, self.body(x), alpha=self.h))


# Block families by name: what ``NetworkConfig.family`` chooses. A family is invertible (it
# supports the memory modes that rebuild activations) exactly when its block is a
# ``ReversibleBlock``; ``core.memory.supported_modes`` reads it from here.
FAMILIES: dict[str, type[nn.Module]] = {
    "hamiltonian": HamiltonianBlock,
    "midpoint": MidpointBlock,
    "leapfrog": LeapfrogBlock,
    "revnet": RevNetBlock,
    "resnet": ResNetBlock,
}
