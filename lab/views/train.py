"""What the Train page computes: the form (defaults, values -> a TrainConfig dict), the launch
preview and its table, and the live panel of a run (progress and ETA, what its status means,
what Cancel stops, how often the page looks again).

Everything here is plain Python (no Streamlit): the page draws widgets from ``form_defaults()``,
hands their values to ``config_from_form``, shows ``preview(config)`` before launch and a run's
``LiveRun`` with the helpers at the end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import core
from core.blocks import FAMILIES
from core.estimate import estimate_activation_bytes
from core.memory import default_mode, supported_modes
from core.network import NetworkConfig
from lab.runs.live import LiveRun, Progress
from lab.runs.store import RESUMABLE, Run, Store

# (in_channels, image_size, num_classes) of each dataset, as core.data builds it
# (tests/test_train_form.py checks the embedded ones against core.data.load_dataset)
DATASET_SHAPES: dict[str, tuple[int, int, int]] = {
    "digits": (1, 8, 10), "shapes": (3, 32, 10), "cifar10": (3, 32, 10),
    "cifar100": (3, 32, 100), "stl10": (3, 96, 10), "imagefolder": (3, 32, 10),
}
FAMILY_LABELS = {"hamiltonian": "Hamiltonian", "midpoint": "Midpoint", "leapfrog": "Leapfrog",
                 "revnet": "RevNet", "resnet": "ResNet"}


def int_list(text: str, name: str) -> tuple[int, ...]:
    """'2, 2, 2' -> (2, 2, 2); ValueError naming the field and showing the expected form."""
    try:
        values = tuple(int(v) for v in str(text).replace(" ", "").split(",") if v != "")
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise ValueError(f"{name}: {text!r} is not a list of positive whole numbers; write them "
                         "comma-separated, e.g. 2,2,2")
    return values


AUTO_HELP = ("auto: the engine decides. At the first batch it takes this limit (empty: the "
             "device's free memory less a margin), sets aside parameters, gradients, optimizer "
             "state and a workspace, and keeps every activation if the rest allows (standard "
             "speed), rebuilds them all at the minimum, or plans the fastest mix between; out "
             "of memory mid-run, it re-plans with less and retries the step.")


def memory_modes(model: str) -> list[str]:
    """The memory modes a model supports (``core.memory.supported_modes``), the default first."""
    net = core.model_config(model)
    first = default_mode(net)
    return [first, *(m for m in supported_modes(net) if m != first)]


def form_defaults() -> dict[str, Any]:
    """The form's initial values: TrainConfig's defaults (so Launch trains the default run)."""
    from core.training import TrainConfig

    cfg, net = TrainConfig(), NetworkConfig()
    return {
        "source": "family", "family": cfg.model if cfg.model in FAMILIES else net.family,
        "named": next(n for n in core.list_models() if n not in FAMILIES),
        "blocks": ",".join(map(str, net.blocks)), "widths": ",".join(map(str, net.widths)),
        "h": net.h, "memory": cfg.memory, "memory_mib": 256.0, "dataset": cfg.dataset,
        "fraction": cfg.fraction, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
        "optimizer": cfg.optimizer, "lr": None, "seed": cfg.seed, "nproc": 1,
    }


def config_from_form(v: dict[str, Any]) -> dict[str, Any]:
    """A TrainConfig dict from the form's values; ValueError/TypeError saying what to fix.

    A family takes the form's blocks, widths and h (only those that differ from the family's
    defaults are stored, so the default form gives exactly ``TrainConfig()``); a named model
    brings its own blocks and widths and takes only h.
    """
    net = NetworkConfig()
    if v["source"] == "family":
        model = v["family"]
        if model not in FAMILIES:
            raise ValueError(f"family {model!r}; choose one of: {', '.join(FAMILIES)}")
        kwargs: dict[str, Any] = {"blocks": list(int_list(v["blocks"], "blocks per stage")),
                                  "widths": list(int_list(v["widths"], "widths")),
                                  "h": float(v["h"])}
        base = {"blocks": list(net.blocks), "widths": list(net.widths), "h": net.h}
    elif v["source"] == "named":
        model = v["named"]
        kwargs = {"h": float(v["h"])}
        base = {"h": net.h}
    else:
        raise ValueError(f"source {v['source']!r}; choose 'family' or 'named'")
    model_kwargs = {k: x for k, x in kwargs.items() if x != base[k]}
    config: dict[str, Any] = {
        "model": model, "model_kwargs": model_kwargs, "dataset": v["dataset"],
        "fraction": float(v["fraction"]), "epochs": int(v["epochs"]),
        "batch_size": int(v["batch_size"]), "optimizer": v["optimizer"], "seed": int(v["seed"]),
        "memory": v["memory"],
    }
    if v.get("lr"):
        config["lr"] = float(v["lr"])
    if v["memory"] == "budget":
        config["memory_mib"] = float(v["memory_mib"])
    if v["memory"] == "auto" and v.get("memory_limit_mib"):  # empty: the device's free memory
        config["memory_limit_mib"] = float(v["memory_limit_mib"])
    if str(v.get("data_root") or "").strip():
        config["data_root"] = str(v["data_root"]).strip()
    if model_kwargs:  # the network must build: say which field is wrong before anything else
        core.model_config(model, **model_kwargs)
    return config


# -- the data: present, to download, or refused -------------------------------------------------
DOWNLOADABLE = ("cifar10", "cifar100", "stl10")  # torchvision fetches them (md5-verified)
FORM_HOW = "the “Download if missing” box under Dataset"  # named in a refusal's message


def data_folder(dataset: str, data_root: str | None = None) -> str:
    """Where a run of ``dataset`` reads its files: the data root given, else $LAB_DATA, else
    ./data (absolute, as this server resolves it)."""
    import os

    return os.path.abspath(data_root or core.data.default_root())


def dataset_problem(config: dict[str, Any], *, download: bool = False) -> str | None:
    """Why a run of ``config`` would be refused for its data now (shown at the Dataset field),
    or None: files present, a download asked for, or no files needed. Reads no data."""
    from lab.runs import jobs

    if download and config.get("dataset") in DOWNLOADABLE:
        return None  # fetched at launch
    root = str(config.get("data_root") or "").strip() or None  # an empty field: not given
    try:
        jobs.check_dataset({**config, "data_root": root}, how=FORM_HOW)
    except ValueError as e:  # DatasetNotFoundError is one
        return str(e)
    return None


@dataclass
class Preview:
    """What a configuration costs before it runs."""

    params: int                    # trainable parameters
    depth: int                     # weight layers (4 per reversible block, 2 per ResNet block)
    input_shape: tuple[int, ...]   # (B, C, H, W) of one training batch
    memory: dict[str, int] | None  # bytes kept for backward per memory mode; None: unavailable
    note: str = ""                 # why memory is None, or a caveat


def network_config(config: dict[str, Any]) -> NetworkConfig:
    """The NetworkConfig a TrainConfig dict trains (the dataset fixes channels and classes)."""
    channels, _, classes = DATASET_SHAPES.get(config.get("dataset", "digits"), (3, 32, 10))
    return core.model_config(config.get("model", "hamiltonian"), in_channels=channels,
                             num_classes=classes, **config.get("model_kwargs", {}))


def count_parameters(net: NetworkConfig) -> int:
    """Trainable parameters of ``net``, from short copies built on the ``meta`` device.

    Blocks within a stage are identical, so the count is affine in each stage's block count:
    build at most 3 blocks per stage and extrapolate (exact; no weights are allocated, and the
    cost does not grow with depth).
    """
    import torch

    def count(blocks: tuple[int, ...]) -> int:
        with torch.device("meta"):
            return core.count_parameters(core.ReversibleNet(dataclasses.replace(net,
                                                                                blocks=blocks)))

    short = tuple(min(n, 2) for n in net.blocks)
    base = count(short)
    return base + sum((n - 2) * (count(tuple(3 if t == s else k for t, k in enumerate(short)))
                                 - base) for s, n in enumerate(net.blocks) if n > 2)


def preview(config: dict[str, Any]) -> Preview:
    """Parameters, depth and per-mode activation memory of a TrainConfig dict, without training.

    Parameters are counted on the ``meta`` device (no weights allocated); the memory comes from
    ``core.estimate.estimate_activation_bytes`` (short copies of the network at batch 1 and 2,
    extrapolated; well under a second even for 1202 layers).
    """

    net = network_config(config)
    channels, size, _ = DATASET_SHAPES.get(config.get("dataset", "digits"), (3, 32, 10))
    if config.get("dataset") == "imagefolder":
        size = int(config.get("dataset_options", {}).get("image_size", size))
    shape = (int(config.get("batch_size", 64)), channels, size, size)
    params = count_parameters(net)
    # budget and auto are planned per shape and limit, from these
    modes = [m for m in supported_modes(net) if m not in ("budget", "auto")]
    try:
        memory = estimate_activation_bytes(net, input_shape=shape, modes=modes)
    except (ValueError, TypeError, RuntimeError) as e:
        return Preview(params, net.depth, shape, None, f"memory estimate failed: {e}")
    note = "" if "reversible" in modes else (f"{net.family} blocks are not invertible: no "
                                              "reversible mode")
    if config.get("memory") == "auto":
        note = " ".join([note, "auto keeps what fits its limit, from all of standard's need "
                               f"down to {min(memory.values()) / 2**20:.1f} MiB"]).strip()
    return Preview(params, net.depth, shape, dict(memory), note)


def launch(config: dict[str, Any], *, nproc: int = 1, compare: bool = False,
           download: bool = False) -> list[str]:
    """Start the run (or, with ``compare``, the same config in standard and reversible memory)
    through ``lab.runs.jobs.launch``; returns the run ids. Nothing is written for a bad config
    or missing data (core.data.DatasetNotFoundError); ``download`` fetches missing files first
    (torchvision, md5-verified; this call then takes minutes)."""
    from lab.runs import jobs

    jobs.check_dataset(jobs.validate_config(config), download=download, how=FORM_HOW)
    if not compare:
        return [jobs.launch(config, nproc=nproc)]
    net = core.model_config(config["model"], **config.get("model_kwargs", {}))
    if "reversible" not in supported_modes(net):
        raise ValueError(f"{config['model']} has no reversible mode to compare with; pick a "
                         "Hamiltonian, Midpoint, Leapfrog or RevNet model")
    pair = [{**config, "memory": mode} for mode in ("standard", "reversible")]
    for c in pair:
        c.pop("memory_mib", None)
        c.pop("memory_limit_mib", None)
        jobs.validate_config(c)  # both are checked before either is started
    group = "compare-" + "-".join(str(x) for x in (config["model"], config.get("seed", 0)))
    return [jobs.launch(c, nproc=nproc, name=f"{group}/{c['memory']}") for c in pair]


def memory_rows(p: Preview) -> list[dict[str, Any]]:
    """The preview's table: activation MiB kept for backward per memory mode, and the ratio to
    standard's."""
    standard = (p.memory or {}).get("standard")
    return [{"memory mode": m, "activation memory kept (MiB)": round(b / 2**20, 2),
             "vs standard": f"{b / standard:.2f}x" if standard else ""}
            for m, b in (p.memory or {}).items()]


