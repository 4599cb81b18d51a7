"""memory="auto": the engine plans within a memory limit, re-plans after running out of memory,
and the drift watch records each segment's rebuild error while training."""

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import randomize_batchnorm

import core
import core.network
import core.reversible
from core.estimate import estimate_activation_bytes
from core.memory import SavedTensorMeter
from core.training import Callback, TrainConfig, Trainer

MiB = 2**20
SHAPE = (16, 3, 16, 16)


def small(family="hamiltonian", **kw):
    torch.manual_seed(0)
    model = core.create_model(family, blocks=(3, 2, 2), widths=(8, 8, 16, 16), num_classes=5,
                              in_channels=3, **kw)
    randomize_batchnorm(model)
    return model


def reserved_mib(model) -> float:
    """What auto sets aside besides activations: parameters, gradients, SGD momentum, and a
    workspace of 4 of the largest activation (here the stem's output)."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    largest = SHAPE[0] * model.config.widths[0] * SHAPE[2] * SHAPE[3] * 4
    return (3 * params + 4 * largest) / MiB


def metered(model, x):
    with SavedTensorMeter(exclude=model.parameters()) as meter:
        out = model(x)
    F.cross_entropy(out, torch.zeros(len(x), dtype=torch.long)).backward()
    model.zero_grad(set_to_none=True)
    return meter.bytes


@pytest.mark.parametrize("where", ["standard", "between", "minimum"])
def test_auto_plans_within_the_limit(where):
    model = small()
    est = estimate_activation_bytes(model, SHAPE, ["standard", "reversible"])
    activations = {"standard": est["standard"], "minimum": est["reversible"] + 1024,
                   "between": (est["standard"] + est["reversible"]) // 2}[where]
    limit = reserved_mib(model) + activations / MiB
    model.set_memory_mode("auto", limit_mib=limit)
    saved = metered(model, torch.randn(*SHAPE))
    plan = model.memory_plan()
    assert plan.mode == "auto" and plan.limit_bytes == int(limit * MiB)
    assert plan.budget_bytes == plan.limit_bytes - sum(plan.reserved.values())
    assert abs(plan.budget_bytes - activations) <= 1  # the reserve is what the test expects
    assert saved == plan.predicted_bytes <= plan.budget_bytes  # planned bytes are kept bytes
    assert plan.minimum_bytes == est["reversible"]
    rebuilt = sum(s.rebuilt for s in plan.segments)
    expected = {"standard": "standard", "between": "budget", "minimum": "reversible"}[where]
    assert plan.choice == expected, str(plan)
    assert (rebuilt == 0) == (expected == "standard")
    assert (rebuilt == sum(s.blocks for s in plan.segments)) == (expected == "reversible")
    assert plan.choice in str(plan) and f"limit {limit:.2f} MiB" in str(plan)


def test_auto_refuses_below_the_reversible_minimum():
    model = small()
    minimum = estimate_activation_bytes(model, SHAPE, ["reversible"])["reversible"]
    limit = reserved_mib(model) + 0.9 * minimum / MiB
    model.set_memory_mode("auto", limit_mib=limit)
    with pytest.raises(ValueError, match=rf"limit of {limit:.1f} MiB .*the reversible minimum "
                       rf"is {minimum / MiB:.1f} MiB of activations.*--memory-limit-mib"):
        model(torch.randn(*SHAPE))


def test_auto_gives_a_resnet_standard_or_checkpoint():
    model = small("resnet")
    est = estimate_activation_bytes(model, SHAPE, ["standard", "checkpoint"])
    for activations, choice in ((est["standard"], "standard"),
                                (est["standard"] - 1024, "checkpoint")):
        model.set_memory_mode("auto", limit_mib=reserved_mib(model) + activations / MiB)
        saved = metered(model, torch.randn(*SHAPE))
        plan = model.memory_plan()
        assert plan.choice == choice and saved == est[choice] == plan.predicted_bytes
    model.set_memory_mode("auto", limit_mib=reserved_mib(model) + est["checkpoint"] / 2 / MiB)
    with pytest.raises(ValueError, match="checkpoint's need is"):
        model(torch.randn(*SHAPE))


def test_auto_without_a_limit_takes_the_device_free_memory(monkeypatch):
    """No limit: the device's free memory (CPU: available RAM) plus the parameters already held,
    less a margin of max(256 MiB, 10%)."""
    model = small()
    est = estimate_activation_bytes(model, SHAPE, ["standard", "reversible"])
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    for free, choice in ((4096 * MiB, "standard"),
                         (int(reserved_mib(model) * MiB) - params + 256 * MiB
                          + est["reversible"], "reversible")):
        monkeypatch.setattr(core.network, "free_memory", lambda device, f=free: (f, "test RAM"))
        model.set_memory_mode("auto")
        model(torch.randn(*SHAPE)).sum().backward()
        plan = model.memory_plan()
        assert plan.choice == choice, str(plan)
        assert plan.reserved["margin"] == max(256 * MiB, free // 10)
        assert plan.limit_bytes == free + params and "test RAM" in plan.limit_source


def test_auto_plans_again_at_a_new_shape_and_after_an_oom():
    model = small()
    model.set_memory_mode("auto", limit_mib=64.0)
    model(torch.randn(*SHAPE)).sum().backward()
    first = model.memory_plan()
    model(torch.randn(4, 3, 16, 16)).sum().backward()
    assert model.memory_plan().input_shape == (4, 3, 16, 16)
    model(torch.randn(*SHAPE)).sum().backward()
    assert model.memory_plan() is first  # planned once per shape
    smaller = model.replan_smaller()
    assert smaller.predicted_bytes <= first.minimum_bytes + (
        first.predicted_bytes - first.minimum_bytes) // 2
    assert smaller.predicted_bytes < first.predicted_bytes and "re-planned" in smaller.reason
    assert metered(model, torch.randn(*SHAPE)) == smaller.predicted_bytes
    while model.memory_plan().predicted_bytes > model.memory_plan().minimum_bytes:
        model.replan_smaller()
    with pytest.raises(ValueError, match="at its minimum already"):
        model.replan_smaller()


def test_auto_is_not_a_segment_mode():
    seg = small().reversible_segments()[0]
    with pytest.raises(ValueError, match="'auto' is planned by the network"):
        seg.set_memory_mode("auto")


# -- the trainer: out of memory ---------------------------------------------------------------

class Recorder(Callback):
    def __init__(self):
        self.events, self.steps = [], []

    def on_event(self, kind, message):
        self.events.append((kind, message))

    def on_step(self, m):
        self.steps.append(m)


def digits_model(memory="auto", **kw):
    torch.manual_seed(0)
    return core.create_model("hamiltonian", in_channels=1, num_classes=10, memory=memory, **kw)


def fail_once(model, times=1):
    """The last segment's forward raises torch.OutOfMemoryError on its first ``times`` training
    calls: after the plan, after earlier layers' batch norms moved their statistics."""
    seg = model.reversible_segments()[-1]
    real, calls = seg.forward, []

    def forward(a, b):
        if torch.is_grad_enabled():
            calls.append(1)
            if len(calls) <= times:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB "
                                             "(injected)")
        return real(a, b)

    seg.forward = forward
    return calls


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_auto_replans_and_retries_once_equal_to_a_run_with_that_plan(tmp_path):
    cfg = dict(steps=6, batch_size=32, drift_every=0)
    model, rec = digits_model(), Recorder()
    calls = fail_once(model)
    result = Trainer(TrainConfig(memory="auto", memory_limit_mib=40.0, **cfg), tmp_path / "a",
                     [rec], model=model).fit()
    assert result.status == "completed" and len(calls) == 7  # 6 steps, one retried
    replans = [m for k, m in rec.events if k == "replan"]
    assert len(replans) == 1 and "step 1: out of memory" in replans[0]
    assert "retried the step" in replans[0]
    plan = model.memory_plan()
    assert plan.choice != "standard" and "re-planned" in plan.reason
    # the same run, started with that plan: budget mode at the re-planned budget
    other = Recorder()
    twin = digits_model("budget", memory_mib=plan.budget_bytes / MiB)
    Trainer(TrainConfig(memory="budget", memory_mib=plan.budget_bytes / MiB, **cfg),
            tmp_path / "b", [other], model=twin).fit()
    assert twin.memory_plan().segments == plan.segments
    assert [m["loss"] for m in rec.steps] == [m["loss"] for m in other.steps]
    for (name, a), b in zip(state(model).items(), state(twin).values()):
        assert torch.equal(a, b), name


