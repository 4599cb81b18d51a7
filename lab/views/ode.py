"""What the ODE reversal page shows: a model (untrained or a run's weights), images, analyses.

Plain Python over ``core.analysis`` and the run store (no Streamlit): the page picks, this
module loads and computes, ``lab.figures.analysis`` draws.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import core
from core.analysis import Trajectory, rhs_spectrum, trajectory
from core.blocks import HamiltonianBlock, ResNetBlock
from lab.runs.store import Store

DATASETS = ("digits", "shapes")  # embedded: no download needed
UNTRAINED = "untrained"
CROP = 4  # spatial side of the state crop whose Jacobian is computed exactly


@dataclass
class LoadedModel:
    model: core.ReversibleNet
    dataset: str
    dataset_options: dict
    title: str


def choices(store: Store | None = None) -> dict[str, str]:
    """Key -> label: untrained families on each embedded dataset, then completed runs."""
    out = {f"{UNTRAINED}:{fam}:{ds}": f"untrained {fam} (2-2-2) for {ds}"
           for ds in DATASETS for fam in ("hamiltonian", "midpoint", "leapfrog", "revnet",
                                          "resnet")}
    if store is not None:
        for run in store.list_runs(status="completed"):
            if (store.run_dir(run.id) / "model.safetensors").exists() and run.model:
                out[f"run:{run.id}"] = (f"run {run.id} · {run.name or run.model} on "
                                        f"{run.dataset}")
    return out


def load(key: str, store: Store | None = None) -> LoadedModel:
    """Build the model of a choice key; a run's weights are read with safetensors only."""
    kind, _, rest = key.partition(":")
    if kind == UNTRAINED:
        family, _, dataset = rest.partition(":")
        if dataset not in DATASETS:
            raise ValueError(f"dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
        data = core.data.load_dataset(dataset, augment=False, **_small(dataset))
        torch.manual_seed(0)
        model = core.create_model(family, num_classes=data.num_classes,
                                  in_channels=data.in_channels)
        return LoadedModel(model.eval(), dataset, _small(dataset), f"untrained {family}")
    if kind == "run" and store is not None:
        return load_run(store, rest)
    raise ValueError(f"unknown model choice {key!r}")


def _small(dataset: str) -> dict:
    return {"train_size": 64, "test_size": 64} if dataset == "shapes" else {}


def load_run(store: Store, run_id: str) -> LoadedModel:
    """A completed run's model, as ``core.training.checkpoint.load_trained_model`` builds it."""
    from core.training.checkpoint import load_trained_model

    folder = store.run_dir(store.resolve(run_id))
    config = json.loads((folder / "config.json").read_text())
    dataset = config.get("dataset", "digits")
    options = dict(config.get("dataset_options") or {})
    data = core.data.load_dataset(dataset, root=config.get("data_root"), augment=False,
                                  **options)
    model = load_trained_model(folder, num_classes=data.num_classes,
                               in_channels=data.in_channels)
    return LoadedModel(model, dataset, options, f"run {run_id} ({config['model']})")


def images(dataset: str, options: dict | None = None, n: int = 16,
           root: str | None = None) -> tuple[torch.Tensor, list[int], list[str]]:
    """The first ``n`` test images of a dataset (normalised as the model sees them)."""
    data = core.data.load_dataset(dataset, root=root, augment=False, **(options or {}))
    n = min(n, len(data.test))
    xs, ys = zip(*[data.test[i] for i in range(n)])
    return torch.stack(xs), list(ys), list(data.class_names)


@dataclass
class Analysis:
    """Everything the page draws for one model and image."""

    main: Trajectory                  # float32, the model's own anchors (none by default)
    errors: dict[str, list]           # setting -> per-block rebuild error
    spectra: dict[str, np.ndarray]    # "<family> block" / "ResNet block" -> eigenvalues
    block_for_spectra: str


def analyse(model: core.ReversibleNet, x: torch.Tensor, *, anchor_every: int = 2,
            spectrum_block: int = 0) -> Analysis:
    """Trajectories (float32/float64, with and without anchors) and the eigenvalue comparison.

    ``x`` is one image or a small batch; the model runs in eval mode (running statistics).
    """
    if x.dim() == 3:
        x = x.unsqueeze(0)
    model = model.eval()
    main = trajectory(model, x, dtype="float32", anchor_every=0)
    errors: dict[str, list] = {"float32": main.error}
    if main.rebuilt[0] is not None:
        errors[f"float32, anchors every {anchor_every}"] = trajectory(
            model, x, dtype="float32", anchor_every=anchor_every).error
        errors["float64"] = trajectory(model, x, dtype="float64", anchor_every=0).error
        errors[f"float64, anchors every {anchor_every}"] = trajectory(
            model, x, dtype="float64", anchor_every=anchor_every).error
    spectra, label = eigen_comparison(model, main, spectrum_block)
    return Analysis(main, errors, spectra, label)


def eigen_comparison(model: core.ReversibleNet, tr: Trajectory,
                     block: int = 0) -> tuple[dict[str, np.ndarray], str]:
    """Eigenvalues of the RHS Jacobian of the model's block ``block`` and of a plain ResNet
    block (same channels, fresh weights, eval mode) at the same state: the block's input,
    first image, centre crop of ``CROP`` x ``CROP`` pixels, float64 (exact, dense Jacobian).
    A ResNet model is compared with a fresh Hamiltonian block instead."""
    from core.analysis import network_blocks

    blocks = [b for stage in network_blocks(model) for b in stage]
    block = max(0, min(block, len(blocks) - 1))
    z = _crop(tr.inputs[block][:1]).double()
    channels = z.shape[1]
    torch.manual_seed(0)
    mine = _eval_copy(blocks[block]).double()
    family = model.config.family
    out = {f"{family.capitalize()} block": rhs_spectrum(mine, z, method="exact").eigenvalues}
    if family == "resnet":
        other = HamiltonianBlock(channels // 2, prenorm=False) if channels % 2 == 0 else None
        if other is not None:
            out["Hamiltonian block"] = rhs_spectrum(other.double().eval(), z,
                                                    method="exact").eigenvalues
    else:
        out["ResNet block"] = rhs_spectrum(ResNetBlock(channels).double().eval(), z,
                                           method="exact").eigenvalues
    return out, tr.labels[block]


def _eval_copy(block: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(block).eval()


def _crop(z: torch.Tensor) -> torch.Tensor:
    h, w = z.shape[-2:]
    top, left = max(0, (h - CROP) // 2), max(0, (w - CROP) // 2)
    return z[..., top:top + CROP, left:left + CROP]


def summary(an: Analysis) -> dict[str, Any]:
    """Headline numbers: worst rebuild error per setting, max |Re| / max |lambda| per block."""
    worst = {k: max((e for e in v if e is not None), default=None) for k, v in an.errors.items()}
    ratio = {k: float(np.abs(v.real).max() / np.abs(v).max()) if np.abs(v).max() > 0 else 0.0
             for k, v in an.spectra.items()}
    return {"worst_error": worst, "real_ratio": ratio}


def axis_position(ratio: float) -> str:
    """Where eigenvalues with this max |Re| / max |lambda| lie, in words (what the figure shows)."""
    if ratio < 1e-9:
        return "on the imaginary axis"
    if ratio < 0.1:
        return f"near the imaginary axis (real parts up to {100 * ratio:.2g}% of max |λ|)"
    return f"off the imaginary axis (real parts up to {100 * ratio:.2g}% of max |λ|)"


def spectrum_caption(an: Analysis) -> str:
    """The eigenvalue figure's caption: the ratio it talks about, computed for the shown blocks."""
    ratios = summary(an)["real_ratio"]
    shown = "; ".join(f"{name}: {r:.1e}, {axis_position(r)}" for name, r in ratios.items())
    return (f"Jacobian of each block's right-hand side at the input of {an.block_for_spectra} "
            f"(centre {CROP}x{CROP} crop, exact, float64). max |Re λ| / max |λ| (0: every "
            f"eigenvalue on the imaginary axis) — {shown}.")


# one line per term the page's legends and inputs use
TERMS = {
    "segment": "the blocks between two transitions (where the width or resolution changes); "
               "each segment's states are projected on their own two main directions",
    "forward / rebuilt": "a state computed going forward, and the same state recomputed "
                         "backwards from the segment's output with the blocks' inverses (x)",
    "anchors every k": "the backward keeps every k-th state as an exact restart point, so a "
                       "rebuild error can grow over at most k blocks (memory: one more state "
                       "kept per k blocks)",
    "float32 / float64": "the precision the model and its reversal are computed in",
}


def terms(*names: str) -> str:
    """Markdown lines explaining the given legend terms (all of them by default)."""
    return "  \n".join(f"**{n}**: {TERMS[n]}" for n in (names or TERMS))


def home_path(store: Store) -> Path:
    return Path(store.home)
