"""Benchmarks: every suite end to end at a tiny size, the peers' gradients, failure reporting."""

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from lab import bench
from lab.bench import peers, scaling
from lab.figures import bench as figures
from lab.sweeps import measure, sweep
from lab.sweeps.measure import measure_model, run_child

WIDTHS = (8, 8, 16, 16)
TINY = ["--depths", "1", "--widths", ",".join(map(str, WIDTHS)), "--batch", "2", "--size", "8",
        "--repeats", "1", "--warmup", "0", "--device", "cpu"]
OURS = ["standard", "checkpoint", "reversible", "reversible-anchor1"]


def _installed(name: str) -> bool:
    try:
        peers.import_peer(name)
        return True
    except peers.PeerUnavailable:
        return False


PEER_CONTENDERS = [pytest.param(c, marks=pytest.mark.skipif(
    not _installed(pkg), reason=f"{pkg} not installed (pip install -e '.[bench]')"))
    for c, (pkg, _) in peers.PEER_SEGMENTS.items()]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def in_process(monkeypatch):
    """Measure memory in this process instead of a fresh one per case: fast, values not honest.

    ``test_child_process_measures_a_contender`` covers the real fresh-process path.
    """
    def fake_run_child(module, spec, timeout=0):
        assert module in ("lab.bench.child", "lab.sweeps.child")
        measure = {"peer": peers.measure_contender, "depth": sweep.measure_case}
        return measure.get(spec.get("kind"), measure_model)(spec)

    for module in (peers, sweep):
        monkeypatch.setattr(module, "run_child", fake_run_child)


def _batch(n=4):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


# ---------------------------------------------------------------- suites end to end


@pytest.mark.parametrize("suite, options", [("modes", []), ("scaling", ["--budget-mib", "64"]),
                                           ("peers", ["--anchor-every", "1"])])
def test_suite_writes_json_md_html(suite, options, tmp_path, in_process):
    argv = [suite, *TINY, *options, "--out", str(tmp_path), "--tag", "tiny"]
    assert bench.main(argv) == 0
    payload = json.loads((tmp_path / f"{suite}-tiny.json").read_text())
    md = (tmp_path / f"{suite}-tiny.md").read_text()
    html = (tmp_path / f"{suite}-tiny.html").read_text()
    assert payload["benchmark"] == suite
    assert payload["command"] == "python -m lab bench " + " ".join(argv)
    assert payload["command"] in md and f"({suite}-tiny.html)" in md
    assert payload["machine"]["torch"] == torch.__version__
    assert payload["rows"] and all(r.get("step_s", 0) > 0 for r in payload["rows"]
                                   if not r.get("notes"))
    # plotly.js from the one file beside it, nothing fetched from a CDN
    assert "Plotly.newPlot" in html and '<script src="http' not in html and len(html) < 200_000
    assert 'src="plotly.min.js"' in html and (tmp_path / "plotly.min.js").stat().st_size > 1e6
    if suite == "peers":
        _check_peers_payload(payload)
    if suite == "scaling":
        assert {b["mode"] for b in payload["budget"]} == {"standard", "checkpoint", "reversible"}
    if suite in ("modes", "scaling"):  # one sweep serves both; Home reads these row keys
        for r in payload["rows"]:
            assert {"blocks", "depth", "mode", "held_mib", "saved_mib", "peak_over_start_mib",
                    "step_s", "vs_standard"} <= set(r), r
        assert [r["mode"] for r in payload["rows"]] == ["standard", "checkpoint", "reversible"]