# -- the live panel of a run ---------------------------------------------------------------------
def refresh(lives: Sequence[LiveRun], active: bool) -> None:
    """Read what is new for each run of the panel; while one is active, a worker that died is
    marked stale first (``jobs.reconcile``, about 0.1 ms)."""
    from lab.runs import jobs

    with Store() as store:
        if active:
            jobs.reconcile(store)
        for live in lives:
            live.refresh(store)


def progress_text(run: Run, prog: Progress) -> str:
    """"running · step 40/132 · ETA 1m05s at 0.05 s/step (...)": the progress bar's text."""
    eta = ""
    if prog.eta_s is not None:
        s = int(round(prog.eta_s))
        eta = f" · ETA {f'{s // 60}m{s % 60:02d}s' if s >= 60 else f'{s}s'} {prog.basis}"
    return f"{run.status} · step {prog.step or 0}/{prog.total_steps or '?'}{eta}"


def status_note(run: Run) -> tuple[str, str] | None:
    """What the panel says of the run's status: ("info" | "warning" | "success", text), or None
    while it runs."""
    if run.status == "queued":
        from lab.runs import jobs

        return "info", (f"Queued: it starts when a slot frees up ({jobs.max_concurrent()} run(s) "
                        "at a time; set LAB_MAX_JOBS to change it). The Runs page shows what is "
                        "running.")
    if run.status == "completed":
        acc = run.final_test_acc
        return "success", "completed" + (f": test accuracy {100 * acc:.2f}%" if acc is not None
                                         else "")
    if run.status in RESUMABLE:
        return "warning", f"{run.status}: {run.reason or ''} {run.error or ''}".strip()
    return None


def active_ids(lives: Sequence[LiveRun]) -> list[str]:
    """The panel's runs still queued or running: what its Cancel stops (both of a comparison)."""
    return [lv.run_id for lv in lives if lv.run is not None and lv.run.active]


def compare_labels(lives: Sequence[LiveRun]) -> list[str]:
    """A comparison's legend: each run's id and memory mode."""
    return [f"{lv.run_id} {lv.run.config.get('memory')}" if lv.run else lv.run_id
            for lv in lives]


def watch(run_id: str, compare_id: str | None = None) -> tuple[bool, bool]:
    """(active, waiting): whether a run of the panel is queued or running (the panel then looks
    again every second) and whether its first point is still to come (4 times a second until it
    is, so that point shows at once)."""
    with Store() as store:
        runs = [store.get_run(r) for r in (run_id, compare_id) if r]
        first = bool(store.step_metrics(run_id, limit=1))
    active = any(r is not None and r.active for r in runs)
    return active, active and not first
