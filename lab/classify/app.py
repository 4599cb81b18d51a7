"""The Gradio classifier app: pick a trained run, upload images or draw a digit, see the top 5.

Security choices (see docs in README "Classify your own images"):
- every image is decoded by `core.images` only: the input components below hand over file paths
  or bytes without decoding them (Gradio's own image preprocessing would open any format);
- models come from the run store only (`lab.classify.model.ClassifierCache`);
- `launch` binds 127.0.0.1 by default, no share link, no `allowed_paths`, the run store in
  `blocked_paths`, an upload size limit, analytics off, uploads removed from Gradio's cache.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from core.images import ACCEPTED_EXTENSIONS, ACCEPTED_NAMES, MAX_BYTES, ImageError
from lab.classify.examples import write_examples
from lab.classify.model import ClassifierCache, ClassifierError, RunChoice
from lab.classify.predict import TOP_K, predict

PREVIEW_PX = 160  # the "as the model sees it" thumbnails, upscaled with nearest neighbour
EXAMPLE_DATASETS = ("digits", "shapes")  # need no download: always offered when a run uses them
CACHE_SWEEP = (300, 900)  # delete_cache: every 5 min, remove uploads older than 15 min
MAX_FILES = 16  # images per request
# Gradio's sketchpad opens with no tool chosen ("select the draw tool to start"), whatever its
# brush settings: choose the brush when the tab shows (clicking it again keeps it chosen).
SELECT_BRUSH_JS = """() => {
    const pick = (tries) => {
        const brush = document.querySelector('#lab-sketch button[aria-label="Brush"]');
        if (brush) brush.click();
        else if (tries > 0) setTimeout(() => pick(tries - 1), 100);
    };
    pick(50);
}"""
CLEARED = "**No result**: the last request was refused (its error message says why)."
# One image through these small nets is fastest on one thread: on the 2-core CPU under load the
# digits median was 2.3 ms with 1 thread vs 22.8 ms with 2 (docs/bench/classify-cpu.md).
INFERENCE_THREADS = 1


def _gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # must precede building Blocks
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gradio as gr

    return gr


def _raw_path(payload: Any) -> str | None:
    """Image preprocess that hands over the uploaded file's path (Gradio checked it is one)."""
    return None if payload is None else payload.path


def _undecoded(component: Any, preprocess: Any) -> Any:
    """Replace a component's preprocess on this instance (a subclass would make Gradio write a
    .pyi stub next to this file): the handler gets the upload's path or bytes, not pixels."""
    component.preprocess = preprocess
    return component


def _raw_drawing(sketchpad: Any) -> Any:
    def preprocess(payload: Any) -> str | bytes | None:
        if payload is None:
            return None
        if payload.id is not None:  # the browser sends the canvas as blobs
            cached = sketchpad.blob_storage.get(payload.id)
            return None if cached is None else cached.composite
        return None if payload.composite is None else payload.composite.path

    return preprocess


