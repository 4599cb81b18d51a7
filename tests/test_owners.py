"""Helpers stop by themselves once the processes that own them are gone (lab.runs.owners).

The real-browser version (start the app, open Classify, stop the app) is in
tests/e2e/test_app_leftovers.py; here the owner is a plain `sleep` process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import wait_for

from lab.runs.owners import file_owners, parse_owner, watch
from lab.runs.process import is_alive, process_start
from lab.views.classify import answers

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("text, owner", [("12", (12, None)), ("12:345", (12, 345))])
def test_parse_owner(text, owner):
    assert parse_owner(text) == owner


@pytest.mark.parametrize("text", ["", "abc", "0", "-3", "12:x", "12:-1"])
def test_parse_owner_refuses_bad_input(text):
    with pytest.raises(ValueError, match="PID or PID:START"):
        parse_owner(text)


def test_file_owners_only_for_this_classifier(tmp_path):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"pid": os.getpid(), "owners": [[5, 6], [7, None]]}))
    assert file_owners(path) == [(5, 6), (7, None)]
    assert file_owners(path, pid=os.getpid() + 1) == []  # written for another classifier
    assert file_owners(tmp_path / "missing.json") == []
    path.write_text("{not json")
    assert file_owners(path) == []


def test_watch_fires_only_after_every_owner_is_gone(tmp_path):
    first = subprocess.Popen(["sleep", "60"])
    second = subprocess.Popen(["sleep", "60"])
    path = tmp_path / "state.json"  # the second owner joins through the file
    path.write_text(json.dumps({"pid": os.getpid(),
                                "owners": [[second.pid, process_start(second.pid)]]}))
    fired: list[str] = []
    try:
        watch([(first.pid, process_start(first.pid))], path, idle=0.3, on_gone=fired.append,
              poll=0.05)
        first.kill()
        first.wait()
        time.sleep(1.0)
        assert not fired, "stopped although the owner listed in the file is alive"
        second.kill()
        second.wait()
        wait_for(lambda: fired, timeout=10, what="the watch to fire")
        assert str(first.pid) in fired[0] and str(second.pid) in fired[0]
    finally:
        for p in (first, second):
            p.kill()
            p.wait()


def test_classifier_process_exits_when_its_owner_is_gone(tmp_path):
    owner = subprocess.Popen(["sleep", "300"])
    port = _free_port()
    env = dict(os.environ, LAB_HOME=str(tmp_path / "home"), GRADIO_ANALYTICS_ENABLED="False",
               HF_HUB_OFFLINE="1")
    log = tmp_path / "classify.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "lab", "classify", "--port", str(port), "--owner",
             f"{owner.pid}:{process_start(owner.pid)}", "--idle-exit", "1"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/") or server.poll() is not None,
                 timeout=180, what="the classifier to answer", poll=0.25)
        assert server.poll() is None, log.read_text()
        time.sleep(2)  # owner alive: it keeps serving past its idle time
        assert server.poll() is None and answers(f"http://127.0.0.1:{port}/")
        owner.kill()
        owner.wait()
        assert server.wait(30) == 0, log.read_text()
        assert "classifier stopping" in log.read_text()
        assert not is_alive(server.pid)
    finally:
        owner.kill()
        if server.poll() is None:
            server.kill()
            server.wait()


def test_cli_refuses_a_bad_owner(tmp_path):
    out = subprocess.run([sys.executable, "-m", "lab", "classify", "--owner", "me"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "PID or PID:START" in out.stderr
