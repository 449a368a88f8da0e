"""Tests of the speed benchmark harness (CPU, a micro architecture) and the shared-weight modconv switch."""

from __future__ import annotations

import json

import pytest
import torch

from cleftscore.benchmarks.speed import CONFIGS, run_speed
from cleftscore.gan.config import GeneratorConfig
from cleftscore.gan.invert import modconv_fusion
from cleftscore.gan.networks import Generator

MICRO = GeneratorConfig(
    img_resolution=32, z_dim=32, w_dim=32, mapping_layers=2,
    channel_base=256, channel_max=32, num_fp16_res=1, conv_clamp=256,
)  # fmt: skip


@pytest.fixture(scope="module")
def report() -> dict:
    return run_speed(MICRO, device="cpu", batch_sizes=(1, 2), steps=2, warmup=1, config_name="micro")


def test_report_fields_and_sane_values(report) -> None:
    assert report["benchmark"] == "speed" and report["config_name"] == "micro"
    assert report["config"]["img_resolution"] == 32
    env = report["environment"]
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["device_name"]
    rows = report["timings"]
    kinds = {(r["stage"], r["mode"], r["batch"]) for r in rows}
    assert kinds == {
        ("projection", "reference", 1), ("adaptation", "reference", 1),
        ("projection", "fast", 1), ("projection", "fast", 2),
        ("adaptation", "fast", 1), ("adaptation", "fast", 2),
    }  # fmt: skip
    for r in rows:
        assert r["step_mode"] == ("eager" if r["mode"] == "fast" else None)  # no CUDA graph on a CPU
        assert r["error"] is None
        assert r["ms_per_step"] > 0 and r["steps_timed"] == 2
        assert r["ms_per_step_per_photo"] == pytest.approx(r["ms_per_step"] / r["batch"])
        assert r["peak_memory_mib"] is None or r["peak_memory_mib"] > 0
        assert r["resolved_precision"] == "fp32"  # "auto" is float32 on a CPU
    s = report["summary"]
    ref_p = s["reference"]["projection"]["ms_per_step_per_photo"]
    ref_a = s["reference"]["adaptation"]["ms_per_step_per_photo"]
    assert s["reference"]["s_per_photo"] == pytest.approx((ref_p * 2000 + ref_a * 50) / 1000)
    for key in ("speedup_single_photo", "speedup_batched", "ratio_fast_over_reference_batched"):
        assert s[key] > 0
    assert s["speedup_batched"] == pytest.approx(1 / s["ratio_fast_over_reference_batched"])
    assert s["fast_batched"]["s_per_photo"] <= s["fast_single_photo"]["s_per_photo"] * 1.0001 or (
        s["fast_batched"]["projection"]["batch"] == 1
    )  # the batched figure is the best over all batch sizes
    # Same objective, schedule and starting point: the fast path optimises as the reference does.
    final = {(r["stage"], r["mode"], r["batch"]): r["final_loss"] for r in rows}
    for stage in ("projection", "adaptation"):
        assert final[(stage, "fast", 1)] == pytest.approx(final[(stage, "reference", 1)], rel=0.05)
    (diff,) = report["image_difference"]
    assert diff["max_abs_diff"] == 0.0 and diff["finite"]  # auto == fp32 on a CPU: identical
    json.dumps(report)  # serialisable


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="batch sizes"):
        run_speed(MICRO, device="cpu", batch_sizes=(0,))
    with pytest.raises(ValueError, match="warmup"):
        run_speed(MICRO, device="cpu", warmup=0)
    with pytest.raises(ValueError, match="precisions"):
        run_speed(MICRO, device="cpu", precisions=("fp8",))
    with pytest.raises(ValueError, match="adapt_engines"):
        run_speed(MICRO, device="cpu", adapt_engines=("auto",))


def test_named_configs() -> None:
    assert CONFIGS["ffhq1024"].img_resolution == 1024 and CONFIGS["ffhq1024"].num_fp16_res == 4
    assert CONFIGS["t64"].img_resolution == 64 and CONFIGS["g256"].img_resolution == 256


def test_modconv_fusion_rule() -> None:
    assert modconv_fusion(True, None) is None  # float32: the official (fused) rule, unchanged
    assert modconv_fusion(False, None) is False  # float16 blocks
    assert modconv_fusion(True, torch.bfloat16) is False


