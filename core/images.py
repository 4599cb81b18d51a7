"""Safe decoding of an image file into the tensor a trained model expects: the one way in.

Every image file the project reads goes through `decode_image`, with ONE set of formats and
limits: an upload, a drawing, an example file (through `prepare_image`) and every file of a
training image folder (`core.data.folder`). The rule:

- formats PNG, JPEG, WebP, GIF, BMP, TIFF and PPM (the Netpbm family: .ppm/.pgm/.pbm/.pnm),
  recognised by content, never by name;
- at most `MAX_BYTES` (10 MiB) of encoded data and `MAX_PIXELS` (25 megapixels: a 24-megapixel
  camera photo fits) per image; an uncompressed TIFF/BMP/PPM over 10 MiB is refused (re-save it
  as PNG or JPEG, or shrink it).

The steps:

1. size limit on the raw bytes, checked before anything is decoded;
2. `Image.open(..., formats=ACCEPTED_FORMATS)`: Pillow sniffs the content, so a renamed
   HTML/PDF/SVG/EPS file is refused, and EPS never reaches Ghostscript;
3. the pixel ceiling read from the header, and Pillow's `DecompressionBombWarning` raised as
   an error, both before the pixels are decoded;
4. the full decode inside the same try (Pillow is lazy), first frame only of an animation or a
   multi-page TIFF;
5. EXIF orientation applied, so a phone photo ends up upright;
6. modes normalised to floats in [0, 1]: transparency (RGBA, LA, palette or tRNS) composited on
   `BACKGROUND` (white, like paper and the drawing canvas), 16-bit greyscale scaled by 1/65535
   (not clipped to 8 bits), CMYK, palette and 1-bit converted, greyscale kept as one channel;
7. (`prepare_image`) resized and normalised exactly as the run's training data: the dataset's
   channels (RGB to grey with ITU-R 601 luma weights), size (shorter side resized, centre crop),
   mean and std.

Digits (scikit-learn's 8x8 set) are light ink on a dark background, scaled to fill the frame,
made by box-averaging 32x32 bitmaps. A picture with a light border (paper, the sketchpad) is
therefore inverted, its ink cropped to a centred square, box-averaged to 8x8 and its contrast
stretched so the strongest ink is 1, as in nearly every training digit. A light-on-dark picture
is taken as it is, like a training digit (`ImageSpec.ink_on_dark`).

Every failure raises `ImageError` (a ValueError) saying what was wrong and what is accepted.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

__all__ = [
    "ACCEPTED_EXTENSIONS", "ACCEPTED_FORMATS", "ACCEPTED_NAMES", "BACKGROUND", "MAX_BYTES",
    "MAX_PIXELS", "ImageError", "ImageSpec", "PreparedImage", "decode_image", "prepare_image",
]

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "PPM")  # Pillow format names
ACCEPTED_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff",
                       ".ppm", ".pgm", ".pbm", ".pnm")
MAX_BYTES = 10 * 2**20  # 10 MiB of encoded data, uploads and image folders alike
# width x height; a 24-megapixel photo fits. Below Pillow's own bomb threshold (89.5 MP), whose
# warning is an error here anyway.
MAX_PIXELS = 25_000_000
BACKGROUND = (1.0, 1.0, 1.0)  # white, on the [0, 1] scale: what transparency becomes
ACCEPTED_NAMES = "PNG, JPEG, WebP, GIF, BMP, TIFF or PPM"  # for messages and labels
# Python's warning filters are process-wide: one lock keeps a thread's "bomb warning is an
# error" filter in place for the whole of its decode.
_DECODE_LOCK = threading.Lock()


class ImageError(ValueError):
    """A user's image was refused; the message says what was wrong and what is accepted."""


