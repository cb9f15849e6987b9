"""Image decoding: PNG/JPEG uploads become the model's float32 (3, 32, 32), decompression bombs
are refused from the header without decoding, arrays are checked, digit grids round-trip."""

from __future__ import annotations

import io
import struct
import zlib
from unittest import mock

import numpy as np
import pytest
from PIL import Image, ImageFile

from layer6_serving.service.images import ImageError, decode_upload, from_array, grid_png
from tests.layer6.service_fakes import png_bytes

LIMITS = {"max_bytes": 100_000, "max_pixels": 4096}


def _pixels(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def _bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring width x height, with one tiny (truncated) data chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    data = zlib.compress(b"\0" * 1000)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def test_png_decodes_to_channels_first_floats():
    pixels = _pixels()
    out = decode_upload(png_bytes(pixels), **LIMITS)
    assert out.dtype == np.float32 and out.shape == (3, 32, 32)
    np.testing.assert_array_equal(out, pixels.transpose(2, 0, 1) / np.float32(255))


def test_jpeg_decodes_close_to_the_original_and_greyscale_becomes_rgb():
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (32, 1, 3))
    out = decode_upload(png_bytes(smooth, "JPEG"), **LIMITS)
    assert np.abs(out - smooth.transpose(2, 0, 1) / 255).max() < 0.05  # lossy, but close
    grey = Image.fromarray(smooth[:, :, 0], mode="L")
    buf = io.BytesIO()
    grey.save(buf, format="PNG")
    rgb = decode_upload(buf.getvalue(), **LIMITS)
    np.testing.assert_array_equal(rgb[0], rgb[2])


@pytest.mark.parametrize(
    ("side", "message"),
    [
        (1000, "1000x1000 = 1000000 pixels, over the limit of 4096; refused without decoding"),
        (50_000, "decompression bomb.*over the limit of 4096; refused without decoding"),
    ],
)
def test_a_bomb_is_refused_from_its_header_without_decoding(side, message):
    bomb = _bomb_png(side, side)
    assert len(bomb) < 200  # a tiny file declaring up to 2.5 G pixels
    with mock.patch.object(ImageFile.ImageFile, "load", side_effect=AssertionError("decoded!")):
        with pytest.raises(ImageError, match=message) as info:
            decode_upload(bomb, **LIMITS)
    assert info.value.status == 413


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"", 422, "empty"),
        (b"GIF89a not really", 422, "not a readable image"),
        (b"\0" * 100_001, 413, "100001 bytes, over the limit of 100000"),
        (png_bytes(np.zeros((16, 32, 3), np.uint8)), 422, "32x16: expected 32x32"),
        (png_bytes(_pixels())[:60], 422, "corrupt"),
    ],
)
def test_bad_uploads(data, status, message):
    with pytest.raises(ImageError, match=message) as info:
        decode_upload(data, **LIMITS)
    assert info.value.status == status


def test_other_formats_are_refused_by_name():
    buf = io.BytesIO()
    Image.fromarray(_pixels()).save(buf, format="BMP")
    with pytest.raises(ImageError, match="BMP image: expected one of"):
        decode_upload(buf.getvalue(), **LIMITS)


def test_arrays_in_both_layouts_and_both_ranges():
    pixels = _pixels(1)
    chw = np.ascontiguousarray(pixels.transpose(2, 0, 1))
    want = chw.astype(np.float32) / 255
    for value in (chw.tolist(), pixels.tolist(), want.tolist(), want.transpose(1, 2, 0).tolist()):
        out = from_array(value)
        assert out.dtype == np.float32 and out.shape == (3, 32, 32)
        np.testing.assert_allclose(out, want, atol=1e-7)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.zeros((32, 32)).tolist(), r"shape \(32, 32\)"),
        (np.zeros((4, 32, 32)).tolist(), r"shape \(4, 32, 32\)"),
        ([[1, 2], [3]], "ragged"),
        (np.full((3, 32, 32), 1.5).tolist(), r"span \[1.5, 1.5\]: expected \[0, 1\]"),
        (np.full((3, 32, 32), 300).tolist(), "span 300..300: expected 0..255"),
        (np.full((3, 32, 32), -1).tolist(), "expected 0..255"),
        ([[["a"] * 32] * 32] * 3, "expected floats in"),
        (np.full((3, 32, 32), np.nan).tolist(), "NaN"),
    ],
)
def test_bad_arrays(value, message):
    with pytest.raises(ImageError, match=message):
        from_array(value)


def test_grid_png_places_each_digit_in_its_cell():
    digits = np.stack([np.full((28, 28), 10 * (i + 1), np.uint8) for i in range(5)])
    grid = np.asarray(Image.open(io.BytesIO(grid_png(digits, scale=1))))
    assert grid.shape == (2 * 28, 3 * 28)  # ceil(sqrt(5)) = 3 columns, 2 rows
    for i in range(5):
        r, c = divmod(i, 3)
        assert (grid[r * 28 : (r + 1) * 28, c * 28 : (c + 1) * 28] == 10 * (i + 1)).all()
    assert (grid[28:, 56:] == 0).all()  # the empty sixth cell
    big = np.asarray(Image.open(io.BytesIO(grid_png(digits[:1], scale=3))))
    assert big.shape == (84, 84)
    with pytest.raises(ValueError, match="uint8"):
        grid_png(digits.astype(np.float32))
