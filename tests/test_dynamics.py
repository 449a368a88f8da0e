"""Tests of the adaptation-dynamics curve and indices (cleftscore.gan.dynamics)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from cleftscore.gan.adapt import AdaptSettings, adapt
from cleftscore.gan.dynamics import curve_indices, dynamics_adapt_settings, roi_residual_energy
from cleftscore.heatmap import erode, pse_map
from conftest import golden_dir_for


@pytest.fixture(scope="module")
def G():
    from cleftscore.gan.checkpoints import load_generator

    return load_generator(golden_dir_for("t32") / "t32_state_dict.npz")


@pytest.fixture(scope="module")
def case(G):
    g = torch.Generator().manual_seed(5)
    n = 3
    w = G.mapping(torch.randn((n, G.z_dim), generator=g))[:, 0].detach()
    noises = [torch.randn((n, 1, r, r), generator=g) for _, r in G.synthesis.noise_layers()]
    targets = torch.rand((n, 3, 32, 32), generator=g) * 2 - 1
    roi = torch.zeros((n, 32, 32))
    roi[:, 16:28, 8:24] = 1.0
    roi[1, 4:8, 4:8] = 0.5  # a soft part in one mask
    return w, noises, targets, roi


MSE = AdaptSettings(steps=6, lpips_weight=0.0, lr=3e-3)


def test_energy_matches_the_numpy_difference_map() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.rand((2, 3, 24, 24), generator=g) * 2 - 1
    b = torch.rand((2, 3, 24, 24), generator=g) * 2 - 1
    roi = (torch.rand((2, 24, 24), generator=g) > 0.5).float()
    got = roi_residual_energy(a, b, roi).numpy()
    for i in range(2):
        a01, b01 = ((t[i].permute(1, 2, 0).double().numpy() + 1) / 2 for t in (a, b))
        d = erode(pse_map(a01, b01, colorspace="ycbcr"), size=3).sum(axis=-1)
        m = roi[i].numpy()
        want = float((d * m).sum() / m.sum())
        assert got[i] == pytest.approx(want, rel=1e-4)


def test_curve_ends_are_the_start_and_final_images(G, case) -> None:
    w, noises, targets, roi = case
    res = adapt(G, w, noises, targets, settings=MSE, loss_fn=None, roi=roi)
    assert res.roi_curve.shape == (3, MSE.steps + 1)
    with torch.no_grad():
        start = G.synthesis(w.unsqueeze(1).expand(-1, G.num_ws, -1), noise_mode="const", noise=noises, force_fp32=True)
    np.testing.assert_allclose(res.roi_curve[:, 0], roi_residual_energy(start, targets, roi).numpy(), rtol=1e-5)
    np.testing.assert_allclose(res.roi_curve[:, -1], roi_residual_energy(res.images, targets, roi).numpy(), rtol=1e-5)
    # adaptation fits the photo: the residual falls
    assert np.all(res.roi_curve[:, -1] < res.roi_curve[:, 0])
    # without roi, nothing is recorded
    assert adapt(G, w, noises, targets, settings=MSE, loss_fn=None).roi_curve is None


@pytest.mark.parametrize("engine", ["vmap", "loop"])
def test_batch_curves_equal_one_by_one(G, case, engine: str) -> None:
    w, noises, targets, roi = case
    s = dataclasses.replace(MSE, engine=engine)
    batch = adapt(G, w, noises, targets, settings=s, loss_fn=None, roi=roi).roi_curve
    for i in range(3):
        one = adapt(G, w[i : i + 1], [t[i : i + 1] for t in noises], targets[i : i + 1], settings=s, loss_fn=None,
                    roi=roi[i : i + 1]).roi_curve  # fmt: skip
        np.testing.assert_allclose(batch[i], one[0], rtol=2e-4, atol=1e-6)


def test_longer_run_keeps_the_normalized_image(G, case) -> None:
    # the normalized face is the step-`steps` image whether or not the run goes on for the curve
    w, noises, targets, roi = case
    plain = adapt(G, w, noises, targets, settings=MSE, loss_fn=None)
    long = dynamics_adapt_settings(MSE, 15, strip_steps=(0, 3, 10, 15, 99))
    assert long.steps == 15 and long.snapshot_steps == (0, 3, 6, 10, 15)
    res = adapt(G, w, noises, targets, settings=long, loss_fn=None, roi=roi)
    torch.testing.assert_close(res.snapshots[MSE.steps], plain.images, rtol=0, atol=1e-5)
    assert res.roi_curve.shape == (3, 16)
    with pytest.raises(ValueError, match="must be >="):
        dynamics_adapt_settings(MSE, 3)


def test_roi_must_select_pixels(G, case) -> None:
    w, noises, targets, roi = case
    with pytest.raises(ValueError, match="at least one selected pixel"):
        adapt(G, w, noises, targets, settings=MSE, loss_fn=None, roi=torch.zeros_like(roi))


def test_curve_indices() -> None:
    curve = np.array([10.0, 8.0, 6.0, 4.0, 4.0])
    ix = curve_indices(curve, fraction=0.5)
    assert ix.reappearance_step == 3 and ix.reached
    # trapezoid of [1, .8, .6, .4, .4] over 4 steps
    assert ix.curve_auc == pytest.approx((0.5 * 1 + 0.8 + 0.6 + 0.4 + 0.5 * 0.4) / 4)
    assert ix.residual_integral == pytest.approx(32 / 5) and ix.level_step is None
    assert curve_indices(curve, level=5.0).level_step == 3 and curve_indices(curve, level=1.0).level_step == 4
    never = curve_indices(np.array([10.0, 9.0, 9.5]), fraction=0.5)
    assert never.reappearance_step == 2 and not never.reached
    # a slower fall gives a later step and a larger area
    slow = curve_indices(np.array([10.0, 9.0, 8.0, 7.0, 4.0]), fraction=0.5)
    assert slow.reappearance_step > ix.reappearance_step and slow.curve_auc > ix.curve_auc
    for bad in (np.array([1.0]), np.array([1.0, np.nan]), np.array([1.0, -1.0])):
        with pytest.raises(ValueError):
            curve_indices(bad)
    with pytest.raises(ValueError, match="fraction"):
        curve_indices(curve, fraction=1.0)


def test_figures_render() -> None:
    from cleftscore.report.dynamics import curve_figure, reappearance_strip

    img = curve_figure(np.linspace(10, 2, 31), fraction=0.5, reappearance_step=19, reached=True, adapt_steps=5)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.std() > 0
    faces = {s: np.full((32, 32, 3), 40 * i, np.uint8) for i, s in enumerate((0, 50, 100))}
    strip = reappearance_strip(faces, height=64)
    assert strip.shape == (64 + 18, 3 * 64 + 2 * 4, 3)
    # each tile shows its own face, in step order
    assert strip[40, 10, 0] == 0 and strip[40, 68 + 10, 0] == 40 and strip[40, 136 + 10, 0] == 80
    with pytest.raises(ValueError):
        reappearance_strip({})
    with pytest.raises(ValueError, match="differ in size"):
        reappearance_strip({0: np.zeros((8, 8, 3), np.uint8), 1: np.zeros((9, 9, 3), np.uint8)})


def test_pipeline_records_dynamics_and_keeps_the_normalized_face(tmp_path, example_photo, tiny_generator_file) -> None:
    import csv
    import json

    from PIL import Image

    from cleftscore.normalize.gan import GanSettings
    from cleftscore.run.pipeline import score_photos
    from cleftscore.run.settings import PipelineSettings

    def run(name: str, **kw):
        gan = GanSettings(generator=str(tiny_generator_file), loss="mse", device="cpu", steps=4, adapt_steps=3, **kw)
        out = tmp_path / name
        (res,) = score_photos(
            [example_photo], PipelineSettings(method="gan", gan=gan), out_dir=out, cache_dir=tmp_path / "cache"
        )
        assert res.ok, res.message
        return out / "photos" / res.photo_id

    plain = run("plain")
    dyn = run("dyn", dynamics_steps=9, strip_steps=(0, 6, 9))
    # the normalized face is the step-3 image in both runs
    np.testing.assert_array_equal(
        np.asarray(Image.open(plain / "normalized.png")), np.asarray(Image.open(dyn / "normalized.png"))
    )
    rec = json.loads((dyn / "result.json").read_text())
    d = rec["normalization"]["dynamics"]
    assert len(d["curve"]) == 10 and d["steps"] == 9 and d["fraction"] == 0.9 and d["adapt_steps"] == 3
    assert d["residual_integral"] == pytest.approx(np.mean(d["curve"]), rel=1e-6)
    assert 0 <= d["reappearance_step"] <= 9 and 0 < d["curve_auc"] <= 1.5
    assert {"dynamics_reappearance_step", "dynamics_curve_auc", "dynamics_residual_integral"} <= set(rec["measures"])
    assert "dynamics_level_step" not in rec["measures"]  # no level given
    for f in ("dynamics_curve.png", "reappearance_strip.png", "snapshots/step_0006.png", "snapshots/step_0009.png"):
        assert (dyn / f).is_file(), f
    strip = np.asarray(Image.open(dyn / "reappearance_strip.png"))
    assert strip.shape[1] > 3 * strip.shape[0] - 60  # three faces side by side
    with (tmp_path / "dyn" / "scores.csv").open() as f:
        row = next(csv.DictReader(f))
    assert float(row["dynamics_reappearance_step"]) == d["reappearance_step"]
    assert "dynamics" not in json.loads((plain / "result.json").read_text())["normalization"]


def test_evaluate_correlates_the_records_measures() -> None:
    from pathlib import Path

    from cleftscore.evaluate.grid import _measure_rows
    from cleftscore.evaluate.photos import RunPhoto as _Photo

    def photo(name: str, step: float) -> _Photo:
        return _Photo(name=name, photo_id=name, folder=Path(name), method="gan", landmarks=np.zeros((68, 2)), size=32,
                      mask_file=None, measures={"dynamics_reappearance_step": step, "constant": 1.0})  # fmt: skip

    photos = [photo(f"p{i}.png", s) for i, s in enumerate((40, 90, 10, 150))]
    ratings = {"p0.png": 5.0, "p1.png": 3.0, "p2.png": 6.0, "p3.png": 1.0}  # 7 = normal
    rows = {r["measure"]: r for r in _measure_rows(photos, ratings, higher_is="normal", n_boot=50, ci=0.95, seed=0)}
    # more steps to rebuild go with more abnormal ratings here: a negative rank correlation
    assert rows["dynamics_reappearance_step"]["n"] == 4 and rows["dynamics_reappearance_step"][
        "spearman_rho"
    ] == pytest.approx(-1.0)
    assert "note" in rows["constant"]


def test_report_shows_the_measures(tmp_path, example_photo) -> None:
    from cleftscore.run.pipeline import score_photos
    from cleftscore.run.settings import PipelineSettings

    (res,) = score_photos([example_photo], PipelineSettings(method="asymmetry", size=256), out_dir=tmp_path / "run")
    assert res.ok
    html = (tmp_path / "run" / "report.html").read_text()
    for name in res.measures:
        assert f">{name}<" in html, name
