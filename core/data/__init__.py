"""Datasets: embedded (digits, shapes), downloadable (CIFAR, STL-10) and a user's image folder."""

from __future__ import annotations

import functools
import numbers
import os
import pickle
import pickletools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset
from torchvision import datasets as tvd
from torchvision.datasets.utils import check_integrity, download_and_extract_archive
from torchvision.transforms import v2

__all__ = ["DatasetBundle", "DatasetNotFoundError", "list_datasets", "load_dataset"]


class DatasetNotFoundError(ValueError):
    """A dataset's files are missing; the message says which, where, and how to get them."""


@dataclass(frozen=True)
class DatasetBundle:
    """A dataset ready for training: both splits plus what a model and a viewer need to know."""

    name: str
    train: Dataset  # items (float32 (C, H, W) normalised, int label); .targets lists the labels
    test: Dataset  # same, never augmented
    num_classes: int
    in_channels: int
    image_size: int  # pixels, H == W
    class_names: list[str]
    mean: tuple[float, ...]  # per channel, on the [0, 1] pixel scale; x_model = (x - mean) / std
    std: tuple[float, ...]


def list_datasets() -> list[str]:
    """Names accepted by `load_dataset`."""
    return list(_LOADERS)


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
    seed = _check_int("seed", seed, 0)
    if root is None and name != "imagefolder":
        root = os.environ.get("LAB_DATA") or "./data"
    src = loader(root=root, download=download, **options)

    keep = _stratified_pick(src.train_targets, fraction, np.random.default_rng(seed))
    size = src.image_size
    train_tf = test_tf = None
    if src.needs_transform:
        test_tf = _transform(src.mean, src.std, size, augment=False, resize=src.resize)
        train_tf = _transform(src.mean, src.std, size, augment=augment, resize=src.resize)
    return DatasetBundle(
        name=name,
        train=_Split(src.train, keep, src.train_targets, train_tf),
        test=_Split(src.test, range(len(src.test_targets)), src.test_targets, test_tf),
        num_classes=len(src.class_names),
        in_channels=src.in_channels,
        image_size=size,
        class_names=list(src.class_names),
        mean=tuple(float(m) for m in src.mean),
        std=tuple(float(s) for s in src.std),
    )


# ----------------------------------------------------------------------------- plumbing


@dataclass
class _Source:
    """What a loader hands back: raw splits (PIL or uint8 (C, H, W) images) and metadata."""

    train: Dataset
    train_targets: list[int]
    test: Dataset
    test_targets: list[int]
    class_names: Sequence[str]
    in_channels: int
    image_size: int
    mean: Sequence[float]
    std: Sequence[float]
    needs_transform: bool = True  # False: items are already normalised float tensors
    resize: int | None = None  # resize (shorter side) and centre-crop to this before the rest


class _Split(Dataset):
    """The items of `base` at `indices`, passed through `transform`, labels as Python ints."""

    def __init__(self, base: Dataset, indices: Sequence[int], targets: Sequence[int],
                 transform: Callable | None) -> None:
        self.base, self.indices, self.transform = base, list(indices), transform
        self.targets = [int(targets[i]) for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image, _ = self.base[self.indices[i]]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[i]


class _TensorImages(Dataset):
    """Images held as one tensor (N, C, H, W) with their labels; no per-item decoding."""

    def __init__(self, images: torch.Tensor, labels: Sequence[int]) -> None:
        assert len(images) == len(labels)
        self.images, self.labels = images, [int(y) for y in labels]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], self.labels[i]


