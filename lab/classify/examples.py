"""Example images for the classifier app: a few test-set images of a run's dataset as PNG files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

DIGITS_SCALE = 8  # 8x8 digits are written 64x64 (nearest); the 8x8 box average undoes it exactly


def write_examples(bundle: Any, folder: str | Path, per_class: int = 1,
                   max_classes: int = 10) -> list[Path]:
    """Write the first `per_class` test images of up to `max_classes` classes; return the paths.

    The folder must be one the web app may serve (a temporary folder), never the run store.
    Pixels are the test images un-normalised back to 0..255, so an example goes through the
    same decoding and preprocessing as any upload and lands on the original input.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    targets = list(bundle.test.targets)
    mean = np.asarray(bundle.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(bundle.std, dtype=np.float32).reshape(-1, 1, 1)
    paths = []
    for label in range(min(bundle.num_classes, max_classes)):
        picks = [i for i, t in enumerate(targets) if t == label][:per_class]
        for k, i in enumerate(picks):
            x, _ = bundle.test[i]
            pixels = np.clip(np.rint((x.numpy() * std + mean) * 255), 0, 255).astype(np.uint8)
            pixels = pixels.transpose(1, 2, 0)
            image = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
            if bundle.name == "digits":
                image = image.resize((image.width * DIGITS_SCALE, image.height * DIGITS_SCALE),
                                     Image.Resampling.NEAREST)
            name = "".join(c if c.isalnum() else "-" for c in bundle.class_names[label])
            path = folder / f"{bundle.name}-{name}-{k}.png"
            image.save(path, format="PNG")
            paths.append(path)
    return paths
