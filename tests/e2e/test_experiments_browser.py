"""The Experiments page in a real browser: a stored experiment reattached by ``?experiment=ID``,
its two plotly figures drawn, a reload keeping it, and no error on the page.

The experiment's runs are finished in the store directly (their metrics made up here): this
checks the page, not training (tests/test_experiments.py trains a tiny grid through the CLI).
"""

import os
from pathlib import Path

import pytest

from lab.bench.app_browser import browser, chromium_available, serve, wait_idle
from lab.experiments import grid
from lab.runs import jobs
from lab.runs.store import Store

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

if not chromium_available():
    pytest.skip("/usr/bin/chromium is missing: `apt-get install -y chromium` (.ci/run does it)",
                allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' installs playwright")

ERROR_SELECTORS = ['[data-testid="stException"]', '[data-testid="stAlertContentError"]']


def seed(home: Path) -> str:
    """2 families x 2 fractions x 3 seeds, every run completed with a made-up accuracy."""
    real_spawn = jobs._spawn
    jobs._spawn = lambda *a, **k: None  # queue without starting workers
    try:
        with Store(home) as st:
            exp_id = grid.launch(grid.GridSpec(axes={"family": ["hamiltonian", "resnet"],
                                                     "fraction": [0.1, 1.0]}, seeds=3, steps=2),
                                 store=st, name="browser")
            for run_id, p in st.require_experiment(exp_id).points.items():
                st._conn.execute("UPDATE runs SET status = 'running' WHERE id = ?", (run_id,))
                acc = 0.5 + 0.4 * p["axes"]["fraction"] + 0.01 * p["seed"]
                st.finish(run_id, "completed", final={"test_acc": acc, "step": 2})
    finally:
        jobs._spawn = real_spawn
    return exp_id


def test_experiments_page_reattaches_and_draws_its_figures(tmp_path):
    home = tmp_path / "lab_home"
    home.mkdir()
    exp_id = seed(home)
    shots = Path(os.environ.get("LAB_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    with serve(home, env={"OMP_NUM_THREADS": "1"}) as server, \
            browser(tmp_path / "profile") as b:
        page = b.context.new_page()
        page.goto(f"{server.url}/Experiments?experiment={exp_id}")
        wait_idle(page)
        page.get_by_role("heading", level=1).first.wait_for(timeout=60_000)
        page.get_by_text("12/12 runs done").first.wait_for(timeout=60_000)
        page.locator(".js-plotly-plot").nth(1).wait_for(timeout=60_000)
        assert page.locator(".js-plotly-plot").count() == 2  # metric vs axis, parallel coords
        assert page.locator(".js-plotly-plot .parcoords").count() == 1
        for sel in ERROR_SELECTORS:
            assert page.locator(sel).count() == 0, page.locator(sel).all_inner_texts()
        page.screenshot(path=str(shots / "experiments.png"), full_page=True)
        page.reload()
        wait_idle(page)
        assert f"experiment={exp_id}" in page.url
        page.get_by_text("12/12 runs done").first.wait_for(timeout=60_000)
        assert "Traceback" not in page.inner_text("body")
    assert not b.foreign(), b.foreign()
