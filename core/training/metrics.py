"""What the trainer measures: peak memory, activation bytes, and running sums over an epoch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.memory import SavedTensorMeter, peak_memory_bytes

STEP_KEYS = ("step", "epoch", "epoch_frac", "loss", "acc", "lr", "samples_per_sec",
             "peak_mem_bytes", "saved_bytes", "time", "skipped")
# on the drift watch's steps (every drift_every) also: the largest segment rebuild error, and
# one key per reversible segment j (relative L2 error of its rebuilt input)
DRIFT_KEY, DRIFT_SEGMENT_KEY = "rebuild_error", "rebuild_error_s{}"
EPOCH_KEYS = ("epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "lr",
              "epoch_time", "peak_mem_bytes", "time")


def reset_peak_memory(device: torch.device) -> None:
    """Start a new CUDA high-water mark; on CPU the peak RSS cannot be reset (process lifetime)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> int:
    """CUDA: max allocated since the last reset. CPU: the process's peak RSS so far."""
    return peak_memory_bytes(device)


def saved_tensors(model: nn.Module) -> SavedTensorMeter:
    """Counts the bytes autograd saves for backward, parameters excluded.

    Measured on every training step: the pack hook is one Python call per saved tensor. For the
    default model (batch 64, one CPU thread) that was 18.5 vs 17.7 ms per step best-of-6, and
    within noise at the median.
    """
    return SavedTensorMeter(exclude=model.parameters())


@dataclass
class Running:
    """Sums over the samples of one epoch, so means are exact across batches, ranks and resumes."""

    loss_sum: float = 0.0
    correct: float = 0.0
    count: float = 0.0

    def add(self, loss_sum: float, correct: float, count: float) -> None:
        self.loss_sum += loss_sum
        self.correct += correct
        self.count += count

    @property
    def loss(self) -> float:
        return self.loss_sum / self.count if self.count else float("nan")

    @property
    def acc(self) -> float:
        return self.correct / self.count if self.count else float("nan")

    def state(self) -> dict[str, float]:
        return {"loss_sum": self.loss_sum, "correct": self.correct, "count": self.count}
