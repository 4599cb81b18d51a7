"""The training configuration: one dataclass, JSON in and out, validated with helpful errors."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from core.memory import MEMORY_MODES, check_supported

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "constant")
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_LR = {"sgd": 0.1, "adamw": 1e-3}  # used when lr is None


@dataclass
class TrainConfig:
    """What to train and how. ``TrainConfig()`` trains a small Hamiltonian net on digits.

    The defaults (the generic "hamiltonian": blocks (2, 2, 2), widths (16, 16, 32, 64); 15
    epochs of 22 steps) reached 99.4% test accuracy on the 8x8 digits in about 8 s of training
    on one or two CPU cores, and 99.2-100% over seeds 0-4
    (tests/test_training.py::test_default_config_reaches_target).
    """

    model: str = "hamiltonian"          # a name from core.list_models()
    model_kwargs: dict = field(default_factory=dict)  # create_model overrides ({}: its defaults)
    dataset: str = "digits"             # a name from core.data.list_datasets()
    data_root: str | None = None        # folder holding dataset files; None: core.data default
    dataset_options: dict = field(default_factory=dict)  # extra load_dataset(**options)
    fraction: float = 1.0               # share of the training set used, in (0, 1]
    augment: bool = True                # random training augmentation from core.data
    epochs: int = 15                    # passes over the (fractional) training set
    steps: int | None = None            # total optimizer steps; overrides epochs and schedule
    levels: int = 1                     # multi-level: interpolate() (x2 blocks) levels-1 times
    batch_size: int = 64                # samples per optimizer step, summed over all processes
    lr: float | None = None             # peak learning rate; None: 0.1 for sgd, 1e-3 for adamw
    optimizer: str = "sgd"              # "sgd" (momentum below) or "adamw"
    momentum: float = 0.9               # SGD momentum (PAPER.md recipe)
    schedule: str = "step"              # "step" (lr/10 at 50% and 75%), "cosine" or "constant"
    weight_decay: float = 5e-4          # on conv/linear weights only; PAPER.md: 2e-4 on CIFAR
    seed: int = 0                       # seeds init, data order and augmentation
    device: str = "auto"                # "auto" (cuda if available), "cpu" or "cuda"
    memory: str = "reversible"          # activation memory: standard, checkpoint, reversible,
    #                                     budget or auto (the engine decides; see core.network)
    memory_mib: float | None = None     # memory="budget": MiB of activations kept for backward
    memory_limit_mib: float | None = None  # memory="auto": MiB the whole step may use (None:
    #                                        the device's free memory less a margin)
    drift_every: int = 50               # rebuild-error check every N steps in reversible,
    #                                     budget and auto (one extra no-grad pass; 0: off)
    drift_anchor: bool = False          # above the drift threshold, anchor that segment
    amp: bool = False                   # bfloat16 autocast of forward passes (CUDA: sm80+)
    checkpoint_every: int = 200         # steps between mid-epoch checkpoints (0: epoch ends only)
    num_workers: int = 0                # DataLoader worker processes (0: load in this process)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a JSON-style dict; unknown keys are an error, missing keys take defaults."""
        if not isinstance(d, dict):
            raise TypeError(f"TrainConfig.from_dict expects a dict, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"unknown TrainConfig key(s) {unknown}; allowed: {', '.join(names)}")
        cfg = cls(**d)
        cfg.model_kwargs = dict(cfg.model_kwargs)
        cfg.dataset_options = dict(cfg.dataset_options)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (tuples become lists)."""
        return _jsonable(dataclasses.asdict(self))

    @property
    def resolved_lr(self) -> float:
        return DEFAULT_LR[self.optimizer] if self.lr is None else float(self.lr)

    def validate(self, check_names: bool = True) -> TrainConfig:
        """Raise ValueError/TypeError naming the bad value and what is allowed; return self.

        With ``check_names`` the model and dataset names are checked against ``core``'s
        registries (imported lazily).
        """
        _check_str(self, "model")
        _check_str(self, "dataset")
        for name in ("model_kwargs", "dataset_options"):
            if not isinstance(getattr(self, name), dict):
                raise TypeError(f"{name}={getattr(self, name)!r} must be a dict, e.g. "
                                f"{{'blocks': [2, 2, 2]}}")
        if self.data_root is not None and not isinstance(self.data_root, str):
            raise TypeError(f"data_root={self.data_root!r} must be a path string or None")
        _check_number(self, "fraction", lo=0.0, lo_open=True, hi=1.0,
                      allowed="a number in (0, 1], e.g. 0.1 for 10% of the training set")
        _check_int(self, "epochs", minimum=1)
        if self.steps is not None:
            _check_int(self, "steps", minimum=1)
        _check_int(self, "levels", minimum=1)
        _check_int(self, "batch_size", minimum=1)
        if self.lr is not None:
            _check_number(self, "lr", lo=0.0, lo_open=True,
                          allowed="a positive finite number, or None for the optimizer default")
        _check_choice(self, "optimizer", OPTIMIZERS)
        _check_number(self, "momentum", lo=0.0, hi=1.0, hi_open=True, allowed="a number in [0, 1)")
        _check_choice(self, "schedule", SCHEDULES)
        _check_number(self, "weight_decay", lo=0.0, allowed="a finite number >= 0")
        _check_int(self, "seed", minimum=0)
        _check_choice(self, "device", DEVICES)
        _check_choice(self, "memory", MEMORY_MODES)
        if self.memory == "budget" or self.memory_mib is not None:
            from core.reversible import check_budget_mib

            check_budget_mib(self.memory_mib)  # budget mode needs its MiB
        if self.memory_limit_mib is not None:
            from core.reversible import check_budget_mib

            check_budget_mib(self.memory_limit_mib, "memory_limit_mib")
            if self.memory != "auto":
                raise ValueError(f"memory_limit_mib={self.memory_limit_mib!r} is the limit of "
                                 f"memory='auto'; with memory={self.memory!r} leave it unset "
                                 "(budget mode takes memory_mib)")
        _check_int(self, "drift_every", minimum=0)
        for name in ("amp", "augment", "drift_anchor"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name}={getattr(self, name)!r} must be True or False")
        _check_int(self, "checkpoint_every", minimum=0)
        _check_int(self, "num_workers", minimum=0)
        if check_names:
            self.validate_model_name()
            self.validate_dataset_name()
        return self

    def validate_model_name(self) -> None:
        """The model name, and its ``model_kwargs`` (checked without building weights)."""
        import core

        names = core.list_models()
        if self.model not in names:
            raise ValueError(f"unknown model {self.model!r}; choose one of: {', '.join(names)}")
        try:  # bad overrides fail here, without building any weights
            net = core.model_config(self.model, **self.model_kwargs)
        except (ValueError, TypeError) as e:
            raise ValueError(f"model_kwargs={self.model_kwargs!r} do not fit model "
                             f"{self.model!r}: {e}") from e
        try:
            check_supported(self.memory, net)
        except ValueError as e:
            raise ValueError(f"model {self.model!r}: {e}") from None

    def validate_dataset_name(self) -> None:
        from core import data

        names = data.list_datasets()
        if self.dataset not in names:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of: "
                             f"{', '.join(names)}")


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def _check_str(cfg: TrainConfig, name: str) -> None:
    value = getattr(cfg, name)
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name}={value!r} must be a non-empty name string")


def _check_choice(cfg: TrainConfig, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(cfg, name)
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of: {', '.join(choices)}")


def _check_int(cfg: TrainConfig, name: str, minimum: int) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}={value!r} must be a whole number >= {minimum}")
    if value < minimum:
        raise ValueError(f"{name}={value!r} must be a whole number >= {minimum}")


def _check_number(cfg: TrainConfig, name: str, *, allowed: str, lo: float | None = None,
                  hi: float | None = None, lo_open: bool = False, hi_open: bool = False) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}={value!r} must be {allowed}")
    ok = math.isfinite(value)
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        raise ValueError(f"{name}={value!r} is not allowed; it must be {allowed}")
