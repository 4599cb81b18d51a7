"""A user's image folder (one sub-folder per class, or train/ and test/ laid out that way).

Every file is decoded by ``core.images.decode_image``: the formats, byte and pixel limits,
decompression-bomb refusal, EXIF orientation and mode handling are the uploads' own (see
``core.images``). Corrupt or refused files: every image is decoded once when the folder is
loaded; unreadable ones are skipped with one warning that lists them and why, so training never
meets a decoding error halfway through an epoch. The cost is one decoding pass over the folder
at load time. Should a file change afterwards, reading it raises a ValueError naming it.
"""

from __future__ import annotations

import functools
import numbers
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets as tvd

from core.data.base import DatasetNotFoundError, Source, Split, check_int, stratified_pick
from core.images import ACCEPTED_EXTENSIONS, ImageError, decode_image

_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _read_image(path: str, reduce_to: int | None = None) -> torch.Tensor:
    """One image file as float32 (3, H, W) in [0, 1]; ImageError (naming why) if refused."""
    array, _, _ = decode_image(path, reduce_to=reduce_to)
    x = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    return x.expand(3, -1, -1).contiguous() if x.shape[0] == 1 else x  # grey -> RGB


def _load_image(path: str, reduce_to: int | None = None) -> torch.Tensor:
    try:
        return _read_image(path, reduce_to)
    except ImageError as e:  # name the file: the message alone says what, not which
        raise ValueError(f"cannot read image {path} ({e}); remove or replace it") from e


class _ImageCheck:
    """ImageFolder's is_valid_file: an accepted extension and a file that decodes; logs failures."""

    def __init__(self, reduce_to: int | None = None) -> None:
        self.bad: list[str] = []
        self.reduce_to = reduce_to

    def __call__(self, path: str) -> bool:
        if os.path.basename(path).startswith(".") or not path.lower().endswith(
            ACCEPTED_EXTENSIONS
        ):
            return False  # hidden files (macOS ._name.jpg) and non-images are not samples
        try:
            _read_image(path, self.reduce_to)
        except ImageError as e:  # core.images turns every decoding failure into ImageError
            self.bad.append(f"{path} ({e})")
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


def _scan_folder(folder: Path, image_size: int) -> _ImageFolder:
    layout = (f"expected {folder}/<class name>/<image>.png|.jpg|... with one sub-folder per "
              "class (or train/ and test/ folders, each laid out that way)")
    if not folder.is_dir():
        raise DatasetNotFoundError(f"image folder {folder} does not exist; {layout}")
    check = _ImageCheck(reduce_to=image_size)
    loader = functools.partial(_load_image, reduce_to=image_size)  # picklable, for workers
    try:
        ds = _ImageFolder(str(folder), loader=loader, is_valid_file=check, allow_empty=True)
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


def check_layout(root: str | os.PathLike | None) -> None:
    """Cheap check that ``root`` is an image folder (decodes nothing): it exists and has at least
    2 class sub-folders holding files with an image extension, directly or under train/ and
    test/; DatasetNotFoundError (ValueError for no root) saying what to fix otherwise."""
    if root is None:
        raise ValueError("imagefolder needs a data root (root=, or --data-root): the folder "
                         "holding one sub-folder per class")
    root = Path(root)
    layout = (f"expected {root}/<class name>/<image>.png|.jpg|... with one sub-folder per class "
              "(or train/ and test/ folders, each laid out that way)")
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder {root} does not exist; {layout}")
    split = (root / "train").is_dir() and (root / "test").is_dir()
    for folder in ((root / "train", root / "test") if split else (root,)):
        classes = sorted(e.path for e in os.scandir(folder)
                         if e.is_dir() and not e.name.startswith("."))
        if len(classes) < 2:
            raise DatasetNotFoundError(f"{folder} has {len(classes)} class sub-folder(s); a "
                                       f"classifier needs at least 2; {layout}")
        empty = [c for c in classes if not any(
            f.is_file() and f.name.lower().endswith(ACCEPTED_EXTENSIONS)
            and not f.name.startswith(".") for f in os.scandir(c))]
        if empty:
            raise DatasetNotFoundError(f"no image files in class folder(s) {', '.join(empty)}; "
                                       f"{layout}")


def load_imagefolder(root, download, image_size=32, test_fraction=0.2) -> Source:
    if root is None:
        raise ValueError("imagefolder needs root= the folder holding one sub-folder per class")
    image_size = check_int("image_size", image_size, 8)
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) or not (
        0 < test_fraction < 1
    ):
        raise ValueError(f"test_fraction must be a number with 0 < test_fraction < 1, got "
                         f"{test_fraction!r}")
    root = Path(root)
    if (root / "train").is_dir() and (root / "test").is_dir():
        train = _scan_folder(root / "train", image_size)
        test = _scan_folder(root / "test", image_size)
        if train.classes != test.classes:
            raise ValueError(f"{root / 'train'} and {root / 'test'} must have the same class "
                             f"folders; train has {train.classes}, test has {test.classes}")
        train_idx, test_idx = range(len(train)), range(len(test))
    else:
        train = test = _scan_folder(root, image_size)
        # Fixed split (independent of `seed`); every class keeps at least one training image.
        targets = np.asarray(train.targets)
        picked = set(stratified_pick(targets, test_fraction, np.random.default_rng(0)))
        for c in np.unique(targets):  # a class with one image: it goes to training
            members = set(np.flatnonzero(targets == c).tolist())
            if members <= picked:
                picked.discard(min(members))
        test_idx = sorted(picked)
        train_idx = [i for i in range(len(targets)) if i not in picked]
    if len(train.classes) < 2:
        raise ValueError(f"{root} has {len(train.classes)} class folder(s); a classifier needs "
                         "at least 2")
    # Split over a Split: the inner one selects, the outer one transforms and subsets.
    train_part = Split(train, train_idx, train.targets, None)
    test_part = Split(test, test_idx, test.targets, None)
    return Source(train_part, train_part.targets, test_part, test_part.targets, train.classes,
                  3, image_size, _IMAGENET_MEAN, _IMAGENET_STD, resize=image_size)