class ClassifyApp:
    """The app's state (a model cache and an examples folder) and its event handlers."""

    def __init__(self, home: str | Path | None = None, examples_dir: str | Path | None = None):
        self.cache = ClassifierCache(home)
        self.examples_dir = Path(examples_dir or tempfile.mkdtemp(prefix="revlab-examples-"))

    # -- handlers (also callable directly, e.g. from tests and the benchmark) -----------------
    def run_info(self, run_id: str | None) -> str:
        runs = {r.id: r for r in self.cache.runs()}
        if not runs:
            return ("**No completed run yet.** Train one first (`python -m lab train`, or the "
                    "Train page), then press *Refresh runs*.")
        if run_id not in runs:
            return "Pick a completed run."
        r = runs[run_id]
        acc = "-" if r.test_acc is None else f"{100 * r.test_acc:.2f}%"
        hint = (" Digits are 8x8 light-on-dark: draw on the sketchpad, or upload a dark digit "
                "on light paper (it is inverted and cropped to the ink)."
                if r.dataset == "digits" else "")
        return f"Run **{r.id}**: `{r.model}` on **{r.dataset}**, test accuracy **{acc}**.{hint}"

    def classify_files(self, run_id: str, files: list[str] | str | None) -> tuple:
        if not files:
            raise _error("no image given: upload one or more PNG, JPEG, WebP, GIF or BMP files")
        files = [files] if isinstance(files, (str, bytes)) else list(files)
        if len(files) > MAX_FILES:
            raise _error(f"{len(files)} files at once; the limit is {MAX_FILES}")
        return self._classify(run_id, [(_name(f), f) for f in files])

    def classify_drawing(self, run_id: str, drawing: str | bytes | None) -> tuple:
        if drawing is None:
            raise _error("the sketchpad is empty: draw a digit first")
        return self._classify(run_id, [("drawing", drawing)])

    def classify_example(self, run_id: str, path: str | None) -> tuple:
        if path is None:
            raise _error("no example chosen")
        return self._classify(run_id, [(_name(path), path)])

    def _classify(self, run_id: str, items: list[tuple[str, Any]]) -> tuple:
        try:
            clf = self.cache.get(run_id)
        except ClassifierError as e:
            raise _error(str(e)) from None
        rows, gallery, errors, first = [], [], [], None
        for name, source in items:
            try:
                p = predict(clf, source)
            except ImageError as e:
                errors.append(f"{name}: {e}")
                rows.append([name, "-", None, "", None, f"refused: {e}"])
                continue
            first = first or (name, p)
            top = p.top
            note = f"{p.format} {p.source_size[0]}x{p.source_size[1]}" + (
                ", inverted" if p.inverted else "")
            rows.append([name, top[0][0], round(top[0][1], 4),
                         ", ".join(f"{c} {q:.3f}" for c, q in top[1:]), round(p.ms, 2), note])
            gallery.append((p.preview.resize((PREVIEW_PX, PREVIEW_PX), 0),  # 0: NEAREST
                            f"{name}: {top[0][0]} ({100 * top[0][1]:.1f}%)"))
        if first is None:
            raise _error("; ".join(errors))
        if errors:
            _gradio().Warning(f"{len(errors)} of {len(items)} images refused: {errors[0]}")
        name, p = first
        top = dict(p.top)
        summary = (f"**{name}** looks like **{p.top[0][0]}** ({100 * p.top[0][1]:.1f}%), "
                   f"{p.ms:.1f} ms on the server (decode + preprocessing + forward) with run "
                   f"{clf.run_id} ({clf.model_name} on {clf.dataset}).")
        details = {"file": name, "run": clf.run_id, "dataset": clf.dataset, "ms": p.ms,
                   "format": p.format, "source_size": list(p.source_size),
                   "inverted": p.inverted, "probabilities": p.probabilities}
        return top, gallery, summary, rows, details

    def examples_for(self, dataset: str, run_id: str) -> list[str]:
        folder = self.examples_dir / dataset
        paths = sorted(folder.glob("*.png")) if folder.is_dir() else []
        if not paths:
            try:
                paths = write_examples(self.cache.bundle(run_id), folder)
            except (OSError, ValueError):  # e.g. the dataset's files are gone: no examples
                return []
        return [str(p) for p in paths]

    # -- the UI ------------------------------------------------------------------------------
    def build(self) -> Any:
        """The gr.Blocks app."""
        gr = _gradio()
        runs = self.cache.runs()
        best = runs[0].id if runs else None
        datasets = _example_datasets(runs)

        with gr.Blocks(title="revlab · classify", analytics_enabled=False,
                       delete_cache=CACHE_SWEEP) as demo:
            gr.Markdown("## Classify your own images\nPick a trained run, then upload images "
                        "(several at once), draw a digit, or click an example. Images are "
                        "resized to the run's input size; the right column shows what the "
                        "model actually sees.")
            with gr.Row():
                run = gr.Dropdown(choices=_choices(runs), value=best, label="Trained run "
                                  "(completed runs, best test accuracy first)", scale=4)
                refresh = gr.Button("Refresh runs", scale=1, size="sm")
            info = gr.Markdown(self.run_info(best))
            with gr.Row():
                with gr.Column():
                    with gr.Tab("Upload"):
                        files = gr.File(file_count="multiple", type="filepath",
                                        file_types=list(ACCEPTED_EXTENSIONS),
                                        label=f"Images ({ACCEPTED_NAMES}; up to "
                                        f"{MAX_BYTES // 2**20} MiB each, {MAX_FILES} at once)")
                        go = gr.Button("Classify", variant="primary")
                    with gr.Tab("Draw a digit", visible=_dataset(runs, best) == "digits") as tab:
                        sketch = gr.Sketchpad(type="filepath", canvas_size=(256, 256),
                                              label="Draw one digit, large and centred",
                                              elem_id="lab-sketch",
                                              brush=gr.Brush(default_size=18,
                                                             colors=["#000000"],
                                                             color_mode="fixed"))
                        _undecoded(sketch, _raw_drawing(sketch))
                        draw_go = gr.Button("Classify drawing", variant="primary")
                    example = _undecoded(gr.Image(type="filepath", label="Example",
                                                  interactive=False, height=160), _raw_path)
                    columns = {}
                    for ds in datasets:
                        paths = self.examples_for(ds, next(r.id for r in runs if r.dataset == ds))
                        with gr.Column(visible=_dataset(runs, best) == ds) as col:
                            if paths:
                                gr.Examples(examples=paths, inputs=example,
                                            label=f"Examples from the {ds} test set",
                                            examples_per_page=10)
                        columns[ds] = col
                with gr.Column():
                    label = gr.Label(num_top_classes=TOP_K, label="Top 5")
                    summary = gr.Markdown()
                    # whole thumbnails: no preview mode and no single image stretched to the
                    # column's width (both crop it to the box's height); the box grows instead
                    seen = gr.Gallery(label="As the model sees it", columns=4, height="auto",
                                      object_fit="contain", allow_preview=False,
                                      fit_columns=False)
            table = gr.Dataframe(headers=["file", "top-1", "probability", "next 4", "ms",
                                          "note"], label="All images", interactive=False)
            with gr.Accordion("All probabilities (first image)", open=False):
                details = gr.JSON(label="All probabilities (first image)")

            outputs = [label, seen, summary, table, details]

            def cleared():  # a refused request leaves no earlier result under its error
                return None, [], CLEARED, None, None

            go.click(self.classify_files, [run, files], outputs, api_name="classify").failure(
                cleared, None, outputs, api_name=False)
            draw_go.click(self.classify_drawing, [run, sketch], outputs, api_name="draw"
                          ).failure(cleared, None, outputs, api_name=False)
            example.change(self.classify_example, [run, example], outputs,
                           api_name="example", trigger_mode="always_last").failure(
                cleared, None, outputs, api_name=False)
            tab.select(None, None, None, js=SELECT_BRUSH_JS, api_name=False)

            def select(run_id):
                ds = _dataset(self.cache.runs(), run_id)
                return (self.run_info(run_id), gr.Tab(visible=ds == "digits"),
                        *(gr.Column(visible=d == ds) for d in columns))

            run.change(select, run, [info, tab, *columns.values()], api_name="select_run")

            def reload(current):
                fresh = self.cache.runs()
                keep = current if any(r.id == current for r in fresh) else (
                    fresh[0].id if fresh else None)
                return gr.Dropdown(choices=_choices(fresh), value=keep), self.run_info(keep)

            refresh.click(reload, run, [run, info], api_name="refresh")
            demo.load(reload, run, [run, info], api_name=False)
        return demo


