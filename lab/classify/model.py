"""Trained classifiers loaded from the run store only: safetensors weights + JSON config, cached."""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lab.runs.store import Run, Store

_RUN_ID = re.compile(r"^[0-9a-f]{8}$")  # lab.runs.store run ids: 8 hex characters


class ClassifierError(ValueError):
    """A run cannot serve as a classifier; the message says why and what to do."""


@dataclass(frozen=True)
class RunChoice:
    """A completed run that can classify images, as the run selector lists it."""

    id: str
    model: str
    dataset: str
    test_acc: float | None  # the run's final test accuracy, in [0, 1]
    name: str | None

    @property
    def label(self) -> str:
        acc = "-" if self.test_acc is None else f"{100 * self.test_acc:.2f}%"
        name = f" ({self.name})" if self.name else ""
        return f"{self.id}{name} · {self.model} on {self.dataset} · test acc {acc}"


@dataclass(frozen=True)
class Classifier:
    """A trained model in eval mode with what its inputs must look like."""

    run_id: str
    model: torch.nn.Module  # eval mode, CPU, memory mode "standard" (inference keeps nothing)
    spec: Any  # core.images.ImageSpec of the run's training data
    class_names: tuple[str, ...]
    dataset: str
    model_name: str


def completed_runs(store: Store) -> list[RunChoice]:
    """Completed runs whose folder holds weights and config, best test accuracy first."""
    from core.training.checkpoint import CONFIG, WEIGHTS

    choices = []
    for run in store.list_runs(status="completed"):
        folder = store.run_dir(run.id)
        if (folder / WEIGHTS).is_file() and (folder / CONFIG).is_file():
            choices.append(_choice(run))
    # stable sort: equal accuracies keep list_runs' newest-first order
    return sorted(choices, key=lambda c: -1.0 if c.test_acc is None else -c.test_acc)


def _choice(run: Run) -> RunChoice:
    acc = run.final_test_acc
    return RunChoice(id=run.id, model=str(run.model), dataset=str(run.dataset),
                     test_acc=None if acc is None else float(acc), name=run.name)


class ClassifierCache:
    """Loads classifiers by run id from one store, at most `size` kept, keyed by checkpoint.

    The key includes the weights file's modification time and size, so a run whose checkpoint
    changed is loaded afresh. Nothing but the store's own `model.safetensors` and `config.json`
    is ever read as a model: the run id must be a completed run of this store.
    """

    def __init__(self, home: str | Path | None = None, size: int = 4) -> None:
        self.home, self.size = home, size
        self._models: OrderedDict[tuple, Classifier] = OrderedDict()
        self._bundles: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def runs(self) -> list[RunChoice]:
        with Store(self.home) as store:
            return completed_runs(store)

    def get(self, run_id: str) -> Classifier:
        """The classifier of a completed run; ClassifierError if there is none."""
        from core.training.checkpoint import WEIGHTS

        if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
            raise ClassifierError(f"{run_id!r} is not a run id (8 hex characters); pick a "
                                  f"completed run from the list")
        with Store(self.home) as store:
            run = store.get_run(run_id)
            folder = store.run_dir(run_id)
        if run is None or run.status != "completed":
            state = "does not exist" if run is None else f"is {run.status}"
            raise ClassifierError(f"run {run_id} {state}; pick a completed run from the list")
        weights = folder / WEIGHTS
        try:
            stat = weights.stat()
        except OSError:
            raise ClassifierError(f"run {run_id} has no weights file ({weights}); it cannot "
                                  f"classify. Pick another run") from None
        key = (run_id, stat.st_mtime_ns, stat.st_size)
        with self._lock:  # one load at a time; concurrent callers then share it
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            clf = self._load(run_id, folder)
            self._models[key] = clf
            while len(self._models) > self.size:
                self._models.popitem(last=False)
            return clf

    def _bundle(self, cfg: Any) -> Any:
        from core.data import load_dataset

        key = json.dumps([cfg.dataset, cfg.data_root, cfg.dataset_options], sort_keys=True)
        if key not in self._bundles:
            self._bundles[key] = load_dataset(cfg.dataset, root=cfg.data_root, augment=False,
                                              **cfg.dataset_options)
            while len(self._bundles) > self.size:
                self._bundles.popitem(last=False)
        return self._bundles[key]

    def bundle(self, run_id: str) -> Any:
        """The run's dataset (for examples), loaded as for its classifier."""
        from core.training.checkpoint import CONFIG, read_json
        from core.training.config import TrainConfig

        with Store(self.home) as store:
            folder = store.run_dir(run_id)
        cfg = TrainConfig.from_dict(read_json(folder / CONFIG))
        with self._lock:
            return self._bundle(cfg)

    def _load(self, run_id: str, folder: Path) -> Classifier:
        from core.data import DatasetNotFoundError
        from core.images import ImageSpec
        from core.training.checkpoint import CONFIG, load_trained_model, read_json
        from core.training.config import TrainConfig

        try:
            cfg = TrainConfig.from_dict(read_json(folder / CONFIG)).validate()
        except (OSError, ValueError, TypeError) as e:
            raise ClassifierError(f"run {run_id}: its config.json cannot be used ({e})") from None
        try:
            bundle = self._bundle(cfg)
        except DatasetNotFoundError as e:
            raise ClassifierError(f"run {run_id} was trained on {cfg.dataset!r}, whose files "
                                  f"are needed for its input statistics: {e}") from None
        try:  # safetensors and JSON only: no pickle; a grown (multi-level) run as it ended
            model = load_trained_model(folder, num_classes=bundle.num_classes,
                                       in_channels=bundle.in_channels)
        except (OSError, ValueError, TypeError) as e:
            raise ClassifierError(f"run {run_id}: its weights do not load into {cfg.model} "
                                  f"({str(e)[:200]})") from None
        return Classifier(run_id=run_id, model=model, spec=ImageSpec.from_bundle(bundle),
                          class_names=tuple(bundle.class_names), dataset=cfg.dataset,
                          model_name=cfg.model)