@dataclass(frozen=True)
class ImageSpec:
    """What a model's training images looked like: the target of `prepare_image`."""

    size: int  # pixels, height == width
    channels: int  # 1 (grey) or 3 (RGB)
    mean: tuple[float, ...]  # per channel on the [0, 1] scale; x_model = (x - mean) / std
    std: tuple[float, ...]
    ink_on_dark: bool = False  # digits: light-bordered pictures are inverted and ink-cropped
    resample: Literal["bilinear", "area"] = "bilinear"  # area: box average when shrinking

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels={self.channels!r}; allowed: 1 or 3")
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"size={self.size!r} must be a positive whole number of pixels")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"mean {self.mean} and std {self.std} need {self.channels} values")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std {self.std} must be positive")
        if self.resample not in ("bilinear", "area"):
            raise ValueError(f"resample={self.resample!r}; allowed: 'bilinear' or 'area'")

    @classmethod
    def from_bundle(cls, bundle: Any) -> ImageSpec:
        """The spec of a `core.data.DatasetBundle` (its size, channels, mean and std)."""
        digits = bundle.name == "digits"  # 8x8 box averages of light-on-dark 32x32 bitmaps
        return cls(size=int(bundle.image_size), channels=int(bundle.in_channels),
                   mean=tuple(bundle.mean), std=tuple(bundle.std), ink_on_dark=digits,
                   resample="area" if digits else "bilinear")


@dataclass(frozen=True)
class PreparedImage:
    """A decoded image ready for the model, and what it looked like to the model."""

    tensor: torch.Tensor  # (channels, size, size) float32, normalised with the spec
    preview: Image.Image  # (size x size) "L" or "RGB": the model's input before normalising
    source_size: tuple[int, int]  # (width, height) after EXIF orientation
    format: str  # the detected format, e.g. "PNG"
    inverted: bool  # ink_on_dark specs: whether the picture was inverted


def _read_limited(source: Any, max_bytes: int) -> bytes:
    """The raw bytes, refusing anything over `max_bytes` before reading it all."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        try:
            size = os.stat(source).st_size
            if size > max_bytes:
                raise ImageError(_too_big(size, max_bytes))
            with open(source, "rb") as f:
                data = f.read(max_bytes + 1)
        except OSError as e:
            raise ImageError(f"could not read the file ({e.strerror or e}); upload it again"
                             ) from None
    elif hasattr(source, "read"):
        data = source.read(max_bytes + 1)
        if not isinstance(data, bytes):
            raise TypeError(f"file object must be opened in binary mode, got {type(data)}")
    else:
        raise TypeError(f"image source must be bytes, a path or a binary file object, "
                        f"got {type(source).__name__}")
    if len(data) > max_bytes:
        raise ImageError(_too_big(len(data), max_bytes))
    if not data:
        raise ImageError(f"the file is empty (0 bytes); give a {ACCEPTED_NAMES} image")
    return data


def _too_big(size: int, max_bytes: int) -> str:
    return (f"the file is {size / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.0f} MiB. "
            f"Shrink or re-save it ({ACCEPTED_NAMES})")


def decode_image(source: bytes | str | os.PathLike | BinaryIO, *, max_bytes: int = MAX_BYTES,
                 max_pixels: int = MAX_PIXELS, reduce_to: int | None = None
                 ) -> tuple[np.ndarray, str, tuple[int, int]]:
    """Decode an untrusted image to floats in [0, 1], upright, transparency on `BACKGROUND`.

    Args:
        source: the encoded bytes, a path, or a binary file object.
        max_bytes: refuse larger inputs before decoding.
        max_pixels: refuse images with more pixels (from the header, before decoding).
        reduce_to: if given, 8-bit images whose shorter side exceeds 4x this are first
            box-reduced by an integer factor (memory), keeping the shorter side >= 4x it.

    Returns:
        (array (H, W, C) float32 with C = 1 for greyscale/1-bit/16-bit grey and 3 otherwise,
        Pillow's format name, (width, height) upright and before any reduction).

    Raises:
        ImageError: too large, empty, not an accepted format, damaged or truncated.
    """
    data = _read_limited(source, max_bytes)
    with _DECODE_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS)) as im:
                fmt = im.format or "?"
                w, h = im.size
                if w < 1 or h < 1:
                    raise ImageError(f"the image has no pixels ({w}x{h})")
                if w * h > max_pixels:
                    raise ImageError(f"the image is {w}x{h} = {w * h / 1e6:.1f} megapixels; "
                                     f"the limit is {max_pixels / 1e6:.0f} megapixels. Resize "
                                     f"it first")
                im.seek(0)  # the first frame of an animation
                im.load()  # the full decode, here inside the try
                im = _upright(im)
                return _to_float(im, reduce_to), fmt, im.size
        except ImageError:
            raise
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
            raise ImageError(f"refused as a decompression bomb ({e}); the limit is "
                             f"{max_pixels / 1e6:.0f} megapixels") from None
        except UnidentifiedImageError:
            raise ImageError(f"not a {ACCEPTED_NAMES} image (the content was not recognised; "
                             f"a renamed file, e.g. HTML, PDF, SVG or ZIP, is refused)") from None
        except MemoryError:
            raise ImageError("the image needs too much memory to decode; resize it") from None
        except Exception as e:  # noqa: BLE001 - any decoder failure on untrusted data
            raise ImageError(f"the file is damaged or truncated and could not be decoded "
                             f"({type(e).__name__}: {str(e)[:120]}); re-save it as "
                             f"{ACCEPTED_NAMES}") from None


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a damaged EXIF block leaves the picture as stored."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - the pixels decoded fine; only the metadata is bad
        return im


def _to_float(im: Image.Image, reduce_to: int | None) -> np.ndarray:
    """(H, W, C) float32 in [0, 1] from any decoded mode; see the module docstring."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit greyscale: scale the full range, never clip to 8 bits first.
        a = np.asarray(im).astype(np.float32)
        return np.clip(a / 65535.0, 0.0, 1.0)[..., None]
    if im.mode == "F":
        return np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)[..., None]
    has_alpha = "A" in im.getbands() or "transparency" in im.info
    if has_alpha:
        im = im.convert("RGBA")
    elif im.mode in ("1", "L"):
        im = im.convert("L")
    elif im.mode != "RGB":
        im = im.convert("RGB")  # palette, CMYK, YCbCr, LAB, HSV, RGBX
    if reduce_to is not None:
        factor = min(im.size) // (4 * reduce_to)
        if factor >= 2:
            im = im.reduce(factor)
    a = np.asarray(im, dtype=np.float32) / 255.0
    if a.ndim == 2:
        return a[..., None]
    if has_alpha:
        alpha = a[..., 3:]
        a = a[..., :3] * alpha + np.asarray(BACKGROUND, dtype=np.float32) * (1.0 - alpha)
    return a


