"""core.images: the one safe way from a user's image file to a model input."""

from __future__ import annotations

import io
import random
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from core.images import (
    ACCEPTED_FORMATS,
    BACKGROUND,
    MAX_BYTES,
    ImageError,
    ImageSpec,
    decode_image,
    prepare_image,
)

GREY8 = ImageSpec(size=8, channels=1, mean=(0.5,), std=(0.25,))
RGB32 = ImageSpec(size=32, channels=3, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def quadrants(w: int = 48, h: int = 32) -> np.ndarray:
    """An upright test picture: red top-left, green top-right, blue bottom-left, white rest."""
    a = np.full((h, w, 3), 255, np.uint8)
    a[: h // 2, : w // 2] = (255, 0, 0)
    a[: h // 2, w // 2:] = (0, 255, 0)
    a[h // 2:, : w // 2] = (0, 0, 255)
    return a


# How a camera stores an upright picture for each EXIF orientation (the EXIF 2.3 table: where
# the stored 0th row and column are in the visual picture), written with numpy, not Pillow.
STORED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, 1),  # shown after rotating 90 degrees clockwise
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, -1),  # shown after rotating 90 degrees counter-clockwise
}


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_ends_upright(orientation, fmt):
    upright = quadrants()
    stored = Image.fromarray(np.ascontiguousarray(STORED[orientation](upright)))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    array, got_fmt, size = decode_image(data)
    assert got_fmt == fmt and size == (48, 32) and array.shape == (32, 48, 3)
    centres = {(8, 12): (1, 0, 0), (8, 36): (0, 1, 0), (24, 12): (0, 0, 1), (24, 36): (1, 1, 1)}
    for (y, x), colour in centres.items():
        np.testing.assert_allclose(array[y, x], colour, atol=0.06)


def test_16bit_grey_is_scaled_not_clipped():
    ramp = np.tile(np.linspace(0, 65535, 1024).round().astype(np.uint16), (1024, 1))
    data = encode(Image.fromarray(ramp), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    array, _, _ = decode_image(data)
    assert array.shape == (1024, 1024, 1)
    assert len(np.unique(array)) >= 250  # clipping to 8 bits would leave 2 levels (0 and 1)
    assert array.min() == 0.0 and array.max() == 1.0
    np.testing.assert_allclose(array[0, :, 0], ramp[0] / 65535, atol=1e-6)
    # and through to the model input: a left-to-right ramp stays one
    row = np.asarray(prepare_image(data, ImageSpec(size=4, channels=1, mean=(0.0,),
                                                   std=(1.0,))).preview)[0]
    assert list(row) == sorted(row) and row[0] < 40 and row[-1] > 215


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "RGB-tRNS"])
def test_transparency_becomes_the_documented_background(mode):
    assert BACKGROUND == (1.0, 1.0, 1.0)
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 0] = 255  # red everywhere; alpha: opaque left half, clear right half, one half-alpha
    a[:, :2, 3] = 255
    a[0, 0, 3] = 128
    image = Image.fromarray(a, "RGBA")
    if mode == "LA":
        image = image.convert("LA")
    elif mode == "P":
        image = image.convert("P")  # palette with per-entry alpha (tRNS)
    elif mode == "RGB-tRNS":
        rgb = Image.fromarray(np.where(a[..., 3:] > 200, a[..., :3], 0).astype(np.uint8))
        data = encode(rgb, "PNG", transparency=(0, 0, 0))  # black is the transparent colour
        array, _, _ = decode_image(data)
        np.testing.assert_allclose(array[:, 2:], 1.0)
        np.testing.assert_allclose(array[1:, :2], np.broadcast_to((1, 0, 0), (3, 2, 3)))
        return
    array, _, _ = decode_image(encode(image, "PNG"))
    red = (0.299, 0.299, 0.299) if mode == "LA" else (1.0, 0.0, 0.0)
    np.testing.assert_allclose(array[:, 2:], 1.0, atol=1e-6)  # clear: the background
    np.testing.assert_allclose(array[1:, :2], np.broadcast_to(red, (3, 2, 3)), atol=0.01)
    if mode == "RGBA":
        np.testing.assert_allclose(array[0, 0], (1.0, 127 / 255, 127 / 255), atol=0.01)


