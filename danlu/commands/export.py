"""``danlu export RUN --format onnx``: the model with its preprocessing folded in, as an ONNX file."""
from __future__ import annotations

HELP = "export a finished run's model to ONNX, preprocessing (divisor, imputation, scaling) folded in"

EPILOG = """examples:
  danlu export runs/digits_cnn --format onnx                 # runs/digits_cnn/model.onnx (+ .pipeline.json)
  danlu export runs/churn --format onnx -o churn.onnx        # categorical columns take integer codes:
                                                             # the code table is in churn.onnx.pipeline.json
"""


def add_arguments(parser) -> None:
    import argparse

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("run_dir", help="a finished run directory")
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="export format (default onnx)")
    parser.add_argument("-o", "--output", default=None, help="output file (default RUN/model.onnx)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def run(args) -> int:
    import sys

    from ..errors import UserError

    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
    except ImportError:
        raise UserError("danlu export needs the onnx package: pip install 'danlu[serve]'") from None
    from ..serve import export_onnx
    from ..serve._onnx import sidecar_path

    path = export_onnx(args.run_dir, args.output, overwrite=args.overwrite)
    print(f"wrote {path} and {sidecar_path(path).name}", file=sys.stderr)
    return 0
