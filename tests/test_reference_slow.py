"""`cleftscore reference build` on real photos, then `score --reference` places against it (slow: scores photos)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cleftscore.cli import app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def normals(tmp_path_factory: pytest.TempPathFactory, example_photo: Path) -> Path:
    """Twelve framings of the example portrait (crops and scales): enough photos for a reference."""
    d = tmp_path_factory.mktemp("normals")
    im = Image.open(example_photo).convert("RGB")
    w, h = im.size
    rng = np.random.default_rng(0)
    for k in range(12):
        dx, dy = (int(v) for v in rng.integers(0, w // 10, 2))
        crop = im.crop((dx, dy, w - int(rng.integers(0, w // 10)), h - int(rng.integers(0, h // 10))))
        crop.resize((int(crop.width * (0.7 + 0.05 * k)), int(crop.height * (0.7 + 0.05 * k)))).save(d / f"n{k:02d}.png")
    return d


def test_build_a_reference_and_score_against_it(normals: Path, example_photo: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    ref = tmp_path / "clinic.json"
    r = runner.invoke(app, ["reference", "build", str(normals), "--method", "asymmetry", "--size", "256",
                            "--name", "clinic adults", "--out", str(ref)])  # fmt: skip
    assert r.exit_code == 0, r.output
    d = json.loads(ref.read_text())
    assert d["n"] == 12 and d["name"] == "clinic adults" and d["method"] == "asymmetry" and len(d["quantiles"]) == 101
    assert np.asarray(d["heatmap_spread"]).shape == (64, 64)
    assert not any(isinstance(v, str) and v.startswith("data:") for v in d.values())  # statistics only

    out = tmp_path / "run"
    r = runner.invoke(app, ["score", str(example_photo), "--method", "asymmetry", "--size", "256",
                            "--reference", str(ref), "--out", str(out), "--workers", "1"])  # fmt: skip
    assert r.exit_code == 0, r.output
    with open(out / "scores.csv", encoding="utf-8-sig", newline="") as fh:
        row = next(csv.DictReader(fh))
    assert 0.0 <= float(row["reference_percentile"]) <= 100.0 and row["reference_z"]
    record = json.loads(next((out / "photos").glob("*/result.json")).read_text())
    assert "clinic adults" in record["measures"]["reference_percentile"]["definition"]
    heat = np.load(next((out / "photos").glob("*/heatmap.npy")))
    assert heat.dtype == np.float32 and heat.shape == (256, 256) and heat.min() >= 0 and heat[0, 0] == 0
    assert "reading" in (out / "report.html").read_text(encoding="utf-8")

    # A reference of another method is refused before anything is scored.
    gan_ref = tmp_path / "gan.json"
    gan_ref.write_text(json.dumps({**d, "method": "gan", "score": "paper"}))
    r = runner.invoke(app, ["score", str(example_photo), "--method", "asymmetry", "--reference", str(gan_ref),
                            "--out", str(tmp_path / "run2")])  # fmt: skip
    assert r.exit_code == 1 and "built for the gan method" in r.output and not (tmp_path / "run2").exists()

    # rescore keeps the run's own reference, and --reference places every photo again against another one.
    r = runner.invoke(app, ["rescore", str(out), "--erosion", "2", "--workers", "1"])
    assert r.exit_code == 0, r.output
    record = json.loads(next((out / "photos").glob("*/result.json")).read_text())
    assert "clinic adults" in record["measures"]["reference_percentile"]["definition"]
    shipped = tmp_path / "shipped.json"
    shipped.write_text(json.dumps({**d, "name": "second clinic", "quantiles": [q - 1.0 for q in d["quantiles"]]}))
    r = runner.invoke(app, ["rescore", str(out), "--erosion", "2", "--reference", str(shipped), "--workers", "1"])
    assert r.exit_code == 0, r.output
    again = json.loads(next((out / "photos").glob("*/result.json")).read_text())
    assert "second clinic" in again["measures"]["reference_percentile"]["definition"]
    assert again["score"] == pytest.approx(record["score"])  # the score itself is the same
    r = runner.invoke(app, ["rescore", str(out), "--reference", str(gan_ref)])
    assert r.exit_code == 1 and "built for the gan method" in r.output
