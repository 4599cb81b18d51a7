"""The training loop: schedule, metrics callbacks, checkpoints, exact resume, signals, DDP.

Nothing here knows a run store or a web app: progress leaves through ``Callback`` methods and
the files of the run folder (see ``core.training.checkpoint``).

Events passed to ``Callback.on_event(kind, message)``: ``start``, ``resume``, ``warning``
(also a segment's rebuild error over the drift threshold), ``nonfinite`` (a step was skipped),
``grow`` (multi-level: the model was interpolated), ``memory`` (memory="auto": the plan made
for a new input shape, what it chose and why), ``replan`` (auto: out of memory, re-planned with
less and the step retried), ``interrupted``, ``failed``, ``completed``.

Out of memory: in ``auto`` the step is re-planned with less memory (``replan_smaller``) and
retried once, after putting back what the failed attempt touched (gradients, batch-norm
statistics, the RNG), so the run equals one that started with the new plan. Under DDP, or in
any other mode, the run fails with a reason naming ``auto``/``reversible`` and their need.

The drift watch (``drift_every``, step metrics ``rebuild_error``): ``core.training.watch``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from core.device import resolve_device
from core.training import distributed, sampling
from core.training.checkpoint import has_checkpoint, load_state, save_checkpoint, write_config
from core.training.config import TrainConfig, _jsonable
from core.training.metrics import Running, peak_memory, reset_peak_memory, saved_tensors
from core.training.signals import stop_signals
from core.training.watch import DriftWatch, oom_reason, optimizer_state_bytes, plan_line

MAX_NONFINITE = 3  # consecutive non-finite losses that end a run as "failed"
# Config fields that may change between a run and its resume without changing the numbers.
RESUMABLE_CHANGES = ("device", "num_workers", "checkpoint_every", "data_root", "drift_every")


class Callback:
    """Receives progress on rank 0. Every method is an optional no-op; see CONTRACTS.md."""

    def on_start(self, info: dict) -> None:
        """Once per fit: config, device, sizes, steps, ``resumed_from_step``."""

    def on_step(self, m: dict) -> None:
        """After every optimizer step: ``metrics.STEP_KEYS``."""

    def on_epoch(self, m: dict) -> None:
        """After every epoch's evaluation: ``metrics.EPOCH_KEYS``."""

    def on_event(self, kind: str, message: str) -> None:
        """Something a human should read (kinds listed in this module's docstring)."""

    def on_checkpoint(self, path: str) -> None:
        """After a checkpoint is complete; ``path`` is the run folder's model.safetensors."""


@dataclass(frozen=True)
class TrainResult:
    status: str                 # "completed" | "failed" | "interrupted"
    reason: str                 # one human-readable sentence
    final: dict = field(default_factory=dict)  # last metrics: step, epoch, test_acc, ...


@dataclass
class _Position:
    epoch: int = 0              # epochs completed
    step_in_epoch: int = 0      # batches of the current epoch consumed
    step: int = 0               # optimizer steps taken (skipped ones included)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay convolution and linear weights (tensors of 2+ dims); never norm params or biases."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.resolved_lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.resolved_lr)


