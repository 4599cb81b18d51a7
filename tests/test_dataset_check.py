"""Missing data is refused before a run is created: CLI, jobs.launch, grids and the Train form.

The check (core.data.check_files through lab.runs.jobs.check_dataset) reads no data: the
downloadable sets' files under the data folder, or an image folder's class sub-folders. Asked to
download, torchvision fetches and md5-verifies the files first (here: a fake network that fails,
so nothing leaves the machine).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import usage_error
from streamlit.testing.v1 import AppTest

import core.data
import core.data.torchvision_sets as tv_sets
from lab.cli import main
from lab.runs import jobs
from lab.runs.store import Store

TIMEOUT = 120


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LAB_DATA", str(tmp_path / "data"))  # empty: nothing downloaded
    monkeypatch.setattr(jobs, "_spawn", lambda *a, **k: None)  # a created run starts nothing
    with Store() as store:
        yield store


@pytest.fixture
def offline(monkeypatch):
    """torchvision's download fails as without network; records what it was asked for."""
    calls = []

    def fail(url, root, **kw):
        calls.append((url, root))
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(tv_sets, "download_and_extract_archive", fail)
    return calls


def image_folder(root: Path, classes=("cat", "dog"), files=("a.png",)) -> Path:
    for c in classes:
        (root / c).mkdir(parents=True)
        for f in files:
            (root / c / f).write_bytes(b"not decoded by the check")
    return root


def assert_nothing_created(store: Store) -> None:
    assert store.list_runs() == [] and list(store.runs_dir.iterdir()) == []


# -- core.data.check_files ------------------------------------------------------------------------
def test_check_files_needs_nothing_for_embedded_sets(tmp_path):
    for name in ("digits", "shapes"):
        core.data.check_files(name, root=tmp_path / "nothing")


@pytest.mark.parametrize("name, folder", [("cifar10", "cifar-10-batches-py"),
                                          ("cifar100", "cifar-100-python"),
                                          ("stl10", "stl10_binary")])
def test_check_files_names_folder_files_and_the_way_to_download(tmp_path, name, folder):
    with pytest.raises(core.data.DatasetNotFoundError) as e:
        core.data.check_files(name, root=tmp_path, how="`--download`")
    msg = str(e.value)
    assert str(tmp_path / folder) in msg and "missing: all of them" in msg
    assert "Get them with `--download`" in msg and "md5" in msg


def test_check_files_downloads_when_asked(tmp_path, offline):
    with pytest.raises(core.data.DatasetNotFoundError, match="downloading .* failed"):
        core.data.check_files("cifar10", root=tmp_path, download=True)
    assert offline == [(tv_sets.tvd.CIFAR10.url, str(tmp_path))]


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "needs a data root"),
    (lambda p: p / "absent", "does not exist"),
    (lambda p: image_folder(p / "one", classes=("cat",)), "1 class sub-folder"),
    (lambda p: image_folder(p / "txt", files=("notes.txt",)), "no image files"),
    (lambda p: image_folder(p / "split" / "train") and image_folder(
        p / "split" / "test", classes=("cat",)) and p / "split", "1 class sub-folder"),
])
def test_check_files_refuses_a_bad_image_folder(tmp_path, make, message):
    with pytest.raises(ValueError, match=message):
        core.data.check_files("imagefolder", root=make(tmp_path))


def test_check_files_accepts_an_image_folder(tmp_path):
    core.data.check_files("imagefolder", root=image_folder(tmp_path / "pets"))
    image_folder(tmp_path / "split" / "train")
    image_folder(tmp_path / "split" / "test")
    core.data.check_files("imagefolder", root=tmp_path / "split")


# -- jobs.launch, the CLI, grids -------------------------------------------------------------
@pytest.mark.parametrize("config", [{"dataset": "cifar10"}, {"dataset": "stl10"},
                                    {"dataset": "imagefolder"},
                                    {"dataset": "imagefolder", "data_root": "/no/such/folder"}])
