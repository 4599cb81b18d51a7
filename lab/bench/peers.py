"""`python -m lab bench peers`: our memory modes against memcnn and RevLib on the same blocks.

One Hamiltonian network (core.create_model("hamiltonian"), widths 32-64-128 by default) is built
once and deep-copied for every contender, so weights, inputs, stem, transitions and head are
identical; only the way each run of reversible blocks (a ReversibleSegment) is executed differs.
Contenders (see the table under the results): standard, checkpoint, memcnn, memcnn-coupling,
revlib, reversible and reversible-anchorK.

Per contender and depth: gradients against plain autograd (relative error of the input gradient
and the largest over parameters), batch-norm running statistics after 3 SGD steps against plain
autograd (and how many times per step each BN updated them), activation memory held when the
forward returns (allocator bytes: glibc malloc in use on CPU, torch.cuda.memory_allocated on GPU;
this sees memcnn's resize_(0) frees and RevLib's own storage), bytes autograd saved through
saved_tensors_hooks (under-counts tensors kept outside autograd), peak memory of two training
steps (a fresh process per contender on CPU: peak RSS; on CUDA max_memory_allocated), and the
median time of a full training step, all contenders interleaved round-robin in one process.
"""

from __future__ import annotations

import argparse
import copy
import functools
import gc
import importlib
import re
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import core
from core.blocks import ReversibleBlock
from core.device import resolve_device
from core.memory import MEMORY_MODES
from core.network import ReversibleNet
from core.reversible import ReversibleSegment, batch_norms
from lab.bench.common import add_shape_arguments, markdown_table
from lab.sweeps.measure import (
    held_and_saved,
    interleaved_median_times,
    machine_info,
    make_batch,
    peak_step_memory,
    run_child,
    sgd,
    train_step,
)

PEERS = ("memcnn", "revlib")  # the PyPI packages compared against
BN_STEPS = 3                  # SGD steps before comparing batch-norm running statistics
GRAD_TOL = 1e-2               # relative gradient error above which a row is flagged
FLAT_TOL = 1.10               # "flat in depth": deepest/shallowest held memory at most this

COLUMNS = [
    ("blocks", "blocks/stage", ""), ("depth", "layers", ""), ("contender", "contender", ""),
    ("step_s", "step s (median)", ".3f"), ("vs_standard", "time vs standard", ".2f"),
    ("held_mib", "held MiB", ".1f"), ("saved_mib", "saved MiB", ".1f"),
    ("peak_over_start_mib", "peak over start MiB", ".1f"), ("peak_mib", "peak MiB", ".0f"),
    ("input_grad_err", "input grad rel err", ".1e"),
    ("param_grad_err", "param grad rel err", ".1e"),
    ("bn_updates", "BN updates/step", ".0f"), ("bn_mean_err", "BN running-mean rel err", ".1e"),
    ("notes", "notes", ""),
]


CONTENDERS = {
    "standard": "plain autograd (our `standard` mode)",
    "checkpoint": "`torch.utils.checkpoint` per block (our `checkpoint` mode, BN statistics "
                  "frozen while recomputing)",
    "memcnn": "`memcnn.InvertibleModuleWrapper` around each of our blocks with two inputs "
              "(`forward(a, b)` / `inverse(a2, b2)`, our block math unchanged); memcnn frees its "
              "inputs' storage, so a segment input that is a view (the stem output's halves) "
              "is cloned first",
    "memcnn-coupling": "`InvertibleModuleWrapper(AdditiveCoupling(Fm=h*f1, Gm=-h*f2))` per "
                       "block: memcnn's own coupling on the concatenated pair (cat at segment "
                       "ends; chunk, two `.contiguous()` copies and a cat inside every block)",
    "revlib": "`revlib.ReversibleSequential` (memory_mode autograd_function) over the "
              "sub-functions `h*f1, -h*f2, h*f1, ...` with RevLib's default additive coupling "
              "`(x0, x1) -> (x1, x0 + f(x1))`; its single-tensor API adds a cat/chunk at "
              "segment ends",
    "reversible": "our `reversible` mode: one `autograd.Function` per segment, fused rebuild "
                  "and gradient, BN statistics frozen during the rebuild",
    "reversible-anchorK": "the same, also keeping the state after every K-th block",
}