def _transform(mean, std, size: int, augment: bool, resize: int | None) -> v2.Compose:
    steps: list[Callable] = [v2.ToImage()]
    if resize is not None:
        steps += [v2.Resize(resize, antialias=True), v2.CenterCrop(resize)]
    if augment:
        # PAPER.md: pad 2 per side for 32x32 CIFAR, random crop back, flip; scaled with size.
        steps += [v2.RandomCrop(size, padding=size // 16), v2.RandomHorizontalFlip()]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std)),
              v2.ToPureTensor()]
    return v2.Compose(steps)


def _stratified_pick(targets: Sequence[int], fraction: float,
                     rng: np.random.Generator) -> list[int]:
    """Sorted indices keeping round(fraction * n_c), at least 1, of each class c, at random."""
    targets = np.asarray(targets)
    if fraction >= 1:
        return list(range(len(targets)))
    keep = []
    for c in np.unique(targets):
        members = np.flatnonzero(targets == c)
        k = max(1, round(fraction * len(members)))
        keep.append(rng.choice(members, size=k, replace=False))
    return sorted(np.concatenate(keep).tolist())


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------- digits


def _load_digits(root, download) -> _Source:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no files, no network

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)  # values 0..16 -> 0..1
    # Fixed split, independent of `seed`: test accuracies stay comparable across runs.
    test = set(_stratified_pick(y, 0.2, np.random.default_rng(0)))
    test_idx = sorted(test)
    train_idx = [i for i in range(len(y)) if i not in test]
    mean, std = x[train_idx].mean().item(), x[train_idx].std().item()
    x = (x - mean) / std  # normalised once here, so items need no transform
    return _Source(
        train=_TensorImages(x[train_idx], y[train_idx]), train_targets=y[train_idx].tolist(),
        test=_TensorImages(x[test_idx], y[test_idx]), test_targets=y[test_idx].tolist(),
        class_names=[str(d) for d in range(10)], in_channels=1, image_size=8,
        mean=(mean,), std=(std,), needs_transform=False,
    )


# ----------------------------------------------------------------------------- shapes

SHAPE_CLASSES = ("circle", "square", "triangle", "star", "cross", "ring", "diamond", "hexagon",
                 "crescent", "bar")


def _load_shapes(root, download, train_size=5000, test_size=1000, shapes_seed=0) -> _Source:
    k = len(SHAPE_CLASSES)
    train_size = _check_int("train_size", train_size, k)
    test_size = _check_int("test_size", test_size, k)
    shapes_seed = _check_int("shapes_seed", shapes_seed, 0)
    train_x, train_y = _shapes(shapes_seed, 0, train_size)
    test_x, test_y = _shapes(shapes_seed, 1, test_size)
    pixels = train_x.reshape(train_size, 3, -1) / 255.0
    return _Source(
        # torch.tensor copies: the cached arrays stay read-only and shared by nobody else.
        train=_TensorImages(torch.tensor(train_x), train_y), train_targets=train_y.tolist(),
        test=_TensorImages(torch.tensor(test_x), test_y), test_targets=test_y.tolist(),
        class_names=SHAPE_CLASSES, in_channels=3, image_size=32,
        mean=pixels.mean(axis=(0, 2)), std=pixels.std(axis=(0, 2)),
    )


@functools.lru_cache(maxsize=4)  # a few MB per thousand images
def _shapes(seed: int, split: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n images (n, 3, 32, 32) uint8 and labels, balanced; read-only, deterministic in the args.

    Each split draws from its own stream, so the train images do not depend on test_size.
    """
    rng = np.random.default_rng([seed, split])
    size, k = 32, len(SHAPE_CLASSES)
    labels = rng.permutation(np.arange(n) % k)
    r = rng.uniform(7.0, 13.0, n)  # circumradius, pixels
    cx, cy = (rng.uniform(r, size - 1 - r) for _ in range(2))
    # Rotation stays within +-15 degrees so that square and diamond remain different classes.
    theta = rng.uniform(-np.pi / 12, np.pi / 12, n)
    bg = rng.uniform(0.0, 1.0, (n, 3)).astype(np.float32)
    fg = (bg + rng.uniform(0.3, 0.7, (n, 3)).astype(np.float32)) % 1  # channels differ >= 0.3
    noise = rng.standard_normal((n, 3, size, size), dtype=np.float32)
    noise *= rng.uniform(0.02, 0.08, (n, 1, 1, 1)).astype(np.float32)

    grid = np.arange(size, dtype=np.float32)
    dx = (grid[None, None, :] - cx[:, None, None]) / r[:, None, None]
    dy = (grid[None, :, None] - cy[:, None, None]) / r[:, None, None]
    c, s = (f(theta).astype(np.float32)[:, None, None] for f in (np.cos, np.sin))
    u, v = c * dx + s * dy, -s * dx + c * dy  # shape coordinates, unit circumradius
    mask = np.zeros((n, size, size), dtype=bool)
    for label, shape in enumerate(SHAPE_CLASSES):
        idx = labels == label
        mask[idx] = _shape_mask(shape, u[idx], v[idx])
    noise += np.where(mask[:, None], fg[:, :, None, None], bg[:, :, None, None])
    image = np.clip(np.rint(noise * 255), 0, 255).astype(np.uint8)
    image.flags.writeable = labels.flags.writeable = False  # the cache is shared: keep it so
    return image, labels


def _polygon(u, v, sides: int, phase: float):
    """Regular polygon of circumradius 1: inside every edge's half-plane."""
    normals = phase + 2 * np.pi * np.arange(sides) / sides
    dist = u[..., None] * np.cos(normals) + v[..., None] * np.sin(normals)
    return (dist <= np.cos(np.pi / sides)).all(axis=-1)


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    rho2 = u**2 + v**2
    if shape == "circle":
        return rho2 <= 1
    if shape == "ring":
        return (rho2 <= 1) & (rho2 >= 0.55**2)
    if shape == "square":
        return _polygon(u, v, 4, 0.0)
    if shape == "diamond":
        return _polygon(u, v, 4, np.pi / 4)
    if shape == "triangle":
        return _polygon(u, v, 3, np.pi / 2)
    if shape == "hexagon":
        return _polygon(u, v, 6, 0.0)
    if shape == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1))
    if shape == "bar":
        return (np.abs(u) <= 1) & (np.abs(v) <= 0.25)
    if shape == "crescent":
        return (rho2 <= 1) & ((u - 0.5) ** 2 + v**2 > 0.8**2)
    if shape == "star":  # five points; straight edges from outer (r=1) to inner (r=0.45) vertices
        half, inner = np.pi / 5, 0.45
        t = np.mod(np.arctan2(v, u) - np.pi / 2, 2 * half)
        t = np.minimum(t, 2 * half - t)  # angle from the nearest point
        edge = inner * np.sin(half) / (np.sin(t) - inner * np.sin(t - half))
        return rho2 <= edge**2
    raise AssertionError(shape)


