"""The classifier's page as a user meets it: the sketchpad opens with the brush, the preview
shows the whole input, a refused request leaves no earlier result. (The browser test in
tests/e2e/test_truth.py watches the same in Chromium; these check the app's wiring.)"""

import pytest

from lab.classify.app import CLEARED, SELECT_BRUSH_JS, ClassifyApp


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    app = ClassifyApp(tmp_path_factory.mktemp("empty_home"))
    return app.build().get_config_file()


def _component(config, kind):
    (c,) = [c for c in config["components"] if c["type"] == kind]
    return c


def test_the_preview_never_crops_an_image(config):
    props = _component(config, "gallery")["props"]
    assert props["allow_preview"] is False and props["fit_columns"] is False
    assert props["object_fit"] == "contain" and props["height"] == "auto"


def test_the_draw_tab_selects_the_brush(config):
    sketch = _component(config, "imageeditor")
    assert sketch["props"]["elem_id"] == "lab-sketch"
    assert "#lab-sketch" in SELECT_BRUSH_JS and 'aria-label="Brush"' in SELECT_BRUSH_JS
    (select,) = [d for d in config["dependencies"] if d["targets"][0][1] == "select"]
    assert select["js"] == SELECT_BRUSH_JS


def test_a_refused_request_clears_every_output(config):
    deps = config["dependencies"]
    by_id = {d["id"]: d for d in deps}
    for api in ("classify", "draw", "example"):
        (main,) = [d for d in deps if d.get("api_name") == api]
        (after,) = [d for d in deps if d.get("trigger_after") == main["id"]]
        assert after["trigger_only_on_failure"] and after["outputs"] == main["outputs"]
        assert by_id[after["id"]] is after
    assert "No result" in CLEARED
