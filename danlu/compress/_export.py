"""From a finished run to a quantized model folder with its plan and report (``danlu quantize``),
and back: evaluate or predict with the quantized model."""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UserError
from ..training._checkpoint import atomic_write_text
from ._fold import fold_batch_norms, foldable_pairs
from ._mixed import choose_bits, layer_float_bytes, measure_sensitivity, plan_rows
from ._observe import OBSERVERS, calibrate
from ._qat import qat_spec, strip_qat
from ._qmodel import (META_FILE, WEIGHTS_FILE, load_quantized, model_nbytes, quantizable_layers, quantize_model,
                      quantized_layers, read_meta, save_quantized)
from ._report import LATENCY_BATCHES, build_report, format_report, latency_ms
from ._spec import BITS, QuantSpec

REPORT_FILE = "quant_report.json"
QAT_DIR = "quantized-qat"
LATENCY_THREADS = 1


@dataclass
class QuantResult:
    path: Path           # the quantized model folder
    report: dict         # what quant_report.json holds
    plan: list[dict]     # one row per quantized layer

    def table(self) -> str:
        return format_report(self.report)


def _say(progress: bool, text: str) -> None:
    if progress:
        print(f"quantize: {text}", file=sys.stderr)


def _check_options(act: str, calibrate_batches: int, observer: str, percentile: float, budget_mb, avg_bits) -> None:
    if act not in ("none", "dynamic"):
        raise UserError(f"activations must be none or dynamic (static comes from --calibrate N), got {act!r}")
    if calibrate_batches < 0:
        raise UserError(f"--calibrate must be a number of batches >= 0, got {calibrate_batches}")
    if calibrate_batches and act == "dynamic":
        raise UserError("--dynamic and --calibrate exclude each other: dynamic quantization measures each batch "
                        "at inference, calibration fixes the ranges beforehand; pick one")
    if observer not in OBSERVERS:
        raise UserError(f"--observer must be one of {', '.join(OBSERVERS)}, got {observer!r}")
    if not 50 < percentile <= 100:
        raise UserError(f"--percentile must be in (50, 100], got {percentile}")
    if budget_mb is not None and avg_bits is not None:
        raise UserError("give --budget-mb or --avg-bits, not both")
    if budget_mb is not None and not budget_mb > 0:
        raise UserError(f"--budget-mb must be > 0, got {budget_mb}")
    if avg_bits is not None and not 0 < avg_bits <= 32:
        raise UserError(f"--avg-bits must be in (0, 32], got {avg_bits}")


def _out_dir(run_dir: Path, out, tag: str, overwrite: bool) -> Path:
    """The quantized model folder, created now by the rule of every folder danlu writes
    (danlu._rundir): an explicit folder that holds anything is refused unless ``overwrite``, and
    then only one danlu created is replaced; the default one gets a numbered suffix instead."""
    from .._rundir import plan_dir

    return plan_dir(out, default=run_dir / f"quantized-{tag}", overwrite=overwrite, flag="-o",
                    kind="quantized").create()


def _loss_fn(recipe, info, model):
    from ..training._factory import build_loss
    from ..training._target import TargetScaled, scaled_loss

    loss_fn = build_loss(recipe.loss, info)
    return scaled_loss(loss_fn, model) if isinstance(model, TargetScaled) else loss_fn


def _evaluator(X, y, recipe, info, loss_kind):
    from ..training._loop import evaluate_outputs, model_outputs

    def evaluate(model):
        return evaluate_outputs(model_outputs(model, X), y, _loss_fn(recipe, info, model), loss_kind, info)

    return evaluate


def _pick_split(splits: dict, order) -> str:
    for name in order:
        if name in splits:
            return name
    return "train"


