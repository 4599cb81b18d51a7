"""The trainer: loop, schedule, metrics callbacks, checkpoints, exact resume, DDP.

Example::

    from core.training import TrainConfig, Trainer
    result = Trainer(TrainConfig(epochs=5), run_dir="runs/demo").fit()
    result.status, result.final["test_acc"]

Under torchrun: ``torchrun --nproc_per_node N -m core.training.ddp_entry --config cfg.json
--run-dir DIR`` (see ``core/training/ddp_entry.py``).
"""

from core.training.config import TrainConfig
from core.training.trainer import Callback, Trainer, TrainResult

__all__ = ["Callback", "TrainConfig", "TrainResult", "Trainer"]