# ----------------------------------------------------------------------------- CIFAR, STL-10
#
# torchvision checks every file's md5 before reading it. We keep that when download=True (the
# files come from the network, so checking them is the point), but without download we only
# check that the files are there and then validate what we read: the structure, sizes and label
# ranges of each file, naming the file when something is off. The trade: a file that is
# well-formed but silently altered would load; in exchange, datasets copied by hand or
# converted, and the tests' small files in the real formats, load through torchvision's real
# parsing code. The subclasses below change only the checksum tables (md5 None = presence).


def _presence_only(table: list[list[str]]) -> list[list[str | None]]:
    return [[filename, None] for filename, _ in table]


class _CIFAR10(tvd.CIFAR10):
    train_list = _presence_only(tvd.CIFAR10.train_list)
    test_list = _presence_only(tvd.CIFAR10.test_list)
    meta = {**tvd.CIFAR10.meta, "md5": None}


class _CIFAR100(tvd.CIFAR100):
    train_list = _presence_only(tvd.CIFAR100.train_list)
    test_list = _presence_only(tvd.CIFAR100.test_list)
    meta = {**tvd.CIFAR100.meta, "md5": None}


class _STL10(tvd.STL10):
    # Only the labelled files: the 2.5 GB unlabeled_X.bin is not needed for split train/test.
    # (The "unlabeled" splits, which read train_list[2], are not used here.)
    train_list = _presence_only(tvd.STL10.train_list[:2])
    test_list = _presence_only(tvd.STL10.test_list)


_CIFAR10_MEAN, _CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
_CIFAR100_MEAN, _CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
_STL10_MEAN, _STL10_STD = (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)
_STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship",
                  "truck")


def _files_needed(official: type, needed: Sequence[str], root: Path, download: bool,
                  title: str) -> Path:
    """Makes sure `needed` files are in root/base_folder, downloading (md5-checked) if asked."""
    folder = root / official.base_folder
    missing = [f for f in needed if not (folder / f).is_file()]
    how = (
        f"Get them with load_dataset(..., download=True) where the network allows it, or "
        f"download {official.url} elsewhere and extract it into {root} "
        f"(root= or $LAB_DATA choose the data folder)."
    )
    expected = f"{title} expects the folder {folder} with the files {', '.join(needed)}"
    if download:
        checks = [(f, md5) for f, md5 in official.train_list + official.test_list]
        if hasattr(official, "meta"):
            checks.append((official.meta["filename"], official.meta["md5"]))
        if not all(check_integrity(folder / f, md5) for f, md5 in checks):
            try:
                download_and_extract_archive(official.url, str(root), filename=official.filename,
                                             md5=official.tgz_md5)
            except (OSError, RuntimeError) as e:  # URLError is an OSError
                raise DatasetNotFoundError(
                    f"{expected}; downloading {official.url} failed ({e}). {how}"
                ) from e
            for f, md5 in checks:
                if not check_integrity(folder / f, md5):
                    raise ValueError(f"{folder / f} fails its md5 check after download; delete "
                                     f"{folder} and download again")
    elif missing:
        absent = "all of them" if len(missing) == len(needed) else ", ".join(missing)
        raise DatasetNotFoundError(f"{expected}; missing: {absent}. {how}")
    return folder


