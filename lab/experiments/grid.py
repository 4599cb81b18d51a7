"""Grids of runs: a named spec (axes x seeds, a steps budget), its expansion, validation, presets.

An experiment is every combination of its axes' values, each trained once per seed, every run
taking the same number of optimizer steps (``steps``: "fewer data" means fewer examples, not fewer
updates). Axes are ``TrainConfig`` fields (``fraction``, ``lr``, ``optimizer``, ``memory``,
``dataset``, ...), the model's keyword arguments (``blocks``, ``widths``, ``h``, ...), ``family``
(the model name) and ``layers`` (depth in weight layers, turned into blocks per stage for each
family). The experiment is stored (``Store.create_experiment``) and its runs are ordinary queued
runs of ``lab.runs.jobs`` that point to it; ``extend`` adds seeds later.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Every run of a grid unless the spec says otherwise: one memory mode for every family (ResNet
# blocks have no inverse) and checkpoints only at epoch ends.
BASE: dict[str, Any] = {"dataset": "digits", "memory": "standard", "batch_size": 64,
                        "checkpoint_every": 0}
# Axes that are not TrainConfig fields: the model name, and depth in layers.
FAMILY_AXES = ("family", "model")
LAYERS = "layers"
# TrainConfig fields that cannot be an axis: seeds are the grid's own dimension, and the nested
# dicts are reached through their keys (blocks=, widths=, h=, ...).
NOT_AXES = ("seed", "model_kwargs", "dataset_options")
# NetworkConfig fields the training config sets itself (from the dataset, from memory=)
NOT_MODEL_AXES = ("family", "in_channels", "num_classes", "memory", "memory_mib")
# ResNet of about the same parameter count as the reversible families at widths 16-16-32-64:
# half the widths (2-2-2 blocks: 31,884 vs 32,628 parameters on shapes; 9-9-9: 202,796 vs
# 205,108). Used by the presets; a grid states its own ``family_kwargs``.
EQUAL_PARAMS: dict[str, dict[str, Any]] = {"resnet": {"widths": [8, 8, 16, 32]}}
ODE_FAMILIES = ("hamiltonian", "midpoint", "leapfrog")


def train_fields() -> tuple[str, ...]:
    from core.training import TrainConfig

    return tuple(f.name for f in dataclasses.fields(TrainConfig))


def model_fields() -> tuple[str, ...]:
    from core.network import NetworkConfig

    return tuple(f.name for f in dataclasses.fields(NetworkConfig)
                 if f.name not in NOT_MODEL_AXES)


def axis_names() -> list[str]:
    """Every name an axis may have."""
    return [*FAMILY_AXES, LAYERS, *(f for f in train_fields() if f not in NOT_AXES),
            *model_fields()]


@dataclass
class GridSpec:
    """What an experiment trains: every combination of ``axes`` values, for seeds 0..seeds-1."""

    axes: dict[str, list] = field(default_factory=dict)  # axis -> its values, in display order
    seeds: int = 3                      # runs per cell, seeds 0..seeds-1
    steps: int = 300                    # optimizer steps of every run (the budget)
    base: dict[str, Any] = field(default_factory=dict)  # TrainConfig keys of every run (BASE+)
    family_kwargs: dict[str, dict] = field(default_factory=dict)  # model kwargs by family
    preset: str | None = None           # the preset it started from, if any

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GridSpec:
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"unknown grid key(s) {unknown}; allowed: {', '.join(names)}")
        return cls(**copy.deepcopy(dict(d)))

    @property
    def cells(self) -> int:
        return math.prod(len(v) for v in self.axes.values()) if self.axes else 1

    @property
    def runs(self) -> int:
        return self.cells * self.seeds

    def validate(self) -> GridSpec:
        """Check the spec and every axis value; ValueError naming the first bad one.

        Nothing is queued before this passes: each value is tried in a full training config
        (TrainConfig's own checks, model and dataset names included), then every cell.
        """
        for name in ("seeds", "steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a whole number >= 1")
        if not isinstance(self.axes, dict) or not self.axes:
            raise ValueError(f"axes={self.axes!r}: give at least one axis with values, e.g. "
                             "{'family': ['hamiltonian', 'resnet']}")
        allowed = axis_names()
        for name, values in self.axes.items():
            if name not in allowed:
                raise ValueError(f"unknown axis {name!r}; allowed: {', '.join(allowed)}")
            if not isinstance(values, list) or not values:
                raise ValueError(f"axis {name!r} needs a non-empty list of values, got {values!r}")
            keys = [json.dumps(v, sort_keys=True) for v in values]
            if len(set(keys)) != len(keys):
                raise ValueError(f"axis {name!r} lists a value twice: {values!r}")
        if sum(a in self.axes for a in FAMILY_AXES) > 1:
            raise ValueError("give the model as one axis, 'family' or 'model', not both")
        if LAYERS in self.axes and "blocks" in self.axes:
            raise ValueError("axes 'layers' and 'blocks' both set the depth; keep one")
        if "seed" in self.base or "seed" in self.axes:
            raise ValueError("seeds come from seeds=N (0..N-1), not from a 'seed' key")
        clash = set(self.axes) & set(self.base)
        if clash:
            raise ValueError(f"{sorted(clash)} given both as an axis and as a fixed setting")
        if not isinstance(self.family_kwargs, dict) or any(
                not isinstance(v, dict) for v in self.family_kwargs.values()):
            raise ValueError(f"family_kwargs={self.family_kwargs!r} must map a family to a dict "
                             "of model settings, e.g. {'resnet': {'widths': [8, 8, 16, 32]}}")
        from lab.runs.jobs import validate_config

        # One value at a time, the other axes left at the fixed settings, so the message names
        # the value at fault; a value is tried with each family (widths, layers... depend on it)
        # and refused only if no family takes it.
        fam = next((a for a in FAMILY_AXES if a in self.axes), None)
        contexts = [{fam: f} for f in self.axes[fam]] if fam else [{}]
        for name, values in self.axes.items():
            for value in values:
                errors = []
                for ctx in [{}] if name == fam else contexts:
                    try:
                        validate_config(self.config({**ctx, name: value}, seed=0))
                        break
                    except (ValueError, TypeError) as e:
                        errors.append(e)
                else:
                    raise ValueError(f"axis {name!r} value {value!r} is refused: "
                                     f"{errors[0]}") from None
        for axes in self.cell_axes():  # combinations (e.g. resnet with memory='reversible')
            try:
                validate_config(self.config(axes, seed=0))
            except (ValueError, TypeError) as e:
                raise ValueError(f"cell {label(axes)} is refused: {e}") from None
        return self

    def cell_axes(self) -> Iterator[dict[str, Any]]:
        """The axis values of every cell, the last axis varying fastest."""
        names = list(self.axes)
        for combo in itertools.product(*(self.axes[n] for n in names)):
            yield dict(zip(names, combo, strict=True))

    def config(self, axes: Mapping[str, Any], seed: int) -> dict[str, Any]:
        """The TrainConfig dict of one run: BASE, then base, then the cell's axes and family."""
        cfg: dict[str, Any] = {**BASE, **copy.deepcopy(self.base), "steps": self.steps,
                               "seed": seed}
        base_kwargs = dict(cfg.pop("model_kwargs", None) or {})
        model_axes = model_fields()
        axis_kwargs = {}
        for name, value in axes.items():
            if name in FAMILY_AXES:
                cfg["model"] = value
            elif name in model_axes:
                axis_kwargs[name] = value
            elif name != LAYERS:
                cfg[name] = value
        cfg.setdefault("model", "hamiltonian")
        # an axis wins over the family's settings, which win over the settings of every run
        kwargs = {**base_kwargs, **copy.deepcopy(self.family_kwargs.get(cfg["model"], {})),
                  **axis_kwargs}
        if LAYERS in axes:
            kwargs["blocks"] = blocks_for_layers(cfg["model"], axes[LAYERS],
                                                 widths=kwargs.get("widths"))
        cfg["model_kwargs"] = kwargs
        return cfg

    def points(self, seeds: Sequence[int] | None = None) -> list[tuple[dict, int]]:
        """(cell axes, seed) of every run, seed-major: every cell's seed 0 comes first, so early
        results already cover the whole grid."""
        cells = list(self.cell_axes())
        return [(axes, s) for s in (range(self.seeds) if seeds is None else seeds)
                for axes in cells]


def _float_fields() -> set[str]:
    from core.network import NetworkConfig
    from core.training import TrainConfig

    return {f.name for cls in (TrainConfig, NetworkConfig) for f in dataclasses.fields(cls)
            if "float" in str(f.type)}


LIST_AXES = ("blocks", "widths")  # values that are lists: "2,2,2;6,6,6" is two values


def parse_values(axis: str, text: str) -> list:
    """An axis's values from text: ``0.05,0.5,1``; list-valued axes (blocks, widths) separate
    values with ';' (``2,2,2;6,6,6``). Numbers become int or float (float for float fields)."""
    floats = _float_fields()

    def scalar(t: str) -> Any:
        t = t.strip()
        if t.lower() in ("true", "false"):
            return t.lower() == "true"
        try:
            v: Any = int(t)
        except ValueError:
            try:
                v = float(t)
            except ValueError:
                return t
        return float(v) if axis in floats else v

    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"axis {axis!r}: no values given")
    if axis in LIST_AXES:
        return [[scalar(x) for x in part.split(",") if x.strip()]
                for part in text.split(";") if part.strip()]
    return [scalar(x) for x in text.split(",") if x.strip()]


