"""Test helpers of the survey tests: a small study with EXIF-laden photos and score rows."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
from PIL import Image

from cleftscore.study.db import Study, open_study
from cleftscore.study.models import Photo, Score
from cleftscore.study.records import add_patient, add_visit
from cleftscore.study.store import store_photo

SECRET_NAME = "P001_Jane_Doe_secret"


def exif_jpeg(path: Path, seed: int) -> Path:
    """A small photo carrying EXIF tags a rater must never receive (artist, description, software)."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, size=(96, 80, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x013B] = "Jane Doe photographer"  # Artist
    exif[0x010E] = f"{SECRET_NAME} pre-op"  # ImageDescription
    exif[0x0131] = "SecretCam 1.0"  # Software
    img.save(path, format="JPEG", exif=exif.tobytes())
    return path


def add_scored_photo(study: Study, visit_id: int, path: Path, score: float, *, method: str = "asymmetry") -> int:
    """Store ``path`` into a visit with one score row (settings as the pipeline writes them)."""
    stored = store_photo(study.files, path)
    settings = {"method": method, "score": {"roi": "mouth"}}
    with study.transaction() as s:
        photo = Photo(visit_id=visit_id, sha256=stored.sha256, original_name=path.name, stored_path=stored.stored_path,
                      stored_sha256=stored.stored_sha256, width=stored.width, height=stored.height)  # fmt: skip
        s.add(photo)
        s.flush()
        s.add(Score(photo_id=photo.id, method=method, settings_key="k" * 64, settings_json=json.dumps(settings),
                    score=score, pictures_json="{}", normalization_json="{}", environment_json="{}",
                    cleftscore_version="test", measures_json=json.dumps({"landmark_asymmetry_px": {"value": -score}})))  # fmt: skip
        return photo.id


def make_study(tmp_path: Path) -> Study:
    """Two patients, pre-op and post-op visits, six photos with EXIF and telling file names."""
    st = open_study(tmp_path / "s.sqlite")
    for code in ("P001", "P002"):
        add_patient(st, code)
        pre = add_visit(st, code, date=dt.date(2026, 1, 5), phase="pre-op").id
        post = add_visit(st, code, date=dt.date(2026, 6, 5), phase="post-op").id
        for k, visit in enumerate((pre, pre, post)):
            seed = len(code) * 10 + k + (0 if code == "P001" else 100)
            name = f"{SECRET_NAME}_{code}_{k}.jpg"
            add_scored_photo(st, visit, exif_jpeg(tmp_path / name, seed), score=float(seed))
    return st