def _fit_ink(x: torch.Tensor, threshold: float = 0.25) -> torch.Tensor:
    """Crop (C, H, W) to the bounding box of its ink and pad it to a centred square."""
    ink = x.amax(dim=0) > threshold
    if not ink.any():
        return x
    rows, cols = ink.any(dim=1).nonzero(), ink.any(dim=0).nonzero()
    x = x[:, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = x.shape[1:]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    return F.pad(x, (left, side - w - left, top, side - h - top))


def _resize(x: torch.Tensor, size: int, resample: str) -> torch.Tensor:
    """Shorter side to `size` then centre crop, as core.data resizes training images."""
    h, w = x.shape[1:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        if resample == "area" and nh <= h and nw <= w:
            x = F.interpolate(x[None], size=(nh, nw), mode="area")[0]
        else:
            x = TF.resize(x, [nh, nw], antialias=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[:, top:top + size, left:left + size].clamp(0.0, 1.0)


def prepare_image(source: bytes | str | os.PathLike | BinaryIO, spec: ImageSpec, *,
                  max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> PreparedImage:
    """Decode an untrusted image and turn it into the model input described by `spec`.

    Raises:
        ImageError: see `decode_image`.
    """
    if not isinstance(spec, ImageSpec):
        raise TypeError(f"spec must be an ImageSpec, got {type(spec).__name__}")
    array, fmt, source_size = decode_image(source, max_bytes=max_bytes, max_pixels=max_pixels,
                                           reduce_to=spec.size)
    x = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)  # (C, H, W)
    if spec.channels == 1 and x.shape[0] == 3:
        luma = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
        x = (x * luma).sum(dim=0, keepdim=True)
    elif spec.channels == 3 and x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    inverted = False
    if spec.ink_on_dark:
        border = torch.cat([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], dim=1)
        if border.mean() > 0.5:  # dark ink on a light background (paper, the sketchpad):
            x, inverted = _fit_ink(1.0 - x), True  # light on dark, framed like the digits
    x = _resize(x.contiguous(), spec.size, spec.resample)
    if inverted and x.amax() > 0.1:
        x = x / x.amax()  # the digits' strongest ink is full scale; a thin pen is stretched to it
    pixels = (x * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    preview = Image.fromarray(pixels[..., 0] if spec.channels == 1 else pixels)
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(-1, 1, 1)
    return PreparedImage(tensor=((x - mean) / std).float().contiguous(), preview=preview,
                         source_size=source_size, format=fmt, inverted=inverted)
