"""The Gradio classifier: a real server process (`python -m lab classify`) driven over HTTP.

One small digits run is trained once per session into a temporary run store; the server is
started once per module by the same launcher the Streamlit page uses.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lab.runs.ports import free_port
from lab.views.classify import NoRunsError, ServerError, ensure_server, read_state, stop_server

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TINY = {"device": "cpu", "epochs": 6, "memory": "standard", "seed": 0,
        "model_kwargs": {"blocks": [1, 1, 1], "widths": [8, 8, 16, 32]}}
FUZZ_DEFAULT, FUZZ_FULL = 200, 1000
MEMORY_GROWTH_LIMIT = 200 * 2**20


@pytest.fixture(scope="session")
def home(tmp_path_factory):
    """A run store holding one completed digits run (trained here: 132 steps, a few seconds)."""
    from lab.runs import jobs, worker
    from lab.runs.store import Store

    home = tmp_path_factory.mktemp("classify_home")
    with Store(home) as store:
        run_id = jobs.start_foreground(TINY, store=store)
        assert worker.execute(store, run_id, foreground=True) == "completed"
        assert store.require_run(run_id).final["test_acc"] > 0.9
    return home


@pytest.fixture(scope="session")
def run_id(home) -> str:
    from lab.runs.store import Store

    with Store(home) as store:
        (run,) = store.list_runs(status="completed")
    return run.id


@pytest.fixture(scope="module")
def server(home):
    """The classifier started by the page's launcher on a free loopback port."""
    old = os.environ.get("LAB_HOME")
    os.environ["LAB_HOME"] = str(home)  # what the Streamlit page would see
    info = ensure_server(home, port=free_port(), timeout=300)
    yield info
    stop_server(home)
    if old is None:
        os.environ.pop("LAB_HOME", None)
    else:
        os.environ["LAB_HOME"] = old


@pytest.fixture(scope="module")
def client(server):
    return Client(server.url, verbose=False)


@pytest.fixture(scope="session")
def digits():
    from core.data import load_dataset

    return load_dataset("digits", augment=False)


def digit_png(bundle, index: int, scale: int = 8, fmt: str = "PNG", **kw) -> bytes:
    """A test digit as the examples write it: light on dark, upscaled with nearest."""
    x, _ = bundle.test[index]
    pixels = np.clip(np.rint((x[0].numpy() * bundle.std[0] + bundle.mean[0]) * 255), 0, 255)
    image = Image.fromarray(pixels.astype(np.uint8)).resize((8 * scale, 8 * scale),
                                                            Image.Resampling.NEAREST)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def rss(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) * 1024


# -- the model and the predictions -------------------------------------------------------------


def test_real_image_gets_five_labels_and_all_probabilities_sum_to_one(client, run_id, digits,
                                                                      tmp_path):
    label_index = digits.test.targets.index(3)
    path = write(tmp_path, "three.png", digit_png(digits, label_index))
    label, gallery, summary, table, details = client.predict(
        run_id, [handle_file(path)], api_name="/classify")
    confidences = label["confidences"]
    assert len(confidences) == 5 and label["label"] == "3"
    probs = details["probabilities"]
    assert len(probs) == 10 and abs(sum(probs.values()) - 1) < 1e-9
    top5 = list(probs.items())[:5]
    assert [c["label"] for c in confidences] == [k for k, _ in top5]
    assert sum(c["confidence"] for c in confidences) <= 1 + 1e-9
    assert details["run"] == run_id and 0 < details["ms"] < 5000
    assert "looks like **3**" in summary and " ms on the server" in summary
    assert len(gallery) == 1 and table["data"][0][1] == "3"


def test_png_jpeg_webp_give_the_same_top1(client, run_id, digits, tmp_path):
    """One request with three files (the multi-file upload): one row per file."""
    for label in (0, 4, 7):
        i = digits.test.targets.index(label)
        paths = [write(tmp_path, f"d{label}.png", digit_png(digits, i)),
                 write(tmp_path, f"d{label}.jpg", digit_png(digits, i, fmt="JPEG", quality=95)),
                 write(tmp_path, f"d{label}.webp", digit_png(digits, i, fmt="WEBP"))]
        _, gallery, _, table, _ = client.predict(run_id, [handle_file(p) for p in paths],
                                                 api_name="/classify")
        rows = table["data"]
        assert [r[0] for r in rows] == [Path(p).name for p in paths]
        assert [r[5].split()[0] for r in rows] == ["PNG", "JPEG", "WEBP"]
        assert {r[1] for r in rows} == {str(label)}, rows
        assert len(gallery) == 3


