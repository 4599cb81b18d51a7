"""The generated shapes dataset: ten shape classes, random colour, size, position and noise."""

from __future__ import annotations

import functools

import numpy as np
import torch

from core.data.base import Source, TensorImages, check_int

SHAPE_CLASSES = ("circle", "square", "triangle", "star", "cross", "ring", "diamond", "hexagon",
                 "crescent", "bar")


def load_shapes(root, download, train_size=5000, test_size=1000, shapes_seed=0) -> Source:
    k = len(SHAPE_CLASSES)
    train_size = check_int("train_size", train_size, k)
    test_size = check_int("test_size", test_size, k)
    shapes_seed = check_int("shapes_seed", shapes_seed, 0)
    train_x, train_y = _shapes(shapes_seed, 0, train_size)
    test_x, test_y = _shapes(shapes_seed, 1, test_size)
    pixels = train_x.reshape(train_size, 3, -1) / 255.0
    return Source(
        # torch.tensor copies: the cached arrays stay read-only and shared by nobody else.
        train=TensorImages(torch.tensor(train_x), train_y), train_targets=train_y.tolist(),
        test=TensorImages(torch.tensor(test_x), test_y), test_targets=test_y.tolist(),
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

