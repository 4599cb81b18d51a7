"""CIFAR-10/100 and STL-10 from their official files: presence or md5 checks, a safe unpickler."""

from __future__ import annotations

import pickle
import pickletools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torchvision import datasets as tvd
from torchvision.datasets.utils import check_integrity, download_and_extract_archive

from core.data.base import DatasetNotFoundError, Source

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
                  title: str, how: str | None = None) -> Path:
    """Makes sure `needed` files are in root/base_folder, downloading (md5-checked) if asked.

    `how` names the way to ask for the download where the caller offers one (a CLI flag, a
    form's checkbox); default: ``load_dataset(..., download=True)``.
    """
    folder = root / official.base_folder
    missing = [f for f in needed if not (folder / f).is_file()]
    how = (
        f"Get them with {how or 'load_dataset(..., download=True)'} where the network allows "
        f"it (torchvision downloads and md5-verifies them), or download {official.url} "
        f"elsewhere and extract it into {root} (root= or --data-root, else $LAB_DATA, choose "
        f"the data folder)."
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


def ensure_files(name: str, root: str | Path, download: bool, how: str | None = None) -> Path:
    """The folder of ``name``'s (cifar10, cifar100, stl10) files under ``root``, downloading
    them (md5-verified) when ``download``; DatasetNotFoundError naming what is missing and how
    to get it otherwise. Reads no file: `load_*` below check their contents."""
    if name == "stl10":
        return _files_needed(tvd.STL10, _STL10_FILES, Path(root), download, "STL-10", how)
    cls, official = {"cifar10": (_CIFAR10, tvd.CIFAR10), "cifar100": (_CIFAR100, tvd.CIFAR100)}[
        name]
    files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    title = "CIFAR-10" if name == "cifar10" else "CIFAR-100"
    return _files_needed(official, files, Path(root), download, title, how)


_STL10_PAIRS = (("train_X.bin", "train_y.bin"), ("test_X.bin", "test_y.bin"))
_STL10_FILES = [f for pair in _STL10_PAIRS for f in pair]


def load_cifar(root, download, *, which: str) -> Source:
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
    return Source(train, list(train.targets), test, list(test.targets), train.classes, 3, 32,
                   mean, std)


def load_stl10(root, download) -> Source:
    cls = _STL10
    pairs = _STL10_PAIRS
    folder = ensure_files("stl10", root, download)
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
    return Source(train, train.labels.tolist(), test, test.labels.tolist(), names, 3, 96,
                   _STL10_MEAN, _STL10_STD)