def parse_family_kwargs(text: str) -> dict[str, dict[str, Any]]:
    """``resnet: widths=8,8,16,32; hamiltonian: h=0.5`` -> {"resnet": {"widths": [...]}, ...}."""
    out: dict[str, dict[str, Any]] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        fam, sep, rest = part.partition(":")
        if not sep or not fam.strip():
            raise ValueError(f"per-family settings {part!r}: write 'family: key=value', e.g. "
                             "'resnet: widths=8,8,16,32'")
        kw: dict[str, Any] = {}
        for item in rest.split():
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"per-family setting {item!r}: write key=value")
            (kw[key],) = parse_values(key, value)
        out[fam.strip()] = kw
    return out


def family_text(family_kwargs: Mapping[str, Mapping[str, Any]]) -> str:
    """The inverse of :func:`parse_family_kwargs`."""
    return "; ".join(f"{fam}: " + " ".join(f"{k}={fmt(v)}" if not isinstance(v, list) else
                                           f"{k}={','.join(map(fmt, v))}" for k, v in kw.items())
                     for fam, kw in family_kwargs.items())


def blocks_for_layers(model: str, layers: Any, widths: Sequence[int] | None = None) -> list[int]:
    """Blocks per stage giving ``layers`` weight layers for ``model`` (equal in every stage).

    Raises ValueError naming the depth and the depths the family can have.
    """
    import core

    base = core.model_config(model) if widths is None else core.model_config(model, widths=widths)
    stages = len(base.blocks)
    one = core.model_config(model, blocks=(1,) * stages, widths=base.widths).depth
    unit = core.model_config(model, blocks=(2,) * stages, widths=base.widths).depth - one
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < one or (
            (layers - one) % unit):
        raise ValueError(f"layers={layers!r} is not a depth {model} can have: its depths are "
                         f"{unit} x (blocks per stage) + {one - unit} ({one}, {one + unit}, "
                         f"{one + 2 * unit}, ...)")
    return [(layers - one) // unit + 1] * stages


def fmt(value: Any) -> str:
    """An axis value as text: lists joined by '-', floats without trailing zeros."""
    if isinstance(value, (list, tuple)):
        return "-".join(fmt(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def label(axes: Mapping[str, Any]) -> str:
    """``family=hamiltonian fraction=0.05``: a cell in words."""
    return " ".join(f"{k}={fmt(v)}" for k, v in axes.items())


def run_name(experiment: str, axes: Mapping[str, Any], seed: int) -> str:
    """The run's name in the store: ``<experiment>/<axis=value,...>/seed<s>``."""
    return f"{experiment}/" + ",".join(f"{k}={fmt(v)}" for k, v in axes.items()) + f"/seed{seed}"


# -- presets --------------------------------------------------------------------------------------
def preset(name: str, **overrides: Any) -> GridSpec:
    """A named grid: ``fewer-data``, ``depth`` or ``step-size``. ``overrides`` (None: keep)
    replace its fields (``seeds``, ``steps``), its dataset, or its axes (``family``, ...)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    spec = PRESETS[name]()
    spec.preset = name
    fields = {f.name for f in dataclasses.fields(GridSpec)}
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "dataset":
            spec.base["dataset"] = value
        elif key in fields:
            setattr(spec, key, value)
        else:
            spec.axes[key] = list(value)
    return spec


def _fewer_data() -> GridSpec:
    """Each family on 5-100% of the training set, same steps: does the ODE structure help?"""
    return GridSpec(axes={"family": [*ODE_FAMILIES, "resnet"],
                          "fraction": [0.05, 0.1, 0.2, 0.5, 1.0]},
                    seeds=10, steps=300, base={"dataset": "digits"},
                    family_kwargs=copy.deepcopy(EQUAL_PARAMS))


def _depth() -> GridSpec:
    """Each family from 14 to 110 layers at equal steps: does accuracy keep improving?"""
    return GridSpec(axes={"family": [*ODE_FAMILIES, "resnet"], LAYERS: [14, 26, 50, 110]},
                    seeds=3, steps=300, base={"dataset": "shapes"},
                    family_kwargs=copy.deepcopy(EQUAL_PARAMS))


def _step_size() -> GridSpec:
    """The reversible families over the ODE step size h."""
    return GridSpec(axes={"family": list(ODE_FAMILIES), "h": [0.1, 0.25, 0.5, 1.0, 2.0]},
                    seeds=3, steps=300, base={"dataset": "digits"})


PRESETS = {"fewer-data": _fewer_data, "depth": _depth, "step-size": _step_size}


# -- launching ------------------------------------------------------------------------------------
def default_name(spec: GridSpec) -> str:
    return f"{spec.preset or 'grid'}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_data(spec: GridSpec, *, download: bool = False,
               how: str = "grid.launch(..., download=True)") -> None:
    """Every dataset the grid's runs read is there (downloaded now when ``download``), checked
    once per dataset and data folder; core.data.DatasetNotFoundError otherwise."""
    from lab.runs import jobs

    seen = set()
    for axes in spec.cell_axes():
        config = spec.config(axes, seed=0)
        key = (config.get("dataset"), config.get("data_root"))
        if key not in seen:
            seen.add(key)
            jobs.check_dataset(jobs.validate_config(config), download=download, how=how)


def launch(spec: GridSpec, *, name: str | None = None, store: Any = None,
           download: bool = False, how: str = "grid.launch(..., download=True)") -> str:
    """Validate, check the data, record the experiment, queue its runs (seed-major); returns the
    experiment id.

    A bad axis value raises ValueError, missing data core.data.DatasetNotFoundError (``download``
    fetches it first; ``how`` is the way the caller offers that, named in the message), before
    anything is written.
    """
    from lab.runs.store import Store

    spec.validate()
    check_data(spec, download=download, how=how)
    name = name or default_name(spec)
    own = store is None
    store = Store() if own else store
    try:
        if store.get_experiment(name) is not None:
            raise ValueError(f"an experiment named {name!r} exists; choose another name or "
                             f"extend it with more seeds (`python -m lab experiment extend`)")
        exp_id = store.create_experiment(name, spec.to_dict())
        _queue(store, exp_id, name, spec, spec.points())
        return exp_id
    finally:
        if own:
            store.close()


def extend(ref: str, seeds: int, *, store: Any = None) -> list[str]:
    """Raise an experiment to ``seeds`` seeds per cell and queue the runs it lacks (also any
    deleted ones); returns the new run ids."""
    from lab.runs.store import Store

    own = store is None
    store = Store() if own else store
    try:
        exp = store.require_experiment(ref)
        spec = GridSpec.from_dict(exp.spec)
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < spec.seeds:
            raise ValueError(f"seeds={seeds!r}: {exp.name} has {spec.seeds} seeds per cell; "
                             f"extend to a whole number >= {spec.seeds}")
        spec.seeds = seeds
        spec.validate()
        have = {(json.dumps(p["axes"], sort_keys=True), p["seed"])
                for run_id, p in exp.points.items() if store.get_run(run_id) is not None}
        todo = [(a, s) for a, s in spec.points()
                if (json.dumps(a, sort_keys=True), s) not in have]
        store.update_experiment(exp.id, spec=spec.to_dict())
        return _queue(store, exp.id, exp.name, spec, todo)
    finally:
        if own:
            store.close()


def _queue(store: Any, exp_id: str, name: str, spec: GridSpec,
           points: Sequence[tuple[dict, int]]) -> list[str]:
    from lab.runs import jobs

    ids, mapping = [], {}
    try:
        for axes, seed in points:
            run_id = jobs.launch(spec.config(axes, seed), name=run_name(name, axes, seed),
                                 store=store, experiment=exp_id)
            ids.append(run_id)
            mapping[run_id] = {"axes": axes, "seed": seed}
    finally:  # whatever was queued is recorded, even if a launch failed half-way
        store.add_experiment_points(exp_id, mapping)
    return ids
