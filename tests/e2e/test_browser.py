"""The lab app in a real browser (Playwright driving Debian's /usr/bin/chromium).

Starts `streamlit run streamlit_app.py` on a free loopback port with a fresh LAB_HOME, launches
the default run from Train, waits for its accuracy curve and its end, reloads and finds the same
run, opens every page and finds no error, and checks that no request left 127.0.0.1. Screenshots
of every page go to $LAB_SCREENSHOTS (e.g. docs/screenshots) or the test's tmp folder.
"""

import os
import time
from pathlib import Path

import pytest

from lab.bench.app_browser import (
    browser,
    chromium_available,
    curve_points,
    serve,
    wait_curve,
    wait_idle,
)
from lab.runs import jobs
from lab.runs.ports import free_port
from lab.runs.store import Store

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
# about a minute on a quiet 2-core machine; the waits allow for a heavily loaded one
FIRST_POINT_S, RUN_END_S = 240, 480

if not chromium_available():
    pytest.skip("/usr/bin/chromium is missing: `apt-get install -y chromium` (.ci/run does it)",
                allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' installs playwright")

ERROR_SELECTORS = ['[data-testid="stException"]', '[data-testid="stAlertContentError"]']


def page_paths() -> dict[str, str]:
    """Every page's title and URL path, in sidebar order (lab.views.navigation)."""
    from lab.views.navigation import all_pages

    return {p.title: "/" + p.url_path for p in all_pages()}


def sidebar_titles(page) -> list[str]:
    """The sidebar's page links as the user reads them (the Material icon's ligature name, which
    the icon font draws as a symbol, left out)."""
    texts = page.locator('[data-testid="stSidebarNavLink"]').all_inner_texts()
    return [t.strip().split("\n")[-1].strip() for t in texts]


def errors_on(page) -> list[str]:
    found = [page.locator(sel).all_inner_texts() for sel in ERROR_SELECTORS]
    texts = [t for group in found for t in group]
    body = page.inner_text("body")
    if "Traceback (most recent call last)" in body:
        texts.append("a traceback on the page")
    return texts


@pytest.fixture
def shots(tmp_path) -> Path:
    out = Path(os.environ.get("LAB_SCREENSHOTS") or tmp_path / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def home(tmp_path):
    """A fresh LAB_HOME; at the end, active runs are cancelled and the classifier stopped."""
    path = tmp_path / "lab_home"
    path.mkdir()
    yield path
    with Store(path) as store:
        for run in store.list_runs(status=["queued", "running"]):
            jobs.cancel(run.id, store=store, grace=5)
    from lab.views.classify import stop_server  # the Classify page starts one on demand

    stop_server(home=path, grace=5)


def test_train_live_reload_every_page_and_nothing_leaves_loopback(tmp_path, home, shots):
    # One OpenMP thread per process: this checks behaviour, not speed, and on a busy machine
    # (CI, parallel jobs) multi-threaded barriers stall a step for whole timeslices.
    # The Classify page's Gradio server gets a free port (7860 may be taken on a shared machine).
    # An empty data folder: the form must refuse CIFAR-10 at its Dataset field.
    env = {"OMP_NUM_THREADS": "1", "LAB_CLASSIFY_PORT": str(free_port()),
           "LAB_DATA": str(tmp_path / "no_data")}
    with serve(home, env=env) as server, browser(tmp_path / "profile") as b:
        page = b.context.new_page()

        # A deep link as the fresh server's first request: the entry's navigation, titled pages
        page.goto(server.url + "/Train")
        wait_idle(page)
        assert sidebar_titles(page) == list(page_paths()), sidebar_titles(page)
        assert page.title().startswith("Train")

        # Train: launch the default run, watch the accuracy curve fill, wait for the end
        page.get_by_role("button", name="Launch", exact=True).click()
        page.wait_for_url("**run=*", timeout=60_000)
        run_id = page.url.split("run=")[1].split("&")[0]
        wait_curve(page, "Accuracy", timeout=FIRST_POINT_S)
        deadline = time.monotonic() + RUN_END_S
        with Store(home) as store:
            while store.require_run(run_id).status in ("queued", "running"):
                assert time.monotonic() < deadline, f"the default run ran over {RUN_END_S} s"
                time.sleep(1)
            run = store.require_run(run_id)
        assert run.status == "completed", (run.reason, run.error)
        page.get_by_text("completed", exact=False).first.wait_for(timeout=30_000)
        wait_idle(page)
        assert curve_points(page, "Accuracy") > 0

        # a reload (the id is in the URL) shows the same run and its curves
        page.reload()
        wait_idle(page)
        assert f"run={run_id}" in page.url
        page.get_by_text(f"Run {run_id}").first.wait_for(timeout=30_000)
        wait_curve(page, "Accuracy", timeout=30)
        assert not errors_on(page)
        page.screenshot(path=str(shots / "train-run.png"), full_page=True)

        # every page: rendered, no exception or error box; one screenshot each
        paths = page_paths()
        links = page.locator('[data-testid="stSidebarNavLink"]')
        assert links.count() == len(paths), (links.count(), paths)
        for name, path in paths.items():
            page.goto(server.url + path)
            wait_idle(page)
            page.get_by_role("heading", level=1).first.wait_for(timeout=30_000)
            assert not errors_on(page), (name, errors_on(page))
            page.screenshot(path=str(shots / f"{name.lower().replace(' ', '_')}.png"),
                            full_page=True)  # depth_lab.png, as docs/screenshots names them

        # the form refuses a dataset whose files are missing, at the Dataset field
        page.goto(server.url + "/Train")
        wait_idle(page)
        page.locator('[data-testid="stSelectbox"]').filter(has_text="Dataset").click()
        page.get_by_role("option", name="cifar10", exact=True).click()
        wait_idle(page)
        refusal = page.locator('[data-testid="stAlertContentError"]').filter(
            has_text="CIFAR-10 expects the folder")
        refusal.first.wait_for(timeout=30_000)
        assert "Download if missing" in refusal.first.inner_text()
        assert page.get_by_role("button", name="Launch", exact=True).is_disabled()
        with Store(home) as store:
            assert [r.id for r in store.list_runs()] == [run_id]  # no run was created

    assert b.requests, "no request recorded at all: the recorder is broken"
    assert any(u.startswith("ws://127.0.0.1") for u in b.requests)  # Streamlit's websocket
    assert not b.foreign(), b.foreign()