def test_auto_fails_when_the_retry_runs_out_of_memory_too(tmp_path):
    model, rec = digits_model(), Recorder()
    fail_once(model, times=2)
    result = Trainer(TrainConfig(memory="auto", memory_limit_mib=40.0, steps=3, drift_every=0),
                     tmp_path, [rec], model=model).fit()
    assert result.status == "failed"
    assert "re-planning once with less memory did not help" in result.reason
    assert [k for k, _ in rec.events].count("replan") == 1


@pytest.mark.parametrize("family, memory, lean", [("hamiltonian", "standard", "reversible"),
                                                  ("hamiltonian", "budget", "reversible"),
                                                  ("resnet", "standard", "checkpoint")])
def test_other_modes_fail_with_what_would_fit(tmp_path, family, memory, lean):
    torch.manual_seed(0)
    extra = {"memory_mib": 1.0} if memory == "budget" else {}
    model = core.create_model(family, in_channels=1, num_classes=10, memory=memory, **extra)
    fail_once(model) if family != "resnet" else _fail_plain(model)
    result = Trainer(TrainConfig(model=family, memory=memory, steps=2, batch_size=32,
                                 drift_every=0, **extra), tmp_path, model=model).fit()
    need = estimate_activation_bytes(model, (32, 1, 8, 8), [lean])[lean] / MiB
    assert result.status == "failed"
    assert f"memory={memory!r}" in result.reason and "memory='auto'" in result.reason
    assert f"memory={lean!r} keeps {need:.1f} MiB" in result.reason


