"""Tests of the cache folders and the file hash shared by weights, normalization and the study."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cleftscore import paths


def test_both_caches_live_under_the_environment_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path))
    assert paths.cache_root() == tmp_path
    assert paths.weights_cache_dir() == tmp_path / "weights"
    assert paths.normalization_cache_dir() == tmp_path / "normalized"
    assert not (tmp_path / "weights").exists()  # looking a folder up creates nothing


def test_a_tilde_in_the_environment_root_is_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(paths.CACHE_ENV, "~/caches")
    assert paths.weights_cache_dir() == tmp_path / "caches" / "weights"
    assert paths.normalization_cache_dir() == tmp_path / "caches" / "normalized"


@pytest.mark.parametrize("value", [None, ""])
def test_without_the_variable_the_user_cache_folder_is_the_root(monkeypatch: pytest.MonkeyPatch, value) -> None:
    from platformdirs import user_cache_dir

    if value is None:
        monkeypatch.delenv(paths.CACHE_ENV, raising=False)
    else:
        monkeypatch.setenv(paths.CACHE_ENV, value)
    root = Path(user_cache_dir("cleftscore"))
    assert paths.cache_root() == root
    # The folders earlier versions used: existing caches stay valid.
    assert (paths.weights_cache_dir(), paths.normalization_cache_dir()) == (root / "weights", root / "normalized")


def test_the_normalizer_and_the_weights_registry_use_these_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_generator_file: Path
) -> None:
    from cleftscore import weights
    from cleftscore.normalize.gan import GanNormalizer, GanSettings

    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path))
    assert weights.weights_path("ffhq") == tmp_path / "weights"
    gan = GanNormalizer(GanSettings(generator=str(tiny_generator_file), loss="mse", device="cpu"))
    assert gan.cache_dir == tmp_path / "normalized"
    assert gan.generator_sha256 == hashlib.sha256(tiny_generator_file.read_bytes()).hexdigest()


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 7, 3 << 20])
def test_sha256_file_equals_the_hash_of_the_whole_file(tmp_path: Path, size: int) -> None:
    # Sizes around the 1 MiB read block: a block boundary must neither drop nor repeat bytes.
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert paths.sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert paths.sha256_file(str(path)) == paths.sha256_file(path)


def test_sha256_file_of_a_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        paths.sha256_file(tmp_path / "missing")