def test_shared_weight_modconv_matches_fused() -> None:
    G = Generator(MICRO, generator=torch.Generator().manual_seed(0)).eval()
    g = torch.Generator().manual_seed(1)
    ws = G.mapping(torch.randn((3, 32), generator=g), None).detach()
    noise = [torch.randn((3, 1, r, r), generator=g) for _, r in G.synthesis.noise_layers()]
    with torch.no_grad():
        a = G.synthesis(ws, noise=noise, force_fp32=True)
        b = G.synthesis(ws, noise=noise, force_fp32=True, fused_modconv=False)
        c = G.synthesis(ws, noise=noise, force_fp32=True, fused_modconv=True)
        d = G.synthesis(ws, noise=noise, force_fp32=True, fused_modconv=None)
    assert torch.equal(a, c) and torch.equal(a, d)  # default is the fused path in eval mode
    assert not torch.equal(a, b)  # a different computation ...
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)  # ... of the same function


def test_cli_speed_writes_json(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from cleftscore.cli import app

    monkeypatch.setitem(CONFIGS, "t64", MICRO)
    out = tmp_path / "speed.json"
    res = CliRunner().invoke(
        app, ["bench", "speed", "--config", "t64", "--device", "cpu", "--batch", "2", "--steps", "1", "--warmup", "1",
              "--adapt-engine", "vmap", "--adapt-engine", "loop", "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["config"]["img_resolution"] == 32
    assert data["summary"]["speedup_batched"] > 0
    assert data["settings"]["adapt_engines"] == ["vmap", "loop"]
    engines = {(r["engine"], r["batch"]) for r in data["timings"] if r["stage"] == "adaptation" and r["mode"] == "fast"}
    assert engines == {("vmap", 1), ("vmap", 2), ("loop", 1)}  # the loop engine only at batch 1
    assert "s/photo" in res.output and "fast_batched" in res.output  # the per-mode lines too
    bad = CliRunner().invoke(app, ["bench", "speed", "--config", "nope"])
    assert bad.exit_code != 0
    bad = CliRunner().invoke(app, ["bench", "speed", "--adapt-engine", "auto"])
    assert bad.exit_code != 0 and "auto" in bad.output


def test_compile_and_channels_last_rows_and_summary(monkeypatch) -> None:
    # A cheap backend stands in for inductor (minutes on two CPU cores); the harness must time
    # the compiled projection, report the compile time apart and summarise it.
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real(fn, backend="aot_eager", **kw))
    rep = run_speed(MICRO, device="cpu", batch_sizes=(1, 2), adapt_batch_sizes=(1,), steps=1, warmup=1, compile=True,
                    channels_last=True)  # fmt: skip
    nhwc = [r for r in rep["timings"] if r["mode"] == "fast+channels_last"]
    assert sorted(r["batch"] for r in nhwc) == [1, 2] and all(r["error"] is None for r in nhwc)
    assert rep["summary"]["with_channels_last"]["s_per_photo_batched"] > 0
    rows = [r for r in rep["timings"] if r["mode"] == "fast+compile"]
    assert sorted(r["batch"] for r in rows) == [1, 2] and all(r["error"] is None for r in rows)
    assert [c["batch"] for c in rep["compile"]] == [1, 2]
    assert all(c["error"] is None and c["compile_and_2_steps_s"] > 0 for c in rep["compile"])
    assert rep["summary"]["with_compile"]["s_per_photo_batched"] > 0
    assert rep["summary"]["without_cuda_graphs"] is None  # only timed on CUDA
    assert rep["settings"]["warmup_steps"] > rep["settings"]["warmup_steps_requested"] == 1


def test_profile_lists_where_a_step_spends_its_time() -> None:
    from cleftscore.benchmarks.speed import profile_projection
    from cleftscore.perceptual import PerceptualDistance

    G = Generator(MICRO, generator=torch.Generator().manual_seed(0)).eval().requires_grad_(False)
    loss_fn = PerceptualDistance(vgg16_weights=None, random_trunk=True)
    targets = torch.rand((2, 3, 32, 32), generator=torch.Generator().manual_seed(1)) * 2 - 1
    prof = profile_projection(G, targets, loss_fn, (torch.zeros(32), 1.0), precision="fp32", steps=2, top=10)
    assert prof["batch"] == 2 and prof["time_kind"] == "cpu" and prof["steps_profiled"] == 2
    assert prof["ms_per_step_total"] > 0 and prof["entries_per_step"] > 100  # a step is many operators
    top = prof["top"]
    assert 1 <= len(top) <= 10
    assert [e["ms_per_step"] for e in top] == sorted((e["ms_per_step"] for e in top), reverse=True)
    assert 0 < sum(e["share"] for e in top) <= 1 + 1e-9
    assert any("conv" in e["name"] for e in top)  # the convolutions are among the costly ones
