"""Every screen tells the truth after every click (issue 20), walked in a real browser.

A store with a few tiny real runs (trained here in a few seconds each: one stopped after its
first step, one to delete, a ResNet), then the app in Chromium:
  Train: the default run launched, its first point drawn as a marker, cancelled -> a message,
         Resume and Delete buttons, no Python call, no ETA;
  Depth lab: two tiny sweeps launched one after the other -> the URL names the second, and once
         both ended no sweep is labelled "running";
  Runs: the one-step run's curve drawn with markers; the HTML download small and drawn from the
        app's own plotly.js; delete -> a message, its chip gone, the rest still shown;
  ODE reversal: with a ResNet run the rebuilt toggle is off and disabled;
  Classify: the sketchpad draws at once, the preview shows the whole input, a refused file
            replaces the earlier result, the frame is as tall as its content;
  the server stopped -> the dialog speaks of the lab's server, not the internet.
Screenshots of Runs, Depth lab and ODE reversal go to $LAB_SCREENSHOTS (or the tmp folder).
"""

import os
import re
import time
from pathlib import Path

import pytest

from lab.bench.app_browser import browser, chromium_available, serve, wait_idle
from lab.runs import jobs, worker
from lab.runs.ports import free_port
from lab.runs.store import Store

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

if not chromium_available():
    pytest.skip("/usr/bin/chromium is missing: `apt-get install -y chromium` (.ci/run does it)",
                allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' installs playwright")

TINY = {"device": "cpu", "memory": "standard", "seed": 0, "dataset": "digits",
        "model_kwargs": {"blocks": [1, 1, 1], "widths": [8, 8, 16, 32]}}
WAIT_MS = 120_000  # a loaded 2-core machine: torch imports, a sweep's fresh processes
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
FIT_JS = """() => Array.from(document.querySelectorAll('[data-testid="stDataFrame"]')).map(df => {
    const s = df.querySelector('.dvn-scroller');
    return s ? [s.scrollWidth, s.clientWidth] : null;
}).filter(x => x)"""
TITLES_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => {
    const t = gd.querySelector('.gtitle'), m = gd.querySelector('.modebar');
    if (!t || !m) return null;
    const g = gd.getBoundingClientRect(), tr = t.getBoundingClientRect(),
          mr = m.getBoundingClientRect();
    return [t.textContent, tr.top - g.top, mr.bottom - g.top, tr.right - g.right];
}).filter(x => x)"""
MODES_JS = """(title) => {
    const out = [];
    for (const gd of document.querySelectorAll('.js-plotly-plot')) {
        const t = gd.layout && gd.layout.title && gd.layout.title.text;
        if (t && String(t).includes(title))
            for (const tr of gd._fullData || [])
                out.push([tr.mode, (tr.y || []).filter(v => v !== null).length]);
    }
    return out;
}"""


def train(store: Store, name: str, **config) -> str:
    """A real run of the tiny network, trained here (a few seconds); its id."""
    run_id = jobs.start_foreground({**TINY, **config}, name=name, store=store)
    assert worker.execute(store, run_id, foreground=True) == "completed"
    return run_id


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "lab_home"
    path.mkdir()
    with Store(path) as store:
        ids = {"one": train(store, "one step", steps=1),
               "gone": train(store, "to delete", steps=12),
               "resnet": train(store, "a resnet", model="resnet", steps=1)}
    yield path, ids
    with Store(path) as store:
        for run in store.list_runs(status=["queued", "running"]):
            jobs.cancel(run.id, store=store, grace=5)
    from lab.views.classify import stop_server

    stop_server(home=path, grace=5)


def toast(page, text: str) -> None:
    """Wait for a toast saying ``text`` (they stay ~10 s)."""
    page.locator('[data-testid="stToast"]', has_text=text).first.wait_for(timeout=WAIT_MS)


def shot(page, path: Path) -> None:
    """A screenshot of the page's top at 1400 x 1000, as a new user first sees it."""
    page.evaluate("() => document.querySelectorAll('[data-testid=\"stMain\"], "
                  "[data-testid=\"stAppViewContainer\"]').forEach(e => e.scrollTo(0, 0))")
    page.wait_for_timeout(500)
    page.screenshot(path=str(path))


def settle(page) -> None:
    wait_idle(page, timeout=WAIT_MS / 1000)
    assert not page.locator(ERRORS).count(), page.locator(ERRORS).all_inner_texts()


