"""Training-run figures: a run's live curves, several runs overlaid, memory modes side by side."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from lab.figures.style import color, finish, tidy
from lab.runs.live import MAX_POINTS, LiveRun

MIB = 1024 * 1024

# metric -> (axis title, table it lives in, how to downsample, scale to display units)
METRICS: dict[str, tuple[str, str, str, float]] = {
    "loss": ("training loss", "step", "mean", 1.0),
    "acc": ("training accuracy (batch)", "step", "mean", 1.0),
    "samples_per_sec": ("samples / s", "step", "mean", 1.0),
    "saved_bytes": ("activation memory (MiB kept for backward)", "step", "max", 1 / MIB),
    "peak_mem_bytes": ("device peak memory (MiB)", "step", "max", 1 / MIB),
    "rebuild_error": ("rebuild error (largest segment, relative)", "step", "max", 1.0),
    "test_acc": ("test accuracy", "epoch", "mean", 1.0),
    "test_loss": ("test loss", "epoch", "mean", 1.0),
    "train_acc": ("training accuracy (epoch)", "epoch", "mean", 1.0),
    "train_loss": ("training loss (epoch)", "epoch", "mean", 1.0),
}


@dataclass
class Trace:
    """One line of a figure."""

    name: str
    x: np.ndarray
    y: np.ndarray
    color: str
    dash: str = "solid"
    markers: bool = False


def smooth(y: np.ndarray, weight: float) -> np.ndarray:
    """Exponential moving average with debiasing (TensorBoard's slider); NaNs are skipped.

    ``weight`` in [0, 1): 0 leaves ``y`` as it is, 0.99 smooths strongly.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight {weight!r} must be in [0, 1)")
    y = np.asarray(y, dtype=np.float64)
    if weight == 0.0 or len(y) == 0:
        return y
    out = np.empty_like(y)
    acc, norm = 0.0, 0.0
    for i, v in enumerate(y):
        if np.isnan(v):
            out[i] = np.nan
            continue
        acc = weight * acc + (1.0 - weight) * v
        norm = weight * norm + (1.0 - weight)
        out[i] = acc / norm
    return out


def curves_figure(traces: Sequence[Trace], *, title: str, x_title: str, y_title: str,
                  log_x: bool = False, log_y: bool = False, uirevision: str = "lab",
                  height: int = 320) -> go.Figure:
    """Lines (``Trace``) on shared axes, in the lab's layout."""
    fig = go.Figure()
    for t in traces:
        fig.add_trace(go.Scatter(
            x=t.x, y=t.y, name=t.name, mode="lines+markers" if t.markers else "lines",
            line=dict(color=t.color, dash=t.dash, width=2), marker=dict(size=6)))
    fig.update_xaxes(title_text=x_title, type="log" if log_x else "linear")
    fig.update_yaxes(title_text=y_title, type="log" if log_y else "linear")
    finish(fig, title=title, uirevision=uirevision, height=height)
    # the legend below the x axis title, not over it
    return fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.3),
                             margin=dict(b=100))


# the live charts: key -> (title, y axis title, log y)
LIVE = {"accuracy": ("Accuracy", "accuracy", False), "loss": ("Loss", "training loss", True),
        "memory": ("Memory", "MiB (log)", True),  # kept MiB and device peak differ 1000x
        "throughput": ("Throughput", "samples / s", False),
        "drift": ("Rebuild error", "relative error (log)", True)}


# one line under the live charts for each legend term they use
LIVE_TERMS = {
    "train (per step)": "accuracy on each training batch, as it trains",
    "train / test (epoch)": "accuracy over the whole training / test set at each epoch's end",
    "activation memory kept for backward": "what autograd keeps for the backward pass: the "
                                            "memory mode's saving shows here",
    "device peak": "the most memory the device held (CUDA allocated; on a CPU the process's "
                   "peak RSS, which includes the Python process itself)",
    "rebuild error": "every few steps (drift_every), how far each segment's input rebuilt "
                     "from its output is from the real one (relative); the dotted line is the "
                     "warning threshold",
}


def live_traces(live: LiveRun) -> dict[str, list[Trace]]:
    """The lines of each live chart of one run, each step trace at most ``MAX_POINTS`` long."""
    x, loss = live.series("loss")
    acc = [Trace("train (per step)", *live.series("acc"), color("train", 0))]
    ex, _ = live.epoch_series("test_acc")
    if len(ex):
        steps_per_epoch = _steps_per_epoch(live)
        ex_steps = ex * steps_per_epoch if steps_per_epoch else ex  # the epoch's last step
        for key, name, i in (("train_acc", "train (epoch)", 3), ("test_acc", "test (epoch)", 1)):
            acc.append(Trace(name, ex_steps, live.epoch_series(key)[1], color(key, i),
                             markers=True))
    mem = [Trace("activation memory kept for backward", x,
                 live.series("saved_bytes", how="max")[1] / MIB, color("reversible", 1))]
    peak = live.series("peak_mem_bytes", how="max")[1]
    if np.isfinite(peak).any():
        mem.append(Trace("device peak (CUDA allocated, or process RSS on CPU)", x, peak / MIB,
                         color("standard", 0), dash="dot"))
    out = {"accuracy": acc, "loss": [Trace("loss (per step)", x, loss, color("loss", 0))],
           "memory": mem,
           "throughput": [Trace("samples / s", *live.series("samples_per_sec"),
                                color("throughput", 2))]}
    drift = drift_traces(live)
    if drift:
        out["drift"] = drift
    return out


