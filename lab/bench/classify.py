"""Latency benchmark of the classifier: one 32x32 image, server-side, digits and shapes models.

`python -m lab.bench.classify [--runs ID ...] [--repeat N] [--tag cpu]` measures the function the
Gradio handler runs per image (`lab.classify.predict`: decode + preprocessing + forward) on the
PNG bytes of a 32x32 picture, after warm-up, and writes docs/bench/classify[-TAG].{json,md}.
Without --runs it first trains the default digits model and the same architecture on shapes
(one epoch each: latency does not depend on the weights' values) into a temporary run store.
"""

from __future__ import annotations

import argparse
import io
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

TARGET_MS = 30.0  # the target for the median, on a 2-core CPU


def _train(home: Path, dataset: str) -> str:
    from lab.runs import jobs, worker
    from lab.runs.store import Store

    config = {"dataset": dataset, "epochs": 1, "device": "cpu"}
    if dataset == "shapes":
        config["fraction"] = 0.2
    with Store(home) as store:
        run_id = jobs.start_foreground(config, store=store)
        status = worker.execute(store, run_id, foreground=True)
        if status != "completed":
            raise SystemExit(f"training the {dataset} model for the benchmark ended {status}")
    return run_id


def image_bytes(size: int = 32, seed: int = 0) -> bytes:
    """A 32x32 RGB PNG: a light square on a dark background, with noise."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    a[8:24, 8:24] += 180
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def measure(classifier, data: bytes, repeat: int, warmup: int = 20) -> dict:
    """Median and spread of predict() on `data`, with the preprocessing share."""
    from core.images import prepare_image
    from lab.classify.predict import predict

    for _ in range(warmup):
        predict(classifier, data)
    total, prep = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        prepare_image(data, classifier.spec)
        prep.append((time.perf_counter() - t0) * 1e3)
        total.append(predict(classifier, data).ms)
    q = statistics.quantiles(total, n=10)
    return {"median_ms": statistics.median(total), "p10_ms": q[0], "p90_ms": q[-1],
            "preprocess_median_ms": statistics.median(prep), "repeat": repeat}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m lab.bench.classify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", metavar="ID",
                        help="completed runs of $LAB_HOME to measure (default: train two)")
    parser.add_argument("--repeat", type=int, default=300, help="timed predictions per model")
    parser.add_argument("--out", default="docs/bench", help="folder for the .json and .md")
    parser.add_argument("--tag", default=None, help="file name suffix, e.g. cpu")
    parser.add_argument("--note", default="", help="a line for the report (e.g. 'under load')")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: the server's, lab.classify.app."
                        "INFERENCE_THREADS)")
    args = parser.parse_args(argv)
    from lab.classify.app import INFERENCE_THREADS

    torch.set_num_threads(args.threads or INFERENCE_THREADS)

    from lab.bench.common import save_results
    from lab.classify.model import ClassifierCache
    from lab.sweeps.measure import machine_info

    tmp = None
    if args.runs:
        home, run_ids = None, args.runs
    else:
        tmp = tempfile.TemporaryDirectory(prefix="revlab-classify-bench-")
        home = Path(tmp.name)
        run_ids = [_train(home, "digits"), _train(home, "shapes")]
    cache = ClassifierCache(home)
    data = image_bytes()
    rows = []
    for run_id in run_ids:
        clf = cache.get(run_id)
        result = measure(clf, data, args.repeat)
        params = sum(p.numel() for p in clf.model.parameters())
        rows.append({"run": run_id, "model": clf.model_name, "dataset": clf.dataset,
                     "input": f"{clf.spec.size}x{clf.spec.size}x{clf.spec.channels}",
                     "parameters": params, **result})
        print(f"{clf.dataset}: median {result['median_ms']:.2f} ms", file=sys.stderr)
    if tmp is not None:
        tmp.cleanup()

    command = "python -m lab.bench.classify " + shlex.join(argv)
    payload = {"suite": "classify", "command": command, "machine": machine_info(
        torch.device("cpu")), "target_median_ms": TARGET_MS, "note": args.note, "rows": rows}
    lines = [f"Command: `{command}`", "",
             "Server-side latency of one 32x32 RGB PNG through `lab.classify.predict` (decode, "
             "EXIF, mode, resize and normalise via core.images, then the forward pass), after "
             f"20 warm-up calls; target: median under {TARGET_MS:.0f} ms on a 2-core CPU.", ""]
    if args.note:
        lines += [args.note, ""]
    m = payload["machine"]
    lines += [f"Machine: {m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads, "
              f"torch {m['torch']}, {m['date']}.", "",
              "| dataset | model | model input | parameters | median ms | p10 ms | p90 ms | "
              "preprocessing median ms | target met |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['model']} | {r['input']} | {r['parameters']:,} | "
                     f"{r['median_ms']:.2f} | {r['p10_ms']:.2f} | {r['p90_ms']:.2f} | "
                     f"{r['preprocess_median_ms']:.2f} | "
                     f"{'yes' if r['median_ms'] < TARGET_MS else 'no'} |")
    md = "\n".join(lines) + "\n"
    print(md)
    stem = "classify" + (f"-{args.tag}" if args.tag else "")
    for path in save_results(Path(args.out), stem, payload, md):
        print(f"saved {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