def wait_status(home: Path, run_id: str, statuses: tuple[str, ...], timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    with Store(home) as store:
        while (status := store.require_run(run_id).status) not in statuses:
            assert time.monotonic() < deadline, f"{run_id} still {status} after {timeout} s"
            time.sleep(0.5)
    return status


def fill(page, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    wait_idle(page)


def chosen(page, label: str) -> str:
    """What the selectbox labelled ``label`` shows (a combobox: its input's value)."""
    return page.get_by_role("combobox", name=label, exact=True).input_value()


def options(page, label: str) -> list[str]:
    """The options of the selectbox labelled ``label``, as its open list shows them."""
    page.get_by_role("combobox", name=label, exact=True).click()
    page.get_by_role("option").first.wait_for(timeout=WAIT_MS)
    texts = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    return texts


def pick(page, label: str, option: str) -> None:
    """Choose ``option`` (a substring of its text) in the selectbox labelled ``label``."""
    box = page.get_by_role("combobox", name=label, exact=True)
    box.click()
    box.fill(option)  # the list shows only what matches (a long list is drawn lazily)
    page.get_by_role("option").filter(has_text=option).first.click()
    wait_idle(page)


def test_every_screen_tells_the_truth_after_every_click(tmp_path, home):
    home, ids = home
    shots = Path(os.environ.get("LAB_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    env = {"OMP_NUM_THREADS": "1", "LAB_CLASSIFY_PORT": str(free_port()), "LAB_MAX_JOBS": "1"}
    with serve(home, env=env) as server, browser(tmp_path / "profile") as b:
        page = b.context.new_page()

        # -- Train: a one-step run's curves are dots, not empty axes ---------------------------
        page.goto(f"{server.url}/Train?run={ids['one']}")
        settle(page)
        page.wait_for_function(f"({MODES_JS})('Loss').some(m => m[1] > 0)", timeout=WAIT_MS)
        modes = page.evaluate(MODES_JS, "")
        assert [1 for _, n in modes if n == 1], modes  # the one-step run: single points
        assert all("markers" in m for m, n in modes if n <= 20), modes

        # -- Train: launch, cancel -> a message, Resume and Delete, no Python call, no ETA ---
        page.goto(server.url + "/Train")
        settle(page)
        fill(page, "Epochs", "500")  # still running when Cancel is pressed
        page.get_by_role("button", name="Launch", exact=True).click()
        page.wait_for_url("**run=*", timeout=WAIT_MS)
        run_id = re.search(r"run=([0-9a-f]+)", page.url).group(1)
        toast(page, f"Launched run {run_id}")
        wait_status(home, run_id, ("running",))
        page.get_by_role("button", name="Cancel", exact=True).click()
        toast(page, f"Cancel requested for run {run_id}")
        assert wait_status(home, run_id, ("cancelled",)) == "cancelled"
        page.get_by_role("button", name="Resume", exact=True).wait_for(timeout=WAIT_MS)
        settle(page)
        body = page.inner_text("body")
        assert "fit(resume" not in body and "ETA" not in body, body[:2000]
        assert page.get_by_role("button", name="Delete", exact=True).count() == 1

        # -- Depth lab: a second sweep takes the URL; ended sweeps are not "running" ----------
        page.goto(server.url + "/Depth_lab")
        settle(page)
        sweeps = []
        for _ in range(2):
            if not page.get_by_label("Batch size", exact=True).is_visible():
                page.get_by_text("New sweep", exact=True).click()
            fill(page, "Depths in layers (up to 1202)", "14, 26")
            fill(page, "Batch size", "2")
            fill(page, "Timed steps per mode (median)", "1")
            page.get_by_role("button", name="Run sweep").click()
            page.wait_for_function(
                "(old) => { const m = location.search.match(/sweep=([0-9a-f]+)/);"
                " return m && !old.includes(m[1]); }", arg=sweeps, timeout=WAIT_MS)
            sweeps.append(re.search(r"sweep=([0-9a-f]+)", page.url).group(1))
            toast(page, f"Launched sweep {sweeps[-1]}")
            settle(page)
            picked = chosen(page, "Sweep")
            assert sweeps[-1] in picked, (sweeps, picked)
        for sweep in sweeps:
            assert wait_status(home, sweep, ("completed", "failed")) == "completed"
        deadline = time.monotonic() + WAIT_MS / 1000  # the page's timer sees the ends
        while re.search("running|queued", chosen(page, "Sweep")):
            assert time.monotonic() < deadline, chosen(page, "Sweep")
            page.wait_for_timeout(500)
        settle(page)
        assert sweeps[-1] in page.url
        listed = options(page, "Sweep")
        assert len(listed) == 2 and all(o.endswith("completed") for o in listed), listed
        if page.get_by_label("Batch size", exact=True).is_visible():
            page.get_by_text("New sweep", exact=True).click()  # the figure, not the form
            wait_idle(page)
        shot(page, shots / "depth_lab.png")

        # -- Runs: markers for one point; a small export; delete -> message, chip gone --------
        page.goto(f"{server.url}/Runs?run={ids['one']}&run={ids['gone']}")
        settle(page)
        modes = page.evaluate(MODES_JS, "")
        assert modes and all("markers" in m for m, n in modes if n <= 20), modes
        with page.expect_download() as download:
            page.get_by_role("button", name="Download this figure (HTML)").click()
        exported = tmp_path / "figure.html"
        download.value.save_as(exported)
        assert exported.stat().st_size < 200_000, exported.stat().st_size
        viewer = b.context.new_page()
        viewer.goto(exported.as_uri())
        viewer.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
        viewer.close()
        details = page.get_by_test_id("stExpander").filter(has_text=f"{ids['gone']} · ")
        details.get_by_text(f"{ids['gone']} · completed").click()  # open its expander
        details.get_by_text("Yes, delete it", exact=True).click()
        wait_idle(page)
        details.get_by_role("button", name="Delete", exact=True).click()
        toast(page, f"Deleted run {ids['gone']}")
        settle(page)
        chips = page.locator('[data-testid="stMultiSelect"]', has_text="Select runs").locator(
            "[data-tag]").all_inner_texts()
        assert len(chips) == 1 and ids["one"] in chips[0], chips
        assert ids["gone"] not in page.url and ids["one"] in page.url
        page.get_by_role("heading", name="Curves").wait_for(timeout=WAIT_MS)
        page.get_by_role("heading", name="Configurations").wait_for(timeout=WAIT_MS)
        shot(page, shots / "runs.png")

        # -- ODE reversal: a ResNet has no rebuilt input ---------------------------------------
        page.goto(server.url + "/ODE_reversal")
        settle(page)
        rebuilt = page.get_by_role("switch", name="Show the rebuilt input instead of the output")
        page.get_by_text("Show the rebuilt input instead of the output", exact=True).click()
        wait_idle(page)
        assert rebuilt.is_checked()
        pick(page, "Model", f"run {ids['resnet']}")
        settle(page)
        assert not rebuilt.is_checked() and rebuilt.is_disabled()
        titles = page.evaluate("() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
                               ".map(gd => gd.layout.title && gd.layout.title.text)")
        assert not [t for t in titles if t and "rebuilt" in t], titles
        for text, top, toolbar_bottom, overflow in page.evaluate(TITLES_JS):
            assert top >= toolbar_bottom and overflow <= 1, (text, top, toolbar_bottom, overflow)
        shot(page, shots / "ode_reversal.png")

        # -- Classify: brush at once, whole preview, an error replaces the result -------------
        page.goto(server.url + "/Classify")
        page.locator('iframe, [data-testid="stAlert"]').first.wait_for(timeout=2 * WAIT_MS)
        assert page.locator("iframe").count(), page.inner_text("body")[-1500:]
        frame_el = page.locator("iframe").first
        frame = page.frame_locator("iframe").first
        frame.get_by_role("tab", name="Draw a digit").click(timeout=WAIT_MS)
        canvas = frame.locator("#lab-sketch canvas").first
        canvas.wait_for(timeout=WAIT_MS)
        frame.get_by_text("select the draw tool").wait_for(state="hidden", timeout=10_000)
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y - 60)
        page.mouse.down()
        for i in range(30):
            page.mouse.move(x, y - 60 + 4 * i)
        page.mouse.up()
        frame.get_by_role("button", name="Classify drawing").click()
        frame.get_by_text("looks like").first.wait_for(timeout=WAIT_MS)
        shown = frame.locator("body").evaluate(  # the gallery's images: drawn whole
            "b => Array.from(b.querySelectorAll('img')).filter(i => getComputedStyle(i)"
            ".objectFit === 'contain').map(i => { const r = i.getBoundingClientRect(),"
            " p = i.parentElement.getBoundingClientRect();"
            " return [r.width, r.height, p.width, p.height]; })")
        assert shown and all(w <= pw + 1 and h <= ph + 1 and abs(w - h) <= 2
                             for w, h, pw, ph in shown), shown
        frame.get_by_role("tab", name="Upload").click()
        bad = tmp_path / "not-an-image.png"
        bad.write_text("not an image")
        frame.locator("input[type=file]").first.set_input_files(str(bad))
        frame.get_by_role("button", name="Classify", exact=True).click()
        frame.get_by_text("No result").first.wait_for(timeout=WAIT_MS)
        assert frame.get_by_text("looks like").count() == 0
        inner = page.frames[-1].evaluate("document.documentElement.scrollHeight")
        outer = frame_el.evaluate("f => f.getBoundingClientRect().height")
        assert abs(outer - inner) <= 2 or outer >= inner, (outer, inner)

        # -- Home: training runs apart from sweeps; every table fits at 1400 px ---------------
        page.goto(server.url + "/")
        settle(page)
        page.get_by_role("heading", name="Depth sweeps").wait_for(timeout=WAIT_MS)
        fits = page.evaluate(FIT_JS)
        assert fits and all(scroll <= client + 1 for scroll, client in fits), fits
        page.goto(server.url + "/Runs")
        settle(page)
        fits = page.evaluate(FIT_JS)
        assert fits and all(scroll <= client + 1 for scroll, client in fits), fits

        # -- the server stops: the dialog names the lab's server, not the internet ------------
        page.goto(server.url + "/Runs")
        settle(page)
        os.killpg(server.proc.pid, 15)
        dialog = page.locator('[data-testid="stDialog"]')
        dialog.wait_for(timeout=60_000)
        page.wait_for_timeout(500)
        text = dialog.inner_text()
        assert "lab's server" in text and "internet" not in text, text

    foreign = [u for u in b.foreign() if not u.startswith("file://")]  # the saved export
    assert not foreign, foreign
