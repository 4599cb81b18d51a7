"""The browser helpers' own logic, without a browser: what counts as leaving 127.0.0.1."""

from lab.bench.app_browser import Browser


def test_foreign_requests_are_those_leaving_loopback():
    b = Browser(context=None, requests=[
        "http://127.0.0.1:8501/Train", "ws://127.0.0.1:8501/_stcore/stream",
        "data:image/png;base64,AAAA", "blob:http://127.0.0.1:8501/x", "about:blank",
        "https://fonts.googleapis.com/css", "http://localhost:8501/", "http://10.0.0.2/",
        "https://127.0.0.1.evil.com/"])
    assert b.foreign() == ["https://fonts.googleapis.com/css", "http://localhost:8501/",
                           "http://10.0.0.2/", "https://127.0.0.1.evil.com/"]
