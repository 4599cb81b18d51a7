"""The Depth lab: depth sweeps as background runs of the job queue, stored and reloadable.

What a sweep run is and where its results live: lab.sweeps.record. Here: the form's config, the
launch, the list, and what the page shows of one sweep (its progress is also recorded as step
metrics).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lab.runs import jobs
from lab.runs.store import Run, Store
from lab.sweeps.record import KIND, WORKER, memory_metric, read_result, to_sweep
from lab.sweeps.sweep import SweepConfig, budget_rows

MAX_LAYERS = 1202               # the deepest network the lab offers (hamiltonian-1202)
DEFAULT_LAYERS = (14, 74, 218)  # valid for every family at three stages, a minute on a CPU


# one line under the figure for each legend term it uses
LEGEND = ("**standard**: every activation kept for backward · **checkpoint**: each block's "
          "activations recomputed in backward · **reversible**: only each segment's output "
          "kept, the rest rebuilt with the blocks' inverses · **budget**: the last blocks of "
          "each segment kept within the MiB given, the rest rebuilt · dashed line: the memory "
          "budget below · both axes logarithmic.")


def is_sweep(run: Run) -> bool:
    """Whether a run of the store is a depth sweep (not a training run)."""
    return run.config.get("kind") == KIND


def parse_layers(depths: str | Iterable[int], family: str, stages: int = 3) -> tuple[int, ...]:
    """Depths in layers (text like "14, 74, 218" or ints) -> blocks per stage, sorted.

    Raises ValueError naming a depth the family cannot have and the nearest ones it can.
    """
    probe = SweepConfig(family=family, widths=(2,) * (stages + 1)).validate()  # names families
    if isinstance(depths, str):
        parts = [p for p in depths.replace(",", " ").split() if p]
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"depths {depths!r}: give whole numbers of layers separated by "
                             f"commas, e.g. {', '.join(map(str, DEFAULT_LAYERS))}") from None
    else:
        values = list(depths)
    if not values:
        raise ValueError("give at least one depth in layers, e.g. "
                         + ", ".join(map(str, DEFAULT_LAYERS)))
    unit = probe.layers(2) - probe.layers(1)  # layers added by one more block in every stage
    blocks = []
    for d in values:
        if type(d) is not int or d > MAX_LAYERS or d < unit + 2 or (d - 2) % unit:
            lo = max((min(int(d), MAX_LAYERS) - 2) // unit, 1) if isinstance(d, int) else 1
            near = sorted({unit * n + 2 for n in (lo, lo + 1) if unit * n + 2 <= MAX_LAYERS})
            raise ValueError(
                f"depth {d!r} layers is not possible for {family} with {stages} stages: depths "
                f"are {unit} x blocks per stage + 2, from {unit + 2} to at most {MAX_LAYERS} "
                f"(nearest: {', '.join(map(str, near))})")
        blocks.append((d - 2) // unit)
    return tuple(sorted(set(blocks)))


def mode_choices(family: str) -> list[str]:
    """The memory modes a sweep of ``family`` can measure: ``core.memory.supported_modes``
    but ``auto``, which picks one of the others for the device (``python -m lab bench auto``
    measures it)."""
    from core.memory import supported_modes

    return [m for m in supported_modes(family) if m != "auto"]


def sweep_config(family: str = "hamiltonian", depths: str | Iterable[int] = DEFAULT_LAYERS,
                 modes: Sequence[str] | None = None, *, widths: Sequence[int] = (32, 32, 64, 128),
                 batch: int = 32, size: int = 32, repeats: int = 3, peak: bool = False,
                 budget_mib: float | None = None, device: str = "auto") -> dict:
    """The stored config of a sweep (a JSON dict); ValueError/TypeError saying what is wrong.

    ``depths`` are in layers; ``peak`` also measures each case's peak memory in a fresh process
    (slower); ``budget_mib`` is the ``budget`` memory mode's MiB when ``modes`` has it.
    """
    widths = tuple(widths)
    blocks = parse_layers(depths, family, stages=len(widths) - 1)
    cfg = SweepConfig(family=family, blocks=blocks, modes=tuple(modes) if modes else None,
                      widths=widths, batch=batch, size=size, repeats=repeats, warmup=1,
                      peak=peak, budget_mib=budget_mib, device=device).validate()
    return {"kind": KIND, "model": family, "layers": [cfg.layers(n) for n in blocks],
            **cfg.to_dict()}


def launch_sweep(config: dict, *, name: str | None = None, store: Store | None = None) -> str:
    """Queue a sweep (validated first: nothing is written for a bad one); returns its run id."""
    cfg = to_sweep(config)
    layers = ", ".join(str(cfg.layers(n)) for n in cfg.blocks)
    name = name or f"depth sweep: {cfg.family} {layers} layers"
    return jobs.launch(config, name=name, store=store, worker=WORKER, validate=False)


def list_sweeps(store: Store | None = None) -> list[Run]:
    """Every stored sweep, newest first."""
    with _opened(store) as st:
        return [r for r in st.list_runs() if is_sweep(r)]


@contextlib.contextmanager
def _opened(store: Store | None):
    if store is not None:
        yield store
        return
    with Store() as st:
        yield st


# ---------------------------------------------------------------- results


@dataclass
class SweepView:
    """What the Depth lab shows of one sweep."""

    run: Run
    payload: dict | None  # rows so far, progress, machine; None before the first case

    @property
    def rows(self) -> list[dict]:
        return (self.payload or {}).get("rows", [])

    @property
    def progress(self) -> tuple[int, int, str]:
        """(cases done, cases in all, what was measured last)."""
        p = (self.payload or {}).get("progress") or {}
        return p.get("done", 0), p.get("total", 0), p.get("message", "")

    @property
    def active(self) -> bool:
        return self.run.active


def view(run_id: str, store: Store | None = None) -> SweepView:
    """The sweep ``run_id`` (an id or unique prefix) and its results so far.

    Raises RunNotFoundError for no such run and ValueError for a run that is not a sweep.
    """
    with _opened(store) as st:
        run = st.require_run(run_id)
        if not is_sweep(run):
            raise ValueError(f"run {run.id} is a training run, not a depth sweep")
        return SweepView(run, read_result(st.run_dir(run.id)))


def deepest_within(payload: dict, budget_mib: float) -> list[dict]:
    """Per mode, the deepest measured network whose activation memory fits in ``budget_mib``,
    and the linear fit's depth: as a number only inside the measured depths; beyond them marked
    "extrapolated", and past ``MAX_LAYERS`` (the form's maximum) only "over MAX_LAYERS"."""
    if not isinstance(budget_mib, (int, float)) or budget_mib <= 0:
        raise ValueError(f"budget {budget_mib!r} MiB: give a number of MiB > 0")
    rows = payload.get("rows", [])
    cfg = payload["config"]
    stages = len(cfg["widths"]) - 1
    out = budget_rows(rows, float(budget_mib), memory_metric(rows), stages, cfg["family"])
    return [{"mode": r["mode"], "deepest measured (layers)": r["deepest_measured_layers"],
             "deepest by linear fit (layers)": fit_depth(
                 r["deepest_extrapolated_layers"],
                 max((x["depth"] for x in rows if x["mode"] == r["mode"]), default=None)),
             "MiB per block/stage": r["slope_mib"], "note": r["note"]} for r in out]


def fit_depth(layers: int | None, measured_max: int | None) -> int | str | None:
    """A fitted depth as the table shows it: the number inside the measured range, else marked
    as extrapolated, and never a depth past the form's maximum (``MAX_LAYERS``)."""
    if layers is None or measured_max is None or layers <= measured_max:
        return layers
    if layers > MAX_LAYERS:
        return f"over {MAX_LAYERS} (extrapolated; the form's maximum)"
    return f"{layers} (extrapolated beyond {measured_max})"


def result_table(rows: list[dict]) -> list[dict]:
    """The rows as a readable table (layers, mode, MiB, seconds); "–" where nothing was
    measured (``lab.views.tables.cells``)."""
    from lab.views.tables import cells

    return cells({"layers": r["depth"], "blocks/stage": r["blocks"], "mode": r["mode"],
                  "held MiB": r.get("held_mib"), "saved MiB": r.get("saved_mib"),
                  "peak over start MiB": r.get("peak_over_start_mib"), "step s": r.get("step_s"),
                  "time vs standard": r.get("vs_standard"), "notes": r.get("notes", "")}
                 for r in rows)