def test_modes_cmyk_one_bit_palette_grey():
    cmyk = Image.new("CMYK", (8, 8), (255, 0, 0, 0))  # pure cyan
    array, fmt, _ = decode_image(encode(cmyk, "JPEG", quality=95))
    assert fmt == "JPEG" and array.shape == (8, 8, 3)
    np.testing.assert_allclose(array.mean(axis=(0, 1)), (0, 1, 1), atol=0.05)

    bits = Image.fromarray(np.eye(8, dtype=bool))
    for fmt in ("PNG", "BMP"):
        array, _, _ = decode_image(encode(bits, fmt))
        assert array.shape == (8, 8, 1)
        np.testing.assert_array_equal(array[..., 0], np.eye(8))

    grey = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)
    array, _, _ = decode_image(encode(grey, "PNG"))
    np.testing.assert_allclose(array[..., 0], np.arange(64).reshape(8, 8) * 4 / 255)
    x = prepare_image(encode(grey, "PNG"), RGB32).tensor  # grey model input for an RGB model
    assert x.shape == (3, 32, 32) and torch.allclose(x[0] * 0.2 + 0.5, x[1] * 0.25 + 0.4,
                                                     atol=1e-5)

    pal = Image.fromarray(quadrants()).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    array, _, _ = decode_image(encode(pal, "GIF"))
    np.testing.assert_allclose(array[8, 12], (1, 0, 0), atol=0.02)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animation_gives_its_first_frame(fmt):
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "lime", "blue")]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50,
                  **({"lossless": True} if fmt == "WEBP" else {}))
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    array, _, _ = decode_image(data)
    np.testing.assert_allclose(array.mean(axis=(0, 1)), (1, 0, 0), atol=0.02)


def test_resize_and_normalise_like_training():
    a = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    p = prepare_image(encode(Image.fromarray(a), "PNG"), RGB32)
    expected = (torch.tensor(a).permute(2, 0, 1) / 255 - torch.tensor(RGB32.mean).view(3, 1, 1)
                ) / torch.tensor(RGB32.std).view(3, 1, 1)
    assert torch.allclose(p.tensor, expected, atol=1e-5)  # right size: no resampling at all
    np.testing.assert_array_equal(np.asarray(p.preview), a)
    wide = prepare_image(encode(Image.fromarray(quadrants(96, 64)), "PNG"), RGB32)
    assert wide.tensor.shape == (3, 32, 32) and wide.source_size == (96, 64)
    big = prepare_image(encode(Image.new("RGB", (4000, 3000), "red"), "JPEG"), RGB32)
    assert big.source_size == (4000, 3000)  # reduced before floats, same colour
    np.testing.assert_allclose(np.asarray(big.preview).mean(axis=(0, 1)), (254, 0, 0), atol=2)


def test_digits_spec_inverts_paper_and_fits_the_ink():
    spec = ImageSpec(size=8, channels=1, mean=(0.3,), std=(0.4,), ink_on_dark=True,
                     resample="area")
    paper = Image.new("L", (300, 300), 255)
    paper.paste(0, (140, 60, 160, 240))  # a dark "1", 20 px wide, in a white page
    p = prepare_image(encode(paper, "PNG"), spec)
    assert p.inverted
    seen = np.asarray(p.preview)
    assert seen.max() == 255 and seen[:, 0].max() == 0 and seen[:, -1].max() == 0
    assert (seen[:, 3:5] > 0).all()  # the stroke spans the full height, in the middle
    dark = Image.new("L", (8, 8), 0)
    dark.paste(255, (3, 0, 5, 8))
    assert not prepare_image(encode(dark, "PNG"), spec).inverted


@pytest.mark.parametrize("name", ["digits", "shapes"])
def test_dataset_images_round_trip_to_their_training_tensor(name, tmp_path):
    """A test image written as PNG (as the app's examples are) comes back as the same input."""
    from core.data import load_dataset
    from lab.classify.examples import write_examples

    options = {"train_size": 100, "test_size": 20} if name == "shapes" else {}
    bundle = load_dataset(name, augment=False, **options)
    spec = ImageSpec.from_bundle(bundle)
    paths = write_examples(bundle, tmp_path)
    assert len(paths) == 10
    first = {t: i for i, t in reversed(list(enumerate(bundle.test.targets)))}
    for label, path in enumerate(paths):
        x = prepare_image(path, spec).tensor
        want = bundle.test[first[label]][0]
        step = 1 / 255 / min(bundle.std)  # one grey level, normalised
        assert torch.allclose(x, want, atol=step)


# -- refusals -------------------------------------------------------------------------------


