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


#: Tests that take well over a few seconds on a 2-core CPU (measured 2026-12-01), marked ``slow``
#: here so the README's ``pytest`` stays under 4 minutes; ``pytest -m slow`` (``.ci/run``) runs
#: them. A test's owner may move the marker into its file and drop the line here.
SLOW_TESTS = (
    "tests/test_speed.py::test_report_fields_and_sane_values",
    "tests/test_speed.py::test_cli_speed_writes_json",
    "tests/test_speed.py::test_compile_and_channels_last_rows_and_summary",
    "tests/test_speed.py::test_profile_lists_where_a_step_spends_its_time",
    "tests/test_invert.py::test_compiled_step_with_the_real_compiler",
    "tests/test_invert.py::test_compiled_step_gives_the_same_projection",
    "tests/test_invert.py::test_cpu_runs_are_bit_identical",
    "tests/test_invert.py::test_per_image_generators_make_results_batch_independent",
    "tests/test_fused.py::test_triton_kernels_agree_with_the_reference_in_the_interpreter",
    "tests/test_invert.py::test_batched_equals_separate_runs",
    "tests/test_adapt.py::test_caller_generator_never_changes",
    "tests/test_dynamics.py::test_batch_curves_equal_one_by_one",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.split("[")[0] in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture(scope="session")
def tiny_generator_file() -> Path:
    """The one small generator of the tests: the golden t32 set (32 px, official key names).

    Ships in ``tests/data/golden`` (see its README), so it works on a fresh clone; tests that
    need a generator use this fixture or :func:`tiny_generator` instead of their own copies.
    """
    return golden_dir_for("t32") / "t32_state_dict.npz"


@pytest.fixture(scope="session")
def tiny_generator(tiny_generator_file: Path):
    """:func:`tiny_generator_file` loaded on the CPU (session-wide; do not train it in place)."""
    from cleftscore.gan import load_generator

    return load_generator(tiny_generator_file).eval()