def default_contenders(anchor_every: int) -> list[str]:
    names = ["standard", "checkpoint", "memcnn", "memcnn-coupling", "revlib", "reversible"]
    return names + ([f"reversible-anchor{anchor_every}"] if anchor_every > 0 else [])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depths", default="6,18,100", help="blocks per stage, comma-separated")
    p.add_argument("--contenders", default=None,
                   help="comma-separated from " + ", ".join(CONTENDERS) + " (any K >= 1); "
                   "default: all, with K = --anchor-every")
    p.add_argument("--anchor-every", type=int, default=6,
                   help="K of the default reversible-anchorK contender (0: leave it out)")
    add_shape_arguments(p, "contender")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--device", default="auto")


# ---------------------------------------------------------------- the peers, on our blocks


class PeerUnavailable(RuntimeError):
    """A contender cannot be built here (package missing, import error, unsupported block)."""


def import_peer(name: str):
    """Import memcnn or revlib, turning any failure into PeerUnavailable with the reason."""
    try:
        with warnings.catch_warnings():
            # memcnn 1.5 decorates with torch.cuda.amp.custom_fwd, deprecated since torch 2.4
            warnings.simplefilter("ignore", FutureWarning)
            return importlib.import_module(name)
    except Exception as e:  # an old peer on a new torch can fail with any error
        raise PeerUnavailable(f"{name} unavailable ({type(e).__name__}: {e}); "
                              "install with pip install -e '.[bench]'") from e


def peer_versions() -> dict[str, str | None]:
    out = {}
    for name in PEERS:
        try:
            out[name] = getattr(import_peer(name), "__version__", None) or _dist_version(name)
        except PeerUnavailable:
            out[name] = None
    return out


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


class Scaled(nn.Module):
    """``r * f(x)``: a coupling's sub-function with its coefficient, for additive-only peers."""

    def __init__(self, f: nn.Module, r: float):
        super().__init__()
        self.f, self.r = f, r

    def forward(self, x: Tensor) -> Tensor:
        y = self.f(x)
        return y if self.r == 1 else y * self.r


def _additive_couplings(block: ReversibleBlock, peer: str) -> list[Scaled]:
    """The block's two couplings as ``old + f(other)`` with f already scaled by ``r``."""
    for c in block.couplings:
        if c.p != 1 or c.q != 0:
            raise PeerUnavailable(f"{peer} here uses plain additive couplings; "
                                  f"{type(block).__name__} has p={c.p}, q={c.q}")
    return [Scaled(c.f, c.r) for c in block.couplings]


