"""Cost model of one projection step: kernels, FLOPs, bytes and a roofline floor, without a GPU.

Usage: python bench/step_cost.py [--config ffhq1024] [--batch 1 --batch 16] [--precision fp16]
       [--device-model h100 --device-model h200] [--inductor] [--calibrate PATH] [--out PATH]

Traces one projection step of the fast path on the meta device (see
:mod:`cleftscore.benchmarks.step_cost`) and writes bench/results/step_cost_<config>.json:
per batch size, kernels, GFLOP, GB moved (per photo, by phase), the roofline floor per GPU model
and the operators that hold it. ``--inductor`` also compiles the step with torch.compile on the
CPU at one photo (minutes at 1024 px) and records the bytes its fused kernels move.
``--calibrate`` takes a speed benchmark JSON measured on a GPU and puts the ratio of measured
to modelled time next to it (meaningful only for the code that benchmark ran).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from cleftscore.benchmarks.speed import CONFIGS
from cleftscore.benchmarks.step_cost import DEVICES, device_dict, inductor_bytes, projection_step_ops, summarize


def _calibration(path: Path, report: dict) -> list[dict]:
    """Measured fast-path projection steps of a speed JSON next to this model's floor."""
    speed = json.loads(path.read_text())
    name = speed["environment"].get("device_name", "")
    model = next((k for k, d in DEVICES.items() if k.upper() in name.upper().replace(" ", "")), None)
    rows = []
    for t in speed["timings"]:
        b = str(t["batch"])
        if t["stage"] != "projection" or t["mode"] == "reference" or b not in report["batches"] or model is None:
            continue
        if t["resolved_precision"] != report["precision"]:
            continue
        floor = report["batches"][b]["floor_ms"][model]
        rows.append({"source": path.name, "mode": t["mode"], "step_mode": t.get("step_mode"), "batch": t["batch"],
                     "device": name, "measured_ms": t["ms_per_step"], "floor_ms": floor,
                     "floor_over_measured": floor / t["ms_per_step"]})  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=sorted(CONFIGS), default="ffhq1024")
    ap.add_argument("--batch", type=int, action="append", default=None)
    ap.add_argument("--precision", choices=("fp16", "fp32"), default="fp16")
    ap.add_argument("--device-model", choices=sorted(DEVICES), action="append", default=None)
    ap.add_argument("--inductor", action="store_true", help="also count the bytes of the torch.compile'd step (slow)")
    ap.add_argument(
        "--calibrate", type=Path, action="append", default=[], help="speed benchmark JSON measured on a GPU"
    )
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    models = args.device_model or ["h100", "h200"]
    cfg = CONFIGS[args.config]
    report = {
        "benchmark": "step_cost",
        "what": "modelled lower bound of one projection step (meta-device trace, roofline), not a measurement",
        "config_name": args.config,
        "precision": args.precision,
        "device_models": {m: device_dict(DEVICES[m]) for m in models},
        "torch": torch.__version__,
        "s_per_photo_formula": "floor_ms_per_photo x 2000 projection steps / 1000",
        "batches": {},
    }
    for b in args.batch or [1, 16]:
        ops = projection_step_ops(cfg, b, args.precision)
        per_model = {m: summarize(ops, DEVICES[m], batch=b) for m in models}
        first = per_model[models[0]]
        entry = {
            k: first[k]
            for k in ("batch", "kernels", "kernels_by_phase", "gflop", "gbytes", "gbytes_per_photo_by_phase")
        }
        entry["floor_ms"] = {m: s["floor_ms"] for m, s in per_model.items()}
        entry["floor_ms_per_photo"] = {m: s["floor_ms_per_photo"] for m, s in per_model.items()}
        entry["floor_s_per_photo_2000_steps"] = {m: s["floor_ms_per_photo"] * 2 for m, s in per_model.items()}
        entry["floor_ms_convolutions_and_matmuls"] = {
            m: s["floor_ms_convolutions_and_matmuls"] for m, s in per_model.items()
        }
        entry["top_operators"] = {m: s["top_operators"] for m, s in per_model.items()}
        report["batches"][str(b)] = entry
        gb = entry["gbytes_per_photo_by_phase"]
        print(f"batch {b}: {entry['kernels']} kernels, {entry['gflop'] / b:.0f} GFLOP and "
              f"{sum(gb.values()):.1f} GB per photo (forward {gb['forward']:.1f}, backward {gb['backward']:.1f}); floor "
              + ", ".join(f"{m} {entry['floor_ms'][m]:.1f} ms ({entry['floor_ms_per_photo'][m]:.2f} ms/photo)" for m in models))  # fmt: skip
    if args.inductor:
        ind = inductor_bytes(cfg, batch=1, precision=args.precision)
        eager = projection_step_ops(cfg, 1, args.precision)
        # the same step as the library runs it on CUDA (fused Triton kernels), traced on meta
        ind["library_gbytes_per_photo_by_phase"] = {
            ph: sum(op["bytes"] for op in eager if op["phase"] == ph) / 1e9 for ph in ("forward", "backward")
        }
        report["inductor"] = ind
        print(f"torch.compile (Inductor, CPU): {ind['gbytes_per_photo_by_phase']} GB per photo "
              f"vs the library's CUDA path {ind['library_gbytes_per_photo_by_phase']}; {ind['compile_and_run_s']:.0f} s")  # fmt: skip
    report["calibration"] = [row for p in args.calibrate for row in _calibration(p, report)]
    for row in report["calibration"]:
        print(f"calibration: {row['mode']} batch {row['batch']} on {row['device']}: measured {row['measured_ms']:.1f} ms, "
              f"floor {row['floor_ms']:.1f} ms ({100 * row['floor_over_measured']:.0f} %)")  # fmt: skip
    out = args.out or Path(__file__).resolve().parent / "results" / f"step_cost_{args.config}_{args.precision}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