def drift_traces(live: LiveRun) -> list[Trace]:
    """The drift watch's rebuild error, one line per segment, and the warning threshold of the
    run's dtype (none before the first measurement)."""
    import torch

    from core.reversible import REBUILD_ERROR_THRESHOLD  # the same number the trainer warns at

    traces = []
    for i, key in enumerate(live.sparse_keys("rebuild_error")):
        sx, sy = live.series(key, how="max")
        if len(sx):
            traces.append(Trace(f"segment {key.rsplit('_s', 1)[1]}", sx, sy, color("", i),
                                markers=len(sx) < 50))
    if traces:
        threshold = REBUILD_ERROR_THRESHOLD[torch.float32]
        lo, hi = min(t.x[0] for t in traces), max(t.x[-1] for t in traces)
        traces.append(Trace("warning threshold (float32)", np.array([lo, hi]),
                            np.array([threshold] * 2), color("standard", 0), dash="dot"))
    return traces


def live_figures(live: LiveRun, *, previous: dict[str, go.Figure] | None = None,
                 uirevision: str | None = None) -> dict[str, go.Figure]:
    """The Train page's live charts of one run: accuracy, loss, memory, throughput, and the
    rebuild error once the drift watch has measured it.

    Each step trace is downsampled to at most ``MAX_POINTS`` points; ``uirevision`` (default: the
    run id) keeps the user's zoom across redraws of the same run. Pass the figures of the last
    tick as ``previous``: a chart whose lines are unchanged gets only its data replaced, in
    place (building a plotly figure with its template costs far more than new data).
    """
    rev = uirevision or live.run_id
    out = {}
    for key, traces in live_traces(live).items():
        fig = (previous or {}).get(key)
        if (fig is not None and fig.layout.uirevision == rev
                and [t.name for t in fig.data] == [t.name for t in traces]):
            with fig.batch_update():
                for old, t in zip(fig.data, traces):
                    old.x, old.y = t.x, t.y
                    old.mode = "lines+markers" if t.markers else "lines"
                tidy(fig)  # markers while few points, log ticks for the new range
        else:
            title, y_title, log_y = LIVE[key]
            fig = curves_figure(traces, title=title, x_title="step", y_title=y_title,
                                log_y=log_y, uirevision=rev)
        out[key] = fig
    return out


def _steps_per_epoch(live: LiveRun) -> float | None:
    if live.total_steps and live.run is not None and live.run.epochs:
        return live.total_steps / live.run.epochs
    return None


def run_series(live: LiveRun, metric: str, max_points: int = MAX_POINTS
               ) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of any metric in ``METRICS`` for one run, in display units (steps or epochs)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
    _, table, how, scale = METRICS[metric]
    if table == "epoch":
        x, y = live.epoch_series(metric)
        return x, y * scale
    x, y = live.series(metric, max_points, how)
    return x, y * scale


def overlay_figure(lives: Sequence[LiveRun], metric: str, *, labels: Sequence[str] | None = None,
                   smoothing: float = 0.0, log_x: bool = False, log_y: bool = False,
                   by_mode: bool = False, uirevision: str = "runs") -> go.Figure:
    """One metric of several runs on shared axes (the Runs page's overlay, and "compare modes").

    Args:
        lives: the runs, read with ``LiveRun.refresh``.
        metric: a key of ``METRICS``.
        labels: legend names (default: run ids).
        smoothing: EMA weight in [0, 1) applied to step metrics.
        log_x, log_y: logarithmic axes.
        by_mode: colour each run by its memory mode (standard vs reversible overlays).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
    axis, table, _, _ = METRICS[metric]
    labels = list(labels) if labels is not None else [lv.run_id for lv in lives]
    traces = []
    for i, (lv, label) in enumerate(zip(lives, labels, strict=True)):
        x, y = run_series(lv, metric)
        if table == "step" and smoothing:
            y = smooth(y, smoothing)
        mode = (lv.run.config.get("memory") if lv.run is not None else None) or ""
        traces.append(Trace(label, x, y, color(mode, i) if by_mode else color("", i),
                            dash="dash" if by_mode and mode == "standard" else "solid",
                            markers=table == "epoch"))
    return curves_figure(traces, title=axis[0].upper() + axis[1:], y_title=axis,
                         x_title="epoch" if table == "epoch" else "step", log_x=log_x,
                         log_y=log_y, uirevision=uirevision, height=380)