def _calibration_batches(X: torch.Tensor, batches: int, batch_size: int, seed: int):
    from ..training._loop import epoch_permutation

    order = epoch_permutation(seed, 0, len(X), X.device)
    count = min(batches, -(-len(X) // batch_size))
    return [X[order[i * batch_size:(i + 1) * batch_size]] for i in range(count)]


def quantize_run(run_dir, spec: QuantSpec | None = None, *, act: str = "none", calibrate_batches: int = 0,
                 observer: str = "minmax", percentile: float = 99.9, act_scheme: str = "asym",
                 budget_mb: float | None = None, avg_bits: float | None = None, candidates=BITS, out=None,
                 fold_bn: bool = True, overwrite: bool = False, progress: bool = True,
                 latency_rounds: int = 7) -> QuantResult:
    """Quantize a finished run's model and write ``RUN/quantized-<tag>/`` (or ``out``).

    ``spec`` defaults to the run's ``quant`` section when it was trained with QAT, else to 8-bit
    symmetric per-channel uniform. ``act``: ``none`` (weights only) or ``dynamic``;
    ``calibrate_batches`` > 0 makes activations static, with ranges from that many training
    batches (``observer``: minmax, or percentile clipping to the ``percentile`` and
    ``100 - percentile`` percentiles). ``budget_mb`` / ``avg_bits`` choose bits per layer among
    ``candidates`` by measured sensitivity (mixed precision). ``fold_bn``: fold batch norms into
    the quantized layer before them (exact; see ``_fold``).
    """
    from .. import training as runs

    _check_options(act, calibrate_batches, observer, percentile, budget_mb, avg_bits)
    run_dir = Path(run_dir)
    model, _pipeline, meta, recipe = runs.load_model(run_dir)
    runs.refuse_generative(run_dir, meta, recipe, "quantize")
    trained = qat_spec(model)              # a QAT run: quantize with the grid it was trained on
    strip_qat(model)
    spec = spec or trained or QuantSpec()
    act = "static" if calibrate_batches else act
    prepared = runs.prepare_run_data(recipe, run_dir)
    layers = quantizable_layers(model)
    if not layers:
        raise UserError(f"{run_dir}: the model has no Linear or Conv layer to quantize")

    if budget_mb is not None or avg_bits is not None:
        plan, rows = _mixed_plan(model, layers, spec, candidates, prepared, recipe, meta, budget_mb, avg_bits,
                                 progress)
    else:
        plan, rows = {name: spec for name in layers}, []
    ranges = None
    if act == "static":
        batches = _calibration_batches(prepared.splits["train"][0], calibrate_batches, recipe.train.batch_size,
                                       recipe.seed)
        _say(progress, f"calibrating activation ranges on {len(batches)} training batches ({observer})")
        ranges = calibrate(model, list(layers), batches, observer, percentile)
    qmodel = quantize_model(model, plan, act=act, act_scheme=act_scheme, act_ranges=ranges)
    folded = [bn for _layer, bn in fold_batch_norms(qmodel, foldable_pairs(qmodel))] if fold_bn else []
    rows = _describe_layers(qmodel, plan, rows, act)

    tag = _tag(spec, act, observer, budget_mb, avg_bits)
    path = _out_dir(run_dir, out, tag, overwrite)
    about = {"model": meta, "source_run": str(run_dir.resolve()), "spec": spec.to_json(), "activations": act,
             "act_scheme": act_scheme, "observer": observer if act == "static" else None,
             "percentile": percentile if observer == "percentile" and act == "static" else None,
             "calibrate_batches": calibrate_batches, "budget_mb": budget_mb, "avg_bits": avg_bits,
             "qat": trained is not None, "folded": folded, "plan": rows}
    save_quantized(qmodel, path, about)
    _say(progress, f"wrote {path}")

    report = _measure(run_dir, path, model, load_quantized(path), prepared, recipe, meta, tag, act, latency_rounds,
                      progress)
    report.update({"plan": rows, "qat": trained is not None, "folder": str(path), "budget_mb": budget_mb,
                   "avg_bits": avg_bits, "folded_batch_norms": folded})
    atomic_write_text(path / REPORT_FILE, json.dumps(report, indent=1))
    return QuantResult(path, report, rows)


def _mixed_plan(model, layers, spec, candidates, prepared, recipe, meta, budget_mb, avg_bits, progress):
    """Bits per layer from measured sensitivity, under the budget: (plan, plan rows)."""
    from ..evaluation import PRIMARY_METRIC, metric_direction

    info = prepared.info
    primary = PRIMARY_METRIC[info.task]
    val = _pick_split(prepared.splits, ("validation", "train"))
    _say(progress, f"measuring sensitivity of {len(layers)} layers at {', '.join(map(str, candidates))} bits "
                   f"on the {val} split")
    evaluate = _evaluator(*prepared.splits[val], recipe, info, meta["loss_kind"])
    sens = measure_sensitivity(model, layers, spec, candidates, evaluate, primary,
                               metric_direction(primary) == "max", progress)
    rest = model_nbytes(model) - sum(layer_float_bytes(layer) for layer in layers.values())
    bits = choose_bits(sens, rest, budget_mb=budget_mb, avg_bits=avg_bits)
    return {name: spec.with_bits(bits[name]) for name in layers}, plan_rows(sens, bits)


def _describe_layers(qmodel, plan, rows: list[dict], act: str) -> list[dict]:
    """One row per quantized layer (the mixed plan's rows when there are some) with its kernel."""
    qlayers = quantized_layers(qmodel)
    if not rows:
        rows = [{"layer": name, "params": math.prod(qlayers[name].weight_shape),
                 "bits": spec.bits, "bytes": qlayers[name].nbytes()} for name, spec in plan.items()]
    for row in rows:
        row["kernel"] = _kernel_name(qlayers[row["layer"]], act)
    return rows


def _kernel_name(layer, act: str) -> str:
    probe = torch.zeros(1, device=layer.codes.device)
    kind = layer.pick_kernel(probe) if hasattr(layer, "pick_kernel") else "dequant"
    return {"dequant": "dequantize" if act == "none" else "fake-quant input + dequantize",
            "fbgemm": "int8 x int8 -> int32 (fbgemm)", "int_mm": "int8 x int8 -> int32 (_int_mm)"}[kind]


def _tag(spec: QuantSpec, act: str, observer: str, budget_mb, avg_bits) -> str:
    tag = spec.tag
    if budget_mb is not None:
        tag = f"mixed{budget_mb:g}mb-{spec.scheme}-{spec.granularity}-{spec.method}"
    elif avg_bits is not None:
        tag = f"mixed{avg_bits:g}bits-{spec.scheme}-{spec.granularity}-{spec.method}"
    if act == "dynamic":
        tag += "-dynamic"
    elif act == "static":
        tag += f"-static-{observer}"
    return tag


def _measure(run_dir: Path, path: Path, model, qmodel, prepared, recipe, meta, tag, act, rounds, progress) -> dict:
    from ..evaluation import PRIMARY_METRIC
    from ..training._loop import evaluate_outputs, model_outputs

    info = prepared.info
    split = _pick_split(prepared.splits, ("test", "validation", "train"))
    X, y = prepared.splits[split]
    metric = PRIMARY_METRIC[info.task]
    sides = {}
    for name, m in (("float", model), ("quantized", qmodel)):
        figures = evaluate_outputs(model_outputs(m, X), y, _loss_fn(recipe, info, m), meta["loss_kind"], info)
        sides[name] = {"metric": figures[metric], "loss": figures["loss"]}
    sides["float"]["bytes"] = (run_dir / "model.safetensors").stat().st_size
    sides["quantized"]["bytes"] = (path / WEIGHTS_FILE).stat().st_size
    _say(progress, "measuring latency at batch " + " and ".join(map(str, LATENCY_BATCHES)))
    for side in sides.values():
        side["latency_ms"] = {}
    for batch in LATENCY_BATCHES:
        timed = latency_ms({"float": model, "quantized": qmodel}, X, batch, rounds, threads=LATENCY_THREADS)
        for name, ms in timed.items():
            sides[name]["latency_ms"][str(batch)] = ms
    return build_report(spec_tag=tag, act=act, split=split,
                        metric=metric, float_side=sides["float"], quant_side=sides["quantized"],
                        extra={"device": str(X.device),
                               "threads": LATENCY_THREADS if X.device.type == "cpu" else None})


# ---------------------------------------------------------------------------------------------
# After training with QAT; using a quantized folder
# ---------------------------------------------------------------------------------------------

def export_qat(run_dir, *, progress: bool = True, latency_rounds: int = 7) -> QuantResult | None:
    """Quantize a finished QAT run with the spec it was trained with, into ``RUN/quantized-qat/``
    (replacing an earlier export). Returns None when the run did not use QAT or asked for no export."""
    from .. import training as runs

    run_dir = Path(run_dir)
    recipe = runs.read_run_recipe(run_dir)
    quant = recipe.get("quant")
    if not quant or not quant.get("enabled") or not quant.get("export", True):
        return None
    return quantize_run(run_dir, QuantSpec.from_cfg(quant), out=run_dir / QAT_DIR, overwrite=True,
                        progress=progress, latency_rounds=latency_rounds)


def load_quantized_for_run(run_dir, qdir, device="cpu"):
    """The quantized model of ``qdir`` for use with the run ``run_dir`` (its pipeline and data):
    refused when it was quantized from a model with other inputs or outputs. Both folders' files
    are checked against their checksums (danlu._integrity)."""
    from .. import training as runs

    meta = read_meta(qdir)
    run_dir = Path(run_dir)
    if not (run_dir / "pipeline.json").is_file():
        raise UserError(f"{run_dir}: pipeline.json is missing — not a finished danlu run; give the run that "
                        f"{qdir} was quantized from ({meta.get('source_run')})")
    saved, have = meta["model"]["info"], runs.load_pipeline(run_dir).info.to_json()
    for key in ("task", "input_shape", "classes", "n_targets"):
        if saved.get(key) != have.get(key):
            raise UserError(f"{qdir}: was quantized from a model with another {key} ({saved.get(key)!r}) than "
                            f"the run {run_dir} ({have.get(key)!r}); give the run it came from "
                            f"({meta.get('source_run')})")
    return load_quantized(qdir, device)


def evaluate_quantized(run_dir, qdir, split: str = "test") -> dict:
    """Metrics of the quantized model in ``qdir`` on a split (or ``all``) of the run's data;
    the same shape as ``danlu.evaluation``: {split: {metric: value}}."""
    from .. import training as runs
    from ..training._loop import evaluate_outputs, model_outputs

    if split not in ("train", "validation", "test", "all"):
        raise UserError(f"--split must be train, validation, test or all; got {split!r}")
    recipe = runs.read_run_recipe(Path(run_dir))
    qmodel = load_quantized_for_run(run_dir, qdir)
    loss_kind = read_meta(qdir)["model"]["loss_kind"]
    prepared = runs.prepare_run_data(recipe, Path(run_dir))
    names = ("train", "validation", "test") if split == "all" else (split,)
    out = {}
    for name in names:
        if name not in prepared.splits:
            raise UserError(f"{run_dir}: the recipe has no {name} split (data.split.{name} is 0)")
        X, y = prepared.splits[name]
        out[name] = evaluate_outputs(model_outputs(qmodel, X), y, _loss_fn(recipe, prepared.info, qmodel),
                                     loss_kind, prepared.info)
    return out