def _fail_plain(model):
    def forward(x):
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")
    model.layers[0].forward = forward


# -- the trainer: the drift watch -------------------------------------------------------------

def test_drift_watch_records_errors_and_changes_nothing(tmp_path):
    cfg = dict(steps=6, batch_size=32, memory="reversible")
    runs = {}
    for every in (0, 2):
        model, rec = digits_model("reversible"), Recorder()
        Trainer(TrainConfig(drift_every=every, **cfg), tmp_path / str(every), [rec],
                model=model).fit()
        runs[every] = (model, rec)
    (plain, plain_rec), (watched, rec) = runs[0], runs[2]
    for (name, a), b in zip(state(plain).items(), state(watched).values()):
        assert torch.equal(a, b), name  # no gradient, statistic or random draw moved
    drift = [m for m in rec.steps if "rebuild_error" in m]
    assert [m["step"] for m in drift] == [2, 4, 6]
    assert not any("rebuild_error" in m for m in plain_rec.steps)
    n = len(watched.reversible_segments())
    for m in drift:
        per = [m[f"rebuild_error_s{j}"] for j in range(n)]
        assert m["rebuild_error"] == max(per) and 0 < max(per) < 1e-4


def test_drift_matches_a_direct_measurement():
    model = small()
    model.set_memory_mode("reversible")
    x = torch.randn(*SHAPE)
    errors = model.rebuild_errors(x)
    assert len(errors) == len(model.reversible_segments()) == 3
    x64, m64 = x.double(), copy.deepcopy(model).double()
    for e, e64 in zip(errors, m64.rebuild_errors(x64)):
        assert 1e-9 < e < 1e-4 and e64 < 1e-12  # float32 rounding; float64 rebuilds exactly
    model.set_memory_mode("standard")
    assert model.rebuild_errors(x) == [0.0, 0.0, 0.0]  # nothing is rebuilt