def _error(message: str) -> Exception:
    return _gradio().Error(message, print_exception=False)


def _name(source: Any) -> str:
    return Path(source).name if isinstance(source, (str, os.PathLike)) else "image"


def _choices(runs: list[RunChoice]) -> list[tuple[str, str]]:
    return [(r.label, r.id) for r in runs]


def _dataset(runs: list[RunChoice], run_id: str | None) -> str | None:
    return next((r.dataset for r in runs if r.id == run_id), None)


def _example_datasets(runs: list[RunChoice]) -> list[str]:
    """Datasets of the listed runs, the embedded ones first (they need no files)."""
    present = list(dict.fromkeys(r.dataset for r in runs))
    return [d for d in EXAMPLE_DATASETS if d in present] + [
        d for d in present if d not in EXAMPLE_DATASETS]


def launch_kwargs(home: str | Path | None, host: str, port: int | None) -> dict[str, Any]:
    """The `Blocks.launch` arguments: loopback, no share, size limit, run store not servable."""
    from lab.runs.store import lab_home

    return dict(server_name=host, server_port=port, share=False, max_file_size=MAX_BYTES,
                ssr_mode=False, inbrowser=False, quiet=True, show_error=False,
                blocked_paths=[str(lab_home(home))])


def serve(home: str | Path | None = None, host: str = "127.0.0.1", port: int | None = None,
          *, owners: list | None = None, owners_file: str | Path | None = None,
          idle_exit: float = 10.0) -> int:
    """Build the app and serve it until interrupted (`python -m lab classify`).

    With ``owners`` ((pid, start) pairs, the Streamlit server that started it) or an
    ``owners_file`` (see lab.runs.owners), it stops by itself once none of its owners has
    been alive for ``idle_exit`` seconds.
    """
    from core.training.signals import stop_signals

    def stop(name: str) -> None:  # SIGTERM (the page's stop, `kill`): shut down cleanly
        raise KeyboardInterrupt

    with stop_signals(stop, sigint=False):
        return _serve(home, host, port, owners=owners, owners_file=owners_file,
                      idle_exit=idle_exit)


def _serve(home: str | Path | None, host: str, port: int | None, *, owners: list | None,
           owners_file: str | Path | None, idle_exit: float) -> int:
    import shutil
    import signal
    import sys

    if owners or owners_file:
        from lab.runs.owners import watch

        def gone(reason: str) -> None:
            print(f"classifier stopping: {reason}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGTERM)

        watch(owners or [], owners_file, idle_exit, gone)
    import torch

    torch.set_num_threads(INFERENCE_THREADS)
    app = ClassifyApp(home)
    if not app.cache.runs():
        print("no completed run yet: the app starts, but train one (`python -m lab train`) "
              "and press Refresh runs to classify", file=sys.stderr)
    demo = app.build()
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, **launch_kwargs(home, host, port))
    print(f"classifier at {url} (Ctrl+C to stop)", file=sys.stderr, flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
        shutil.rmtree(app.examples_dir, ignore_errors=True)
    return 0
