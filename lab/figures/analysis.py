"""Figures of the ODE view: trajectory projection, feature maps, rebuild error, eigenvalues."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from lab.figures.style import PALETTE, color, finish


def _pca2(vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and the top-2 principal directions of the rows of ``vectors`` (n, d)."""
    mean = vectors.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(vectors - mean, full_matrices=False)
    basis = v[:2].T
    if basis.shape[1] < 2:
        basis = torch.cat([basis, torch.zeros_like(basis)], 1)
    return mean, basis


def trajectory_figure(tr, sample: int = 0) -> go.Figure:
    """Forward states (line) and rebuilt states (crosses), 2-D PCA per segment, one image.

    Each segment (the blocks between two transitions) has its own state size, so each gets its
    own projection onto the two main directions of its forward states.
    """
    fig = go.Figure()
    segments = sorted(set(tr.segment))
    for s in segments:
        idx = [j for j, g in enumerate(tr.segment) if g == s]
        fwd = [tr.inputs[idx[0]][sample]] + [tr.outputs[j][sample] for j in idx]
        fwd_m = torch.stack([f.reshape(-1).double() for f in fwd])
        mean, basis = _pca2(fwd_m)
        p = ((fwd_m - mean) @ basis).numpy()
        names = ["input"] + [tr.labels[j] for j in idx]
        fig.add_trace(go.Scatter(x=p[:, 0], y=p[:, 1], mode="lines+markers", text=names,
                                 name=f"segment {s + 1} forward",
                                 line=dict(color=PALETTE[s % len(PALETTE)])))
        if tr.rebuilt[idx[0]] is not None:
            reb = torch.stack([tr.rebuilt[j][sample].reshape(-1).double() for j in idx])
            q = ((reb - mean) @ basis).numpy()
            fig.add_trace(go.Scatter(
                x=q[:, 0], y=q[:, 1], mode="markers", text=[tr.labels[j] for j in idx],
                name=f"segment {s + 1} rebuilt", marker=dict(symbol="x", size=11,
                                                             color=PALETTE[s % len(PALETTE)])))
    fig.update_xaxes(title="principal direction 1")
    fig.update_yaxes(title="principal direction 2")
    rebuilt = any(r is not None for r in tr.rebuilt)
    return finish(fig, title="Trajectory through the blocks (forward, and rebuilt backwards)"
                  if rebuilt else "Trajectory through the blocks (forward only: no inverse)")


def feature_maps_figure(tr, block: int, *, sample: int = 0, channels: int = 8,
                        rebuilt: bool = False) -> go.Figure:
    """The first ``channels`` channels of the state leaving ``block`` (or its rebuilt input).

    ``rebuilt`` is ignored for a block that has no rebuilt input (a ResNet block cannot be
    inverted): the figure then shows, and says it shows, the output.
    """
    if not 0 <= block < len(tr.outputs):
        raise ValueError(f"block={block} is out of range: the model has {len(tr.outputs)} "
                         "blocks")
    rebuilt = rebuilt and tr.rebuilt[block] is not None
    state = (tr.rebuilt[block] if rebuilt else tr.outputs[block])[sample].float().cpu()
    n = min(channels, state.shape[0])
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"ch {c}" for c in range(n)],
                        horizontal_spacing=0.03, vertical_spacing=0.08)
    for c in range(n):
        fig.add_trace(go.Heatmap(z=state[c].numpy()[::-1], coloraxis="coloraxis"),
                      row=c // cols + 1, col=c % cols + 1)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(coloraxis=dict(colorscale="RdBu_r"))
    what = "rebuilt input of" if rebuilt else "output of"
    return finish(fig, title=f"Feature maps: {what} {tr.labels[block]}", height=180 * rows + 80)


def rebuild_error_figure(errors: Mapping[str, Sequence[float | None]],
                         labels: Sequence[str]) -> go.Figure:
    """Per-block relative rebuild error on a log axis; one line per setting.

    ``errors``: e.g. ``{"float32": [...], "float32, anchors 2": [...], "float64": [...]}``.
    """
    fig = go.Figure()
    for i, (name, errs) in enumerate(errors.items()):
        ys = [max(e, 1e-18) if e is not None else None for e in errs]
        dash = "dot" if "anchor" in name else "solid"
        fig.add_trace(go.Scatter(x=list(labels), y=ys, mode="lines+markers", name=name,
                                 line=dict(color=PALETTE[i % len(PALETTE)], dash=dash)))
    fig.update_yaxes(type="log", title="||rebuilt - forward|| / ||forward||", exponentformat="e")
    fig.update_xaxes(title="block (input rebuilt)")
    return finish(fig, title="How exact is the reversal? Rebuild error per block")


def eigenvalue_figure(spectra: Mapping[str, np.ndarray]) -> go.Figure:
    """Eigenvalues in the complex plane, one colour per family (e.g. Hamiltonian vs ResNet)."""
    fig = go.Figure()
    for i, (name, eig) in enumerate(spectra.items()):
        eig = np.asarray(eig)
        fig.add_trace(go.Scatter(x=eig.real, y=eig.imag, mode="markers", name=name,
                                 marker=dict(color=color(name.split()[0].lower(), i), size=6,
                                             opacity=0.7)))
    fig.add_vline(x=0, line=dict(color="grey", width=1))
    fig.update_xaxes(title="real part", zeroline=False)
    fig.update_yaxes(title="imaginary part", zeroline=False)
    return finish(fig, title="Eigenvalues of the ODE right-hand side's Jacobian")


def norm_growth_figure(growths: Sequence) -> go.Figure:
    """Feature and gradient norms per block at initialisation, one line per family."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["feature norm / stem output",
                                                        "gradient norm / last block's"])
    for i, g in enumerate(growths):
        c = color(g.family, i)
        x = list(range(1, len(g.feature_norm) + 1))
        fig.add_trace(go.Scatter(x=x, y=g.feature_norm, name=g.family, line=dict(color=c),
                                 legendgroup=g.family), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=g.grad_norm, name=g.family, line=dict(color=c),
                                 legendgroup=g.family, showlegend=False), row=1, col=2)
    fig.update_yaxes(type="log")
    fig.update_xaxes(title="block")
    return finish(fig, title="Norm growth with depth at initialisation")