def png_header(width: int, height: int, mode: int = 0) -> bytes:
    """A valid PNG signature and IHDR claiming a size, with one tiny compressed row."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, mode, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1))) + chunk(b"IEND", b""))


def test_pixel_ceiling_is_checked_from_the_header():
    with pytest.raises(ImageError, match="the limit is 25 megapixels"):
        decode_image(png_header(50_000, 50_000))  # a 2.5-gigapixel bomb in ~100 bytes + rows
    with pytest.raises(ImageError, match="the limit is 1 megapixels"):
        decode_image(encode(Image.new("L", (2000, 1000)), "PNG"), max_pixels=1_000_000)


def test_decompression_bomb_warning_is_an_error():
    # above Pillow's own threshold (89.5 MP) but under ours: Pillow's warning must refuse it
    with pytest.raises(ImageError, match="decompression bomb"):
        decode_image(png_header(10_000, 10_000), max_pixels=10**9)


def test_size_limit_is_checked_before_decoding(monkeypatch, tmp_path):
    def no_decoding(*a, **k):
        raise AssertionError("decoded an oversize file")

    monkeypatch.setattr(Image, "open", no_decoding)
    big = b"\x89PNG" + bytes(MAX_BYTES)
    with pytest.raises(ImageError, match=r"MiB; the limit is 10 MiB"):
        decode_image(big)
    path = tmp_path / "big.png"
    path.write_bytes(big)
    with pytest.raises(ImageError, match=r"the limit is 10 MiB"):
        decode_image(path)
    with pytest.raises(ImageError, match=r"the limit is 10 MiB"):
        decode_image(io.BytesIO(big))


FOREIGN = {
    "html": b"<!DOCTYPE html><html><script>alert(1)</script></html>",
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
    "pdf": b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF",
    "zip": b"PK\x03\x04" + bytes(26) + b"PK\x05\x06" + bytes(18),
    "eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
}


@pytest.mark.parametrize("kind", sorted(FOREIGN) + ["ico", "tga", "pcx", "sgi"])
def test_other_formats_are_refused(kind):
    if kind in FOREIGN:
        data = FOREIGN[kind]
    else:
        data = encode(Image.new("RGB", (16, 16), "red"), kind.upper())
        assert Image.open(io.BytesIO(data)).format == kind.upper()  # Pillow would open it
    with pytest.raises(ImageError, match="not a PNG, JPEG, WebP, GIF, BMP, TIFF or PPM image"):
        decode_image(data)


@pytest.mark.parametrize("fmt, mode", [("TIFF", "RGB"), ("TIFF", "I;16"), ("PPM", "RGB"),
                                       ("PPM", "L")])
def test_tiff_and_ppm_are_accepted(fmt, mode):
    """The one set of formats (uploads and image folders alike) includes TIFF and Netpbm."""
    assert ACCEPTED_FORMATS == ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "PPM")
    if mode == "I;16":
        image = Image.fromarray(np.full((6, 6), 0x8000, np.uint16))
    else:
        image = Image.fromarray(quadrants(48, 32)).convert(mode)
    array, got, size = decode_image(encode(image, fmt))
    assert got == fmt and size == image.size
    if mode == "I;16":
        np.testing.assert_allclose(array, 0x8000 / 65535, atol=1e-6)
    elif mode == "RGB":
        np.testing.assert_allclose(array[8, 12], (1, 0, 0), atol=1e-6)
        np.testing.assert_allclose(array[24, 12], (0, 0, 1), atol=1e-6)
    else:
        assert array.shape == (32, 48, 1)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "PPM"])
def test_truncated_files_are_refused(fmt):
    data = encode(Image.fromarray(quadrants(64, 64)), fmt)
    for cut in (len(data) // 2, 40, 12):
        with pytest.raises(ImageError, match="damaged or truncated|not a PNG"):
            decode_image(data[:cut])


def test_empty_and_wrong_types():
    with pytest.raises(ImageError, match="empty"):
        decode_image(b"")
    with pytest.raises(TypeError, match="bytes, a path or a binary file"):
        decode_image(42)
    with pytest.raises(ImageError, match="could not read the file"):
        decode_image("/nonexistent/x.png")
    with pytest.raises(ValueError, match="channels=2"):
        ImageSpec(size=8, channels=2, mean=(0, 0), std=(1, 1))


def fuzz_inputs(n: int, seed: int = 0) -> list[bytes]:
    """n seeded malformed inputs: random bytes, truncations, bit flips, foreign formats."""
    rng = random.Random(seed)
    valid = [encode(Image.fromarray(quadrants(40, 30)), f) for f in
             ("PNG", "JPEG", "WEBP", "GIF", "BMP")]
    out = []
    for i in range(n):
        kind = i % 6
        base = valid[rng.randrange(len(valid))]
        if kind == 0:
            out.append(rng.randbytes(rng.randrange(1, 4096)))
        elif kind == 1:
            out.append(base[: rng.randrange(1, len(base))])
        elif kind == 2:  # a few flipped bytes past the signature
            b = bytearray(base)
            for _ in range(rng.randrange(1, 8)):
                b[rng.randrange(8, len(b))] = rng.randrange(256)
            out.append(bytes(b))
        elif kind == 3:
            out.append(FOREIGN[rng.choice(sorted(FOREIGN))] + rng.randbytes(rng.randrange(64)))
        elif kind == 4:  # a claimed huge size
            out.append(png_header(rng.randrange(6000, 70000), rng.randrange(6000, 70000)))
        else:
            out.append(base[:8] + rng.randbytes(rng.randrange(1, 512)))
    return out


def test_fuzz_every_malformed_input_is_a_clear_image_error():
    """1,000 seeded inputs: each is an ImageError with a message, or (a bit flip that still
    decodes) a proper model input; nothing else ever escapes."""
    refused = 0
    for data in fuzz_inputs(1000):
        try:
            p = prepare_image(data, RGB32)
        except ImageError as e:
            assert len(str(e)) > 20
            refused += 1
        else:
            assert p.tensor.shape == (3, 32, 32) and torch.isfinite(p.tensor).all()
    assert refused > 800