def test_scaling_of_a_non_reversible_family_has_no_reversible_mode(tmp_path, in_process):
    argv = ["scaling", *TINY, "--family", "resnet", "--depths", "1,2", "--budget-mib", "64",
            "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    payload = json.loads((tmp_path / "scaling.json").read_text())
    assert {r["mode"] for r in payload["rows"]} == {"standard", "checkpoint"}
    assert [r["depth"] for r in payload["rows"]] == [8, 8, 14, 14]  # 2 layers per block
    assert payload["family"] == "resnet" and "Resnet" in (tmp_path / "scaling.md").read_text()


def test_bad_sweep_option_is_a_clear_exit(tmp_path):
    with pytest.raises(SystemExit, match="resnet blocks are not invertible.*'reversible'"):
        bench.main(["scaling", *TINY, "--family", "resnet", "--modes", "reversible",
                    "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--depths 'a,b'"):
        bench.main(["modes", "--depths", "a,b", "--out", str(tmp_path)])


def _check_peers_payload(payload: dict) -> None:
    rows = {r["contender"]: r for r in payload["rows"]}
    assert list(rows) == peers.default_contenders(1)
    for name in OURS:
        r = rows[name]
        assert r["notes"] == "" and r["bn_updates"] == 1 and r["step_s"] > 0
        assert max(r["input_grad_err"], r["param_grad_err"]) < 1e-4
        assert r["held_mib"] is None or r["held_mib"] > 0
    assert rows["standard"]["forward_s"] > 0
    for peer in ("memcnn", "revlib"):
        if _installed(peer):  # the peers run, their gradients match plain autograd
            assert rows[peer]["step_s"] > 0
            assert max(rows[peer]["input_grad_err"], rows[peer]["param_grad_err"]) < 1e-4
    assert {t["target"].split(" <=")[0] for t in payload["targets"]} >= {
        "step time vs standard", "step time vs memcnn", "held activation MiB vs memcnn"}


def test_child_process_peak_memory_standard_above_reversible():
    """The real fresh-process path; activations (~8 vs ~1 MiB) must show in the CPU peak."""
    spec = dict(kind="peer", blocks=4, widths=[16, 16, 32, 32], batch=16, size=16,
                device="cpu", steps=1, threads=1)
    out = {c: run_child("lab.bench.child", dict(spec, contender=c), timeout=120)
           for c in ("standard", "reversible")}
    for r in out.values():
        assert "error" not in r, r
        assert r["peak_mib"] > 0 and r["saved_mib"] > 0
    if any("unavailable" in r["peak_method"] for r in out.values()):
        pytest.skip("no /proc/self/clear_refs here: the process-lifetime peak is too noisy")
    assert out["standard"]["peak_over_start_mib"] > 1.5 * out["reversible"]["peak_over_start_mib"]


# ---------------------------------------------------------------- apples to apples


@pytest.mark.parametrize("contender", [*OURS, *PEER_CONTENDERS])
def test_contender_gradients_match_plain_autograd(contender):
    base = peers.base_model(2, WIDTHS)
    x, y = _batch()
    ref = peers.gradients(peers.build_contender("standard", base), x, y)
    model = peers.build_contender(contender, base)
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in base.named_parameters()]
    err = peers.gradient_errors(peers.gradients(model, x, y), ref)
    assert err["input_grad_err"] < 1e-5 and err["param_grad_err"] < 1e-4, err


def test_contenders_are_copies_with_the_same_weights():
    base = peers.base_model(1, WIDTHS)
    model = peers.build_contender("reversible", base)
    for (n, p), q in zip(base.named_parameters(), model.parameters()):
        assert torch.equal(p, q) and p is not q, n


@pytest.mark.parametrize("contender", OURS)
def test_our_modes_update_batch_norm_once(contender):
    base = peers.base_model(1, WIDTHS)
    x, y = _batch()
    ref = peers.bn_statistics(peers.build_contender("standard", base), x, y)
    got = peers.bn_errors(peers.bn_statistics(peers.build_contender(contender, base), x, y), ref)
    assert got["bn_updates"] == 1 and got["bn_mean_err"] < 1e-5, got


class _TwiceBN(nn.Module):
    """Runs one of its two batch norms twice, like a rebuild that forgets to freeze statistics."""

    def __init__(self, twice: bool):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.fc, self.twice = nn.Conv2d(3, 4, 3), nn.Linear(4, 10), twice
        self.bn1, self.bn2 = nn.BatchNorm2d(4), nn.BatchNorm2d(4)

    def forward(self, x):
        z = self.bn1(self.conv(x))
        if self.twice:
            self.bn2(z.detach())
        return self.fc(self.bn2(z).mean(dim=(2, 3)))


def test_bn_check_detects_double_updates():
    x, y = _batch()
    ref = peers.bn_statistics(_TwiceBN(False), x, y)
    got = peers.bn_errors(peers.bn_statistics(_TwiceBN(True), x, y), ref)
    assert got["bn_updates"] == 2 and got["bn_mean_err"] > 0.1


@pytest.mark.skipif(measure.allocated_bytes(torch.device("cpu")) is None,
                    reason="held memory needs glibc mallinfo2")
def test_held_memory_flat_for_reversible_growing_for_standard():
    g = torch.Generator().manual_seed(0)
    # batch 16: the state (~1 MiB) dwarfs autograd's per-input metadata (~2 KiB per block)
    x, y = torch.randn(16, 3, 16, 16, generator=g), torch.randint(0, 10, (16,), generator=g)
    held = {}
    for mode in ("standard", "reversible"):
        for n in (2, 6):  # from 2 blocks per stage on, every stage has a segment
            model = peers.build_contender(mode, peers.base_model(n, (16, 16, 32, 32)))
            peers.gradients(model, x, y)  # warm-up
            held[mode, n] = peers.held_and_saved(model, x, y)["held_mib"]
    assert held["standard", 6] > 2 * held["standard", 2]
    assert held["reversible", 6] < 1.05 * held["reversible", 2]
    assert held["reversible", 6] < held["standard", 6] / 3


# ---------------------------------------------------------------- failures become rows


def test_peer_import_failure_is_reported_in_its_row(tmp_path, in_process, monkeypatch):
    monkeypatch.setitem(sys.modules, "memcnn", None)  # `import memcnn` raises ImportError
    argv = ["peers", *TINY, "--contenders", "standard,memcnn,memcnn-coupling,reversible",
            "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    payload = json.loads((tmp_path / "peers.json").read_text())
    rows = {r["contender"]: r for r in payload["rows"]}
    for name in ("memcnn", "memcnn-coupling"):
        assert "memcnn unavailable" in rows[name]["notes"]
        assert rows[name].get("step_s") is None and rows[name].get("peak_mib") is None
    assert rows["standard"]["step_s"] > 0 and rows["reversible"]["step_s"] > 0
    assert "memcnn unavailable" in (tmp_path / "peers.md").read_text()


def test_peer_failing_on_this_torch_is_unavailable_not_a_crash(monkeypatch):
    real = importlib.import_module

    def broken(name, *a, **k):  # e.g. an old peer calling an API this torch removed
        if name == "revlib":
            raise AttributeError("module 'torch' has no attribute 'gone'")
        return real(name, *a, **k)

    monkeypatch.setattr(peers.importlib, "import_module", broken)
    with pytest.raises(peers.PeerUnavailable, match="revlib unavailable.*AttributeError.*gone"):
        peers.build_contender("revlib", peers.base_model(1, WIDTHS))
    assert peers.peer_versions()["revlib"] is None


def test_unknown_contender_is_a_value_error():
    with pytest.raises(ValueError, match="unknown contender 'memcn'.*memcnn"):
        peers.check_contender("memcn")


# ---------------------------------------------------------------- analysis


def test_deepest_within_budget_measured_and_extrapolated():
    got = scaling.deepest_within([(1, 10.0), (2, 20.0), (6, 60.0)], budget=45.0, stages=3)
    assert got["deepest_measured_blocks"] == 2 and got["deepest_measured_layers"] == 26
    assert got["slope_mib"] == pytest.approx(10) and got["intercept_mib"] == pytest.approx(0)
    assert got["deepest_extrapolated_blocks"] == 4 and got["deepest_extrapolated_layers"] == 50


@pytest.mark.parametrize("points, note", [
    ([(1, 30.0), (6, 30.0)], "no limit"),
    ([(1, 50.0), (6, 60.0)], "over budget"),
    ([(1, 30.0)], "no fit"),
])
def test_deepest_within_budget_edge_cases(points, note):
    got = scaling.deepest_within(points, budget=45.0, stages=3)
    assert note in got["note"]
    assert got["deepest_extrapolated_blocks"] in (None, 0)


def test_targets_verdicts():
    rows = [dict(blocks=6, contender="standard", step_s=1.0, held_mib=100.0, forward_s=0.3),
            dict(blocks=6, contender="memcnn", step_s=2.0, held_mib=10.0),
            dict(blocks=6, contender="revlib", step_s=1.5, held_mib=9.0),
            dict(blocks=6, contender="reversible", step_s=1.4, held_mib=9.5),
            dict(blocks=18, contender="reversible", step_s=1.4, held_mib=9.6)]
    got = {(t["blocks"], t["target"].split(" <=")[0].split(":")[0]): t for t in peers.targets(rows)}
    assert got[6, "step time vs standard"]["met"] is False  # 1.4 > 1.35
    assert got[6, "step time vs memcnn"]["met"] is True     # 0.7
    assert got[6, "held activation MiB vs memcnn"]["met"] is True
    assert got[6, "held activation MiB vs revlib"]["met"] is False
    assert got[6, "(context) cost floor of one re-run of every f"]["value"] == pytest.approx(1.3)
    assert got[18, "step time vs memcnn"]["met"] is None  # not measured at that depth
    assert got["6->18", "held MiB flat in depth (deepest/shallowest"]["met"] is True


def test_figure_of_unknown_payload_is_a_value_error():
    with pytest.raises(ValueError, match="no figure for benchmark 'nope'"):
        figures.figure({"benchmark": "nope"})


@pytest.mark.parametrize("suite", ["budget", "modes", "peers", "scaling"])
def test_every_recorded_benchmark_draws_from_its_json(suite):
    """docs/bench/<suite>-cpu.html is rebuilt from its .json by lab.figures.bench alone."""
    path = Path(__file__).resolve().parents[1] / "docs" / "bench" / f"{suite}-cpu.json"
    fig = figures.figure(json.loads(path.read_text()))
    assert fig.data and fig.layout.template.layout.paper_bgcolor == "white"
    assert fig.layout.annotations[-1].text.startswith("python -m lab bench " + suite)