def lr_factor(schedule: str, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the peak lr for 0-based step ``s`` (PAPER.md: /10 at 50% and 75%)."""
    if schedule == "step":
        return lambda s: 0.1 ** ((s >= 0.5 * total_steps) + (s >= 0.75 * total_steps))
    if schedule == "cosine":
        return lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total_steps) / total_steps))
    return lambda s: 1.0


class Trainer:
    """Trains ``cfg`` into ``run_dir``.

    Args:
        cfg: what to train.
        run_dir: folder for config.json and the checkpoint files (created if missing).
        callbacks: progress receivers, called on rank 0 only.
        model: an already built model to train instead of ``create_model(cfg.model, ...)``.
        data: a dataset bundle (``.train``, ``.test``, ``.num_classes``, ``.in_channels``) to
            use instead of ``core.data.load_dataset(cfg.dataset, ...)``.

    Under ``torchrun`` (WORLD_SIZE > 1) ``fit`` joins the process group, wraps the model in
    DistributedDataParallel and shards the data; only rank 0 writes files and calls callbacks.
    """

    def __init__(self, cfg: TrainConfig, run_dir: str | Path,
                 callbacks: Iterable[Callback] = (), *, model: nn.Module | None = None,
                 data: Any = None):
        if not isinstance(cfg, TrainConfig):
            raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}; "
                            "use TrainConfig.from_dict(d) for a dict")
        cfg.validate(check_names=False)
        if model is None:
            cfg.validate_model_name()
        if data is None:
            cfg.validate_dataset_name()
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.callbacks = list(callbacks)
        self.model = model  # the bare (unwrapped) model; built by fit() when None
        self._data = data
        self.device: torch.device | None = None  # resolved by fit()
        self._stop: str | None = None
        self._dist = distributed.DistInfo()

    @property
    def is_main(self) -> bool:
        """True on rank 0 (and in a single process): the one that writes and calls back."""
        return self._dist.is_main

    def request_stop(self, reason: str = "stop requested") -> None:
        """Finish the current step, save a checkpoint and return "interrupted" (thread-safe)."""
        self._stop = reason

    def fit(self, resume: bool = False) -> TrainResult:
        """Train to ``cfg.epochs``; with ``resume`` continue exactly from run_dir's checkpoint.

        Raises ValueError when run_dir already holds a checkpoint and ``resume`` is False, or
        when a resumed checkpoint was made with different settings.
        """
        self._stop = None
        device = resolve_device(self.cfg.device)
        self._dist = info = distributed.setup(device.type)
        if device.type == "cuda" and info.enabled:
            device = torch.device("cuda", info.local_rank)
        self.device = device
        try:
            # SIGTERM/SIGINT: stop after the current step with a checkpoint.
            with stop_signals(lambda name: self.request_stop(f"received {name}"),
                              pending=lambda: self._stop is not None):
                return self._fit(resume)
        finally:
            distributed.teardown(info)

    # -- setup ------------------------------------------------------------------------------

    def _fit(self, resume: bool) -> TrainResult:
        cfg, info, device = self.cfg, self._dist, self.device
        found = has_checkpoint(self.run_dir)
        if found and not resume:
            raise ValueError(f"{self.run_dir} already holds a checkpoint; pass resume=True to "
                             "continue it, or choose a new run folder")
        torch.manual_seed(cfg.seed)
        data = self._data if self._data is not None else self._load_data()
        if self.model is None:
            import core

            self.model = core.create_model(cfg.model, num_classes=data.num_classes,
                                           in_channels=data.in_channels, memory=cfg.memory,
                                           memory_mib=cfg.memory_mib,
                                           memory_limit_mib=cfg.memory_limit_mib,
                                           **cfg.model_kwargs)
        model = self.model.to(device)
        if hasattr(model, "set_memory_mode"):
            self._set_memory_mode(model)
        # Training draws (dropout) start from the seed however the model was built, and differ
        # between ranks (the same masks on every shard would be needlessly correlated).
        torch.manual_seed(int(np.random.SeedSequence([cfg.seed, info.rank]).generate_state(1)[0]))
        self._data_bundle = data
        self._batch = sampling.per_rank_batch(cfg.batch_size, info)
        self.steps_per_epoch = sampling.steps_per_epoch(len(data.train), self._batch, info)
        self.total_steps = cfg.steps or self.steps_per_epoch * cfg.epochs  # steps: overrides
        self.level = 1  # multi-level: grown level-1 times so far (see _grow)
        self.optimizer = build_optimizer(model, cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_factor(cfg.schedule, self.total_steps))
        self._pos, self._running = _Position(), Running()
        self._elapsed = self._epoch_elapsed = 0.0
        self._streak = 0
        self._last_lr = self.optimizer.param_groups[0]["lr"]  # the lr of the latest step
        self._last_epoch: dict = {}
        self._last_ckpt_step: int | None = None
        self._last_shape: tuple[int, ...] = ()
        self._announced = None  # the auto plan last recorded as an event
        self._drift = DriftWatch(cfg, self._event, info)
        resumed_from = self._restore() if found else None
        if info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_config(self.run_dir, cfg.to_dict())
        model = self.model  # a resume may have grown it (multi-level)
        self._ddp = (DistributedDataParallel(model, device_ids=[device.index]
                                             if device.type == "cuda" else None)
                     if info.enabled else model)
        self._emit("on_start", self._start_info(resumed_from))
        self._event("resume" if resumed_from is not None else "start",
                    f"resuming at step {resumed_from}" if resumed_from is not None
                    else f"training {cfg.model} on {cfg.dataset} for {self.total_steps} steps")
        return self._loop()

    def _set_memory_mode(self, model: nn.Module) -> None:
        cfg = self.cfg
        if cfg.memory == "budget":
            model.set_memory_mode("budget", mib=cfg.memory_mib)
        elif cfg.memory == "auto":
            model.set_memory_mode("auto", limit_mib=cfg.memory_limit_mib,
                                  optimizer_bytes=optimizer_state_bytes(model, cfg))
        else:
            model.set_memory_mode(cfg.memory)

    def _load_data(self):
        from core.data import load_dataset

        cfg = self.cfg
        return load_dataset(cfg.dataset, root=cfg.data_root, fraction=cfg.fraction, seed=cfg.seed,
                            augment=cfg.augment, **cfg.dataset_options)

    def _start_info(self, resumed_from: int | None) -> dict:
        data = self._data_bundle
        return {
            "config": self.cfg.to_dict(), "run_dir": str(self.run_dir),
            "device": str(self.device), "world_size": self._dist.world_size,
            "num_params": sum(p.numel() for p in self.model.parameters()),
            "lr": self.cfg.resolved_lr, "train_size": len(data.train),
            "test_size": len(data.test), "num_classes": data.num_classes,
            "in_channels": data.in_channels, "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps, "resumed_from_step": resumed_from,
        }

    # -- the loop ---------------------------------------------------------------------------

    def _loop(self) -> TrainResult:
        cfg, pos = self.cfg, self._pos
        t0 = time.perf_counter() - self._elapsed
        self._clock = lambda: time.perf_counter() - t0
        self._consistent = True
        try:
            while not self._done():
                epoch_start = time.perf_counter() - self._epoch_elapsed
                self._ddp.train()
                loader = sampling.train_loader(
                    self._data_bundle.train, seed=cfg.seed, epoch=pos.epoch, batch=self._batch,
                    skip=pos.step_in_epoch, info=self._dist, num_workers=cfg.num_workers,
                    pin_memory=self.device.type == "cuda")
                epoch_peak = 0
                t_last = time.perf_counter()
                for x, y in loader:
                    self._consistent = False
                    self._grow_to(1 + pos.step * cfg.levels // self.total_steps)
                    m = self._train_step(x, y, t_last)
                    self._epoch_elapsed = time.perf_counter() - epoch_start
                    self._consistent = True
                    epoch_peak = max(epoch_peak, m["peak_mem_bytes"])
                    self._emit("on_step", m)
                    if self._streak >= MAX_NONFINITE:
                        return self._failed()
                    stop = self._stop_reason()
                    if stop is not None:
                        return self._interrupt(stop)
                    if (cfg.checkpoint_every and pos.step % cfg.checkpoint_every == 0
                            and self._streak == 0):
                        self._save("running")
                    if self._done():  # a steps budget can end mid-epoch
                        break
                    t_last = time.perf_counter()
                self._end_epoch(time.perf_counter() - epoch_start, epoch_peak)
                stop = self._stop_reason()
                if stop is not None and not self._done():
                    return self._interrupt(stop)
        except KeyboardInterrupt:
            return self._interrupt("KeyboardInterrupt",
                                   save=self._consistent and not self._dist.enabled)
        except torch.OutOfMemoryError as e:
            reason = oom_reason(cfg, self.model, e, pos.step + 1, self._last_shape,
                                ddp=self._dist.enabled)
            self._event("failed", reason)
            return TrainResult("failed", reason, self._final())
        self._event("completed", f"finished {pos.epoch} epochs ({pos.step} steps)")
        return TrainResult("completed", f"trained {pos.epoch} epochs ({pos.step} steps)",
                           self._final())

    def _done(self) -> bool:
        """The steps budget is spent (``cfg.steps``), else every epoch is done."""
        if self.cfg.steps is not None:
            return self._pos.step >= self.total_steps
        return self._pos.epoch >= self.cfg.epochs

    def _grow_to(self, level: int, event: bool = True) -> None:
        """Multi-level training: ``interpolate`` the model until it reaches ``level``.

        The optimizer restarts (fresh momentum) on the grown parameters, with the lr schedule
        continuing at the current step; DDP, if any, wraps the new model.
        """
        from core.analysis.interpolate import interpolate

        while self.level < min(level, self.cfg.levels):
            self.model = interpolate(self.model).to(self.device)
            if hasattr(self.model, "set_memory_mode"):
                self._set_memory_mode(self.model)  # auto: the grown model's own plan
            self.level += 1
            step = self._pos.step
            self.optimizer = build_optimizer(self.model, self.cfg)
            factor = lr_factor(self.cfg.schedule, self.total_steps)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
            self.scheduler.last_epoch = step
            for group in self.optimizer.param_groups:
                group["lr"] = group["initial_lr"] * factor(step)
            self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]
            if self._dist.enabled:
                self._ddp = DistributedDataParallel(
                    self.model, device_ids=[self.device.index]
                    if self.device.type == "cuda" else None)
            else:
                self._ddp = self.model
            self._ddp.train()
            if event:
                c = self.model.config
                self._event("grow", f"step {step}: level {self.level} of {self.cfg.levels}, "
                            f"blocks {list(c.blocks)}, h={c.h:g}, "
                            f"{sum(p.numel() for p in self.model.parameters())} parameters")

    def _train_step(self, x: torch.Tensor, y: torch.Tensor, t_start: float) -> dict:
        cfg, device, pos = self.cfg, self.device, self._pos
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        reset_peak_memory(device)
        self._last_shape = tuple(x.shape)
        buffers = list(self.model.buffers())
        # Batch-norm statistics are updated by the forward pass; a skipped step puts them back.
        backup = [b.detach().clone() for b in buffers]
        self._last_lr = lr = self.optimizer.param_groups[0]["lr"]
        rng = (torch.get_rng_state(),
               torch.cuda.get_rng_state(device) if device.type == "cuda" else None)
        for attempt in (0, 1):
            try:
                with saved_tensors(self.model) as meter, \
                        torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp):
                    logits = self._ddp(x)
                    loss = F.cross_entropy(logits.float(), y)
                # Backward runs even for a non-finite loss: under DDP every rank must join the
                # gradient all-reduce, and whether to skip is only known after the stats
                # all-reduce.
                loss.backward()
                break
            except torch.OutOfMemoryError:
                if attempt or not self._can_replan():
                    raise
                # Put back what the failed attempt touched, then plan with less and retry.
                logits = loss = None
                self.optimizer.zero_grad(set_to_none=True)
                with torch.no_grad():
                    for b, saved in zip(buffers, backup):
                        b.copy_(saved)
                torch.set_rng_state(rng[0])
                if rng[1] is not None:
                    torch.cuda.set_rng_state(rng[1], device)
                    torch.cuda.empty_cache()
                self._replan(f"step {pos.step + 1}: out of memory")
        self._announce_plan()
        n = y.numel()
        stats = torch.stack([loss.detach().double() * n,
                             (logits.detach().argmax(1) == y).sum().double(),
                             torch.tensor(float(n), dtype=torch.float64, device=device),
                             (~torch.isfinite(loss.detach())).double()])
        loss_sum, correct, count, nonfinite = distributed.all_reduce_sum(stats, self._dist).tolist()
        skipped = nonfinite > 0
        if skipped:
            with torch.no_grad():
                for b, saved in zip(buffers, backup):
                    b.copy_(saved)
            self._streak += 1
        else:
            self.optimizer.step()
            self._streak = 0
            self._running.add(loss_sum, correct, count)
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        pos.step += 1
        pos.step_in_epoch += 1
        if skipped:
            self._event("nonfinite", f"step {pos.step}: loss is {loss_sum / count}; step skipped "
                        f"({self._streak} in a row; {MAX_NONFINITE} end the run)")
        dt = time.perf_counter() - t_start
        peak = peak_memory(device)
        if cfg.memory == "auto" and device.type == "cuda" and hasattr(self.model, "observe_peak"):
            # A measured peak over the limit corrects the workspace allowance (untested on a
            # GPU here; the CPU has no allocation peak to measure).
            if self.model.observe_peak(peak) is not None:
                self._event("replan", f"step {pos.step}: the step's peak, {peak / 2**20:.1f} "
                            "MiB, was over the auto limit; re-planned with the workspace it "
                            "implies")
                self._announced = None
        drift = self._drift.measure(self.model, x, pos.step) if self._drift.due(
            self.model, pos.step) else {}
        return {
            "step": pos.step, "epoch": pos.epoch + 1,
            "epoch_frac": pos.epoch + pos.step_in_epoch / self.steps_per_epoch,
            "loss": loss_sum / count, "acc": correct / count, "lr": lr,
            "samples_per_sec": count / dt if dt > 0 else float("nan"),
            "peak_mem_bytes": peak, "saved_bytes": meter.bytes,
            "time": self._clock(), "skipped": skipped,
            **({"level": self.level} if cfg.levels > 1 else {}), **drift,
        }

    # -- memory: auto plans, out of memory ----------------------------------------------------

    def _can_replan(self) -> bool:
        """auto re-plans and retries a step that ran out of memory; under DDP the other ranks
        would wait in the gradient all-reduce of the failed attempt, so there it fails."""
        return (self.cfg.memory == "auto" and not self._dist.enabled
                and hasattr(self.model, "replan_smaller"))

    def _replan(self, why: str) -> None:
        old = self.model.memory_plan()
        try:
            new = self.model.replan_smaller()
        except ValueError as e:
            raise torch.OutOfMemoryError(f"{why}, and re-planning cannot help: {e}") from None
        self._event("replan", f"{why} with the auto plan ({plan_line(old)}); re-planned "
                    f"({plan_line(new)}) and retried the step")
        self._announced = new

    def _announce_plan(self) -> None:
        """memory="auto": record the plan of a new input shape as a ``memory`` event."""
        if self.cfg.memory != "auto" or not hasattr(self.model, "memory_plan"):
            return
        plan = self.model.memory_plan()
        if plan is not None and plan is not getattr(self, "_announced", None):
            self._announced = plan
            self._event("memory", str(plan))

    def _end_epoch(self, epoch_time: float, epoch_peak: int) -> None:
        pos, running = self._pos, self._running
        test_loss, test_acc = self._evaluate()
        pos.epoch += 1
        pos.step_in_epoch = 0
        self._last_epoch = {
            "epoch": pos.epoch, "step": pos.step, "train_loss": running.loss,
            "train_acc": running.acc, "test_loss": test_loss, "test_acc": test_acc,
            "lr": self._last_lr, "epoch_time": epoch_time,
            "peak_mem_bytes": epoch_peak, "time": self._clock(),
        }
        self._running, self._epoch_elapsed = Running(), 0.0
        self._emit("on_epoch", dict(self._last_epoch))
        if self._streak == 0:
            self._save("completed" if self._done() else "running")

    @torch.no_grad()
    def _evaluate(self) -> tuple[float, float]:
        """Test loss and accuracy over the whole test set, in eval mode (all ranks together)."""
        model, device = self.model, self.device
        distributed.broadcast_buffers(model, self._dist)
        loader = sampling.eval_loader(self._data_bundle.test, batch=max(256, self._batch),
                                      info=self._dist, num_workers=self.cfg.num_workers,
                                      pin_memory=device.type == "cuda")
        was_training = model.training
        model.eval()
        sums = torch.zeros(3, dtype=torch.float64, device=device)
        try:
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.cfg.amp):
                    logits = model(x).float()
                sums[0] += F.cross_entropy(logits, y, reduction="sum").double()
                sums[1] += (logits.argmax(1) == y).sum()
                sums[2] += y.numel()
        finally:
            model.train(was_training)
        loss_sum, correct, count = distributed.all_reduce_sum(sums, self._dist).tolist()
        return (loss_sum / count, correct / count) if count else (float("nan"), float("nan"))

    # -- endings ----------------------------------------------------------------------------

    def _stop_reason(self) -> str | None:
        """The stop request, agreed on by every rank (any rank may have caught a signal)."""
        local = self._stop
        if not self._dist.enabled:
            return local
        flag = torch.tensor([float(local is not None)], device=self.device)
        distributed.all_reduce_sum(flag, self._dist)
        return local or ("stop requested on another process" if flag.item() else None)

    def _interrupt(self, reason: str, save: bool = True) -> TrainResult:
        if save:
            self._save("interrupted")
        where = (f"a resume continues from its checkpoint at step {self._last_ckpt_step}"
                 if self._last_ckpt_step is not None else "no checkpoint yet: a resume starts over")
        msg = f"{reason}: stopped at step {self._pos.step} ({where})"
        self._event("interrupted", msg)
        return TrainResult("interrupted", msg, self._final())

    def _failed(self) -> TrainResult:
        kept = (f"the last good checkpoint (step {self._last_ckpt_step}) is kept in {self.run_dir}"
                if self._last_ckpt_step is not None else "no checkpoint had been written")
        msg = (f"loss was not finite for {MAX_NONFINITE} steps in a row (steps "
               f"{self._pos.step - MAX_NONFINITE + 1}-{self._pos.step}); stopped; {kept}. "
               "Try a lower lr.")
        self._event("failed", msg)
        return TrainResult("failed", msg, self._final())

    def _final(self) -> dict:
        return {**self._last_epoch, "step": self._pos.step, "epochs_done": self._pos.epoch,
                "time": self._clock(),
                "checkpoint_step": self._last_ckpt_step,
                "num_params": sum(p.numel() for p in self.model.parameters())}

    # -- checkpoints ------------------------------------------------------------------------

    def _save(self, status: str) -> None:
        """Write a checkpoint of the current step (collective: every rank calls it)."""
        info, pos = self._dist, self._pos
        cpu_rng = distributed.all_gather(self._on_comm(torch.get_rng_state()), info)
        rng: dict[str, Any] = {"torch_cpu": [t.cpu() for t in cpu_rng]}
        if self.device.type == "cuda":
            cuda_rng = torch.cuda.get_rng_state(self.device)
            rng["torch_cuda"] = [t.cpu() for t in distributed.all_gather(
                self._on_comm(cuda_rng), info)]
        if info.is_main:
            state = {
                "format": 1, "config_json": json.dumps(self.cfg.to_dict(), sort_keys=True),
                "step": pos.step, "epoch": pos.epoch, "step_in_epoch": pos.step_in_epoch,
                "world_size": info.world_size, "steps_per_epoch": self.steps_per_epoch,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng": rng,
                "running": self._running.state(), "elapsed": self._clock(),
                "epoch_elapsed": self._epoch_elapsed, "nonfinite_streak": self._streak,
                "last_lr": self._last_lr,
                "last_epoch": dict(self._last_epoch), "level": self.level,
            }
            meta = {"step": pos.step, "epoch": pos.epoch, "step_in_epoch": pos.step_in_epoch,
                    "epochs": self.cfg.epochs, "steps_per_epoch": self.steps_per_epoch,
                    "total_steps": self.total_steps, "status": status,
                    "saved_at": time.time(), "metrics": dict(self._last_epoch),
                    "level": self.level, "network": _network_json(self.model)}
            self.run_dir.mkdir(parents=True, exist_ok=True)
            path = save_checkpoint(self.run_dir, weights=self.model.state_dict(), state=state,
                                   meta=meta)
            self._emit("on_checkpoint", str(path))
        self._last_ckpt_step = pos.step
        distributed.barrier(info)

    def _on_comm(self, t: torch.Tensor) -> torch.Tensor:
        # nccl moves CUDA tensors only; gloo and single processes take CPU tensors.
        return t.to(self.device) if self._dist.enabled and self.device.type == "cuda" else t

    def _restore(self) -> int:
        """Load run_dir's checkpoint into model, optimizer, scheduler, RNGs and position."""
        state = load_state(self.run_dir)
        # A key the saved config lacks (an older run) had its default then.
        saved_cfg = {**TrainConfig().to_dict(), **json.loads(state["config_json"])}
        now = self.cfg.to_dict()
        changed = sorted(k for k in set(saved_cfg) | set(now)
                         if saved_cfg.get(k) != now.get(k) and k not in RESUMABLE_CHANGES)
        if changed:
            diffs = ", ".join(f"{k}: {saved_cfg.get(k)!r} -> {now.get(k)!r}" for k in changed)
            raise ValueError(f"cannot resume {self.run_dir}: the config changed ({diffs}); only "
                             f"{', '.join(RESUMABLE_CHANGES)} may differ")
        if state["steps_per_epoch"] != self.steps_per_epoch:
            raise ValueError(f"cannot resume {self.run_dir}: {state['steps_per_epoch']} steps per "
                             f"epoch then, {self.steps_per_epoch} now (did the data or the number "
                             "of processes change?)")
        self._grow_to(state.get("level", 1), event=False)  # the level it was saved at
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        pos = self._pos
        pos.step, pos.epoch, pos.step_in_epoch = state["step"], state["epoch"], state[
            "step_in_epoch"]
        self._running = Running(**state["running"])
        self._elapsed, self._epoch_elapsed = state["elapsed"], state["epoch_elapsed"]
        self._streak, self._last_epoch = state["nonfinite_streak"], dict(state["last_epoch"])
        self._last_lr = state["last_lr"]
        self._last_ckpt_step = pos.step
        rank, rng = self._dist.rank, state["rng"]
        if state["world_size"] != self._dist.world_size:
            self._event("warning", f"checkpoint made with {state['world_size']} processes, "
                        f"resumed with {self._dist.world_size}: data sharding and random "
                        "draws differ from an uninterrupted run")
        torch.set_rng_state(rng["torch_cpu"][min(rank, len(rng["torch_cpu"]) - 1)])
        if self.device.type == "cuda" and "torch_cuda" in rng:
            cuda = rng["torch_cuda"]
            torch.cuda.set_rng_state(cuda[min(rank, len(cuda) - 1)], self.device)
        return pos.step

    # -- callbacks --------------------------------------------------------------------------

    def _emit(self, method: str, payload: Any) -> None:
        if self._dist.is_main:
            for cb in self.callbacks:
                getattr(cb, method)(payload)

    def _event(self, kind: str, message: str) -> None:
        if self._dist.is_main:
            for cb in self.callbacks:
                cb.on_event(kind, message)


def _network_json(model: nn.Module) -> dict | None:
    """The model's NetworkConfig as JSON (grown models differ from the TrainConfig's)."""
    import dataclasses

    config = getattr(model, "config", None)
    return _jsonable(dataclasses.asdict(config)) if dataclasses.is_dataclass(config) else None
