"""The ``cleftscore bench`` verbs that run a generator: several seconds each on a busy 2-core CPU."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cleftscore.cli import app

pytestmark = pytest.mark.slow


def test_generator_cpu_times_each_architecture(tmp_path) -> None:
    out = tmp_path / "g.json"
    res = CliRunner().invoke(app, ["bench", "generator-cpu", "--config", "t64", "--reps", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["batch"] == 1 and rep["threads"] >= 1
    (name, r), *_ = rep["configs"].items()
    assert list(rep["configs"]) == ["t64"] and name == "t64"
    assert r["resolution"] == 64 and r["reps"] == 2 and r["parameters"] > 0
    assert len(r["forward_ms"]) == len(r["forward_backward_ms"]) == 2
    assert r["forward_ms_median"] > 0 and r["forward_backward_ms_median"] > 0
    assert "t64: forward" in res.output
    bad = CliRunner().invoke(app, ["bench", "generator-cpu", "--config", "nope"])
    assert bad.exit_code != 0 and "nope" in bad.output


def test_dynamics_reports_the_reappearance_indices(tmp_path, tiny_generator_file) -> None:
    out = tmp_path / "d.json"
    args = ["bench", "dynamics", "--generator", str(tiny_generator_file), "--k", "1", "--steps", "3",
            "--adapt-steps", "2", "--dynamics-steps", "4", "--device", "cpu", "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["benchmark"] == "dynamics-planted" and rep["generator"] == tiny_generator_file.name
    assert rep["settings"]["dynamics_steps"] == 4 and rep["settings"]["planted"]["k"] == 1
    assert rep["images"] == 6 and len(rep["severity"]) == 6
    assert all(len(c) == 5 for c in rep["curves"])  # the start and each of the 4 steps
    assert str(rep["best_fraction"]) in rep["by_fraction"]
    assert "energy_at_step_2" in rep and "best fraction" in res.output


def test_dynamics_refuses_fewer_recorded_steps_than_the_normalized_image(tmp_path, tiny_generator_file) -> None:
    args = ["bench", "dynamics", "--generator", str(tiny_generator_file), "--adapt-steps", "5", "--dynamics-steps", "4"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code != 0 and "dynamics_steps" in res.output


def test_ray_speed_compares_one_process_and_ray(tmp_path, local_faces, tiny_generator_file) -> None:
    pytest.importorskip("ray", reason="needs the ray extra")
    out = tmp_path / "r.json"
    args = ["bench", "ray-speed", "--faces", str(local_faces), "--generator", str(tiny_generator_file),
            "--photos", "2", "--steps", "2", "--adapt-steps", "1", "--batch", "1", "--rounds", "1",
            "--workers", "1", "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["benchmark"] == "ray_speed" and rep["settings"]["photos"] == 2 and rep["settings"]["rounds"] == 1
    for key in ("single_process_s", "single_process_1_thread_s", "ray_run_s", "ray_start_s"):
        assert len(rep[key]) == 1
    assert rep["photos_per_min_ray"] > 0 and rep["ratio_ray_over_single"] > 0
    assert rep["photos_ok_in_every_run"] + len(rep["photos_failed_in_some_run"]) == 2