@pytest.mark.parametrize("anchor", [False, True])
def test_drift_warning_and_anchor_switch(tmp_path, monkeypatch, anchor):
    monkeypatch.setitem(core.reversible.REBUILD_ERROR_THRESHOLD, torch.float32, 1e-12)
    model, rec = digits_model("reversible"), Recorder()
    Trainer(TrainConfig(memory="reversible", steps=4, batch_size=32, drift_every=2,
                        drift_anchor=anchor), tmp_path, [rec], model=model).fit()
    warnings = [m for k, m in rec.events if k == "warning" and "rebuild error" in m]
    segs = model.reversible_segments()
    assert any("segment 0's rebuild error" in w and "above the float32 threshold 1e-12" in w
               for w in warnings)
    if not anchor:
        assert len(warnings) == len(segs)  # once per segment while it stays above
        assert all("drift_anchor=True would keep anchors" in w for w in warnings)
        assert all(s.anchor_every == 0 for s in segs)
        return
    first = next(w for w in warnings if "segment 0's" in w and "step 2:" in w)
    n0 = len(segs[0].blocks)
    k = max(1, int(n0 ** 0.5))
    assert f"segment 0 keeps anchors every {k} blocks from step 3" in first
    # still above at step 4: the spacing halves (down to every block)
    assert segs[0].anchor_every == max(1, k // 2)


# -- the lab: command line, Train form, live charts, store, benchmark -------------------------

def test_cli_takes_auto_and_the_drift_flags():
    from core.memory import MEMORY_MODES
    from lab.cli import build_parser
    from lab.cli.train import MEMORY_MODES as CLI_MODES
    from lab.cli.train import config_from_args

    assert CLI_MODES == MEMORY_MODES
    args = build_parser().parse_args(["train", "--memory", "auto", "--memory-limit-mib", "64",
                                      "--drift-every", "10", "--drift-anchor"])
    config = config_from_args(args)
    assert (config["memory"], config["memory_limit_mib"]) == ("auto", 64.0)
    assert (config["drift_every"], config["drift_anchor"]) == (10, True)
    TrainConfig.from_dict(config).validate()
    plain = config_from_args(build_parser().parse_args(["train"]))
    assert not {"memory_limit_mib", "drift_every", "drift_anchor"} & set(plain)
    with pytest.raises(ValueError, match="memory_limit_mib=64.0 is the limit of memory='auto'"):
        TrainConfig(memory="standard", memory_limit_mib=64.0).validate()
    with pytest.raises(ValueError, match="drift_every=-1"):
        TrainConfig(drift_every=-1).validate()


def test_train_form_offers_auto_with_an_optional_limit():
    from lab.views import train

    assert "auto" in train.memory_modes("hamiltonian") and "auto" in train.memory_modes("resnet")
    values = {**train.form_defaults(), "memory": "auto", "memory_limit_mib": None}
    assert "memory_limit_mib" not in train.config_from_form(values)
    config = train.config_from_form({**values, "memory_limit_mib": 512.0})
    assert (config["memory"], config["memory_limit_mib"]) == ("auto", 512.0)
    TrainConfig.from_dict(config).validate()
    assert "auto keeps what fits its limit" in train.preview(config).note


def _store_run_with_drift(tmp_path, every=3, steps=9):
    from lab.runs.store import Store

    store = Store(tmp_path / "lab.db")
    run_id = store.create_run({"model": "hamiltonian", "dataset": "digits", "memory": "auto"},
                              status="running")
    rows = []
    for s in range(1, steps + 1):
        m = {"step": s, "epoch": 1, "loss": 1.0 / s, "acc": 0.5, "saved_bytes": 1000}
        if s % every == 0:
            m.update(rebuild_error=2e-6 * s, rebuild_error_s0=1e-6 * s, rebuild_error_s1=2e-6 * s)
        rows.append(m)
    store.write_metrics(run_id, steps=rows)
    return store, run_id


def test_rebuild_error_is_stored_and_read_live(tmp_path):
    """No schema change: the drift keys ride in the step rows' extra JSON; a live read keeps
    them as sparse series, the live chart draws one line per segment and the Runs overlay
    offers rebuild_error in its metric list."""
    from lab.figures.runs import METRICS, live_figures, overlay_figure
    from lab.runs.live import LiveRun

    store, run_id = _store_run_with_drift(tmp_path)
    assert [m.get("rebuild_error_s1") for m in store.step_metrics(run_id)][2::3] == [
        pytest.approx(6e-6), pytest.approx(1.2e-5), pytest.approx(1.8e-5)]
    live = LiveRun(run_id)
    live.refresh(store)
    x, y = live.series("rebuild_error_s0")
    assert list(x) == [3, 6, 9] and y == pytest.approx([3e-6, 6e-6, 9e-6])
    assert live.sparse_keys("rebuild_error") == ["rebuild_error_s0", "rebuild_error_s1"]
    figs = live_figures(live)
    drift = figs["drift"]
    assert [t.name for t in drift.data] == ["segment 0", "segment 1",
                                            "warning threshold (float32)"]
    assert drift.layout.yaxis.type == "log"
    assert "rebuild_error" in METRICS
    overlay = overlay_figure([live], "rebuild_error")
    assert list(overlay.data[0].x) == [3, 6, 9]
    # a run without the drift watch has no drift chart and an empty overlay line
    plain = LiveRun(store.create_run({"model": "resnet"}, status="running"))
    store.write_metrics(plain.run_id, steps=[{"step": 1, "loss": 1.0}])
    plain.refresh(store)
    assert "drift" not in live_figures(plain) and len(plain.series("rebuild_error")[0]) == 0
    store.close()


def test_old_checkpoints_resume_with_the_new_config_keys(tmp_path):
    """A run saved before memory_limit_mib/drift_every/drift_anchor existed still resumes."""
    import json

    from core.training import checkpoint as ckpt

    def cfg():
        return TrainConfig(steps=4, checkpoint_every=2, memory="reversible")

    Trainer(cfg(), tmp_path).fit()
    state = ckpt.load_state(tmp_path)
    old = json.loads(state["config_json"])
    for key in ("memory_limit_mib", "drift_every", "drift_anchor"):
        old.pop(key)
    state["config_json"] = json.dumps(old, sort_keys=True)
    ckpt.save_checkpoint(tmp_path, weights=state.pop("model"), state=state,
                         meta=json.loads((tmp_path / "meta.json").read_text()))
    result = Trainer(cfg(), tmp_path).fit(resume=True)
    assert result.status == "completed" and result.final["step"] == 4


def test_auto_benchmark_writes_its_report(tmp_path):
    import json

    from lab import bench

    argv = ["auto", "--blocks", "1", "--widths", "4,4,8,8", "--batch", "2", "--size", "8",
            "--repeats", "1", "--warmup", "0", "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    payload = json.loads((tmp_path / "auto.json").read_text())
    limits = [t["limit"] for t in payload["targets"]]
    assert limits == ["standard's need", "halfway", "minimum x1.05", "device free memory"]
    choices = {t["limit"]: t["choice"] for t in payload["targets"]}
    assert choices["standard's need"] == "standard" and choices["minimum x1.05"] == "reversible"
    assert all(t["kept_within_plan"] and t["within_limit"] for t in payload["targets"])
    assert (tmp_path / "auto.md").read_text().count("| auto |") == 4
    assert (tmp_path / "auto.html").exists()