def drawing(bundle, index: int, size: int = 256) -> tuple[bytes, bytes]:
    """A digit drawn in black on the sketchpad's transparent layer: (layer, composite) PNGs."""
    x, _ = bundle.test[index]
    ink = np.clip((x[0].numpy() * bundle.std[0] + bundle.mean[0]), 0, 1)
    ink = np.asarray(Image.fromarray((ink * 255).astype(np.uint8)).resize(
        (size * 5 // 8, size * 5 // 8), Image.Resampling.BILINEAR))  # strokes, not blocks
    layer = np.zeros((size, size, 4), np.uint8)  # black pen, alpha = ink, off-centre
    top, left = size // 8, size // 4
    layer[top:top + ink.shape[0], left:left + ink.shape[1], 3] = ink
    out = []
    for image in (layer, layer):  # the composite of a blank canvas and one layer is the layer
        buf = io.BytesIO()
        Image.fromarray(image, "RGBA").save(buf, format="PNG")
        out.append(buf.getvalue())
    return out[0], out[1]


def test_sketchpad_drawing_is_classified(client, run_id, digits, tmp_path):
    correct = 0
    for label in range(10):
        layer, composite = drawing(digits, digits.test.targets.index(label))
        value = {"background": None,
                 "layers": [handle_file(write(tmp_path, f"layer{label}.png", layer))],
                 "composite": handle_file(write(tmp_path, f"comp{label}.png", composite))}
        top, _, _, _, details = client.predict(run_id, value, api_name="/draw")
        assert details["inverted"] and details["file"] == "drawing"
        correct += top["label"] == str(label)
    assert correct >= 9


def test_examples_come_from_the_dataset_and_classify(client, run_id, server, home):
    from lab.classify.examples import write_examples  # noqa: F401 - the writer under test

    cfg = client.view_api(print_info=False, return_format="dict")
    assert "/example" in cfg["named_endpoints"]
    config = json.loads(_get(server.url + "config")[1])
    samples = [c for c in config["components"] if c.get("type") == "dataset"]
    assert samples and len(samples[0]["props"]["samples"]) == 10  # one per digit class
    for sample in samples[0]["props"]["samples"]:
        path = sample[0]["path"]
        assert not path.startswith(str(home))  # served from Gradio's cache, not the store
    first = samples[0]["props"]["samples"][0][0]
    status, body = _get(first["url"])
    assert status == 200 and body[:4] == b"\x89PNG"


# -- bad input -------------------------------------------------------------------------------


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """name -> (file path, expected message fragment)."""
    ok = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(ok, format="PNG")
    ok = ok.getvalue()
    from test_images import FOREIGN, png_header

    refused = "not a PNG, JPEG, WebP, GIF, BMP, TIFF or PPM"  # core.images' one rule
    cases = {name: (write(tmp_path, f"{name}.png", data), refused)
             for name, data in FOREIGN.items()}
    cases["empty"] = (write(tmp_path, "empty.png", b""), "empty")
    cases["truncated"] = (write(tmp_path, "cut.png", ok[:60]), "damaged or truncated")
    cases["bomb"] = (write(tmp_path, "bomb.png", png_header(40_000, 40_000)), "megapixels")
    return cases


def test_bad_files_get_clear_errors_and_the_server_keeps_serving(client, run_id, digits,
                                                                 tmp_path):
    for path, message in _bad_inputs(tmp_path).values():
        with pytest.raises(AppError, match=message):
            client.predict(run_id, [handle_file(path)], api_name="/classify")
    with pytest.raises(AppError, match="no image given"):
        client.predict(run_id, [], api_name="/classify")
    with pytest.raises(AppError, match="sketchpad is empty"):
        client.predict(run_id, None, api_name="/draw")
    good = write(tmp_path, "ok.png", digit_png(digits, 0))
    with pytest.raises(AppError):  # not a run of this store (Gradio or we refuse it)
        client.predict("deadbeef", [handle_file(good)], api_name="/classify")
    # a mix: the good file is classified, the bad one reported in its row
    _, _, _, table, _ = client.predict(
        run_id, [handle_file(good), handle_file(_bad_inputs(tmp_path)["html"][0])],
        api_name="/classify")
    assert table["data"][0][1] != "-" and table["data"][1][5].startswith("refused: not a PNG")


def test_oversize_upload_is_refused(client, run_id, tmp_path):
    big = write(tmp_path, "big.png", b"\x89PNG\r\n\x1a\n" + bytes(11 * 2**20))
    with pytest.raises(Exception, match="(?i)413|too large|size"):
        client.predict(run_id, [handle_file(big)], api_name="/classify")


def _fuzz_files(n: int, tmp_path: Path) -> list[str]:
    from test_images import fuzz_inputs, png_header

    rng = np.random.default_rng(1)
    paths = []
    special = [b"", png_header(100_000, 100_000), _many_frames_gif()]
    for i, data in enumerate(special + fuzz_inputs(n - len(special), seed=2)):
        ext = (".png", ".jpg", ".webp", ".gif", ".bmp")[rng.integers(5)]
        paths.append(write(tmp_path, f"f{i}{ext}", data))
    return paths


def _many_frames_gif(frames: int = 10_000) -> bytes:
    """A 10,000-frame animated GIF: only its first frame may be decoded."""
    images = [Image.new("P", (2, 2), i % 2) for i in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=10,
                   optimize=False, disposal=1)
    return buf.getvalue()


def _fuzz(client, run_id, server, home, paths) -> None:
    for path in paths[:10]:  # warm-up: model loaded, first errors rendered
        with contextlib.suppress(AppError):
            client.predict(run_id, [handle_file(path)], api_name="/classify")
    start, answered, decoded = rss(server.pid), 0, 0
    for path in paths:
        try:
            client.predict(run_id, [handle_file(path)], api_name="/classify")
            decoded += 1  # a bit flip that still decodes: a proper answer
        except AppError as e:
            assert len(str(e)) > 10 and "Traceback" not in str(e)
            answered += 1
    growth = rss(server.pid) - start
    assert answered + decoded == len(paths) and answered > 0.8 * len(paths)
    assert read_state(home).pid == server.pid and os.kill(server.pid, 0) is None  # no crash
    assert growth < MEMORY_GROWTH_LIMIT, f"server RSS grew {growth / 2**20:.0f} MiB"


def test_fuzz_malformed_uploads(client, run_id, server, home, tmp_path):
    _fuzz(client, run_id, server, home, _fuzz_files(FUZZ_DEFAULT, tmp_path))


@pytest.mark.slow
def test_fuzz_malformed_uploads_full(client, run_id, server, home, tmp_path):
    _fuzz(client, run_id, server, home, _fuzz_files(FUZZ_FULL, tmp_path))


# -- what the server serves -------------------------------------------------------------------


def _get(url: str) -> tuple[int, bytes]:
    import httpx

    r = httpx.get(url, timeout=10, follow_redirects=False)
    return r.status_code, r.content


def test_path_traversal_and_run_files_are_refused(server, home, run_id):
    run_dir = Path(home) / "runs" / run_id
    secrets = {"/etc/passwd": b"root:", str(run_dir / "config.json"): b'"model"',
               str(run_dir / "model.safetensors"): b'"dtype"', str(Path(home) / "lab.db"):
               b"SQLite format"}
    for target, marker in secrets.items():
        rel = os.path.relpath(target, "/tmp")
        for path in (f"gradio_api/file={target}", f"file={target}",
                     f"gradio_api/file=../../../../../..{target}",
                     f"gradio_api/file=%2e%2e/%2e%2e/%2e%2e/%2e%2e{target}",
                     f"gradio_api/file=/tmp/{rel}", f"gradio_api/file=/tmp/gradio/../{rel}",
                     f"static/..%2f..%2f..%2f..{target}", f"assets/../../../..{target}"):
            status, body = _get(server.url + path)
            assert marker not in body, (path, status)
            assert status != 200 or b"<html" in body[:200].lower(), (path, status)


def test_api_refuses_server_paths_as_uploads(server, home, run_id):
    """A client naming a server file instead of uploading one gets nothing from it."""
    import httpx

    target = Path(home) / "runs" / run_id / "config.json"
    for path in (str(target), "/etc/passwd"):
        payload = {"data": [run_id, [{"path": path, "meta": {"_type": "gradio.FileData"}}]]}
        r = httpx.post(server.url + "gradio_api/call/classify", json=payload, timeout=10)
        event = r.json()["event_id"]
        stream = httpx.get(server.url + f"gradio_api/call/classify/{event}", timeout=30).text
        assert "event: error" in stream and "root:" not in stream and '"model"' not in stream


def test_launch_settings(home, tmp_path):
    from lab.classify.app import CACHE_SWEEP, ClassifyApp, launch_kwargs

    kw = launch_kwargs(home, "127.0.0.1", 0)
    assert kw["share"] is False and kw["server_name"] == "127.0.0.1"
    assert "allowed_paths" not in kw and kw["blocked_paths"] == [str(Path(home).resolve())]
    assert kw["max_file_size"] == 10 * 2**20
    app = ClassifyApp(home, examples_dir=tmp_path / "ex")
    demo = app.build()
    assert demo.delete_cache == CACHE_SWEEP and demo.analytics_enabled is False
    assert not str(app.examples_dir).startswith(str(home))


def test_models_load_from_the_store_only_and_are_cached(home, run_id):
    from lab.classify import ClassifierCache, ClassifierError

    cache = ClassifierCache(home)
    a = cache.get(run_id)
    assert a is cache.get(run_id) and not a.model.training
    assert a.class_names == tuple(str(d) for d in range(10)) and a.spec.size == 8
    for bad in ("../../etc", "DEADBEEF", "00000000", 42):
        with pytest.raises(ClassifierError):
            cache.get(bad)
    weights = Path(home) / "runs" / run_id / "model.safetensors"
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a new checkpoint
    assert cache.get(run_id) is not a
    source = "".join(p.read_text() for p in (REPO / "lab" / "classify").glob("*.py"))
    assert not re.search(r"torch\.load\(|import pickle|pickle\.loads?\(", source)


# -- the launcher and the Streamlit page ------------------------------------------------------


def test_launcher_reuses_the_live_server(server, home):
    again = ensure_server(home, timeout=30)
    assert again == server


def test_launcher_messages(tmp_path, home):
    with pytest.raises(NoRunsError, match="No completed run yet"):
        ensure_server(tmp_path / "empty_home", timeout=5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        other = tmp_path / "other_home"
        (other / "runs").mkdir(parents=True)
        import shutil

        shutil.copy(Path(home) / "lab.db", other / "lab.db")
        for name in os.listdir(Path(home) / "runs"):
            shutil.copytree(Path(home) / "runs" / name, other / "runs" / name)
        with pytest.raises(ServerError, match=f"Port {busy} .* in use"):
            ensure_server(other, port=busy, timeout=5)


@pytest.mark.slow
def test_launcher_restarts_a_dead_server(server, home):
    os.kill(server.pid, signal.SIGKILL)
    time.sleep(0.5)
    fresh = ensure_server(home, port=server.port, timeout=300)
    assert fresh.pid != server.pid and fresh.port == server.port


def test_page_embeds_the_running_app(server, home):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "pages" / "5_Classify.py"), default_timeout=60)
    at.run()
    assert not at.exception
    assert not at.error
    (frame,) = at.get("iframe")  # AppTest sees the element, not the page inside it
    assert frame.proto.src == server.url
    assert f"process {server.pid}" in at.caption[-1].value


def test_page_without_runs_says_what_to_do(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LAB_HOME", str(tmp_path / "nothing_here"))
    at = AppTest.from_file(str(REPO / "pages" / "5_Classify.py"), default_timeout=60)
    at.run()
    assert not at.exception and not at.error
    assert "No completed run yet" in at.info[0].value