def test_jobs_launch_refuses_missing_data_and_creates_no_run(home, config):
    with pytest.raises(ValueError):
        jobs.launch(config, store=home)
    with pytest.raises(ValueError):
        jobs.start_foreground(config, store=home)
    assert_nothing_created(home)


def test_jobs_launch_with_download_creates_no_run_when_the_download_fails(home, offline):
    with pytest.raises(core.data.DatasetNotFoundError, match="downloading"):
        jobs.launch({"dataset": "cifar100"}, store=home, download=True)
    assert offline and offline[0][1] == str(Path(home.home).parent / "data")  # into $LAB_DATA
    assert_nothing_created(home)


def test_jobs_launch_accepts_present_data(home, tmp_path):
    run_id = jobs.launch({"dataset": "imagefolder", "data_root": str(image_folder(
        tmp_path / "pets"))}, store=home)
    assert home.require_run(run_id).config["data_root"] == str(tmp_path / "pets")


@pytest.mark.parametrize("argv, message", [
    (["train", "--dataset", "cifar10"], "Get them with `--download`"),
    (["train", "--dataset", "cifar10", "--detach"], "Get them with `--download`"),
    (["train", "--dataset", "stl10", "--nproc", "2"], "Get them with `--download`"),
    (["train", "--dataset", "imagefolder"], "needs a data root"),
    (["train", "--dataset", "imagefolder", "--data-root", "/no/such"], "does not exist"),
    (["experiment", "grid", "--dataset", "cifar10", "--family", "hamiltonian,resnet"],
     "Get them with `--download`"),
])
def test_cli_refuses_missing_data_and_creates_no_run(home, capsys, argv, message):
    assert message in usage_error(main, argv, capsys)
    assert_nothing_created(home)
    assert home.list_experiments() == []


def test_cli_download_flag_asks_torchvision(home, capsys, offline):
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "cifar10", "--download", "--detach"])
    assert "downloading https://www.cs.toronto.edu" in capsys.readouterr().err
    assert offline and offline[0][0] == tv_sets.tvd.CIFAR10.url
    assert_nothing_created(home)


# -- the Train form -----------------------------------------------------------------------------
def train_page() -> AppTest:
    return AppTest.from_file("../pages/1_Train.py", default_timeout=TIMEOUT).run()


def test_form_refuses_missing_data_at_the_dataset_field(home, offline):
    at = train_page()
    assert not at.exception and not at.error
    at.selectbox(key="dataset").set_value("cifar10").run()
    (err,) = at.error
    assert "CIFAR-10 expects the folder" in err.value and "Download if missing" in err.value
    data_column = at.columns[1]  # Model | Data | Optimizer: the message sits under Dataset
    assert any("CIFAR-10 expects" in e.value for e in data_column.error)
    assert at.button(key="launch").disabled and at.button(key="compare").disabled
    assert_nothing_created(home)

    at.checkbox(key="download").check().run()  # asked to download: Launch tries it
    assert not at.error and not at.button(key="launch").disabled
    at.button(key="launch").click().run()
    assert any("Could not launch" in e.value and "downloading" in e.value for e in at.error)
    assert offline, "the download was not attempted"
    assert_nothing_created(home)


def test_form_image_folder_needs_class_folders(home, tmp_path):
    at = train_page()
    at.selectbox(key="dataset").set_value("imagefolder").run()
    assert any("needs a data root" in e.value for e in at.columns[1].error)
    at.text_input(key="data_root").input(str(tmp_path / "absent")).run()
    assert any("does not exist" in e.value for e in at.columns[1].error)
    assert at.button(key="launch").disabled
    at.text_input(key="data_root").input(str(image_folder(tmp_path / "pets"))).run()
    assert not at.error and not at.button(key="launch").disabled
    at.button(key="launch").click().run()
    assert not at.exception
    (run,) = home.list_runs()
    assert run.config["dataset"] == "imagefolder" and run.config["data_root"] == str(
        tmp_path / "pets")
