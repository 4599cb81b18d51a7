"""What every dataset loader hands back, and the plumbing they share (splits, transforms)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2


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


@dataclass
class Source:
    """What a loader hands back: raw splits (PIL images or (C, H, W) tensors) and metadata."""

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


class Split(Dataset):
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


class TensorImages(Dataset):
    """Images held as one tensor (N, C, H, W) with their labels; no per-item decoding."""

    def __init__(self, images: torch.Tensor, labels: Sequence[int]) -> None:
        assert len(images) == len(labels)
        self.images, self.labels = images, [int(y) for y in labels]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], self.labels[i]


def make_transform(mean, std, size: int, augment: bool, resize: int | None) -> v2.Compose:
    """Image -> normalised float32 (C, H, W): optional resize/centre crop, augmentation."""
    steps: list[Callable] = [v2.ToImage()]
    if resize is not None:
        steps += [v2.Resize(resize, antialias=True), v2.CenterCrop(resize)]
    if augment:
        # PAPER.md: pad 2 per side for 32x32 CIFAR, random crop back, flip; scaled with size.
        steps += [v2.RandomCrop(size, padding=size // 16), v2.RandomHorizontalFlip()]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std)),
              v2.ToPureTensor()]
    return v2.Compose(steps)


def stratified_pick(targets: Sequence[int], fraction: float,
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


def check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)

