"""Measuring tools shared by the sweeps and the benchmarks: machine record, step timing, memory.

Runs inside a Depth-lab job as well as on the command line: errors are ValueError, never
SystemExit.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import functools
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import core
from core.device import resolve_device
from core.memory import SavedTensorMeter, peak_rss_bytes

MiB = 2**20


def machine_info(device: torch.device) -> dict:
    """What the figures were measured on; stored beside every result."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = dict(date=_dt.datetime.now().isoformat(timespec="seconds"), cpu=cpu,
                cores=os.cpu_count(), torch_threads=torch.get_num_threads(),
                python=platform.python_version(), torch=torch.__version__,
                device=str(device), device_name=cpu)
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    return info


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_batch(batch: int, channels: int, size: int, classes: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, size, size, generator=g).to(device)
    y = torch.randint(0, classes, (batch,), generator=g).to(device)
    return x, y


def sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=2e-4)


def train_step(model, opt, x, y) -> float:
    """One full training step (forward, backward, optimizer); returns the loss."""
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss.item()


def saved_mib(forward: Callable[[], torch.Tensor], params) -> float:
    """MiB autograd holds for backward after ``forward()`` (parameters excluded)."""
    with SavedTensorMeter(exclude=params) as meter:
        out = forward()
    del out
    return meter.bytes / MiB


def interleaved_median_times(steps: dict[str, Callable[[], object]], repeats: int, warmup: int,
                             device: torch.device) -> dict[str, float]:
    """Median seconds per call of each step function, calling them round-robin.

    Interleaving spreads machine noise (other processes, clock changes) over every contender.
    """
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


@functools.lru_cache(maxsize=1)
def _mallinfo2() -> Callable | None:
    class Mallinfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks",
                                                   "hblkhd", "usmblks", "fsmblks", "uordblks",
                                                   "fordblks", "keepcost")]
    try:
        fn = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):  # not glibc >= 2.33
        return None
    fn.restype = Mallinfo2
    return fn


def allocated_bytes(device: torch.device) -> int | None:
    """Bytes allocated and not yet freed: CUDA allocator, or glibc malloc (None elsewhere)."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    info = _mallinfo2()
    if info is None:
        return None
    i = info()
    return i.uordblks + i.hblkhd  # small-block arena bytes in use + mmapped large blocks


def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def _cpu_peak_step_memory(step: Callable[[], object], steps: int) -> dict:
    """Peak RSS of ``steps`` training steps over the RSS before them, in steady state.

    One warm-up step first: it faults in the code pages of every kernel the step uses (file-
    backed RSS that varies from run to run by tens of MiB and otherwise swamps the activations
    of small models) and allocates optimizer state. Then ``malloc_trim`` hands freed heap back
    to the kernel, ``/proc/self/clear_refs`` resets the high-water mark (VmHWM) to the current
    RSS, and the peak is VmHWM after the measured steps. Falls back to the process-lifetime
    peak where that is impossible.
    """
    step()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        method = "VmHWM after a warm-up step, malloc_trim and clear_refs"
    except (OSError, AttributeError):
        method = "process peak RSS since start (clear_refs unavailable)"
    start = _proc_status_bytes("VmRSS")
    for _ in range(steps):
        step()
    peak = _proc_status_bytes("VmHWM") if method.startswith("VmHWM") else peak_rss_bytes()
    return dict(peak_mib=peak / MiB, peak_over_start_mib=(peak - start) / MiB,
                peak_method=method)


def peak_step_memory(step: Callable[[], object], device: torch.device, steps: int = 2) -> dict:
    """Peak memory of ``steps`` training steps: CUDA max allocated, or process RSS on CPU.

    ``peak_over_start_mib`` subtracts what was held before the measured steps (torch, the
    model, the data, optimizer state). On CPU the high-water mark is per process: call this in
    a fresh process (``run_child``) so cases cannot inflate each other.
    """
    if device.type != "cuda":
        return _cpu_peak_step_memory(step, steps)
    step()  # warm-up: optimizer state, cuDNN workspaces
    synchronize(device)
    start = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    for _ in range(steps):
        step()
    synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return dict(peak_mib=peak / MiB, peak_over_start_mib=(peak - start) / MiB,
                peak_method="torch.cuda.max_memory_allocated after a warm-up step")


def measure_model(spec: dict) -> dict:
    """spec: model, model_kwargs, mode, batch, size, channels, classes, device, steps."""
    device = resolve_device(spec.get("device", "cpu"))
    torch.manual_seed(0)
    model = core.create_model(spec["model"], num_classes=spec["classes"],
                              in_channels=spec["channels"], memory=spec["mode"],
                              **spec.get("model_kwargs", {})).to(device)
    opt = sgd(model)
    x, y = make_batch(spec["batch"], spec["channels"], spec["size"], spec["classes"], device)
    saved = saved_mib(lambda: model(x), model.parameters())
    mem = peak_step_memory(lambda: train_step(model, opt, x, y), device, spec.get("steps", 2))
    return dict(saved_mib=saved, **mem)


def run_child(module: str, spec: dict, timeout: float = 1800) -> dict:
    """Run ``python -m module '<json spec>'`` in a fresh process; it prints one JSON line."""
    proc = subprocess.run([sys.executable, "-m", module, json.dumps(spec)], capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        return dict(error=(proc.stderr.strip().splitlines() or ["failed"])[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def held_and_saved(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """MiB held when the forward returns (allocator) and MiB autograd saved (hooks).

    ``held`` counts every tensor kept for backward however it is kept (ctx attributes, a peer's
    own storage) and drops storage a peer frees; call it after a warm-up step, since first
    calls allocate caches.
    """
    gc.collect()
    before = allocated_bytes(x.device)
    with SavedTensorMeter(exclude=model.parameters()) as meter:
        loss = F.cross_entropy(model(x), y)
    after = allocated_bytes(x.device)
    del loss
    held = None if before is None or after is None else (after - before) / MiB
    return dict(held_mib=held, saved_mib=meter.bytes / MiB)
