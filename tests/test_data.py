"""Tests for core.data: embedded sets, CIFAR/STL-10 from small files in the real on-disk formats,
and a user's image folder."""

import collections
import os
import pickle
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from torch.utils.data import DataLoader

from core import data

SMALL_SHAPES = {"train_size": 200, "test_size": 50}


def raw_pixels(bundle, split):
    """Stacked items of a split, un-normalised back to the [0, 1] pixel scale, and labels."""
    x = torch.stack([split[i][0] for i in range(len(split))]).numpy()
    mean, std = np.array(bundle.mean)[:, None, None], np.array(bundle.std)[:, None, None]
    return x * std + mean, np.array(split.targets)


# ----------------------------------------------------------------------------- fake files


def write_cifar(root, which="cifar10", per_batch=20, n_test=20, seed=0):
    """A CIFAR folder in the real format: protocol-2 pickles of dicts, data uint8 (N, 3072)."""
    rng = np.random.default_rng(seed)
    k, label_key = (10, "labels") if which == "cifar10" else (100, "fine_labels")
    if which == "cifar10":
        folder, train_files, test_file = root / "cifar-10-batches-py", [
            f"data_batch_{i}" for i in range(1, 6)], "test_batch"
        meta_file, meta = "batches.meta", {"label_names": [f"class{c}" for c in range(k)],
                                           "num_cases_per_batch": per_batch, "num_vis": 3072}
    else:
        folder, train_files, test_file = root / "cifar-100-python", ["train"], "test"
        meta_file, meta = "meta", {"fine_label_names": [f"fine{c}" for c in range(k)],
                                   "coarse_label_names": [f"coarse{c}" for c in range(20)]}
    folder.mkdir(parents=True)
    written = {}
    for name, n in [(f, per_batch) for f in train_files] + [(test_file, n_test)]:
        images = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(y) for y in rng.permutation(np.arange(n) % k)]
        entry = {"batch_label": name, label_key: labels, "data": images,
                 "filenames": [f"img{i}.png" for i in range(n)]}
        if which == "cifar100":
            entry["coarse_labels"] = [y // 5 for y in labels]
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
        written[name] = (images, labels)
    (folder / meta_file).write_bytes(pickle.dumps(meta, protocol=2))
    train = [written[f] for f in train_files]
    return (np.concatenate([x for x, _ in train]), sum((y for _, y in train), []),
            *written[test_file])


def write_stl10(root, n_train=20, n_test=10):
    """stl10_binary in the real format: uint8 (N, 3, 96, 96) stored column-major, labels 1..10."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    out = []
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (folder / f"{split}_X.bin").write_bytes(images.transpose(0, 1, 3, 2).tobytes())
        (folder / f"{split}_y.bin").write_bytes((labels + 1).tobytes())
        out += [images, labels]
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")
    return out


@pytest.fixture
def cifar10_root(tmp_path):
    write_cifar(tmp_path)
    return tmp_path


# ----------------------------------------------------------------------------- registry, args


def test_list_datasets():
    assert data.list_datasets() == ["digits", "shapes", "cifar10", "cifar100", "stl10",
                                    "imagefolder"]


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="mnist") as e:
        data.load_dataset("mnist")
    assert all(name in str(e.value) for name in data.list_datasets())


@pytest.mark.parametrize("name, options", [("digits", {"colour": 1}),
                                           ("shapes", {"train_size": 20, "colour": 1})])
def test_unknown_option_is_named(name, options):
    with pytest.raises(ValueError, match="colour"):
        data.load_dataset(name, **options)


@pytest.mark.parametrize("fraction", [0, -0.5, 1.5, float("nan"), "0.5", True])
def test_bad_fraction_is_named(fraction):
    with pytest.raises(ValueError, match="fraction") as e:
        data.load_dataset("digits", fraction=fraction)
    assert repr(fraction) in str(e.value)


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_bad_seed_is_named(seed):
    with pytest.raises(ValueError, match="seed"):
        data.load_dataset("digits", seed=seed)


@pytest.mark.parametrize("options, named", [({"train_size": 5}, "train_size"),
                                            ({"test_size": 0}, "test_size"),
                                            ({"shapes_seed": -1}, "shapes_seed")])
def test_bad_shapes_options_are_named(options, named):
    with pytest.raises(ValueError, match=named):
        data.load_dataset("shapes", **options)


# ----------------------------------------------------------------------------- digits


def test_digits_items_and_split():
    b = data.load_dataset("digits")
    assert (b.num_classes, b.in_channels, b.image_size) == (10, 1, 8)
    assert b.class_names == [str(d) for d in range(10)]
    x, y = b.train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and type(y) is int
    assert len(b.train) + len(b.test) == 1797
    assert abs(len(b.test) - 0.2 * 1797) <= 10
    # stratified: every class has about 20% of its images in the test set
    all_counts = np.bincount(load_digits().target)
    test_counts = np.bincount(b.test.targets, minlength=10)
    assert np.all(np.abs(test_counts - 0.2 * all_counts) <= 1)
    # train and test hold exactly the original images, each once
    original = collections.Counter(r.tobytes() for r in load_digits().data.astype(np.int8))
    got = collections.Counter(
        r.tobytes() for split in (b.train, b.test)
        for r in np.rint(raw_pixels(b, split)[0] * 16).astype(np.int8).reshape(-1, 64))
    assert got == original


def test_digits_normalised_with_train_statistics():
    b = data.load_dataset("digits")
    x = torch.stack([b.train[i][0] for i in range(len(b.train))])
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-3
    assert 0.2 < b.mean[0] < 0.4 and 0.3 < b.std[0] < 0.5  # pixel scale 0..1, mostly dark


def test_digits_split_is_fixed_whatever_the_seed():
    a, b = data.load_dataset("digits", seed=0), data.load_dataset("digits", seed=5)
    assert a.test.targets == b.test.targets and a.train.targets == b.train.targets
    assert torch.equal(torch.stack([a.test[i][0] for i in range(len(a.test))]),
                       torch.stack([b.test[i][0] for i in range(len(b.test))]))


def test_digits_are_never_augmented():
    b = data.load_dataset("digits", augment=True)
    assert torch.equal(b.train[3][0], b.train[3][0])


# ----------------------------------------------------------------------------- fraction


def test_fraction_is_stratified_seeded_and_leaves_test_alone():
    full = data.load_dataset("digits")
    counts = np.bincount(full.train.targets)
    a = data.load_dataset("digits", fraction=0.1, seed=1)
    again = data.load_dataset("digits", fraction=0.1, seed=1)
    other = data.load_dataset("digits", fraction=0.1, seed=2)
    assert np.array_equal(np.bincount(a.train.targets, minlength=10),
                          np.maximum(1, np.round(0.1 * counts)))
    pixels = {s: raw_pixels(b, b.train)[0] for s, b in (("a", a), ("again", again),
                                                         ("other", other))}
    assert np.array_equal(pixels["a"], pixels["again"])
    assert not np.array_equal(pixels["a"], pixels["other"])
    assert a.test.targets == full.test.targets
    full_rows = {img.tobytes() for img in np.rint(raw_pixels(full, full.train)[0] * 16)}
    assert all(img.tobytes() in full_rows for img in np.rint(pixels["a"] * 16))


def test_tiny_fraction_keeps_one_example_per_class():
    b = data.load_dataset("shapes", fraction=1e-6, **SMALL_SHAPES)
    assert sorted(b.train.targets) == list(range(b.num_classes))


# ----------------------------------------------------------------------------- shapes


def test_shapes_sizes_and_classes():
    b = data.load_dataset("shapes", train_size=230, test_size=40)
    assert (len(b.train), len(b.test)) == (230, 40)
    assert b.num_classes >= 8 and len(set(b.class_names)) == b.num_classes
    assert (b.in_channels, b.image_size) == (3, 32)
    for split in (b.train, b.test):
        assert set(split.targets) == set(range(b.num_classes))
    x, y = b.test[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and type(y) is int


def test_shapes_deterministic_in_shapes_seed_only():
    def pixels(**kw):
        data.shapes._shapes.cache_clear()  # determinism must come from the seed, not from the cache
        b = data.load_dataset("shapes", augment=False, **kw)
        return raw_pixels(b, b.train)[0], raw_pixels(b, b.test)[0]

    a, same = pixels(shapes_seed=3, **SMALL_SHAPES), pixels(shapes_seed=3, seed=9, **SMALL_SHAPES)
    assert all(np.allclose(p, q, atol=1e-5) for p, q in zip(a, same, strict=True))
    other = pixels(shapes_seed=4, **SMALL_SHAPES)
    assert not np.allclose(a[0], other[0], atol=1e-2)
    # the training images do not depend on the test set's size
    bigger_test = pixels(shapes_seed=3, train_size=200, test_size=80)
    assert np.allclose(a[0], bigger_test[0], atol=1e-5)


def shape_features(x):
    """Rotation-invariant shape descriptor: the radial profile of the foreground mask."""
    border = np.concatenate([x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]], axis=2)
    mask = np.abs(x - np.median(border, axis=2)[:, :, None, None]).max(axis=1) > 0.2
    yy, xx = np.mgrid[:32, :32]
    area = mask.sum((1, 2)).clip(1)
    cy, cx = ((mask * g).sum((1, 2)) / area for g in (yy, xx))
    dist = np.hypot(yy - cy[:, None, None], xx - cx[:, None, None]) / np.sqrt(area)[:, None, None]
    return np.stack([((dist >= lo) & (dist < lo + 0.1) & mask).sum((1, 2)) / area
                     for lo in np.arange(0, 1.2, 0.1)], axis=1)


def test_shapes_label_is_the_shape():
    # Colour and position are random, so a classifier on a shape descriptor can only beat
    # chance (1 / num_classes) if every label really corresponds to one shape.
    b = data.load_dataset("shapes", augment=False, train_size=1500, test_size=400)
    (xtr, ytr), (xte, yte) = raw_pixels(b, b.train), raw_pixels(b, b.test)
    clf = LogisticRegression(max_iter=2000).fit(shape_features(xtr), ytr)
    assert clf.score(shape_features(xte), yte) > 5 / b.num_classes


# ----------------------------------------------------------------------------- CIFAR, STL-10


@pytest.mark.parametrize("which", ["cifar10", "cifar100"])
def test_cifar_real_format_loads(tmp_path, which):
    train_x, train_y, test_x, test_y = write_cifar(tmp_path, which, per_batch=200 // (
        5 if which == "cifar10" else 1), n_test=100)
    b = data.load_dataset(which, root=tmp_path, augment=False)
    k = 10 if which == "cifar10" else 100
    assert (b.num_classes, b.in_channels, b.image_size) == (k, 3, 32)
    assert b.class_names == [("class" if k == 10 else "fine") + str(c) for c in range(k)]
    assert (len(b.train), len(b.test)) == (200, 100)
    assert b.train.targets == train_y and b.test.targets == test_y
    x, y = b.test[7]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and type(y) is int
    # pixel layout: CIFAR rows are R plane, G plane, B plane, each row-major 32x32
    pixels, _ = raw_pixels(b, b.test)
    assert np.allclose(pixels, test_x.reshape(-1, 3, 32, 32) / 255, atol=1e-4)
    batch = next(iter(DataLoader(b.train, batch_size=8)))
    assert batch[0].shape == (8, 3, 32, 32) and batch[1].dtype == torch.int64


def test_stl10_real_format_loads(tmp_path):
    train_x, train_y, test_x, test_y = write_stl10(tmp_path)
    b = data.load_dataset("stl10", root=tmp_path, augment=False)
    assert (b.num_classes, b.in_channels, b.image_size) == (10, 3, 96)
    assert b.class_names[7] == "monkey"
    assert b.train.targets == train_y.tolist() and b.test.targets == test_y.tolist()
    pixels, _ = raw_pixels(b, b.test)
    assert np.allclose(pixels, test_x / 255, atol=1e-4)  # column-major files, undone


def test_default_root_is_lab_data(tmp_path, monkeypatch):
    write_cifar(tmp_path)
    monkeypatch.setenv("LAB_DATA", str(tmp_path))
    assert len(data.load_dataset("cifar10").test) == 20


@pytest.mark.parametrize("which, folder, a_file", [
    ("cifar10", "cifar-10-batches-py", "data_batch_5"),
    ("cifar100", "cifar-100-python", "train"),
    ("stl10", "stl10_binary", "train_X.bin"),
])
def test_missing_files_say_where_and_how(tmp_path, which, folder, a_file):
    with pytest.raises(data.DatasetNotFoundError) as e:
        data.load_dataset(which, root=tmp_path)
    message = str(e.value)
    assert str(tmp_path / folder) in message and a_file in message
    assert "download=True" in message and "://" in message  # the archive's address


def test_missing_one_file_is_named(cifar10_root):
    (cifar10_root / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(data.DatasetNotFoundError, match="missing: data_batch_4"):
        data.load_dataset("cifar10", root=cifar10_root)


def test_download_verifies_md5_and_reports_a_failed_download(cifar10_root, monkeypatch):
    calls = []

    def no_network(url, root, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(data.torchvision_sets, "download_and_extract_archive", no_network)
    # The fake files are present but fail the md5 check, so download=True fetches again.
    with pytest.raises(data.DatasetNotFoundError, match="failed.*no network"):
        data.load_dataset("cifar10", root=cifar10_root, download=True)
    assert calls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]


def test_md5_still_checked_after_a_download(cifar10_root, monkeypatch):
    monkeypatch.setattr(data.torchvision_sets, "download_and_extract_archive",
                        lambda *a, **k: None)
    with pytest.raises(ValueError, match="data_batch_1 fails its md5 check"):
        data.load_dataset("cifar10", root=cifar10_root, download=True)


def test_truncated_cifar_file_is_named(cifar10_root):
    path = cifar10_root / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ValueError, match="data_batch_3.*download") as e:
        data.load_dataset("cifar10", root=cifar10_root)
    assert not isinstance(e.value, data.DatasetNotFoundError)


def test_cifar_file_with_wrong_content_is_named(cifar10_root):
    path = cifar10_root / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(pickle.dumps({"labels": [1, 2, 3]}, protocol=2))
    with pytest.raises(ValueError, match="test_batch.*download"):
        data.load_dataset("cifar10", root=cifar10_root)


def test_cifar_meta_with_wrong_content_is_named(cifar10_root):
    path = cifar10_root / "cifar-10-batches-py" / "batches.meta"
    path.write_bytes(pickle.dumps({"label_names": ["cat", "dog"]}, protocol=2))
    with pytest.raises(ValueError, match="batches.meta.*10 class names.*download"):
        data.load_dataset("cifar10", root=cifar10_root)


@pytest.mark.parametrize("labels", [[10] * 20, [1] * 19], ids=["out_of_range", "too_few"])
def test_cifar_labels_that_do_not_fit_are_reported(cifar10_root, labels):
    path = cifar10_root / "cifar-10-batches-py" / "test_batch"
    entry = {"data": np.zeros((20, 3072), np.uint8), "labels": labels}
    path.write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(ValueError, match="test_batch.*labels"):
        data.load_dataset("cifar10", root=cifar10_root)


class _Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (self.target,)


@pytest.mark.parametrize("protocol", [2, 4])
def test_cifar_pickle_with_code_is_refused(cifar10_root, tmp_path, protocol):
    target = tmp_path / "pwned"
    path = cifar10_root / "cifar-10-batches-py" / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": _Payload(str(target)), "labels": []}, protocol))
    with pytest.raises(ValueError, match="data_batch_1.*refusing"):
        data.load_dataset("cifar10", root=cifar10_root)
    assert not target.exists()


@pytest.mark.parametrize("name, cut, named", [("train_X.bin", 1000, "train_X.bin"),
                                              ("test_y.bin", 3, "test_y.bin")])
def test_corrupt_stl10_file_is_named(tmp_path, name, cut, named):
    write_stl10(tmp_path)
    path = tmp_path / "stl10_binary" / name
    path.write_bytes(path.read_bytes()[:-cut])
    with pytest.raises(ValueError, match="download STL-10 again") as e:
        data.load_dataset("stl10", root=tmp_path)
    assert str(e.value).startswith(str(tmp_path / "stl10_binary" / named))


# ----------------------------------------------------------------------------- augmentation


def shift_of(draw, plain, pad):
    """(dy, dx, flipped) such that draw is plain shifted, where they overlap; None if none."""
    size = plain.shape[-1]
    for flipped, source in ((False, plain), (True, plain.flip(-1))):
        for dy in range(-pad, pad + 1):
            for dx in range(-pad, pad + 1):
                ys = slice(max(0, -dy), size - max(0, dy))
                xs = slice(max(0, -dx), size - max(0, dx))
                shifted = source[:, max(0, dy):size + min(0, dy), max(0, dx):size + min(0, dx)]
                if torch.allclose(draw[:, ys, xs], shifted, atol=1e-6):
                    return dy, dx, flipped
    return None


@pytest.mark.parametrize("name", ["shapes", "cifar10"])
def test_augmentation_is_pad_2_crop_and_flip_on_train_only(cifar10_root, name):
    kw = SMALL_SHAPES if name == "shapes" else {"root": cifar10_root}
    b = data.load_dataset(name, augment=True, **kw)
    plain = data.load_dataset(name, augment=False, **kw)
    reference = plain.train[0][0]
    assert torch.equal(reference, plain.train[0][0])
    torch.manual_seed(0)
    shifts = [shift_of(b.train[0][0], reference, pad=2) for _ in range(20)]
    assert None not in shifts  # every draw is a crop of the 2-pixel-padded image, maybe flipped
    assert max(max(abs(dy), abs(dx)) for dy, dx, _ in shifts) == 2  # and the pad is 2
    assert {flipped for _, _, flipped in shifts} == {True, False}
    assert all(torch.equal(b.test[0][0], plain.test[0][0]) for _ in range(5))


# ----------------------------------------------------------------------------- image folder

COLOURS = {"cat": (250, 10, 10), "dog": (10, 250, 10), "fish": (10, 10, 250)}


def write_folder(root, per_class=5):
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            size = (20 + 3 * i, 12 + i)  # not square, not the target size
            Image.new("RGB", size, colour).save(root / name / f"{i}.png")
    Image.new("L", (10, 10), 128).save(root / "cat" / "grey.png")  # greyscale becomes RGB
    Image.new("RGBA", (9, 11), COLOURS["dog"] + (40,)).save(root / "dog" / "alpha.png")


@pytest.fixture
def folder(tmp_path):
    write_folder(tmp_path / "pets")
    return tmp_path / "pets"


def test_imagefolder_split_resize_and_corrupt_files(folder):
    (folder / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    good = (folder / "fish" / "0.png").read_bytes()
    (folder / "fish" / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "notes.txt").write_text("not an image")
    (folder / ".ipynb_checkpoints").mkdir()
    with pytest.warns(UserWarning, match="2 unreadable") as record:
        b = data.load_dataset("imagefolder", root=folder, image_size=16, augment=False)
    message = str(record[0].message)
    assert "broken.png" in message and "truncated.png" in message
    assert b.class_names == ["cat", "dog", "fish"] and (b.num_classes, b.in_channels) == (3, 3)
    assert len(b.train) + len(b.test) == 17
    assert sorted(b.test.targets) == [0, 1, 2]  # round(0.2 * 5 or 6) = 1 per class
    for split in (b.train, b.test):
        for x, y in (split[i] for i in range(len(split))):
            assert x.shape == (3, 16, 16) and type(y) is int
            rgb = x.mean((1, 2)) * torch.tensor(b.std) + torch.tensor(b.mean)
            if not torch.allclose(rgb, torch.full((3,), 128 / 255), atol=0.01):  # grey cat
                assert rgb.argmax().item() == y  # the colour says the class


def test_imagefolder_train_test_folders(tmp_path):
    write_folder(tmp_path / "train", per_class=4)
    write_folder(tmp_path / "test", per_class=2)
    b = data.load_dataset("imagefolder", root=tmp_path, image_size=8, fraction=0.5)
    assert len(b.test) == 8  # 2 per class, the grey cat and the see-through dog
    assert len(b.train) == 6  # half of 5 cats, 5 dogs, 4 fish: 2, 2 (round half to even), 2
    assert b.train[0][0].shape == (3, 8, 8)


def test_imagefolder_train_test_class_mismatch(tmp_path):
    write_folder(tmp_path / "train")
    write_folder(tmp_path / "test")
    (tmp_path / "test" / "bird").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "test" / "bird" / "0.png")
    with pytest.raises(ValueError, match="same class folders"):
        data.load_dataset("imagefolder", root=tmp_path)


@pytest.mark.parametrize("setup, match", [("missing", "does not exist"),
                                          ("empty", "no class folders")])
def test_imagefolder_without_images(tmp_path, setup, match):
    root = tmp_path / "photos"
    if setup == "empty":
        root.mkdir()
    with pytest.raises(data.DatasetNotFoundError, match=match) as e:
        data.load_dataset("imagefolder", root=root)
    assert str(root) in str(e.value)


def test_imagefolder_class_without_readable_images(folder):
    (folder / "owl").mkdir()
    (folder / "owl" / "0.jpg").write_bytes(b"garbage")
    with pytest.raises(data.DatasetNotFoundError, match="no readable images") as e, \
            pytest.warns(UserWarning, match="0.jpg"):
        data.load_dataset("imagefolder", root=folder)
    assert str(folder / "owl") in str(e.value)


def test_imagefolder_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    for name, level in (("dark", 0x2000), ("mid", 0x8000)):
        (tmp_path / name).mkdir()
        Image.fromarray(np.full((6, 6), level, np.uint16)).save(tmp_path / name / "0.png")
        Image.fromarray(np.full((6, 6), level, np.uint16)).save(tmp_path / name / "1.png")
    b = data.load_dataset("imagefolder", root=tmp_path, image_size=8, augment=False)
    x, y = b.test[0] if b.test.targets[0] == 1 else b.test[1]
    assert torch.allclose(x.mean((1, 2)) * torch.tensor(b.std) + torch.tensor(b.mean),
                          torch.full((3,), 128 / 255), atol=0.01)


def png_header(width, height):
    """A valid PNG claiming ``width`` x ``height`` pixels in about a hundred bytes."""
    import struct
    import zlib

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1))) + chunk(b"IEND", b""))


def test_imagefolder_decodes_with_the_uploads_rule(tmp_path):
    """Image folders and uploads share core.images: its formats (GIF, TIFF, PPM included), its
    one pixel ceiling (25 MP: a 36 MP file the old folder decoder took is refused), content
    sniffing (a renamed HTML file) and EXIF orientation."""
    from core import images

    quad = np.full((32, 48, 3), 255, np.uint8)  # upright: red top-left, blue bottom-left
    quad[:16, :24], quad[16:, :24] = (255, 0, 0), (0, 0, 255)
    for name in ("red", "blue"):
        (tmp_path / name).mkdir()
    colour = {"red": (250, 10, 10), "blue": (10, 10, 250)}
    for name, rgb in colour.items():
        for fmt, ext in (("GIF", "gif"), ("TIFF", "tif"), ("PPM", "ppm"), ("PNG", "png")):
            Image.new("RGB", (12, 10), rgb).save(tmp_path / name / f"plain.{ext}", format=fmt)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter: shown after rotating 90 degrees clockwise
    Image.fromarray(np.ascontiguousarray(np.rot90(quad, 1))).save(
        tmp_path / "red" / "turned.jpg", exif=exif, quality=95)
    (tmp_path / "red" / "over.png").write_bytes(png_header(6000, 6000))  # 36 MP
    (tmp_path / "blue" / "page.png").write_bytes(b"<!DOCTYPE html><html></html>")
    assert images.MAX_PIXELS < 36_000_000 and "TIFF" in images.ACCEPTED_FORMATS
    with pytest.warns(UserWarning, match="2 unreadable") as record:
        b = data.load_dataset("imagefolder", root=tmp_path, image_size=16, augment=False,
                              test_fraction=0.1)
    message = str(record[0].message)
    assert "over.png" in message and "25 megapixels" in message
    assert "page.png" in message and f"not a {images.ACCEPTED_NAMES} image" in message
    assert len(b.train) + len(b.test) == 9  # 4 formats x 2 classes + the turned photo
    mean, std = torch.tensor(b.mean).view(3, 1, 1), torch.tensor(b.std).view(3, 1, 1)
    items = [s[i] for s in (b.train, b.test) for i in range(len(s))]
    for x, y in items:
        rgb = (x * std + mean).mean((1, 2))
        assert rgb.argmax().item() == (0 if y == 1 else 2) or rgb.min() > 0.3  # the photo
    turned = [x * std + mean for x, _ in items if (x * std + mean).amin() < 0.1
              and (x * std + mean).amax((1, 2)).min() > 0.9]
    assert len(turned) == 1  # upright after EXIF: red top-left, blue bottom-left
    assert torch.allclose(turned[0][:, 2, 2], torch.tensor([1.0, 0, 0]), atol=0.1)
    assert torch.allclose(turned[0][:, 13, 2], torch.tensor([0, 0, 1.0]), atol=0.1)


def test_imagefolder_file_spoiled_after_loading_names_it(folder):
    b = data.load_dataset("imagefolder", root=folder, augment=False)
    for path in folder.glob("*/*.png"):
        path.write_bytes(b"spoiled")
    with pytest.raises(ValueError, match=r"cannot read image .*\.png"):
        b.train[0]


def test_imagefolder_needs_root_and_valid_options(folder):
    with pytest.raises(ValueError, match="root"):
        data.load_dataset("imagefolder")
    with pytest.raises(ValueError, match="test_fraction.*1.0"):
        data.load_dataset("imagefolder", root=folder, test_fraction=1.0)
    with pytest.raises(ValueError, match="image_size"):
        data.load_dataset("imagefolder", root=folder, image_size=0)


@pytest.mark.parametrize("name", ["digits", "shapes", "imagefolder"])
def test_splits_pickle_for_worker_processes(folder, name):
    kw = {"digits": {}, "shapes": SMALL_SHAPES, "imagefolder": {"root": folder}}[name]
    b = data.load_dataset(name, **kw)
    train = pickle.loads(pickle.dumps(b.train))
    assert train.targets == b.train.targets and train[0][0].shape == b.train[0][0].shape
