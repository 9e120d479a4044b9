"""``danlu quantize RUN``: quantize a finished run's model into RUN/quantized-<tag>/ and report
size, metric and latency against the float model."""
from __future__ import annotations

HELP = "quantize a finished run's model (神经网络量化): 8/4/2 bits, sym/asym, per tensor/channel/group, " \
       "uniform/log/lut, dynamic or calibrated activations, mixed precision"

EPILOG = """examples:
  danlu quantize runs/digits_mlp                                  # int8, symmetric, per channel
  danlu quantize runs/digits_mlp --dynamic                        # int8 activations per batch (integer matmul)
  danlu quantize runs/digits_mlp --bits 4 --scheme asym --granularity group --group-size 32
  danlu quantize runs/digits_cnn --calibrate 8 --observer percentile
  danlu quantize runs/digits_mlp --budget-mb 0.03                 # bits per layer by sensitivity
  danlu quantize runs/digits_mlp_qat                              # a QAT run: its recipe's quant: keys
"""


def add_arguments(parser) -> None:
    import argparse

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("run_dir", help="a finished run directory")
    parser.add_argument("--bits", type=int, choices=(8, 4, 2), default=None,
                        help="bits per weight (default 8, or the run's quant.bits after QAT)")
    parser.add_argument("--scheme", choices=("sym", "asym"), default=None,
                        help="sym: range centred on zero; asym: [min, max] with a zero point (default sym)")
    parser.add_argument("--granularity", choices=("tensor", "channel", "group"), default=None,
                        help="one scale per tensor, per output channel, or per group of inputs (default channel)")
    parser.add_argument("--group-size", type=int, default=None, help="weights per group (default 64)")
    parser.add_argument("--method", choices=("uniform", "log", "lut"), default=None,
                        help="uniform levels, power-of-two levels, or a k-means lookup table (default uniform)")
    parser.add_argument("--dynamic", action="store_true",
                        help="quantize activations to int8 per batch at inference (int8 x int8 matrix products)")
    parser.add_argument("--calibrate", type=int, default=0, metavar="N",
                        help="static activation ranges from N training batches (default 0: none)")
    parser.add_argument("--observer", choices=("minmax", "percentile"), default="minmax",
                        help="how calibration turns activations into a range (default minmax)")
    parser.add_argument("--percentile", type=float, default=99.9,
                        help="percentile observer: clip to the P and 100-P percentiles of each batch (default 99.9)")
    parser.add_argument("--act-scheme", choices=("sym", "asym"), default="asym",
                        help="activation codes: asym suits ReLU outputs (default asym)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--budget-mb", type=float, default=None,
                        help="mixed precision: bits per layer (8/4/2) by sensitivity so the model fits X MB")
    budget.add_argument("--avg-bits", type=float, default=None,
                        help="mixed precision: at most B bits per weight on average")
    parser.add_argument("--no-fold-bn", dest="fold_bn", action="store_false",
                        help="keep batch norms as layers instead of folding them into the quantized scales")
    parser.add_argument("-o", "--output", default=None,
                        help="output folder (default RUN/quantized-<tag>, numbered if taken)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing quantized folder given by -o")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")


def _spec(args, run_dir):
    """Flags over the run's quant: section (after QAT) over the defaults."""
    from ..compress import QuantSpec
    from ..errors import UserError
    from ..recipe import Recipe

    if not (run_dir / "recipe.yaml").is_file():
        raise UserError(f"{run_dir}: not a danlu run directory (no recipe.yaml); give the folder that "
                        f"`danlu train` created, e.g. runs/<name>")
    quant = Recipe.from_yaml(run_dir / "recipe.yaml").get("quant") or {}
    base = QuantSpec.from_cfg(quant) if quant.get("enabled") else QuantSpec()
    given = {"bits": args.bits, "scheme": args.scheme, "granularity": args.granularity,
             "group_size": args.group_size, "method": args.method}
    return QuantSpec.from_cfg({**base.to_json(), **{k: v for k, v in given.items() if v is not None}})


def run(args) -> int:
    import json
    import sys
    from pathlib import Path

    spec = _spec(args, Path(args.run_dir))   # the user's mistakes show before torch is imported

    from ..compress import format_plan, quantize_run

    result = quantize_run(args.run_dir, spec, act="dynamic" if args.dynamic else "none",
                          calibrate_batches=args.calibrate, observer=args.observer, percentile=args.percentile,
                          act_scheme=args.act_scheme, budget_mb=args.budget_mb, avg_bits=args.avg_bits,
                          fold_bn=args.fold_bn, out=args.output, overwrite=args.overwrite,
                          progress=args.progress != "none")
    if args.json:
        print(json.dumps(result.report, indent=1))
        return 0
    if args.budget_mb is not None or args.avg_bits is not None:
        print(format_plan(result.plan))
        print()
    print(result.table())
    print(f"quantized model: {result.path}", file=sys.stderr)
    return 0
