"""``cleftscore score --workers N``: photos in several processes give the run folder of one process."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cleftscore.cli import app
from cleftscore.run.pipeline import score_photos
from cleftscore.run.settings import PipelineSettings, ProgressHooks

#: CSV columns that measure time, not what was computed.
TIMES = ("time_align_s", "time_normalize_s")


@pytest.fixture()
def photos(tmp_path: Path, local_faces: Path) -> Path:
    """The small sample faces, and a broken file in the middle of them."""
    d = tmp_path / "photos"
    d.mkdir()
    for f in sorted(local_faces.glob("*.jpg")):
        shutil.copy(f, d / f.name)
    (d / "m_broken.jpg").write_bytes(b"not a jpeg")
    return d


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "scores.csv", newline="", encoding="utf-8-sig") as fh:
        return [{k: v for k, v in row.items() if k not in TIMES} for row in csv.DictReader(fh)]


def _records(run: Path) -> dict[str, dict]:
    out = {}
    for f in sorted((run / "photos").glob("*/result.json")):
        rec = json.loads(f.read_text(encoding="utf-8"))
        rec.pop("timings")
        out[f.parent.name] = rec
    return out


def _score(photos: Path, run: Path, workers: int) -> list[str]:
    result = CliRunner().invoke(
        app,
        ["score", str(photos), "--method", "asymmetry", "--size", "256", "--out", str(run), "--workers", str(workers)],
    )
    assert result.exit_code == 0, result.output
    return [line for line in result.output.splitlines() if "failed:" in line]


@pytest.mark.slow
def test_two_workers_write_the_run_folder_of_one(photos: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    failed_one = _score(photos, one, 1)
    failed_two = _score(photos, two, 2)
    rows = _rows(one)
    assert _rows(two) == rows  # same rows, same order, same scores and settings
    assert _records(two) == _records(one)  # every result.json the same but for its timings
    assert sorted(p.name for p in (two / "photos" / "tiny_128px_portrait_uniform").iterdir()) == sorted(
        p.name for p in (one / "photos" / "tiny_128px_portrait_uniform").iterdir()
    )
    # The broken photo is one failed row and one failed line; the others are scored.
    by_id = {r["photo_id"]: r for r in rows}
    assert by_id["m_broken"]["status"] == "failed" and "m_broken.jpg" in by_id["m_broken"]["message"]
    assert sum(r["status"] == "ok" for r in rows) >= 3
    assert len(failed_two) == len(failed_one) == sum(r["status"] == "failed" for r in rows)
    assert any("m_broken.jpg" in line for line in failed_two)
    assert (two / "report.html").is_file() and not list((two / "photos").glob(".new-*"))


@pytest.mark.slow
def test_rescore_with_two_workers_writes_what_one_process_writes(photos: Path, tmp_path: Path) -> None:
    one = tmp_path / "one"
    _score(photos, one, 2)
    two = tmp_path / "two"
    shutil.copytree(one, two)
    args = ["--erosion", "1", "--asymmetry-score", "paper"]
    for run, extra in ((one, []), (two, ["--workers", "2"])):
        result = CliRunner().invoke(app, ["rescore", str(run), *args, *extra])
        assert result.exit_code == 0, result.output
    assert _rows(two) == _rows(one) and _records(two) == _records(one)
    assert {r["erosion"] for r in _rows(two) if r["status"] == "ok"} == {"1"}


@pytest.mark.slow
def test_processes_return_results_and_tell_hooks_in_input_order(photos: Path, tmp_path: Path) -> None:
    seen: list[str] = []
    settings = PipelineSettings(method="asymmetry", size=256)
    results = score_photos([photos], settings, out_dir=tmp_path / "run", workers=2,
                           hooks=ProgressHooks(photo_done=lambda r: seen.append(r.photo_id)))  # fmt: skip
    ids = sorted(p.stem for p in photos.iterdir())
    assert [r.photo_id for r in results] == ids and seen == ids
    assert all(r.heatmap is None for r in results)  # a run folder holds the arrays as pictures
    # Without a run folder the arrays come back from the worker processes.
    (res,) = score_photos([photos / "tiny_128px_portrait_uniform.jpg"] * 2, settings, workers=2)[:1]
    assert res.ok and res.heatmap.shape == (256, 256) and res.aligned.shape == (256, 256, 3)


def test_workers_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers must be >= 1"):
        score_photos([tmp_path / "x.jpg"], PipelineSettings(method="asymmetry"), workers=0)


def test_the_gan_method_says_it_ignores_workers() -> None:
    result = CliRunner().invoke(app, ["score", "--help"], env={"COLUMNS": "300"})
    assert "--workers" in result.output and "GAN method ignores it" in " ".join(result.output.split())


@pytest.mark.slow
def test_ctrl_c_keeps_every_finished_photo_whole(tmp_path: Path, local_faces: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(8):
        shutil.copy(local_faces / "tiny_128px_portrait_uniform.jpg", photos / f"p{i}.jpg")
    run = tmp_path / "run"
    cmd = [sys.executable, "-c", "from cleftscore.cli import main; main()", "score", str(photos), "--method",
           "asymmetry", "--size", "256", "--out", str(run), "--workers", "2"]  # fmt: skip
    # Ctrl-C in a terminal interrupts the whole process group: the parent and its workers.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        while not list((run / "photos").glob("*/result.json")) and proc.poll() is None:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        output = proc.communicate(timeout=300)[0].decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    folders = sorted(p for p in (run / "photos").iterdir())
    if len(folders) < 8:  # the interrupt arrived while photos were left
        assert proc.returncode == 130 and "Interrupted" in output, output
    assert "Traceback" not in output, output
    assert folders and not [p for p in folders if p.name.startswith(".")]  # no folder half-written
    for folder in folders:
        rec = json.loads((folder / "result.json").read_text(encoding="utf-8"))
        assert rec["status"] == "ok" and sorted(rec["pictures"]) == sorted(
            p.name for p in folder.iterdir() if p.name != "result.json"
        )
    rows = _rows(run)
    assert [r["photo_id"] for r in rows if r["status"] == "ok"] == [p.name for p in folders]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_workers_end_when_the_parent_is_killed(tmp_path: Path, local_faces: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(8):
        shutil.copy(local_faces / "tiny_128px_portrait_uniform.jpg", photos / f"p{i}.jpg")
    run = tmp_path / "run"
    cmd = [sys.executable, "-c", "from cleftscore.cli import main; main()", "score", str(photos), "--method",
           "asymmetry", "--size", "256", "--out", str(run), "--workers", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def children() -> set[int]:
        found = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == proc.pid and "spawn_main" in (stat.parent / "cmdline").read_bytes().decode(
                errors="replace"
            ):
                found.add(int(stat.parent.name))
        return found

    try:
        deadline = time.monotonic() + 120
        while len(workers := children()) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(workers) == 2, "the two workers never started"
        proc.kill()  # SIGKILL: no chance to shut the pool down
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while (alive := {w for w in workers if Path(f"/proc/{w}").exists()}) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive, f"workers still running after their parent was killed: {alive}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for w in children():
            os.kill(w, signal.SIGKILL)


def test_a_photo_lost_with_its_process_fails_alone_with_a_record(tmp_path: Path) -> None:
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from cleftscore.run.folder import read_record
    from cleftscore.run.inputs import InputPhoto
    from cleftscore.run.parallel import _outcome
    from cleftscore.run.photo import RunContext

    ctx = RunContext(PipelineSettings(method="asymmetry"), size=256, environment={}, out=tmp_path, keep=False)
    lost: Future = Future()
    lost.set_exception(BrokenProcessPool("a child process terminated abruptly"))
    res = _outcome(lost, InputPhoto(path=Path("/photos/p1.jpg"), photo_id="p1"), ctx)
    assert res.status == "failed" and res.message.startswith("/photos/p1.jpg: ")
    assert "worker process" in res.message and "terminated abruptly" in res.message
    assert read_record(tmp_path, "p1").message == res.message