class MemcnnSegment(nn.Module):
    """Our blocks, each in ``memcnn.InvertibleModuleWrapper`` with two inputs ``(a, b)``."""

    def __init__(self, blocks: nn.ModuleList, memcnn):
        super().__init__()
        self.blocks = blocks  # registered first: parameter and module names match the original
        self.wrapped = nn.ModuleList(memcnn.InvertibleModuleWrapper(b, keep_input=False,
                                                                    keep_input_inverse=False)
                                     for b in blocks)

    def forward(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        # memcnn frees its inputs with storage().resize_(0); the stem output's two halves are
        # views of a tensor that ReLU saved for backward, so freeing them breaks the stem's
        # gradient (autograd raises a version-counter error). Fresh copies are memcnn's to free.
        if a._base is not None or b._base is not None:
            a, b = a.clone(), b.clone()
        for w in self.wrapped:
            a, b = w(a, b)
        return a, b


class MemcnnCouplingSegment(nn.Module):
    """``memcnn.AdditiveCoupling(Fm=r1*f1, Gm=r2*f2)`` per block, on the concatenated pair."""

    def __init__(self, blocks: nn.ModuleList, memcnn):
        super().__init__()
        self.blocks = blocks
        wrapped = []
        for block in blocks:
            fm, gm = _additive_couplings(block, "memcnn-coupling")
            wrapped.append(memcnn.InvertibleModuleWrapper(
                memcnn.AdditiveCoupling(Fm=fm, Gm=gm), keep_input=False,
                keep_input_inverse=False))
        self.wrapped = nn.ModuleList(wrapped)

    def forward(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([a, b], dim=1)  # (y1, y2) = (a + Fm(b), b + Gm(y1)): our (a2, b2)
        for w in self.wrapped:
            x = w(x)
        return tuple(x.chunk(2, dim=1))


class RevlibSegment(nn.Module):
    """``revlib.ReversibleSequential`` over the sub-functions ``r1*f1, r2*f2, r1*f1, ...``.

    RevLib maps ``(x0, x1) -> (x1, x0 + f(x1))``; two such steps with ``h*f1`` and ``-h*f2``
    are one Hamiltonian block ``(a, b) -> (a2, b2)``. The coefficient goes into f, not into a
    custom ``coupling_forward``: RevLib 1.7.2 also applies ``coupling_forward`` to the gradient
    (``coupling_forward(dy0, y0.grad)`` in ``_ReversibleHalfResidualSwapFn.backward``), which
    is right only for the plain sum; ``coupling_forward=other + r*f`` gives wrong gradients.
    """

    def __init__(self, blocks: nn.ModuleList, revlib):
        super().__init__()
        self.blocks = blocks
        fs = [f for block in blocks for f in _additive_couplings(block, "revlib")]
        self.seq = revlib.ReversibleSequential(*fs, split_dim=1,
                                               memory_mode=revlib.MemoryModes.autograd_function)

    def forward(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        return tuple(self.seq(torch.cat([a, b], dim=1)).chunk(2, dim=1))


PEER_SEGMENTS: dict[str, tuple[str, type[nn.Module]]] = {
    "memcnn": ("memcnn", MemcnnSegment),
    "memcnn-coupling": ("memcnn", MemcnnCouplingSegment),
    "revlib": ("revlib", RevlibSegment),
}
_ANCHORED = re.compile(r"reversible-anchor([1-9][0-9]*)")


def check_contender(name: str) -> str:
    if name in MEMORY_MODES or name in PEER_SEGMENTS or _ANCHORED.fullmatch(name):
        return name
    raise ValueError(f"unknown contender {name!r}; choose from {', '.join(MEMORY_MODES)}, "
                     f"{', '.join(PEER_SEGMENTS)} or reversible-anchorK (K >= 1)")


def build_contender(name: str, base: ReversibleNet) -> ReversibleNet:
    """A deep copy of ``base`` whose reversible segments run the way ``name`` says.

    Raises PeerUnavailable when the peer package cannot be imported or handle the blocks.
    """
    check_contender(name)
    model = copy.deepcopy(base)
    anchored = _ANCHORED.fullmatch(name)
    if name in MEMORY_MODES or anchored:
        mode = "reversible" if anchored else name
        return model.set_memory_mode(mode, anchor_every=int(anchored[1]) if anchored else 0)
    package, segment_cls = PEER_SEGMENTS[name]
    peer = import_peer(package)
    model.set_memory_mode("standard", anchor_every=0)
    for i, layer in enumerate(model.layers):
        if isinstance(layer, ReversibleSegment):
            try:
                model.layers[i] = segment_cls(layer.blocks, peer)
            except PeerUnavailable:
                raise
            except Exception as e:  # an API change in a newer peer release
                raise PeerUnavailable(f"{package} could not wrap the blocks "
                                      f"({type(e).__name__}: {e})") from e
    return model


def base_model(blocks: int, widths: tuple[int, ...], seed: int = 0) -> ReversibleNet:
    """The Hamiltonian network every contender copies; BN affine parameters moved off init.

    With BN weight 1 and bias 0, a zero-padded channel sits exactly at ReLU's kink, where the
    last-bit rounding of any rebuilt input picks another subgradient (tests/conftest.py); that
    would make the gradient comparison measure ties, not the method.
    """
    torch.manual_seed(seed)
    model = core.create_model("hamiltonian", num_classes=10, in_channels=3,
                              blocks=(blocks,) * (len(widths) - 1), widths=widths)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for bn in batch_norms(model):
            bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) + 0.5)
            bn.bias.copy_(torch.rand(bn.bias.shape, generator=g) - 0.5)
    return model


# ---------------------------------------------------------------- measurements




def measure_contender(spec: dict) -> dict:
    """Peak memory of training steps, then held/saved MiB; run it in a fresh process on CPU.

    See ``lab.sweeps.measure.peak_step_memory`` (steady state after one warm-up step).

    spec: contender, blocks, widths, batch, size, device, steps (default 2), seed (default 0).
    """
    device = resolve_device(spec.get("device", "cpu"))
    base = base_model(spec["blocks"], tuple(spec["widths"]), spec.get("seed", 0)).to(device)
    model = build_contender(spec["contender"], base)
    del base
    opt = sgd(model)
    x, y = make_batch(spec["batch"], 3, spec["size"], 10, device)
    step = functools.partial(train_step, model, opt, x, y)
    out = peak_step_memory(step, device, spec.get("steps", 2))
    out.update(held_and_saved(model, x, y))
    return out


def gradients(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Input gradient and parameter gradients of one cross-entropy backward (no step)."""
    x = x.clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    grads = {n: p.grad.clone() if p.grad is not None else None
             for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return x.grad, grads


def rel_err(a: Tensor, b: Tensor) -> float:
    """||a - b|| / ||b|| (absolute when b is zero)."""
    denom = b.double().norm().item()
    diff = (a.double() - b.double()).norm().item()
    return diff / denom if denom > 0 else diff


def gradient_errors(got: tuple[Tensor, dict], ref: tuple[Tensor, dict]) -> dict:
    """Relative error of the input gradient and the worst parameter gradient vs ``ref``."""
    missing = sorted(n for n, g in ref[1].items() if g is not None and got[1].get(n) is None)
    if missing:
        raise RuntimeError(f"no gradient for {len(missing)} parameters, e.g. {missing[0]}")
    worst = max((rel_err(got[1][n], g) for n, g in ref[1].items() if g is not None),
                default=0.0)
    return dict(input_grad_err=rel_err(got[0], ref[0]), param_grad_err=worst)


def bn_statistics(model: nn.Module, x: Tensor, y: Tensor, steps: int = BN_STEPS) -> dict:
    """Running mean/var and update count of every batch norm after ``steps`` SGD steps."""
    opt = sgd(model)
    for _ in range(steps):
        train_step(model, opt, x, y)
    return {n: (m.running_mean.clone(), m.running_var.clone(), int(m.num_batches_tracked))
            for n, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def bn_errors(got: dict, ref: dict, steps: int = BN_STEPS) -> dict:
    """Largest running-mean/var relative error vs ``ref``; most updates per step of any BN."""
    return dict(bn_mean_err=max(rel_err(got[n][0], r[0]) for n, r in ref.items()),
                bn_var_err=max(rel_err(got[n][1], r[1]) for n, r in ref.items()),
                bn_updates=max(v[2] for v in got.values()) / steps)


def _notes(row: dict) -> str:
    notes = list(row.pop("errors", []))
    if row.get("bn_updates") not in (None, 1):
        notes.append(f"BN running stats updated {row['bn_updates']:g}x per step")
    if max(row.get("input_grad_err") or 0, row.get("param_grad_err") or 0) > GRAD_TOL:
        notes.append(f"gradients differ from plain autograd (> {GRAD_TOL:g})")
    return "; ".join(notes)


def _try(row: dict, what: str, fn: Callable):
    try:
        return fn()
    except Exception as e:
        row.setdefault("errors", []).append(f"{what} failed: {type(e).__name__}: {e}"[:300])
        return None


FORWARD = "standard forward only"


def _forward_only(model: nn.Module, x: Tensor, y: Tensor) -> None:
    F.cross_entropy(model(x), y)  # with autograd recording, as in a training step


def measure_depth(n: int, contenders: list[str], args: argparse.Namespace,
                  device: torch.device, widths: tuple[int, ...]) -> list[dict]:
    """Every measurement of every contender at ``n`` blocks per stage; one row each."""
    depth = core.model_config("hamiltonian", blocks=(n,) * (len(widths) - 1),
                              widths=widths).depth
    rows = {c: dict(blocks=n, depth=depth, contender=c) for c in contenders}
    base = base_model(n, widths)  # stays on the CPU until the memory cases are done
    available = []
    for c in contenders:
        try:
            build_contender(c, base)
            available.append(c)
        except PeerUnavailable as e:
            rows[c]["errors"] = [str(e)]

    # 1. memory: a fresh process per contender on CPU (peak RSS is a process high-water mark)
    spec = dict(kind="peer", blocks=n, widths=list(widths), batch=args.batch, size=args.size,
                device=str(device), steps=2)
    if args.threads:
        spec["threads"] = args.threads
    for c in available:
        case = dict(spec, contender=c)
        if device.type == "cuda":
            mem = _try(rows[c], "memory", lambda case=case: measure_contender(case))
            gc.collect()
            torch.cuda.empty_cache()
        else:
            mem = run_child("lab.bench.child", case)
            if "error" in mem:
                rows[c].setdefault("errors", []).append(f"memory failed: {mem.pop('error')}")
        rows[c].update(mem or {})
        print(f"  memory  blocks={n:<4} {c:<20} {mem}", flush=True)
    available = [c for c in available if not rows[c].get("errors")]  # e.g. out of memory

    # 2. gradients and batch-norm statistics against plain autograd, fresh copies each
    base = base.to(device)
    x, y = make_batch(args.batch, 3, args.size, 10, device)
    ref_grads = gradients(build_contender("standard", base), x, y)
    ref_bn = bn_statistics(build_contender("standard", base), x, y)
    trains = []
    for c in available:
        row = rows[c]
        got = _try(row, "backward", lambda c=c: gradients(build_contender(c, base), x, y))
        if got is not None:
            row.update(_try(row, "gradient check",
                            lambda got=got: gradient_errors(got, ref_grads)) or {})
        bn = _try(row, "training steps", lambda c=c: bn_statistics(build_contender(c, base), x, y))
        if bn is not None:
            row.update(bn_errors(bn, ref_bn))
        if got is not None and bn is not None:
            trains.append(c)
        print(f"  checks  blocks={n:<4} {c:<20} "
              f"{ {k: row.get(k) for k in ('input_grad_err', 'param_grad_err', 'bn_updates')} }",
              flush=True)

    # 3. step time: every contender that trains, interleaved round-robin in this process
    steps = {}
    for c in trains:
        model = build_contender(c, base)
        opt = sgd(model)
        steps[c] = functools.partial(train_step, model, opt, x, y)
    if "standard" in steps:  # the cost floor of rebuilding: one more forward per step
        model = steps["standard"].args[0]
        steps[FORWARD] = functools.partial(_forward_only, model, x, y)
    if steps:
        times = interleaved_median_times(steps, args.repeats, args.warmup, device)
        print(f"  time    blocks={n:<4} {times}", flush=True)
        if FORWARD in times:
            rows["standard"]["forward_s"] = times.pop(FORWARD)
        for c, t in times.items():
            rows[c]["step_s"] = t
            if "standard" in times:
                rows[c]["vs_standard"] = t / times["standard"]
    del steps
    for row in rows.values():
        row["notes"] = _notes(row)
    return [rows[c] for c in contenders]


# ---------------------------------------------------------------- targets and report


def targets(rows: list[dict], reference: str = "reversible") -> list[dict]:
    """The issue's targets for ``reference`` per depth: met (True/False) or None if unmeasured."""
    out = []
    by = {(r["blocks"], r["contender"]): r for r in rows}
    depths = sorted({r["blocks"] for r in rows})

    def ratio(n, a, b, key):
        ra, rb = by.get((n, a), {}), by.get((n, b), {})
        if ra.get(key) is None or rb.get(key) is None or not rb[key]:
            return None
        return ra[key] / rb[key]

    for n in depths:
        for other, key, limit, what in [
            ("standard", "step_s", 1.35, "step time vs standard"),
            ("memcnn", "step_s", 0.85, "step time vs memcnn"),
            ("memcnn", "held_mib", 1.0, "held activation MiB vs memcnn"),
            ("revlib", "held_mib", 1.0, "held activation MiB vs revlib"),
        ]:
            v = ratio(n, reference, other, key)
            out.append(dict(blocks=n, target=f"{what} <= {limit:g}", value=v,
                            met=None if v is None else v <= limit))
        std = by.get((n, "standard"), {})
        if std.get("forward_s") and std.get("step_s"):
            out.append(dict(blocks=n, target="(context) cost floor of one re-run of every f: "
                            "1 + forward/step of standard", value=1 + std["forward_s"]
                            / std["step_s"], met=None))
    if len(depths) > 1:
        lo, hi = by.get((depths[0], reference), {}), by.get((depths[-1], reference), {})
        v = (hi["held_mib"] / lo["held_mib"]
             if lo.get("held_mib") and hi.get("held_mib") is not None else None)
        out.append(dict(blocks=f"{depths[0]}->{depths[-1]}",
                        target=f"held MiB flat in depth (deepest/shallowest <= {FLAT_TOL:g})",
                        value=v, met=None if v is None else v <= FLAT_TOL))
    return out


TARGET_COLUMNS = [("blocks", "blocks/stage", ""), ("target", "target (reversible)", ""),
                  ("value", "measured ratio", ".3f"), ("verdict", "met", "")]

LEGEND = """\
Columns: *held MiB* = allocator bytes still allocated when the forward returns (loss alive),
i.e. what is kept for backward however it is kept (glibc malloc in use on CPU,
`torch.cuda.memory_allocated` on CUDA); *saved MiB* = bytes packed through autograd's
saved_tensors_hooks (blind to tensors a peer keeps in ctx attributes or its own storage);
*peak over start* = peak of two training steps minus memory before them (CPU: a fresh process
per contender, one warm-up step, then `malloc_trim` and the kernel's high-water mark reset
through `/proc/self/clear_refs`, peak = VmHWM, so lazily loaded kernel code and optimizer state
are not counted; CUDA: `max_memory_allocated` from before the first step), *peak* = the same,
absolute;
gradient errors are relative to plain autograd on identical weights and input; BN columns come
from 3 SGD steps from the same start (updates/step = `num_batches_tracked` / 3, the most of any
BN layer; plain autograd updates once). Methods that rebuild activations in float32 (ours,
memcnn, RevLib) can differ from plain autograd by up to ~1e-2 on some batches: rebuild rounding
flips the sign of a few ReLU inputs that sit near zero (zero-padded channels at a stage's start
have zero variance, so their batch norm scales that rounding by 1/sqrt(eps), about 32x); which
batches are hit is luck of rounding, not a property of one library. Checkpointing recomputes
bit for bit. Times: median of the timed steps, all contenders
interleaved round-robin in one process, together with a forward-only pass of the standard model
(the context line under the targets: a method that rebuilds by evaluating every sub-function once
more cannot be faster than 1 + forward/step times plain autograd)."""


def run(args: argparse.Namespace) -> tuple[dict, str]:
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    depths = [int(d) for d in args.depths.split(",")]
    contenders = ([check_contender(c) for c in args.contenders.split(",")] if args.contenders
                  else default_contenders(args.anchor_every))
    widths = tuple(int(w) for w in args.widths.split(","))
    rows = []
    for n in depths:
        rows += measure_depth(n, contenders, args, device, widths)
    info = machine_info(device)
    info.update({f"{k}_version": v for k, v in peer_versions().items()})
    goals = targets(rows)
    for g in goals:
        g["verdict"] = {True: "yes", False: "NO", None: "-"}[g["met"]]
    payload = dict(benchmark="peers", machine=info, args=vars(args), contenders=contenders,
                   rows=rows, targets=goals)
    versions = ", ".join(f"{k} {info.get(f'{k}_version') or 'not installed'}" for k in PEERS)
    md = "\n\n".join([
        f"Hamiltonian {'-'.join(map(str, widths[1:]))} (stem {widths[0]}), batch {args.batch}, "
        f"{args.size}x{args.size}x3, device: {info['device_name']} ({info['device']}), "
        f"torch {info['torch']}, {versions}, python {info['python']}, "
        f"{info['torch_threads']} threads, {info['date']}",
        markdown_table(rows, COLUMNS),
        "Targets (our reversible mode, no anchors):",
        markdown_table(goals, TARGET_COLUMNS),
        LEGEND,
        "Contenders:\n\n" + "\n".join(f"- **{k}**: {v}" for k, v in CONTENDERS.items()),
    ])
    return payload, md
