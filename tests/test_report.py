"""Tests of cleftscore.report.pictures: pictures (pure functions) and the CSV/JSON/HTML writers."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest

from cleftscore.io import write_json, write_png
from cleftscore.report.html import write_html_report
from cleftscore.report.pictures import DISCLAIMER, colorize, heatmap_figure, overlay, panel
from cleftscore.report.writers import write_csv


@pytest.fixture()
def hm():
    h = np.zeros((40, 50), np.float32)
    h[10:20, 10:20] = 5.0
    h[0, 0] = 1e6  # outlier: must not wash out the robust scale
    return h


def test_colorize_shape_dtype_and_robust_scale(hm):
    c = colorize(hm)
    assert c.shape == (40, 50, 3) and c.dtype == np.uint8
    # with the robust vmax (99.5th pct = 5), the blob is at the top colour like the outlier
    np.testing.assert_array_equal(c[15, 15], c[0, 0])
    assert not np.array_equal(c[15, 15], c[30, 30])
    c2 = colorize(hm, vmax=10.0)
    assert not np.array_equal(c2[15, 15], c2[0, 0])
    assert colorize(np.zeros((3, 3))).shape == (3, 3, 3)  # all-zero map is fine
    with pytest.raises(ValueError, match="vmax must be a finite number > 0"):
        colorize(hm, vmax=0.0)
    with pytest.raises(ValueError, match=r"heatmap must be \(H, W\), got shape \(2, 3, 4\)"):
        colorize(np.zeros((2, 3, 4)))


def test_overlay_dims_outside_roi_and_draws_outline(hm):
    img = np.full((40, 50, 3), 200, np.uint8)
    mask = np.zeros((40, 50), bool)
    mask[5:25, 5:25] = True
    out = overlay(img, hm, mask=mask)
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    assert np.all(out[35, 45] == round(0.35 * 200))  # dimmed outside
    assert np.all(out[5, 12] == 255)  # outline on the ROI's inner boundary
    assert not np.array_equal(out[15, 15], img[15, 15])  # coloured inside
    plain = overlay(img, hm, alpha=0.0, mask=None)
    np.testing.assert_array_equal(plain, img)
    with pytest.raises(ValueError, match="does not match the image"):
        overlay(img, hm[:10])
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        overlay(img, hm, alpha=2.0)
    with pytest.raises(ValueError, match="uint8 RGB image"):
        overlay(img.astype(float), hm)


def test_heatmap_figure_and_panel(hm):
    fig = heatmap_figure(hm, title="t")
    assert fig.ndim == 3 and fig.shape[2] == 3 and fig.dtype == np.uint8
    assert fig.shape[0] > 100 and fig.shape[1] > fig.shape[0]  # room for the colour bar
    a = np.zeros((40, 50, 3), np.uint8)
    b = np.full((80, 80, 3), 255, np.uint8)
    p = panel([a, b, colorize(hm)], ["aligned", "normalized", "heat map"])
    assert p.dtype == np.uint8 and p.shape[2] == 3
    assert p.shape[0] > 40  # label bar
    assert p.shape[1] == 50 + 40 + 50 + 2 * 4
    with pytest.raises(ValueError, match="2 images but 1 labels"):
        panel([a, a], ["x"])


def test_write_png_json_csv(tmp_path):
    img = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    p = write_png(tmp_path / "sub" / "x.png", img)
    from PIL import Image

    np.testing.assert_array_equal(np.asarray(Image.open(p)), img)

    data = {
        "a": np.float32(1.5),
        "b": np.int64(3),
        "c": float("nan"),
        "d": np.arange(3),
        "e": tmp_path,
        "f": [np.inf, np.bool_(True)],
    }
    j = json.loads(write_json(tmp_path / "r.json", data).read_text(encoding="utf-8"))
    assert j == {"a": 1.5, "b": 3, "c": None, "d": [0, 1, 2], "e": str(tmp_path), "f": [None, True]}

    rows = [
        {"file": "é.jpg", "score": 1.25, "status": "ok"},
        {"file": "b,c.jpg", "status": "failed", "message": "no face", "score": float("nan")},
    ]
    c = write_csv(tmp_path / "s.csv", rows)
    raw = c.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM for Excel
    with c.open(encoding="utf-8-sig", newline="") as fh:
        got = list(csv.DictReader(fh))
    assert list(got[0]) == ["file", "score", "status", "message"]
    assert got[0]["file"] == "é.jpg" and float(got[0]["score"]) == 1.25
    assert got[1]["file"] == "b,c.jpg" and got[1]["score"] == "" and got[1]["message"] == "no face"
    c2 = write_csv(tmp_path / "t.csv", rows, columns=["status", "file"])
    assert c2.read_text(encoding="utf-8-sig").splitlines()[0] == "status,file"


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.tags, self.text, self.errors = [], [], [], []

    void = {"meta", "img", "br", "link", "input", "hr"}

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in self.void:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unbalanced </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def test_html_report_self_contained_sortable_and_escaped(tmp_path):
    pic = write_png(tmp_path / "panel.png", np.full((600, 1200, 3), 90, np.uint8))
    evil = "<script>alert('x')</script>.jpg"
    rows = [
        {"file": "a.jpg", "status": "ok", "score": 2.5, "message": "", "panel_png": str(pic)},
        {"file": evil, "status": "failed", "score": None, "message": "no face found & <b>"},
        {"file": "c.jpg", "status": "ok", "score": 10.0, "message": ""},
    ]
    out = write_html_report(
        tmp_path / "report.html",
        rows,
        columns=["file", "status", "score", "message"],
        settings={"method": "asymmetry", "roi": "<mouth>"},
    )
    text = out.read_text(encoding="utf-8")
    assert not re.search(r"https?://", text)
    assert "<script>alert" not in text and "&lt;script&gt;alert" in text
    assert "&lt;mouth&gt;" in text
    assert DISCLAIMER in text
    p = _Collector()
    p.feed(text)
    p.close()
    assert p.errors == [] and p.stack == []
    scripts = [t for t in p.tags if t[0] == "script"]
    assert len(scripts) == 1 and "src" not in scripts[0][1]  # inline only
    imgs = [a for t, a in p.tags if t == "img"]
    assert len(imgs) == 1 and imgs[0]["src"].startswith("data:image/png;base64,")
    import base64
    import io

    from PIL import Image

    emb = Image.open(io.BytesIO(base64.b64decode(imgs[0]["src"].split(",", 1)[1])))
    assert emb.height == 384  # downscaled
    headers = [t for t, _ in p.tags if t == "th"]
    assert len(headers) == 5  # 4 columns + panel
    assert 'class="failed"' in text


def test_csv_cells_that_start_a_formula_are_escaped_and_numbers_are_not(tmp_path):
    rows = [
        {
            "file": '=HYPERLINK("x")',
            "a": "+1+cmd",
            "num": "+1",
            "b": "-2+3",
            "c": "@cmd",
            "d": "\tx",
            "e": "\rx",
            "score": "-2.000000",
            "n": -3,
            "f": -0.5,
            "ok": "plain",
        }
    ]
    with write_csv(tmp_path / "s.csv", rows).open(encoding="utf-8-sig", newline="") as fh:
        (got,) = list(csv.DictReader(fh))
    assert got["file"] == '\'=HYPERLINK("x")' and got["a"] == "'+1+cmd" and got["num"] == "+1" and got["b"] == "'-2+3"
    assert got["c"] == "'@cmd" and got["d"] == "'\tx" and got["e"] == "'\rx"
    assert got["score"] == "-2.000000" and got["n"] == "-3" and got["f"] == "-0.5" and got["ok"] == "plain"


def test_thumbnails_are_small_jpegs_that_link_to_the_full_picture(tmp_path):
    from cleftscore.report.pictures import thumbnail_jpeg

    rng = np.random.default_rng(0)
    strip = rng.integers(0, 255, size=(1024, 4 * 1024, 3), dtype=np.uint8)  # noise: the worst case for JPEG
    thumb = thumbnail_jpeg(strip)
    assert thumb[:2] == b"\xff\xd8" and len(thumb) < 100_000
    from PIL import Image

    assert Image.open(io.BytesIO(thumb)).size == (640, 160)
    (tmp_path / "t.jpg").write_bytes(thumb)
    rows = [
        {"file": "a.jpg", "status": "ok", "panel_png": str(tmp_path / "t.jpg"), "panel_link": "photos/a/panel.png"},
        {"file": "b.jpg", "status": "failed", "message": "b.jpg: no face"},
    ]
    text = write_html_report(tmp_path / "r.html", rows, columns=["file", "status"]).read_text(encoding="utf-8")
    p = _Collector()
    p.feed(text)
    links = [a for t, a in p.tags if t == "a"]
    imgs = [a for t, a in p.tags if t == "img"]
    assert links == [{"href": "photos/a/panel.png"}]
    assert len(imgs) == 1 and imgs[0]["src"].startswith("data:image/jpeg;base64,")
    assert len(text) < len(thumb) * 4 // 3 + 20_000


def test_report_imports_no_torch():
    code = "import sys, cleftscore.report.pictures; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_score_pictures_are_arrays_and_a_small_thumbnail():
    from cleftscore.report.pictures import score_pictures

    rng = np.random.default_rng(1)
    face = rng.integers(0, 255, size=(1024, 1024, 3), dtype=np.uint8)
    hm = rng.random((1024, 1024)).astype(np.float32)
    mask = np.zeros((1024, 1024), np.float32)
    mask[600:900, 300:700] = 1
    pics = score_pictures(face, face[:, ::-1].copy(), hm, mask=mask, score=2.5)
    assert set(pics) == {"heatmap.png", "overlay.png", "panel.png", "thumb.jpg"}  # no photo given: no overlay on it
    assert pics["overlay.png"].shape == (1024, 1024, 3) and pics["panel.png"].shape[0] <= 512 + 64
    assert isinstance(pics["thumb.jpg"], bytes) and len(pics["thumb.jpg"]) < 150_000


def test_overlay_in_bands_equals_the_whole_picture_formula() -> None:
    # Taller than several bands of rows, and not a multiple of the band height.
    from matplotlib import colormaps

    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (613, 37, 3), dtype=np.uint8)
    hm = rng.gamma(1.0, 1.0, (613, 37)).astype(np.float32)
    mask = rng.uniform(size=(613, 37)).astype(np.float32)
    got = overlay(img, hm, mask=mask, vmax=2.0, alpha=0.4, outline=False)
    colour = colormaps["inferno"](np.clip(hm / 2.0, 0, 1), bytes=True)[..., :3].astype(np.float32)
    base = img.astype(np.float32)
    w = mask[..., None]
    expected = np.clip(w * (0.6 * base + 0.4 * colour) + (1 - w) * (0.35 * base) + 0.5, 0, 255).astype(np.uint8)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_overlay_pixels_are_the_float32_formula_exactly_and_the_outline_is_skimages() -> None:
    # Weights of exactly 0 and 1 take shortcuts (a table, the ROI's pixels alone): the pixels
    # must still be those of the whole-picture float32 formula, bit for bit.
    from matplotlib import colormaps
    from skimage.segmentation import find_boundaries

    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (300, 41, 3), dtype=np.uint8)
    hm = rng.gamma(1.0, 1.0, (300, 41))
    mask = np.clip(rng.uniform(-1.0, 2.0, size=(300, 41)), 0.0, 1.0).astype(np.float32)
    assert (mask == 0).any() and (mask == 1).any() and ((mask > 0) & (mask < 1)).any()
    got = overlay(img, hm, mask=mask, vmax=2.0, alpha=0.4)
    idx = np.minimum(np.clip(hm / 2.0, 0.0, 1.0).astype(np.float32) * np.float32(256), 255).astype(np.uint16)
    colour = colormaps["inferno"](np.arange(256), bytes=True)[:, :3][idx].astype(np.float32)
    base = img.astype(np.float32)
    w = mask[..., None]
    band = w * ((1.0 - 0.4) * base + 0.4 * colour) + (1.0 - w) * (0.35 * base)
    expected = np.clip(band + 0.5, 0, 255).astype(np.uint8)
    expected[find_boundaries(mask > 0.5, mode="inner")] = 255
    assert np.array_equal(got, expected)
