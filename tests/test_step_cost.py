"""Tests of the projection-step cost model (meta-device trace and roofline floor)."""

from __future__ import annotations

import pytest

from cleftscore.benchmarks.speed import CONFIGS
from cleftscore.benchmarks.step_cost import DEVICES, DeviceModel, projection_step_ops, summarize


@pytest.fixture(scope="module")
def ops() -> dict[int, list[dict]]:
    return {b: projection_step_ops(CONFIGS["t64"], b, "fp16") for b in (1, 3)}


def test_trace_covers_forward_backward_and_optimizer(ops) -> None:
    one = ops[1]
    phases = {op["phase"] for op in one}
    assert phases == {"forward", "backward", "optimizer"}
    names = {op["op"] for op in one}
    assert {"convolution", "convolution_backward"} <= names
    # t64 runs its two top resolutions in float16, the rest (and LPIPS) in float32
    assert any(op["half"] for op in one) and not all(op["half"] for op in one)
    # views launch no kernel and are not counted
    assert not names & {"view", "expand", "unsqueeze", "permute", "detach", "unbind"}


def test_work_scales_with_the_batch_and_kernels_do_not(ops) -> None:
    one, three = ops[1], ops[3]
    # the same kernels, except that the 4x4 layer's input (the constant, broadcast to the
    # batch) is not contiguous beyond one photo, so it runs as plain ops: a dozen more
    assert len(one) <= len(three) <= len(one) + 12
    assert sum(op["op"] == "convolution" for op in one) == sum(op["op"] == "convolution" for op in three)
    conv = [sum(op["flops"] for op in o if op["op"].startswith("convolution")) for o in (one, three)]
    assert conv[0] > 0 and conv[1] == 3 * conv[0]
    moved = [sum(op["bytes"] for op in o) for o in (one, three)]
    # activations scale with the batch; weights and target-independent constants do not
    assert 2.0 * moved[0] < moved[1] < 3.0 * moved[0]


def test_roofline_floor_bounds_every_kernel(ops) -> None:
    dev = DeviceModel("test", hbm_bytes_per_s=1e12, half_flops=1e14, tf32_flops=5e13, kernel_floor_s=1e-6)
    s = summarize(ops[3], dev, batch=3)
    total_bytes = sum(op["bytes"] for op in ops[3])
    assert s["floor_ms"] >= 1e3 * total_bytes / dev.hbm_bytes_per_s
    assert s["floor_ms"] >= 1e3 * len(ops[3]) * dev.kernel_floor_s
    assert s["floor_ms_per_photo"] == pytest.approx(s["floor_ms"] / 3)
    shares = [t["share"] for t in s["top_operators"]]
    assert shares == sorted(shares, reverse=True) and sum(shares) <= 1.0 + 1e-6
    # a faster memory system can only lower the floor
    fast = DeviceModel("fast", hbm_bytes_per_s=1e13, half_flops=1e14, tf32_flops=5e13, kernel_floor_s=1e-6)
    assert summarize(ops[3], fast, batch=3)["floor_ms"] < s["floor_ms"]
    assert set(DEVICES) >= {"h100", "h200"}


def test_bf16_is_refused_rather_than_mismodelled() -> None:
    with pytest.raises(ValueError, match="autocast"):
        projection_step_ops(CONFIGS["t64"], 1, "bf16")


def test_cli_step_cost_writes_json_and_calibrates(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from cleftscore.cli import app

    out = tmp_path / "cost.json"
    # a speed report measured on an "H100": one fast projection row at batch 1 matches the model
    speed = {
        "environment": {"device_name": "NVIDIA H100 80GB HBM3"},
        "timings": [
            {"stage": "projection", "mode": "fast", "step_mode": "cuda_graph", "batch": 1,
             "resolved_precision": "fp32", "ms_per_step": 10.0},
            {"stage": "projection", "mode": "reference", "batch": 1, "resolved_precision": "fp32", "ms_per_step": 50.0},
            {"stage": "projection", "mode": "fast", "batch": 8, "resolved_precision": "fp32", "ms_per_step": 40.0},
        ],
    }  # fmt: skip
    measured = tmp_path / "speed_h100.json"
    measured.write_text(json.dumps(speed))
    args = ["bench", "step-cost", "--config", "t64", "--batch", "1", "--precision", "fp32", "--device-model", "h100",
            "--calibrate", str(measured), "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["benchmark"] == "step_cost" and rep["config_name"] == "t64" and rep["precision"] == "fp32"
    assert list(rep["batches"]) == ["1"] and list(rep["device_models"]) == ["h100"]
    entry = rep["batches"]["1"]
    assert entry["kernels"] > 100 and entry["floor_ms"]["h100"] > 0
    assert entry["floor_s_per_photo_2000_steps"]["h100"] == pytest.approx(entry["floor_ms_per_photo"]["h100"] * 2)
    (row,) = rep["calibration"]  # the reference row and the unmodelled batch are left out
    assert row["source"] == "speed_h100.json" and row["batch"] == 1 and row["measured_ms"] == 10.0
    assert row["floor_over_measured"] == pytest.approx(entry["floor_ms"]["h100"] / 10.0)
    assert "batch 1:" in res.output and "calibration:" in res.output


def test_cli_step_cost_refuses_unknown_choices() -> None:
    from typer.testing import CliRunner

    from cleftscore.cli import app

    for args in (["--config", "nope"], ["--precision", "bf16"], ["--device-model", "a100"]):
        res = CliRunner().invoke(app, ["bench", "step-cost", *args])
        assert res.exit_code != 0 and args[1] in res.output
