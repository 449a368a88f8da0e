"""Tests of cleftscore.io: formats, modes, bit depths, EXIF, and one-line errors."""

from __future__ import annotations

import importlib.util
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cleftscore.errors import ImageLoadError
from cleftscore.io import load_image, save_image


def _gradient(h: int = 48, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[:h, :w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) % 256], axis=2).astype(np.uint8)


def _one_line(exc: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".webp"])
def test_lossless_formats_round_trip(tmp_path: Path, suffix: str) -> None:
    img = _gradient()
    path = tmp_path / f"img{suffix}"
    if suffix == ".webp":
        Image.fromarray(img).save(path, lossless=True)
    else:
        save_image(path, img)
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == img.shape and out.flags.c_contiguous
    np.testing.assert_array_equal(out, img)


def test_jpeg_and_gif_load(tmp_path: Path) -> None:
    img = _gradient()
    save_image(tmp_path / "a.jpg", img)
    out = load_image(tmp_path / "a.jpg")
    assert out.shape == img.shape and np.abs(out.astype(int) - img).mean() < 3
    Image.fromarray(img).convert("P").save(tmp_path / "a.gif")
    assert load_image(tmp_path / "a.gif").shape == img.shape


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    g = _gradient()[..., 0]
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (*g.shape, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], g)


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:20, :, 3] = 255  # top half opaque red-ish, bottom transparent
    rgba[20:, :, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    np.testing.assert_array_equal(out[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(out[-1, -1], [255, 255, 255])
    # grey + alpha
    la = Image.fromarray(rgba[..., [1, 3]].copy(), "LA")
    la.save(tmp_path / "la.png")
    out = load_image(tmp_path / "la.png")
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(out[-1, -1], [255, 255, 255])


def test_palette_with_transparency(tmp_path: Path) -> None:
    p = Image.new("P", (40, 40), 0)
    p.putpalette([10, 20, 30, 250, 0, 0] + [0] * (256 * 3 - 6))
    p.paste(1, (0, 0, 20, 40))
    p.info["transparency"] = 0
    p.save(tmp_path / "p.png", transparency=0)
    out = load_image(tmp_path / "p.png")
    np.testing.assert_array_equal(out[5, 5], [250, 0, 0])
    np.testing.assert_array_equal(out[5, 30], [255, 255, 255])


def test_cmyk_jpeg(tmp_path: Path) -> None:
    img = _gradient()
    Image.fromarray(img).convert("CMYK").save(tmp_path / "c.jpg", quality=98)
    with Image.open(tmp_path / "c.jpg") as im:
        assert im.mode == "CMYK"
    out = load_image(tmp_path / "c.jpg")
    assert out.shape == img.shape
    assert np.abs(out.astype(int) - img).mean() < 6


def test_sixteen_bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 64 * 40).reshape(40, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode in ("I;16", "I")
    out = load_image(tmp_path / "g16.png")[..., 0].astype(int)
    expected = np.rint(ramp / 257.0).astype(int)
    assert np.abs(out - expected).max() <= 1
    assert out.max() == 255 and out.min() == 0
    assert len(np.unique(out)) > 200  # a clipped conversion would saturate at 255 almost everywhere


def test_sixteen_bit_rgb_tiff(tmp_path: Path) -> None:
    import cv2

    rgb16 = (np.random.default_rng(0).random((40, 50, 3)) * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "c16.tif"), rgb16[..., ::-1])  # OpenCV writes BGR
    out = load_image(tmp_path / "c16.tif").astype(int)
    assert np.abs(out - rgb16 / 257.0).max() <= 1.0


def test_float_tiff(tmp_path: Path) -> None:
    f = np.linspace(0, 1, 40 * 64, dtype=np.float32).reshape(40, 64)
    Image.fromarray(f, "F").save(tmp_path / "f.tif")
    out = load_image(tmp_path / "f.tif")[..., 0].astype(int)
    assert np.abs(out - np.rint(f * 255)).max() <= 1


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = _gradient(40, 64)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    Image.fromarray(img).save(tmp_path / "o6.jpg", exif=exif.tobytes(), quality=98)
    out = load_image(tmp_path / "o6.jpg")
    assert out.shape == (64, 40, 3)
    assert np.abs(out.astype(int) - np.rot90(img, -1)).mean() < 3


def test_real_exif_photo_matches_upright_copy(local_faces: Path) -> None:
    rotated = load_image(local_faces / "exif_orientation6_tiny_portrait.jpg")
    upright = load_image(local_faces / "tiny_128px_portrait_uniform.jpg")
    with Image.open(local_faces / "exif_orientation6_tiny_portrait.jpg") as im:
        stored = np.asarray(im.convert("RGB"))
    assert np.abs(stored.astype(int) - upright).mean() > 30  # stored pixels are sideways
    assert np.abs(rotated.astype(int) - upright).mean() < 8  # upright after EXIF


def test_missing_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="file not found") as exc:
        load_image(tmp_path / "nope.jpg")
    _one_line(exc, tmp_path / "nope.jpg")
    with pytest.raises(ImageLoadError, match="folder") as exc:
        load_image(tmp_path)
    _one_line(exc, tmp_path)


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n" * 20)
    with pytest.raises(ImageLoadError, match="not an image") as exc:
        load_image(path)
    _one_line(exc, path)


def test_truncated_jpeg(tmp_path: Path) -> None:
    save_image(tmp_path / "full.jpg", _gradient(200, 200))
    data = (tmp_path / "full.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="truncated or corrupt") as exc:
        load_image(path)
    _one_line(exc, path)


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A tiny PNG whose header claims width x height (a decompression-bomb shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [12_000, 30_000])  # above our limit; above Pillow's own hard limit
def test_decompression_bomb_is_refused(tmp_path: Path, side: int) -> None:
    path = tmp_path / f"bomb{side}.png"
    _png_header_only(path, side, side)
    with pytest.raises(ImageLoadError, match="decompression bomb") as exc:
        load_image(path)
    _one_line(exc, path)


def test_pixel_limit_is_a_parameter(tmp_path: Path) -> None:
    save_image(tmp_path / "a.png", _gradient(100, 100))
    assert load_image(tmp_path / "a.png", max_pixels=10_000).shape == (100, 100, 3)
    with pytest.raises(ImageLoadError, match="above the limit of 9,999"):
        load_image(tmp_path / "a.png", max_pixels=9_999)
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(tmp_path / "a.png", max_pixels=0)


def test_tiny_image_rejected(tmp_path: Path) -> None:
    save_image(tmp_path / "t.png", _gradient(20, 40))
    with pytest.raises(ImageLoadError, match="at least 32 px") as exc:
        load_image(tmp_path / "t.png")
    _one_line(exc, tmp_path / "t.png")


@pytest.mark.skipif(importlib.util.find_spec("pillow_heif") is not None, reason="pillow-heif is installed")
def test_heic_without_optional_package(tmp_path: Path) -> None:
    path = tmp_path / "phone.heic"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic")
    with pytest.raises(ImageLoadError, match="pillow-heif") as exc:
        load_image(path)
    _one_line(exc, path)


def test_save_image_inputs(tmp_path: Path) -> None:
    save_image(tmp_path / "f.png", np.full((8, 9, 3), 0.5))
    assert load_image_raw(tmp_path / "f.png")[0, 0, 0] == 128
    save_image(tmp_path / "g.png", np.eye(8, dtype=bool))
    assert load_image_raw(tmp_path / "g.png")[3, 3] == 255
    save_image(tmp_path / "sub" / "x.jpeg", np.zeros((8, 8), dtype=np.uint8))
    assert (tmp_path / "sub" / "x.jpeg").exists()
    with pytest.raises(ValueError, match="0..1"):
        save_image(tmp_path / "bad.png", np.full((4, 4), 1.5))
    with pytest.raises(ValueError, match="format"):
        save_image(tmp_path / "bad.xyz", np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="shape"):
        save_image(tmp_path / "bad.png", np.zeros((4, 4, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        save_image(tmp_path / "bad.png", np.zeros((4, 4), dtype=np.int64))


def load_image_raw(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


@pytest.mark.parametrize("shape", [(37, 53, 3), (37, 53), (37, 53, 4), (1, 1, 3)])
def test_write_png_reads_back_the_same_pixels(tmp_path: Path, shape: tuple[int, ...]) -> None:
    from cleftscore.io import write_png

    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    path = write_png(tmp_path / "sub" / "x.png", image)
    back = Image.open(path)
    assert back.mode == {2: "L", 3: "RGB", 4: "RGBA"}[len(shape) if len(shape) == 2 else shape[2]]
    assert np.array_equal(np.asarray(back), image)


def test_write_png_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    from cleftscore.io import write_png

    with pytest.raises(ValueError, match="uint8"):
        write_png(tmp_path / "x.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        write_png(tmp_path / "x.png", np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="compress_level"):
        write_png(tmp_path / "x.png", np.zeros((4, 4, 3), np.uint8), compress_level=10)


def test_a_process_lock_names_its_holder_and_is_free_again_after_release(tmp_path: Path) -> None:
    import os

    from cleftscore.io import ProcessLock

    first, second = ProcessLock(tmp_path / "sub" / "x.lock"), ProcessLock(tmp_path / "sub" / "x.lock")
    assert first.acquire() is None and first.held
    assert second.acquire() == str(os.getpid()) and not second.held  # busy: the holder's id, nothing taken
    first.release()
    assert (tmp_path / "sub" / "x.lock").read_text() == ""  # the id is cleared
    assert second.acquire(write_pid=False) is None
    second.release(clear=False)
    assert ProcessLock(tmp_path / "sub" / "x.lock").acquire() is None
