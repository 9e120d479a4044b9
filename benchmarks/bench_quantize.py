"""Quantization benchmark: size, accuracy and CPU latency of quantized digits models.

    python benchmarks/bench_quantize.py                 # trains what it needs under /tmp/danlu-bench-quantize
    python benchmarks/bench_quantize.py --work DIR --threads 1 --json results.json

It trains the shipped recipes ``recipes/digits_mlp.yaml`` and ``recipes/digits_cnn.yaml`` (float),
and the same recipes with 4-bit group-wise quantization-aware training, then measures

* int8 weights (symmetric, per channel): size on disk and test accuracy against the float run;
* int8 dynamic quantization (int8 activations x int8 weights): latency at batch 1 and 64
  against float32 — against the float model as trained and against the same float model with its
  batch norms folded (the quantized model folds them, so this second figure isolates what the
  integer arithmetic itself brings);
* 4-bit group-wise weights, post-training and after QAT;
* the same latency comparison on a wide MLP (64 -> 1024 -> 1024 -> 10), where the matrix
  products are large enough for the integer kernel to matter.

Targets (checked at the end): int8 >= 3.5x smaller and <= 0.5 point of accuracy lost; int8
dynamic >= 2x faster than float32 for the MLP at batch 64; 4-bit group-wise >= 6x smaller and
<= 1.5 points lost after QAT. Figures depend on the machine: the script prints its CPU and thread count.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import danlu  # noqa: E402
from danlu import _run  # noqa: E402
from danlu.compress import QuantSpec, latency_ms, quantizable_layers, quantize_model, quantize_run  # noqa: E402
from danlu.compress._fold import bn_affine, foldable_pairs  # noqa: E402
from danlu.recipe import Recipe  # noqa: E402

QAT = {"quant.enabled": True, "quant.bits": 4, "quant.granularity": "group", "quant.group_size": 32}
GROUP4 = QuantSpec(4, "sym", "group", 32, "uniform")


def train(recipe_file: str, run_dir: Path, overrides: dict | None = None) -> Path:
    if (run_dir / "summary.json").is_file():
        print(f"reusing {run_dir}", file=sys.stderr)
        return run_dir
    recipe = Recipe.from_yaml(ROOT / "recipes" / recipe_file)
    if overrides:
        recipe = recipe.with_overrides(overrides)
    return danlu.train(recipe, run_dir, overwrite=True, progress="none").path


def float_folded(model: nn.Module) -> nn.Module:
    """The float model with each batch norm folded into the Linear / Conv before it."""
    model = copy.deepcopy(model).eval()
    for layer_name, bn_name in foldable_pairs(model):
        layer, bn = model.get_submodule(layer_name), model.get_submodule(bn_name)
        c, s = bn_affine(bn)
        with torch.no_grad():
            layer.weight.mul_(c.reshape(-1, *([1] * (layer.weight.dim() - 1))))
            bias = s if layer.bias is None else c * layer.bias + s
            layer.bias = nn.Parameter(bias)
        parent, _, child = bn_name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
    return model


def quantize(run: Path, spec: QuantSpec | None, out: Path, **kw) -> dict:
    result = quantize_run(run, spec, out=out, overwrite=True, progress=False, **kw)
    print(result.table(), end="\n\n")
    return result.report


def latency_against_folded(run: Path, qdir: Path, rounds: int) -> dict:
    from danlu.compress import load_quantized

    model, _pipeline, _meta, recipe = runs.load_model(run)
    X = runs.prepare_run_data(recipe, run).splits["test"][0]
    models = {"float": model, "float_folded": float_folded(model), "int8_dynamic": load_quantized(qdir)}
    return {str(b): latency_ms(models, X, b, rounds) for b in (1, 64)}


def wide_mlp_latency(rounds: int) -> dict:
    from danlu.data import DataInfo
    from danlu.models import build_model

    torch.manual_seed(0)
    info = DataInfo("classification", "tabular", (64,), 10, list(range(10)), [f"x{i}" for i in range(64)])
    model = build_model({"kind": "mlp", "hidden": [1024, 1024]}, info, 10).eval()
    qmodel = quantize_model(model, {n: QuantSpec(8) for n in quantizable_layers(model)}, act="dynamic")
    X = torch.randn(64, 64)
    return {str(b): latency_ms({"float": model, "int8_dynamic": qmodel}, X, b, rounds) for b in (1, 64)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/danlu-bench-quantize", help="folder for the runs")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for training and timing")
    parser.add_argument("--rounds", type=int, default=15, help="timing rounds (median reported)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    print(f"cpu: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s), quantized engine {torch.backends.quantized.engine}", file=sys.stderr)

    results: dict = {"threads": args.threads, "torch": torch.__version__}
    for name, recipe_file in (("mlp", "digits_mlp.yaml"), ("cnn", "digits_cnn.yaml")):
        run = train(recipe_file, work / f"digits_{name}")
        qat_run = train(recipe_file, work / f"digits_{name}_qat4", QAT)
        float_acc = json.loads((run / "summary.json").read_text())["test"]["accuracy"]
        float_bytes = (run / "model.safetensors").stat().st_size
        int8 = quantize(run, QuantSpec(8), work / f"{name}-int8", latency_rounds=args.rounds)
        dyn = quantize(run, QuantSpec(8), work / f"{name}-int8-dynamic", act="dynamic", latency_rounds=args.rounds)
        ptq4 = quantize(run, GROUP4, work / f"{name}-int4-g32", latency_rounds=args.rounds)
        qat4 = quantize(qat_run, None, work / f"{name}-qat-int4-g32", latency_rounds=args.rounds)
        qat_bytes = json.loads((work / f"{name}-qat-int4-g32" / "quant_report.json").read_text())["quantized"]["bytes"]
        results[name] = {
            "float": {"accuracy": float_acc, "bytes": float_bytes},
            "int8": {"accuracy": int8["quantized"]["metric"], "size_ratio": int8["change"]["size_ratio"],
                     "points_lost": 100 * (float_acc - int8["quantized"]["metric"])},
            "int8_dynamic": {"accuracy": dyn["quantized"]["metric"],
                             "points_lost": 100 * (float_acc - dyn["quantized"]["metric"]),
                             "latency_ms": latency_against_folded(run, work / f"{name}-int8-dynamic", args.rounds)},
            "int4_g32_ptq": {"accuracy": ptq4["quantized"]["metric"], "size_ratio": ptq4["change"]["size_ratio"],
                             "points_lost": 100 * (float_acc - ptq4["quantized"]["metric"])},
            "int4_g32_qat": {"accuracy": qat4["quantized"]["metric"], "size_ratio": float_bytes / qat_bytes,
                             "points_lost": 100 * (float_acc - qat4["quantized"]["metric"])},
        }
    results["wide_mlp_latency_ms"] = wide_mlp_latency(args.rounds)
    print(format_results(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def format_results(r: dict) -> str:
    lines = ["", "model  scheme              size   acc lost (points)   latency b=1 / b=64 (ms)"]
    for name in ("mlp", "cnn"):
        m = r[name]
        lat = m["int8_dynamic"]["latency_ms"]
        lines.append(f"{name:5s}  float32             1.00x  {m['float']['accuracy']:.4f} (acc)      "
                     f"{lat['1']['float']:.3f} / {lat['64']['float']:.3f}   (BN folded: "
                     f"{lat['1']['float_folded']:.3f} / {lat['64']['float_folded']:.3f})")
        lines.append(f"{name:5s}  int8 weights        {m['int8']['size_ratio']:.2f}x  {m['int8']['points_lost']:+.2f}")
        lines.append(f"{name:5s}  int8 dynamic        {m['int8']['size_ratio']:.2f}x  "
                     f"{m['int8_dynamic']['points_lost']:+.2f}               "
                     f"{lat['1']['int8_dynamic']:.3f} / {lat['64']['int8_dynamic']:.3f}")
        lines.append(f"{name:5s}  int4 g32 PTQ        {m['int4_g32_ptq']['size_ratio']:.2f}x  "
                     f"{m['int4_g32_ptq']['points_lost']:+.2f}")
        lines.append(f"{name:5s}  int4 g32 QAT        {m['int4_g32_qat']['size_ratio']:.2f}x  "
                     f"{m['int4_g32_qat']['points_lost']:+.2f}")
    wide = r["wide_mlp_latency_ms"]
    lines.append(f"wide MLP 64-1024-1024-10: float {wide['1']['float']:.3f} / {wide['64']['float']:.3f} ms, "
                 f"int8 dynamic {wide['1']['int8_dynamic']:.3f} / {wide['64']['int8_dynamic']:.3f} ms")
    mlp_lat = r["mlp"]["int8_dynamic"]["latency_ms"]["64"]
    lines += ["", "targets:"]
    for name in ("mlp", "cnn"):
        m = r[name]
        lines.append(f"  {name} int8 >= 3.5x smaller, <= 0.5 point lost: {m['int8']['size_ratio']:.2f}x, "
                     f"{m['int8']['points_lost']:.2f} -> {_ok(m['int8']['size_ratio'] >= 3.5 and m['int8']['points_lost'] <= 0.5)}")
        lines.append(f"  {name} int4 group QAT >= 6x smaller, <= 1.5 points lost: {m['int4_g32_qat']['size_ratio']:.2f}x, "
                     f"{m['int4_g32_qat']['points_lost']:.2f} -> "
                     f"{_ok(m['int4_g32_qat']['size_ratio'] >= 6 and m['int4_g32_qat']['points_lost'] <= 1.5)}")
    speed = mlp_lat["float"] / mlp_lat["int8_dynamic"]
    lines.append(f"  mlp int8 dynamic >= 2x faster than float32 at batch 64: {speed:.2f}x -> {_ok(speed >= 2)}")
    return "\n".join(lines)


def _ok(flag: bool) -> str:
    return "met" if flag else "NOT met"


if __name__ == "__main__":
    sys.exit(main())