# A CIFAR batch is a pickle; pickle.load can run code. Before torchvision reads a file, we walk
# its opcodes and accept only the globals that numpy arrays and Python 2/3 strings need. This
# also finds truncated files, and says which one.
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}
_PICKLE_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING",
                   "BINSTRING", "SHORT_BINSTRING"}


def _pickle_globals(path: Path) -> list[tuple[str, ...]]:
    """The globals (module, name) a pickle file would import; ValueError if it is not whole."""
    found: list[tuple[str, ...]] = []
    memo: dict[int, Any] = {}
    pushed: list[Any] = []  # values of recent pushes, to resolve STACK_GLOBAL (protocol 4+)
    try:
        with open(path, "rb") as f:
            for op, arg, _ in pickletools.genops(f):
                name = op.name
                if name in ("GLOBAL", "INST"):
                    found.append(tuple(arg.split(" ", 1)))
                elif name == "STACK_GLOBAL":
                    found.append(tuple(pushed[-2:]))
                elif name in ("EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID"):
                    found.append((name, str(arg)))
                # Any op that changes the stack other than by pushing a string records None,
                # so STACK_GLOBAL resolves only when its two operands are known strings.
                if name in _PICKLE_STRINGS:
                    pushed.append(arg)
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    pushed.append(memo.get(int(arg)))
                elif name == "MEMOIZE":
                    memo[len(memo)] = pushed[-1] if pushed else None
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[int(arg)] = pushed[-1] if pushed else None
                elif name not in ("FRAME", "PROTO"):
                    pushed.append(None)
    except (ValueError, EOFError) as e:
        raise ValueError(f"{path} is corrupt or truncated ({e}); delete it and download the "
                         "dataset again") from e
    return found


def _check_pickle(path: Path) -> None:
    """Raises ValueError naming `path` if it is not a complete pickle of plain data."""
    for ref in _pickle_globals(path):
        if ref not in _PICKLE_GLOBALS:
            raise ValueError(f"{path} is not a plain data pickle: it refers to "
                             f"{' '.join(map(str, ref))}; refusing to load it")


def _bad_cifar_file(folder: Path, files: Sequence[str], meta: dict, k: int) -> str | None:
    """Names the first file that is not as CIFAR's are, and why (files passed _check_pickle)."""
    for f in [meta["filename"], *files]:
        with open(folder / f, "rb") as fh:
            entry = pickle.load(fh, encoding="latin1")  # safe: its globals were checked
        entry = entry if isinstance(entry, dict) else {}
        if f == meta["filename"]:
            names = entry.get(meta["key"])
            if not (isinstance(names, list) and len(names) == k):
                return f"{folder / f} (its {meta['key']!r} is not a list of {k} class names)"
            continue
        images, labels = entry.get("data"), entry.get("labels", entry.get("fine_labels"))
        if not (isinstance(images, np.ndarray) and images.dtype == np.uint8
                and images.ndim == 2 and images.shape[1] == 3072):
            return f"{folder / f} (its 'data' is not a uint8 array of N x 3072)"
        if not (isinstance(labels, list) and len(labels) == len(images)
                and all(isinstance(t, int) and 0 <= t < k for t in labels)):
            return f"{folder / f} (its labels are not {len(images)} integers in 0..{k - 1})"
    return None


