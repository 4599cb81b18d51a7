"""Stability: eigenvalues of each family's ODE right-hand side, of one block map, norm growth.

The ODE right-hand sides, built from a block's own sub-functions ``f_j`` (``core.blocks``):

- Hamiltonian, RevNet, Midpoint (first order on the pair): ``d(a, b)/dt = (s0 f0(b), s1 f1(a))``
  with ``s_j = r_j / |r_j|`` the sign of coupling j's step (Hamiltonian: ``(+, -)``), so the
  Jacobian is ``[[0, s0 J0], [s1 J1, 0]]``; for the Hamiltonian ``J_j = K^T D K`` is positive
  semidefinite and every eigenvalue is imaginary (PAPER.md).
- Leapfrog, ``Y'' = -K^T s(N(K Y))`` as a first-order system: ``d(Y, V)/dt = (V, -f0(Y))``.
- ResNet: ``dY/dt = body(Y)``, the residual branch of ``relu(Y + h body(Y))``.

Exact spectra come from ``torch.func.jacrev`` (a dense ``n x n`` Jacobian, ``n`` the state
size: keep ``n`` below a few thousand). Larger states use ``method="arnoldi"``: SciPy's ARPACK
(implicitly restarted Arnoldi, ``scipy.sparse.linalg.eigs``) on Jacobian-vector products from
``torch.func.jvp``, returning the ``k`` eigenvalues of largest modulus; it never forms the matrix.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.blocks import LeapfrogBlock, ResNetBlock, ReversibleBlock
from core.reversible import batch_norms, frozen_running_stats

EXACT_LIMIT = 6000  # largest state size for the dense Jacobian


def rhs(block: nn.Module) -> Callable[[Tensor], Tensor]:
    """The block family's ODE right-hand side as a function of one state tensor.

    Paired blocks take the pair concatenated along channels ``(B, 2c, H, W)``; ResNet blocks
    their single state.
    """
    if isinstance(block, LeapfrogBlock):
        f0 = block.couplings[0].f

        def leapfrog(z: Tensor) -> Tensor:
            y, v = z.chunk(2, dim=1)
            return torch.cat([v, -f0(y)], dim=1)
        return leapfrog
    if isinstance(block, ReversibleBlock):
        c0, c1 = block.couplings
        s0, s1 = float(np.sign(c0.r)), float(np.sign(c1.r))

        def paired(z: Tensor) -> Tensor:
            a, b = z.chunk(2, dim=1)
            return torch.cat([s0 * c0.f(b), s1 * c1.f(a)], dim=1)
        return paired
    if isinstance(block, ResNetBlock):
        return block.body
    raise TypeError(f"no ODE right-hand side for {type(block).__name__}; expected a block from "
                    "core.blocks")


def block_map(block: nn.Module) -> Callable[[Tensor], Tensor]:
    """One discrete step of the block as a function of one state tensor (pair concatenated)."""
    if isinstance(block, ReversibleBlock):
        def step(z: Tensor) -> Tensor:
            a, b = z.chunk(2, dim=1)
            return torch.cat(block(a, b), dim=1)
        return step
    if isinstance(block, ResNetBlock):
        return block
    raise TypeError(f"no block map for {type(block).__name__}")


@dataclass
class Spectrum:
    """Eigenvalues (complex numpy array) of a Jacobian at a state, and how they were found."""

    eigenvalues: np.ndarray
    method: str            # "exact" (dense jacrev + numpy eig) or "arnoldi" (k largest |lambda|)
    size: int              # n, the state size

    @property
    def max_real_ratio(self) -> float:
        """max |Re lambda| / max |lambda|: 0 for a purely imaginary spectrum."""
        mags = np.abs(self.eigenvalues)
        top = mags.max() if mags.size else 0.0
        return float(np.abs(self.eigenvalues.real).max() / top) if top > 0 else 0.0

    @property
    def moduli(self) -> np.ndarray:
        return np.abs(self.eigenvalues)


@contextlib.contextmanager
def _as_function(module: nn.Module):
    """Evaluate in the module's mode without changing its batch-norm running statistics."""
    with frozen_running_stats(batch_norms(module)):
        yield


