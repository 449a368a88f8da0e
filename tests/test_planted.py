"""Tests of the planted-anomaly benchmark: defects, AUROC, generator preparation, a small run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cleftscore.benchmarks.planted import (
    SEVERITIES,
    PlantedSettings,
    auroc,
    plant_defect,
    prepare_generator,
    run_planted,
)
from conftest import golden_dir_for


def _load(name: str):
    from cleftscore.gan.checkpoints import load_generator

    return load_generator(golden_dir_for(name) / f"{name}_state_dict.npz")


def test_auroc_rank_based() -> None:
    labels = np.array([0, 0, 1, 1, 0, 1], dtype=bool)
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9, 0.3, 0.7]), labels) == 1.0
    assert auroc(-np.array([0.1, 0.2, 0.8, 0.9, 0.3, 0.7]), labels) == 0.0
    assert auroc(np.ones(6), labels) == 0.5
    # one swapped pair out of 9
    assert auroc(np.array([0.1, 0.2, 0.25, 0.9, 0.3, 0.7]), labels) == pytest.approx(8 / 9)
    assert np.isnan(auroc(np.ones(3), np.zeros(3, dtype=bool)))


def test_defects_grow_with_severity_and_stay_in_mask() -> None:
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    clean = torch.stack([torch.sin(yy / 4), torch.cos(yy / 6 + xx / 9), torch.sin(xx / 5)]) * 0.8  # smooth
    energies, areas = [], []
    for s in SEVERITIES:
        d, m = plant_defect(clean, s, cx=30, cy=42, color=(0.9, -0.9, 0.9))
        assert d.shape == clean.shape and m.shape == (64, 64) and m.dtype == torch.bool
        assert torch.equal(d[:, ~m], clean[:, ~m])
        assert m[: 64 // 2].sum() == 0  # lower half only
        diff = (d - clean).square().sum(0)
        energies.append(float(diff.sum()))
        areas.append(int(m.sum()))
    assert energies == sorted(energies) and areas == sorted(areas)
    with pytest.raises(ValueError, match="severity"):
        plant_defect(clean, 6, cx=30, cy=42, color=(0, 0, 0))


def test_blob_is_a_uniform_disc_with_a_hard_edge() -> None:
    # On a flat image the notch changes nothing, so the defect is the disc alone: every changed
    # pixel carries the full opacity (a soft, radially fading blob is easy for G to reproduce).
    clean = torch.full((3, 64, 64), 0.1)
    color = (0.9, -0.9, 0.5)
    for s in SEVERITIES:
        d, m = plant_defect(clean, s, cx=30, cy=40, color=color)
        yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
        disc = ((yy - 48) ** 2 + (xx - 30) ** 2).sqrt() < 1 + s
        assert torch.equal(m, disc)
        a = 0.15 * s
        expected = torch.tensor(color).reshape(3, 1) * a + 0.1 * (1 - a)
        torch.testing.assert_close(d[:, m], expected.expand(-1, int(m.sum())))


def test_prepare_generator_applies_affine_and_keeps_original() -> None:
    G = _load("t32")
    before = {k: v.clone() for k, v in G.state_dict().items()}
    G2 = prepare_generator(G, noise_strength_scale=0.1, scale=0.25, shift=0.3)
    z = torch.randn((2, G.z_dim), generator=torch.Generator().manual_seed(0))
    G3 = prepare_generator(G, noise_strength_scale=0.1, scale=1.0, shift=0.0)
    with torch.no_grad():
        a = G3(z, noise_mode="const", force_fp32=True)
        b = G2(z, noise_mode="const", force_fp32=True)
    torch.testing.assert_close(b, 0.25 * a + 0.3, atol=1e-5, rtol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())
    ns = [k for k in before if k.endswith("noise_strength")]
    sd2 = G2.state_dict()
    assert ns and all(torch.allclose(sd2[k.replace("synthesis.", "synthesis.net.")], 0.1 * before[k]) for k in ns)
    others = [k for k in before if k.startswith("synthesis.") and not k.endswith("noise_strength")]
    assert all(torch.equal(sd2[k.replace("synthesis.", "synthesis.net.")], before[k]) for k in others)


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="loss"):
        PlantedSettings(loss="l1")
    with pytest.raises(ValueError, match="k must"):
        PlantedSettings(k=0)
    with pytest.raises(ValueError, match="loss_fn"):
        run_planted(_load("t32"), settings=PlantedSettings(loss="lpips"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["g64", "t64"])
def test_small_planted_run_finds_the_defects(name: str) -> None:
    """K=1, 100 + 25 steps: thresholds that hold at this size (g64 skips without the shared folder).

    Measured on CPU: g64 PSNR 30.4 -> 34.9 dB, rho 1.0, AUROC 0.78 -> 0.86; t64 PSNR 26.0 ->
    31.7 dB, rho 1.0, AUROC 0.78 -> 0.87.
    """
    G = _load(name)
    rep = run_planted(G, settings=PlantedSettings(k=1, steps=100, adapt_steps=25))
    json.dumps(rep)  # JSON-able
    proj, final = rep["stages"]["projection"], rep["stages"]["adapt_25"]
    assert set(rep["stages"]) == {"projection", "adapt_10", "adapt_25"}
    assert proj["psnr_clean_db"] >= 24.0
    assert final["psnr_clean_db"] >= proj["psnr_clean_db"] + 2.0
    assert final["spearman_rho"] >= 0.8
    assert final["pixel_auroc_mean"] >= 0.75
    assert final["pixel_auroc_mean"] >= proj["pixel_auroc_mean"]
    assert rep["seconds_per_image"]["projection"] > 0


def test_cli_planted_tiny_run(tmp_path) -> None:
    from typer.testing import CliRunner

    from cleftscore.cli import app

    out = tmp_path / "p.json"
    gen = golden_dir_for("t32") / "t32_state_dict.npz"
    args = ["bench", "planted", "--generator", str(gen), "--k", "1", "--steps", "3", "--adapt-steps", "2",
            "--loss", "mse", "--out", str(out), "--device", "cpu"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["settings"]["k"] == 1 and rep["images"] == 6
    assert set(rep["stages"]) == {"projection", "adapt_2"}
    assert "adapt_2" in res.output


def test_cli_planted_missing_generator(tmp_path) -> None:
    from typer.testing import CliRunner

    from cleftscore.cli import app

    res = CliRunner().invoke(app, ["bench", "planted", "--generator", str(tmp_path / "none.npz"), "--loss", "mse"])
    assert res.exit_code != 0
    assert "none.npz" in res.output
