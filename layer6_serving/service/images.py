"""Images in and out of the service: uploads decoded safely, arrays checked, digit grids as PNG.

**Decode only what you have agreed to decode.** A PNG of a few kilobytes can declare a
50 000 × 50 000 image (a *decompression bomb*): decoding it would need gigabytes. So an upload
is checked in three steps, cheapest first, and refused at the first that fails:

1. its size in bytes (``max_bytes``: 413),
2. the width × height its *header* declares, read by ``Image.open`` without decoding a single
   pixel (``max_pixels``: 413), and the format (PNG or JPEG only: 422),
3. only then ``load()`` decodes it; it must then be the model's size (32 × 32: 422).

Pillow has its own bomb guard (``Image.MAX_IMAGE_PIXELS``, a warning and then an error at twice
it), but it is process-wide and far too generous for a 32 × 32 model; ours is per call.

A JSON array is the other way in: (3, 32, 32) channels-first or (32, 32, 3) channels-last, either
floats in [0, 1] or integers 0..255; every image leaves here as float32 (3, 32, 32) in [0, 1],
which is what :class:`layer6_serving.runtime.Classifier` takes.
"""

from __future__ import annotations

import io
import math
import warnings
from typing import Any

import numpy as np
from PIL import Image

FORMATS = ("PNG", "JPEG")


class ImageError(ValueError):
    """An upload or array that is not an acceptable image; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def decode_upload(data: bytes, *, size: int = 32, max_bytes: int, max_pixels: int) -> np.ndarray:
    """PNG/JPEG bytes -> float32 (3, size, size) RGB in [0, 1], refusing bombs before decoding."""
    if len(data) > max_bytes:
        raise ImageError(f"upload is {len(data)} bytes, over the limit of {max_bytes}", 413)
    if not data:
        raise ImageError("upload is empty: expected a PNG or JPEG image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))  # reads the header only
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageError(
            f"image declares more than {Image.MAX_IMAGE_PIXELS} pixels (a decompression bomb), "
            f"over the limit of {max_pixels}; refused without decoding",
            413,
        ) from None
    except OSError as e:
        raise ImageError(
            f"upload is not a readable image ({type(e).__name__}): expected a PNG or JPEG"
        ) from None
    with img:
        if img.format not in FORMATS:
            raise ImageError(f"upload is a {img.format} image: expected one of {FORMATS}")
        w, h = img.size
        if w * h > max_pixels:
            raise ImageError(
                f"image declares {w}x{h} = {w * h} pixels, over the limit of {max_pixels}; "
                "refused without decoding",
                413,
            )
        if (w, h) != (size, size):
            raise ImageError(f"image is {w}x{h}: expected {size}x{size}")
        try:
            img.load()
            rgb = img.convert("RGB")
        except (OSError, ValueError) as e:
            raise ImageError(f"image data is corrupt ({e})") from None
    return (np.asarray(rgb, dtype=np.float32) / 255.0).transpose(2, 0, 1).copy()


def from_array(value: Any, *, size: int = 32) -> np.ndarray:
    """Nested lists (3, s, s) or (s, s, 3), floats in [0, 1] or ints 0..255 -> float32 (3, s, s)."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        raise ImageError(
            f"image is a ragged array: expected a (3, {size}, {size}) or ({size}, {size}, 3) array"
        ) from None
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ImageError(
            f"image holds {arr.dtype} values: expected floats in [0, 1] or integers 0..255"
        )
    if arr.shape == (size, size, 3):
        arr = arr.transpose(2, 0, 1)
    elif arr.shape != (3, size, size):
        raise ImageError(
            f"image has shape {arr.shape}: expected (3, {size}, {size}) or ({size}, {size}, 3)"
        )
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise ImageError(f"integer image values span {lo}..{hi}: expected 0..255")
        return (arr.astype(np.float32) / 255.0).copy()
    if not np.isfinite(arr).all():
        raise ImageError("image holds NaN or infinity: expected floats in [0, 1]")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise ImageError(f"float image values span [{lo:g}, {hi:g}]: expected [0, 1]")
    return arr.astype(np.float32).copy()


def grid_png(digits: np.ndarray, cols: int | None = None, scale: int = 2) -> bytes:
    """uint8 (N, H, W) greyscale digits -> one PNG grid (``cols`` wide, pixels ``scale``×)."""
    if digits.ndim != 3 or digits.dtype != np.uint8:
        raise ValueError(f"digits must be uint8 (N, H, W), got {digits.dtype} {digits.shape}")
    n, h, w = digits.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * h, cols * w), dtype=np.uint8)
    for i, digit in enumerate(digits):
        r, c = divmod(i, cols)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = digit
    img = Image.fromarray(grid, mode="L")
    if scale != 1:
        img = img.resize((cols * w * scale, rows * h * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
