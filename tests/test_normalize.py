"""Tests of the normalizer interface: the Normalization record, the mirror normalizer, the GAN cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cleftscore.normalize import Measure, Normalization, make_normalizer
from cleftscore.normalize.cache import CacheEntry, NormalizationCache
from cleftscore.normalize.mirror import MirrorNormalizer


def _img(seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def test_a_normalization_has_an_image_or_an_error() -> None:
    assert Normalization(image=_img(0)).ok
    assert not Normalization(image=None, error="a.jpg: turned away").ok
    with pytest.raises(ValueError, match="either an image or an error"):
        Normalization(image=None)
    with pytest.raises(ValueError, match="either an image or an error"):
        Normalization(image=_img(0), error="both")
    with pytest.raises(ValueError, match="uint8"):
        Normalization(image=_img(0).astype(np.float32))
    with pytest.raises(ValueError, match="inverted"):
        Normalization(image=_img(0), inverted=_img(1, size=16))
    with pytest.raises(ValueError, match="stage"):
        Measure(1.0, "x", stage="later")


def test_make_normalizer_names_the_methods() -> None:
    assert isinstance(make_normalizer("asymmetry"), MirrorNormalizer)
    with pytest.raises(ValueError, match="method must be one of"):
        make_normalizer("mirror")


def test_mirror_normalizer_refuses_a_face_in_profile_and_scores_a_frontal_one(shared_faces: Path) -> None:
    from cleftscore.face.prepare import prepare_photo

    faces = [prepare_photo(shared_faces / n, size=256).aligned
             for n in ("elderly_group_7faces_east_asian.jpg", "glasses_south_asian_male_blue_bg.jpg")]  # fmt: skip
    profile, frontal = MirrorNormalizer().normalize(faces)
    assert not profile.ok and "turned too far" in profile.error
    assert frontal.ok and frontal.image.shape == (256, 256, 3)
    assert 0 < frontal.measures["landmark_asymmetry_px"].value < 0.1 * 256


def test_cache_entries_are_checked_and_a_damaged_one_reported_once(tmp_path: Path) -> None:
    told: list[str] = []
    cache = NormalizationCache(tmp_path, message=told.append)
    entry = CacheEntry(
        normalized=_img(1), inverted=_img(2), snapshots={5: _img(3)}, w=np.zeros(4, np.float32), meta={"batch_size": 1}
    )
    cache.store("abc123", entry)
    got = cache.load("abc123")
    assert got is not None and told == []
    np.testing.assert_array_equal(got.normalized, entry.normalized)
    np.testing.assert_array_equal(got.snapshots[5], entry.snapshots[5])
    assert got.meta == {"batch_size": 1}
    # Another valid image put in its place: refused, and said once however often it is asked.
    Image.fromarray(_img(9)).save(cache.path("abc123") / "normalized.png")
    assert cache.load("abc123") is None and cache.load("abc123") is None
    assert len(told) == 1 and "checksum" in told[0] and str(cache.path("abc123")) in told[0]
    # Recomputed and stored again: fine, silently.
    cache.store("abc123", entry)
    assert cache.load("abc123") is not None and len(told) == 1
    # Wrong size, missing picture, and an entry of an older cleftscore without checksums.
    Image.fromarray(_img(1, size=48)).save(cache.path("abc123") / "inverted.png")
    assert cache.load("abc123") is None and "(48, 48, 3)" in told[-1]
    cache.store("abc123", entry)
    (cache.path("abc123") / "snapshot_00005.png").unlink()
    assert cache.load("abc123") is None and "snapshot_00005.png" in told[-1]
    cache.store("abc123", entry)
    meta = cache.path("abc123") / "meta.json"
    meta.write_text(json.dumps({"batch_size": 1}))
    assert cache.load("abc123") is None and "without checksums" in told[-1]
    assert cache.load("nothing-here") is None  # no entry is not damage
    assert len(told) == 4
