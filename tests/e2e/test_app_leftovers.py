"""Stopping the app leaves no classifier behind (a real browser opens Classify, which starts it).

The Classify page starts the Gradio classifier as its own process (own session, so reruns and
reloads keep it); it must stop by itself once the Streamlit server that started it is gone.
"""

import pytest
from conftest import wait_for

from lab.bench.app_browser import browser, chromium_available, serve, wait_idle
from lab.runs import jobs, process, worker
from lab.runs.store import Store
from lab.views.classify import answers, read_state, stop_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
TINY = {"device": "cpu", "epochs": 1, "memory": "standard", "seed": 0,
        "model_kwargs": {"blocks": [1, 1, 1], "widths": [8, 8, 16, 32]}}
GONE_WITHIN_S = 30  # the bound; the classifier's own idle time is 10 s of it

if not chromium_available():
    pytest.skip("/usr/bin/chromium is missing: `apt-get install -y chromium`",
                allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' installs playwright")


def test_stopping_the_app_stops_the_classifier_it_started(tmp_path):
    import socket

    home = tmp_path / "lab_home"
    with Store(home) as store:  # Classify needs a completed run to start its server
        run_id = jobs.start_foreground(TINY, store=store)
        assert worker.execute(store, run_id, foreground=True) == "completed"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    info = None
    try:
        with serve(home, env={"LAB_CLASSIFY_PORT": str(port)}) as server, \
                browser(tmp_path / "profile") as b:
            page = b.context.new_page()
            page.goto(server.url + "/Classify")
            wait_idle(page, timeout=240)
            info = read_state(home)
            assert info is not None, "opening Classify started no classifier"
            assert process.is_alive(info.pid, info.pid_start) and answers(info.url)
            assert server.proc.pid in [pid for pid, _ in info.owners]
            page.reload()  # reruns and reloads reuse it while the app is up
            wait_idle(page, timeout=240)
            assert read_state(home).pid == info.pid
        # leaving serve() stopped Streamlit (SIGTERM to its process group, waited for); the
        # classifier lives in its own session, so only its owner watch can stop it
        assert server.proc.poll() is not None
        wait_for(lambda: not process.is_alive(info.pid, info.pid_start), timeout=GONE_WITHIN_S,
                 what=f"classifier pid {info.pid} to exit after the app stopped", poll=0.5)
        assert not answers(info.url, timeout=1)
    finally:
        stop_server(home=home, grace=5)  # only if the test failed with it still up
