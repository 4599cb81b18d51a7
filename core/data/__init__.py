"""Datasets by name: embedded (digits), generated (shapes), downloadable (CIFAR, STL-10) and a
user's image folder. This module is the registry; each family of sets lives in its own module
(``shapes``, ``torchvision_sets``, ``folder``) and ``base`` holds what they share."""

from __future__ import annotations

import functools
import numbers
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from core.data.base import (
    DatasetBundle,
    DatasetNotFoundError,
    Source,
    Split,
    TensorImages,
    check_int,
    make_transform,
    stratified_pick,
)
from core.data.folder import check_layout, load_imagefolder
from core.data.shapes import SHAPE_CLASSES, load_shapes
from core.data.torchvision_sets import ensure_files, load_cifar, load_stl10

__all__ = ["SHAPE_CLASSES", "DatasetBundle", "DatasetNotFoundError", "check_files",
           "default_root", "list_datasets", "load_dataset"]


def list_datasets() -> list[str]:
    """Names accepted by `load_dataset`."""
    return list(_LOADERS)


def default_root() -> str:
    """Where the downloadable sets live unless root= says otherwise: $LAB_DATA, else ./data."""
    return os.environ.get("LAB_DATA") or "./data"


def check_files(name: str, root: str | os.PathLike | None = None, download: bool = False, *,
                how: str | None = None) -> None:
    """Make sure `load_dataset(name, root)` will find its files, without loading them.

    digits and shapes need none. cifar10, cifar100 and stl10 need their files under ``root``
    (default `default_root()`); with ``download`` torchvision fetches the missing ones and
    verifies their md5 (this can take minutes). imagefolder needs ``root``, a folder with at
    least 2 class sub-folders holding images (or train/ and test/ laid out that way).

    Args:
        how: the way the caller offers to download (e.g. "`--download`"), named in the message.

    Raises:
        DatasetNotFoundError: files or folders missing; says which, where, and how to get them.
        ValueError: unknown name; imagefolder without root.
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(_LOADERS)}")
    if name == "imagefolder":
        check_layout(root)
    elif name in ("cifar10", "cifar100", "stl10"):
        ensure_files(name, root if root is not None else default_root(), download, how)


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    fraction: float = 1.0,
    seed: int = 0,
    augment: bool = True,
    download: bool = False,
    **options: Any,
) -> DatasetBundle:
    """Loads a dataset by name.

    Args:
        name: one of `list_datasets()`.
        root: data folder for cifar10/cifar100/stl10 (default `$LAB_DATA`, else `./data`); for
            imagefolder, the user's folder (required). Ignored by digits and shapes.
        fraction: keep this share of the training set, 0 < fraction <= 1, stratified by class
            with at least one example per class; the test set is always whole.
        seed: drives only the `fraction` subset. Train/test splits are fixed, so test sets stay
            comparable across seeds.
        augment: pad-and-random-crop (pad = image_size // 16) and horizontal flip on the
            training set of the image datasets; digits is never augmented.
        download: for cifar10/cifar100/stl10, fetch the files if absent and verify their md5.
        **options: shapes: `train_size=5000`, `test_size=1000`, `shapes_seed=0`;
            imagefolder: `image_size=32`, `test_fraction=0.2`.

    Raises:
        DatasetNotFoundError: files missing; the message names the folder and files expected.
        ValueError: unknown name or option, bad value, corrupt files (naming the file).
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(_LOADERS)}")
    loader, allowed = _LOADERS[name]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for dataset {name!r}; "
            f"allowed: {', '.join(allowed) or 'none'}"
        )
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not (
        0 < fraction <= 1
    ):
        raise ValueError(f"fraction must be a number with 0 < fraction <= 1, got {fraction!r}")
    seed = check_int("seed", seed, 0)
    if root is None and name != "imagefolder":
        root = default_root()
    src = loader(root=root, download=download, **options)

    keep = stratified_pick(src.train_targets, fraction, np.random.default_rng(seed))
    size = src.image_size
    train_tf = test_tf = None
    if src.needs_transform:
        test_tf = make_transform(src.mean, src.std, size, augment=False, resize=src.resize)
        train_tf = make_transform(src.mean, src.std, size, augment=augment, resize=src.resize)
    return DatasetBundle(
        name=name,
        train=Split(src.train, keep, src.train_targets, train_tf),
        test=Split(src.test, range(len(src.test_targets)), src.test_targets, test_tf),
        num_classes=len(src.class_names),
        in_channels=src.in_channels,
        image_size=size,
        class_names=list(src.class_names),
        mean=tuple(float(m) for m in src.mean),
        std=tuple(float(s) for s in src.std),
    )


def _load_digits(root, download) -> Source:
    """scikit-learn's 8x8 digits, grey, normalised once here; a fixed 80/20 split."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no files, no network

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)  # values 0..16 -> 0..1
    # Fixed split, independent of `seed`: test accuracies stay comparable across runs.
    test = set(stratified_pick(y, 0.2, np.random.default_rng(0)))
    test_idx = sorted(test)
    train_idx = [i for i in range(len(y)) if i not in test]
    mean, std = x[train_idx].mean().item(), x[train_idx].std().item()
    x = (x - mean) / std  # normalised once here, so items need no transform
    return Source(
        train=TensorImages(x[train_idx], y[train_idx]), train_targets=y[train_idx].tolist(),
        test=TensorImages(x[test_idx], y[test_idx]), test_targets=y[test_idx].tolist(),
        class_names=[str(d) for d in range(10)], in_channels=1, image_size=8,
        mean=(mean,), std=(std,), needs_transform=False,
    )


# name -> (loader, the options it takes)
_LOADERS: dict[str, tuple[Callable[..., Source], tuple[str, ...]]] = {
    "digits": (_load_digits, ()),
    "shapes": (load_shapes, ("train_size", "test_size", "shapes_seed")),
    "cifar10": (functools.partial(load_cifar, which="cifar10"), ()),
    "cifar100": (functools.partial(load_cifar, which="cifar100"), ()),
    "stl10": (load_stl10, ()),
    "imagefolder": (load_imagefolder, ("image_size", "test_fraction")),
}