def _load_cifar(root, download, *, which: str) -> _Source:
    cls, official, mean, std, k = {
        "cifar10": (_CIFAR10, tvd.CIFAR10, _CIFAR10_MEAN, _CIFAR10_STD, 10),
        "cifar100": (_CIFAR100, tvd.CIFAR100, _CIFAR100_MEAN, _CIFAR100_STD, 100),
    }[which]
    files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    title = "CIFAR-10" if which == "cifar10" else "CIFAR-100"
    folder = _files_needed(official, files, Path(root), download, title)
    for f in files:
        _check_pickle(folder / f)
    splits = []
    for train, table in ((True, cls.train_list), (False, cls.test_list)):
        try:
            ds = cls(str(root), train=train)
            ok = (len(ds.targets) == len(ds.data) and all(0 <= t < k for t in ds.targets)
                  and len(ds.classes) == k)
        except (KeyError, ValueError, TypeError, IndexError, AttributeError):
            ok = False
        if not ok:
            bad = _bad_cifar_file(folder, [f for f, _ in table], cls.meta, k)
            raise ValueError(f"{bad or folder} is not a {title} file as expected; download "
                             "the dataset again")
        splits.append(ds)
    train, test = splits
    return _Source(train, list(train.targets), test, list(test.targets), train.classes, 3, 32,
                   mean, std)


def _load_stl10(root, download) -> _Source:
    cls = _STL10
    pairs = (("train_X.bin", "train_y.bin"), ("test_X.bin", "test_y.bin"))
    folder = _files_needed(tvd.STL10, [f for p in pairs for f in p], Path(root), download,
                           "STL-10")
    pixels = 3 * 96 * 96
    for images, labels in pairs:
        n_images, extra = divmod((folder / images).stat().st_size, pixels)
        if extra or n_images == 0:
            raise ValueError(f"{folder / images} is truncated or corrupt (its size is not a "
                             f"multiple of {pixels} bytes); download STL-10 again")
        y = np.fromfile(folder / labels, dtype=np.uint8)
        if len(y) != n_images or not ((y >= 1) & (y <= 10)).all():
            raise ValueError(f"{folder / labels} does not match {images} ({len(y)} labels for "
                             f"{n_images} images, or labels outside 1..10); download STL-10 "
                             "again")
    train, test = cls(str(root), split="train"), cls(str(root), split="test")
    names = list(getattr(train, "classes", None) or _STL10_CLASSES)
    return _Source(train, train.labels.tolist(), test, test.labels.tolist(), names, 3, 96,
                   _STL10_MEAN, _STL10_STD)


# ----------------------------------------------------------------------------- image folder
#
# Corrupt files: every image is decoded once when the folder is loaded; unreadable ones are
# skipped with one warning that lists them, so training never meets a raw PIL error halfway
# through an epoch. The cost is one decoding pass over the folder at load time. Should a file
# change afterwards, reading it raises a ValueError naming it.

_IMAGE_FORMATS = ["PNG", "JPEG", "BMP", "PPM", "TIFF", "WEBP"]  # Image.open sniffs: restrict it
_MAX_PIXELS = 64 * 2**20  # our own ceiling, below PIL's decompression-bomb warning
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _read_image(path: str) -> Image.Image:
    """Decodes one image file to RGB, safely; raises whatever PIL raises on bad files."""
    # Our ceiling is below PIL's DecompressionBombWarning threshold, so every image that would
    # warn is refused here anyway (no process-wide warning filters, which are not thread-safe).
    with Image.open(path, formats=_IMAGE_FORMATS) as img:
        if img.width * img.height > _MAX_PIXELS:
            raise ValueError(f"{img.width}x{img.height} pixels is over {_MAX_PIXELS}")
        img.load()  # Image.open is lazy: decode here, inside the caller's error handling
        img = ImageOps.exif_transpose(img)
    if img.mode.startswith("I"):  # 16/32-bit greyscale: convert("RGB") would clip, so scale
        top = 65535.0 if img.mode.startswith("I;16") else max(float(np.max(img)), 1.0)
        img = Image.fromarray(np.uint8(np.clip(np.asarray(img, np.float64) / top * 255, 0, 255)))
    return img.convert("RGB")


def _load_image(path: str) -> Image.Image:
    try:
        return _read_image(path)
    except Exception as e:  # any decoding failure: name the file instead of a PIL traceback
        raise ValueError(f"cannot read image {path} ({e}); remove or replace it") from e


class _ImageCheck:
    """ImageFolder's is_valid_file: an image extension and a file that decodes; logs failures."""

    def __init__(self) -> None:
        self.bad: list[str] = []

    def __call__(self, path: str) -> bool:
        if os.path.basename(path).startswith(".") or not tvd.folder.has_file_allowed_extension(
            path, tvd.folder.IMG_EXTENSIONS
        ):
            return False  # hidden files (macOS ._name.jpg) and non-images are not samples
        try:
            _read_image(path)
        except Exception as e:  # every decoding failure means "unreadable"
            self.bad.append(f"{path} ({type(e).__name__})")
            return False
        return True


