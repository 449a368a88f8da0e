"""Shared test fixtures: where the golden tensors and sample photos are.

The small golden sets (t32, t64) and a few permissively licensed photos are copied into
``tests/data`` so the suite runs on a fresh clone. The large sets (g64, g256) and the full photo
collection live in the project's ``shared`` folder beside the checkout; tests that need them skip
with a reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
DATA_DIR = TESTS_DIR / "data"
LOCAL_GOLDEN = DATA_DIR / "golden"
LOCAL_FACES = DATA_DIR / "faces"
_SHARED = Path(os.environ.get("CLEFTSCORE_SHARED", TESTS_DIR.parent.parent / "shared"))
SHARED_GOLDEN = _SHARED / "golden"
SHARED_FACES = _SHARED / "faces"


def golden_dir_for(name: str) -> Path:
    """Folder holding the golden files of config ``name`` (t32/t64 local, g64/g256 shared)."""
    if (LOCAL_GOLDEN / f"{name}_state_dict.npz").exists():
        return LOCAL_GOLDEN
    if (SHARED_GOLDEN / f"{name}_state_dict.npz").exists():
        return SHARED_GOLDEN
    pytest.skip(f"golden set {name!r} needs the shared folder ({SHARED_GOLDEN}), absent here")


@pytest.fixture(scope="session")
def local_faces() -> Path:
    """Small sample photos shipped with the tests."""
    return LOCAL_FACES


@pytest.fixture(scope="session")
def shared_faces() -> Path:
    """The full sample photo collection in the shared folder (skips when absent)."""
    if not SHARED_FACES.is_dir():
        pytest.skip(f"sample photos need the shared folder ({SHARED_FACES}), absent here")
    return SHARED_FACES


@pytest.fixture(scope="session")
def example_photo() -> Path:
    """The public-domain astronaut portrait that ships with the package."""
    return TESTS_DIR.parent / "src" / "cleftscore" / "data" / "astronaut.png"