def spectrum(fn: Callable[[Tensor], Tensor], z: Tensor, *, method: str = "auto", k: int = 20,
             module: nn.Module | None = None) -> Spectrum:
    """Eigenvalues of the Jacobian of ``fn`` (state -> state of the same shape) at ``z``.

    Args:
        fn: e.g. ``rhs(block)`` or ``block_map(block)``.
        z: the state; in float64 for clean spectra.
        method: "exact", "arnoldi", or "auto" (exact up to ``EXACT_LIMIT`` entries).
        k: eigenvalues to find with Arnoldi.
        module: the block behind ``fn``, so its running statistics stay untouched.
    """
    if method not in ("auto", "exact", "arnoldi"):
        raise ValueError(f"method={method!r}: choose auto, exact or arnoldi")
    n = z.numel()
    if method == "auto":
        method = "exact" if n <= EXACT_LIMIT else "arnoldi"
    shape = z.shape

    def flat(v: Tensor) -> Tensor:
        return fn(v.reshape(shape)).reshape(-1)

    guard = _as_function(module) if module is not None else contextlib.nullcontext()
    with guard:
        if method == "exact":
            if n > 4 * EXACT_LIMIT:
                raise ValueError(f"state of {n} numbers is too large for a dense Jacobian; use "
                                 "method='arnoldi' or a smaller input")
            jac = torch.func.jacrev(flat)(z.reshape(-1).detach())
            eig = np.linalg.eigvals(jac.detach().cpu().double().numpy())
            return Spectrum(eig, "exact", n)
        from scipy.sparse.linalg import LinearOperator, eigs

        z0 = z.reshape(-1).detach()

        def matvec(v: np.ndarray) -> np.ndarray:
            t = torch.as_tensor(np.real(v).copy(), dtype=z.dtype, device=z.device)
            _, out = torch.func.jvp(flat, (z0,), (t,))
            return out.detach().cpu().double().numpy()

        op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
        k = max(1, min(k, n - 2))
        eig = eigs(op, k=k, which="LM", return_eigenvectors=False, tol=1e-8)
        return Spectrum(np.asarray(eig), "arnoldi", n)


def rhs_spectrum(block: nn.Module, z: Tensor, **kw) -> Spectrum:
    """Eigenvalues of the Jacobian of the block family's ODE right-hand side at state ``z``."""
    return spectrum(rhs(block), z, module=block, **kw)


def block_spectrum(block: nn.Module, z: Tensor, **kw) -> Spectrum:
    """Eigenvalues of the Jacobian of one discrete block step at ``z`` (their moduli: growth)."""
    return spectrum(block_map(block), z, module=block, **kw)


@dataclass
class NormGrowth:
    """Per block, at one input: the state's norm forward and the loss gradient's norm."""

    family: str
    labels: list[str]
    feature_norm: list[float]   # ||state after block j|| / ||state after the stem||
    grad_norm: list[float]      # ||dL/d state after block j|| / ||dL/d final state||


def norm_growth(model: nn.Module, x: Tensor, y: Tensor | None = None) -> NormGrowth:
    """Feature and gradient norms through the blocks (standard autograd; stats untouched).

    The loss is cross-entropy against ``y`` (default: class 0 for every image).
    """
    from core.network import ReversibleNet, Transition

    if not isinstance(model, ReversibleNet):
        raise TypeError(f"norm_growth expects a core.ReversibleNet, got {type(model).__name__}")
    net = copy.deepcopy(model)
    net.set_memory_mode("standard")
    y = torch.zeros(x.shape[0], dtype=torch.long, device=x.device) if y is None else y
    states: list[Tensor] = []
    with frozen_running_stats(batch_norms(net)), torch.enable_grad():
        h = net.stem(x)
        paired = net.config.paired
        state = (h[:, : h.shape[1] // 2], h[:, h.shape[1] // 2:]) if paired else (h,)
        ref = h.detach().norm()
        for layer in net.layers:
            if isinstance(layer, Transition):
                state = layer(*state)
                continue
            for block in layer.blocks:
                out = block(*state)
                state = out if isinstance(out, tuple) else (out,)
                cat = torch.cat(state, dim=1)
                cat.retain_grad()
                states.append(cat)
                state = cat.chunk(2, dim=1) if paired else (cat,)
        logits = net.fc(F.relu(net.head_norm(states[-1])).mean(dim=(2, 3)))
        F.cross_entropy(logits, y).backward()
    labels = [f"block {j + 1}" for j in range(len(states))]
    g_last = states[-1].grad.norm().item() or 1.0
    return NormGrowth(net.config.family, labels,
                      [(s.detach().norm() / ref).item() for s in states],
                      [s.grad.norm().item() / g_last for s in states])