class _ImageFolder(tvd.ImageFolder):
    def find_classes(self, directory):
        # Hidden folders (.ipynb_checkpoints, .git) are not classes.
        classes = sorted(e.name for e in os.scandir(directory)
                         if e.is_dir() and not e.name.startswith("."))
        if not classes:
            raise FileNotFoundError(f"no class folders in {directory}")
        return classes, {c: i for i, c in enumerate(classes)}


def _scan_folder(folder: Path) -> _ImageFolder:
    layout = (f"expected {folder}/<class name>/<image>.png|.jpg|... with one sub-folder per "
              "class (or train/ and test/ folders, each laid out that way)")
    if not folder.is_dir():
        raise DatasetNotFoundError(f"image folder {folder} does not exist; {layout}")
    check = _ImageCheck()
    try:
        ds = _ImageFolder(str(folder), loader=_load_image, is_valid_file=check, allow_empty=True)
    except FileNotFoundError as e:
        raise DatasetNotFoundError(f"{e}; {layout}") from e
    if check.bad:
        shown = "\n  ".join(check.bad[:20])
        more = f"\n  ... and {len(check.bad) - 20} more" if len(check.bad) > 20 else ""
        warnings.warn(f"skipping {len(check.bad)} unreadable image file(s) in {folder}:\n  "
                      f"{shown}{more}", stacklevel=4)
    counts = np.bincount(ds.targets, minlength=len(ds.classes))
    empty = [c for c, n in zip(ds.classes, counts, strict=True) if n == 0]
    if empty:
        raise DatasetNotFoundError(f"no readable images in class folder(s) "
                                   f"{', '.join(str(folder / c) for c in empty)}; {layout}")
    return ds


def _load_imagefolder(root, download, image_size=32, test_fraction=0.2) -> _Source:
    if root is None:
        raise ValueError("imagefolder needs root= the folder holding one sub-folder per class")
    image_size = _check_int("image_size", image_size, 8)
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) or not (
        0 < test_fraction < 1
    ):
        raise ValueError(f"test_fraction must be a number with 0 < test_fraction < 1, got "
                         f"{test_fraction!r}")
    root = Path(root)
    if (root / "train").is_dir() and (root / "test").is_dir():
        train, test = _scan_folder(root / "train"), _scan_folder(root / "test")
        if train.classes != test.classes:
            raise ValueError(f"{root / 'train'} and {root / 'test'} must have the same class "
                             f"folders; train has {train.classes}, test has {test.classes}")
        train_idx, test_idx = range(len(train)), range(len(test))
    else:
        train = test = _scan_folder(root)
        # Fixed split (independent of `seed`); every class keeps at least one training image.
        targets = np.asarray(train.targets)
        picked = set(_stratified_pick(targets, test_fraction, np.random.default_rng(0)))
        for c in np.unique(targets):  # a class with one image: it goes to training
            members = set(np.flatnonzero(targets == c).tolist())
            if members <= picked:
                picked.discard(min(members))
        test_idx = sorted(picked)
        train_idx = [i for i in range(len(targets)) if i not in picked]
    if len(train.classes) < 2:
        raise ValueError(f"{root} has {len(train.classes)} class folder(s); a classifier needs "
                         "at least 2")
    # _Split over a _Split: the inner one selects, the outer one transforms and subsets.
    train_part = _Split(train, train_idx, train.targets, None)
    test_part = _Split(test, test_idx, test.targets, None)
    return _Source(train_part, train_part.targets, test_part, test_part.targets, train.classes,
                   3, image_size, _IMAGENET_MEAN, _IMAGENET_STD, resize=image_size)


# name -> (loader, the options it takes)
_LOADERS: dict[str, tuple[Callable[..., _Source], tuple[str, ...]]] = {
    "digits": (_load_digits, ()),
    "shapes": (_load_shapes, ("train_size", "test_size", "shapes_seed")),
    "cifar10": (functools.partial(_load_cifar, which="cifar10"), ()),
    "cifar100": (functools.partial(_load_cifar, which="cifar100"), ()),
    "stl10": (_load_stl10, ()),
    "imagefolder": (_load_imagefolder, ("image_size", "test_fraction")),
}
