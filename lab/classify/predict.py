"""One prediction: an untrusted image through core.images into a classifier, top-5 and timing."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import BinaryIO

import torch
from PIL import Image

from core.images import prepare_image
from lab.classify.model import Classifier

TOP_K = 5


@dataclass(frozen=True)
class Prediction:
    """What the classifier made of one image."""

    probabilities: dict[str, float]  # every class, summing to 1, most likely first
    ms: float  # server-side: decode + preprocessing + forward, milliseconds
    preview: Image.Image  # the input as the model saw it (size x size)
    source_size: tuple[int, int]  # (width, height) of the upload, upright
    format: str  # detected image format
    inverted: bool  # digits: a dark-on-light picture was inverted

    @property
    def top(self) -> list[tuple[str, float]]:
        """The `TOP_K` most likely classes with their probabilities."""
        return list(self.probabilities.items())[:TOP_K]


def predict(classifier: Classifier, source: bytes | str | os.PathLike | BinaryIO) -> Prediction:
    """Classify one image; raises core.images.ImageError for an input it refuses."""
    t0 = time.perf_counter()
    prepared = prepare_image(source, classifier.spec)
    with torch.inference_mode():
        logits = classifier.model(prepared.tensor[None])
        probs = torch.softmax(logits.double(), dim=1)[0]
    ms = (time.perf_counter() - t0) * 1e3
    order = torch.argsort(probs, descending=True).tolist()
    return Prediction(
        probabilities={classifier.class_names[i]: float(probs[i]) for i in order}, ms=ms,
        preview=prepared.preview, source_size=prepared.source_size, format=prepared.format,
        inverted=prepared.inverted)
