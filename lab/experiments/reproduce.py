"""The paper's CIFAR recipe (PAPER.md) as a ready training config, with a cost estimate."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

# PAPER.md, official code: SGD momentum 0.9, lr 0.1 divided by 10 at 50% and 75%, 80k steps at
# batch 100, weight decay 2e-4 on conv/linear weights, pad-2 crop + flip augmentation (the
# cifar loaders' default), BN eps 1e-3 and running-average momentum 0.01 (decay 0.99).
RECIPE: dict[str, Any] = {"steps": 80_000, "batch_size": 100, "lr": 0.1, "momentum": 0.9,
                          "optimizer": "sgd", "schedule": "step", "weight_decay": 2e-4,
                          "augment": True, "model_kwargs": {"bn_momentum": 0.01}}
# hamiltonian-1202: weight decay 5e-4, batch 32, 240k steps.
RECIPE_1202: dict[str, Any] = {**RECIPE, "steps": 240_000, "batch_size": 32,
                               "weight_decay": 5e-4}
DATASETS = ("cifar10", "cifar100")


def recipe_config(model: str, dataset: str, *, memory: str = "reversible",
                  data_root: str | None = None, seed: int = 0) -> dict[str, Any]:
    """The TrainConfig dict of the paper's recipe for ``model`` on ``dataset``."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset={dataset!r}: the paper's recipe is for {', '.join(DATASETS)}")
    import core

    recipe = RECIPE_1202 if model == "hamiltonian-1202" else RECIPE
    if not core.model_config(model).paired:
        memory = "standard"  # ResNet blocks have no inverse
    config = {**recipe, "model_kwargs": dict(recipe["model_kwargs"]), "model": model,
              "dataset": dataset, "memory": memory, "seed": seed,
              "checkpoint_every": 1000}
    if data_root is not None:
        config["data_root"] = data_root
    return config


def check_dataset(dataset: str, data_root: str | None, download: bool = False) -> None:
    """Raise core.data.DatasetNotFoundError (its message says where to put the files, and that
    `--download` fetches them); with ``download``, fetch missing files first. Then load it once,
    which checks the files' contents."""
    from core.data import check_files, load_dataset

    check_files(dataset, root=data_root, download=download, how="`--download`")
    load_dataset(dataset, root=data_root, augment=False)


@dataclass
class Estimate:
    """Measured cost of a few steps, scaled to the recipe; an estimate, not a measurement."""

    model: str
    device: str
    batch_size: int
    steps: int
    seconds_per_step: float       # median of the timed steps (after warm-up)
    saved_bytes: int              # activations saved for backward, one step (parameters excluded)
    param_bytes: int

    @property
    def hours(self) -> float:
        return self.seconds_per_step * self.steps / 3600

    def text(self) -> str:
        return (f"{self.model}, batch {self.batch_size} on {self.device}: "
                f"{self.seconds_per_step:.3f} s/step measured -> about {self.hours:.1f} h for "
                f"{self.steps} steps (estimate: steps x measured time, without evaluation or "
                f"data loading); activations saved for backward {self.saved_bytes / 2**20:.1f} "
                f"MiB/step, parameters {self.param_bytes / 2**20:.1f} MiB (x4 with SGD momentum "
                "and gradients)")


def estimate(model: str, *, num_classes: int = 10, memory: str = "reversible",
             device: str = "cpu", timed_steps: int = 3) -> Estimate:
    """Time ``timed_steps`` SGD steps of the recipe's batch on random 32x32 images."""
    import statistics

    import torch
    import torch.nn.functional as F

    import core
    from core.memory import SavedTensorMeter

    recipe = RECIPE_1202 if model == "hamiltonian-1202" else RECIPE
    batch = recipe["batch_size"]
    if not core.model_config(model).paired:
        memory = "standard"  # ResNet blocks have no inverse
    torch.manual_seed(0)
    net = core.create_model(model, num_classes=num_classes, in_channels=3, memory=memory,
                            **recipe["model_kwargs"]).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, num_classes, (batch,), device=device)
    times, saved = [], 0
    for i in range(timed_steps + 1):  # the first step warms up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        with SavedTensorMeter(exclude=net.parameters()) as meter:
            loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t)
        saved = meter.bytes
    params = sum(p.numel() * p.element_size() for p in net.parameters())
    return Estimate(model, device, batch, recipe["steps"], statistics.median(times), saved,
                    params)
