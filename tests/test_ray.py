"""``cleftscore score --ray``: the same run folder as one process, a killed worker costs nothing.

The Ray run is slow (a local Ray instance and two CPU workers, each loading PyTorch); the checks
that Ray stays out of ordinary runs and that wrong options are one line are quick and need no Ray.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cleftscore.cli import app
from cleftscore.distributed import RaySettings
from cleftscore.normalize.gan import GanSettings
from cleftscore.run.pipeline import score_photos
from cleftscore.run.settings import PipelineSettings, ProgressHooks

PHOTO_FILES = ["aligned.png", "inverted.png", "normalized.png", "heatmap.png", "overlay.png", "overlay_original.png", "panel.png",
               "thumb.jpg", "result.json"]  # fmt: skip


@pytest.fixture()
def dozen_photos(tmp_path: Path, local_faces: Path) -> Path:
    """The sample photos three times each under other names: 12 photos."""
    d = tmp_path / "photos"
    d.mkdir()
    for copy in range(3):
        for src in sorted(local_faces.glob("*.jpg")):
            shutil.copy(src, d / f"{src.stem}_{copy}{src.suffix}")
    assert len(list(d.iterdir())) == 12
    return d


#: How close a Ray run's score must come to the single process's. A photo can share its batch of 2
#: with another partner on a worker (photos reach the workers in the order they finish aligning),
#: and a CPU convolution rounds a sample differently in another batch; 60 steps carry that to
#: 1.5e-4 on one photo. With batch 1 the two runs agree to 1e-6 (checked when this was set).
_SAME = 1e-3


def _gan(generator: Path) -> PipelineSettings:
    return PipelineSettings(
        method="gan",
        gan=GanSettings(generator=str(generator), loss="mse", device="cpu", steps=60, adapt_steps=3, batch=2),
    )


def test_ray_is_loaded_neither_by_import_nor_by_a_run_without_it(tmp_path: Path, local_faces: Path) -> None:
    photo = local_faces / "tiny_128px_portrait_uniform.jpg"
    code = (
        "import sys, cleftscore, cleftscore.cli, cleftscore.distributed\n"
        "from cleftscore.run.pipeline import score_photos; from cleftscore.run.settings import PipelineSettings\n"
        f"(r,) = score_photos([{str(photo)!r}], PipelineSettings(method='asymmetry', size=64), out_dir={str(tmp_path / 'run')!r})\n"
        "assert r.ok, r.message\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_ray_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="workers must be >= 1"):
        RaySettings(workers=0)
    with pytest.raises(ValueError, match="address must be"):
        RaySettings(address=" ")
    with pytest.raises(ValueError, match="max_retries"):
        RaySettings(max_retries=-1)


def test_cli_ray_with_the_asymmetry_method_is_one_line(tmp_path: Path, local_faces: Path) -> None:
    args = [
        "score",
        str(local_faces / "tiny_128px_portrait_uniform.jpg"),
        "--method",
        "asymmetry",
        "--ray",
        "auto",
        "--out",
        str(tmp_path / "run"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "leave --ray out" in result.output and "Traceback" not in result.output


def test_cli_ray_without_the_extra_names_it(
    tmp_path: Path, local_faces: Path, tiny_generator_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: importing it raises ImportError
    args = ["score", str(local_faces / "tiny_128px_portrait_uniform.jpg"), "--method", "gan", "--generator", str(tiny_generator_file),
            "--loss", "mse", "--ray", "auto", "--out", str(tmp_path / "run")]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "needs the optional Ray extra" in result.output and "pip install -c constraints.txt ray" in result.output
    assert "Traceback" not in result.output


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _scores(results) -> dict[str, float]:
    assert all(r.ok for r in results), [r.message for r in results if not r.ok]
    return {r.photo_id: r.score for r in results}


def _assert_complete(run: Path, ids: list[str]) -> None:
    for pid in ids:
        for name in PHOTO_FILES:
            assert (run / "photos" / pid / name).is_file(), (pid, name)
    assert (run / "scores.csv").is_file() and (run / "report.html").is_file()
    rows = (run / "scores.csv").read_text(encoding="utf-8-sig").splitlines()
    assert len(rows) == 1 + len(ids)


@pytest.mark.slow
def test_ray_run_equals_one_process_and_survives_a_killed_worker(
    tmp_path: Path, dozen_photos: Path, tiny_generator_file: Path
) -> None:
    ray = pytest.importorskip("ray", reason='the Ray extra is not installed (pip install "cleftscore[ray]")')
    from cleftscore.distributed import ray_pool
    from cleftscore.distributed.actors import ray_session

    settings = _gan(tiny_generator_file)
    with _torch_threads(1):  # as each 1-CPU Ray worker; two threads on a busy 2-core machine are many times slower
        single = score_photos(
            [dozen_photos], settings, out_dir=tmp_path / "single", cache_dir=tmp_path / "cache-single"
        )
    want = _scores(single)
    ids = list(want)
    assert len(ids) == 12

    with ray_session(RaySettings(address="auto")):
        from ray._common.usage import usage_lib

        assert not usage_lib.usage_stats_enabled()
        assert ray.cluster_resources()["CPU"] == 2  # this 2-core machine, 2 CPU workers

        # 1. A plain Ray run: the same scores and every file of the run folder.
        with ray_pool(
            settings.gan, seed=settings.seed, cache_dir=tmp_path / "cache-ray", ray=RaySettings(workers=2)
        ) as pool:
            assert len(pool.info()) == 2 and all(w.device == "cpu" for w in pool.info())
            got = score_photos([dozen_photos], settings, out_dir=tmp_path / "ray", cache_dir=tmp_path / "cache-ray",
                               normalizer_factory=pool.normalizer)  # fmt: skip
        for pid, score in _scores(got).items():
            assert score == pytest.approx(want[pid], abs=_SAME), pid
        _assert_complete(tmp_path / "ray", ids)
        rec = json.loads((tmp_path / "ray" / "photos" / ids[0] / "result.json").read_text())
        ref = json.loads((tmp_path / "single" / "photos" / ids[0] / "result.json").read_text())
        assert rec["settings"] == ref["settings"] and rec["geometry"] == ref["geometry"]
        assert rec["environment"]["generator_sha256"] == ref["environment"]["generator_sha256"]

        # 2. The process of a worker is killed while it holds a batch: the batch runs again and the run is complete.
        messages: list[str] = []
        killed: list[int] = []
        with ray_pool(
            settings.gan, seed=settings.seed, cache_dir=tmp_path / "cache-kill", ray=RaySettings(workers=2)
        ) as pool:

            def kill_a_busy_worker(n_photos: int, total_steps: int) -> None:
                # The worker that got the latest batch: it was sent a moment ago, so it is still at it.
                victim = max(pool.info(), key=lambda w: max(w.batches, default=-1))
                assert victim.batches, "no batch under way when the GAN started"
                os.kill(victim.pid, signal.SIGKILL)
                killed.append(victim.pid)

            hooks = ProgressHooks(gan_start=kill_a_busy_worker, message=messages.append)
            got = score_photos([dozen_photos], settings, out_dir=tmp_path / "killed", cache_dir=tmp_path / "cache-kill", hooks=hooks,
                               normalizer_factory=pool.normalizer)  # fmt: skip
        assert len(killed) == 1
        assert any("a Ray worker died" in m and "running the batch again" in m for m in messages), messages
        for pid, score in _scores(got).items():
            assert score == pytest.approx(want[pid], abs=_SAME), pid
        _assert_complete(tmp_path / "killed", ids)

        # 3. The command line: --ray joins the Ray of this process (it would start one otherwise).
        gs = settings.gan
        args = ["score", str(dozen_photos), "--method", "gan", "--generator", gs.generator, "--loss", gs.loss, "--device", gs.device,
                "--steps", str(gs.steps), "--adapt-steps", str(gs.adapt_steps), "--batch", str(gs.batch),
                "--ray", "auto", "--ray-workers", "2", "--out", str(tmp_path / "cli"), "--cache-dir", str(tmp_path / "cache-cli")]  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "2 Ray CPU workers" in result.output and "12 of 12 photos scored" in result.output
        _assert_complete(tmp_path / "cli", ids)
        for pid in ids:
            rec = json.loads((tmp_path / "cli" / "photos" / pid / "result.json").read_text())
            assert rec["score"] == pytest.approx(want[pid], abs=_SAME), pid
    assert not ray.is_initialized()
