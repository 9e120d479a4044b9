"""``danlu compare RUN...``: a benchmark table (基准) of runs scored on the same rows."""
from __future__ import annotations

HELP = ("benchmark table of runs scored on the same test rows, with baselines, scikit-learn references "
        "and a significance test against the baseline")


def add_arguments(parser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories (same data, seed and split)")
    parser.add_argument("--split", default="test", choices=("train", "validation", "test"),
                        help="split to score (default: test)")
    parser.add_argument("--metric", help="metric to sort by (default: accuracy or r2)")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the scikit-learn reference models (faster on large data)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")


def run(args) -> int:
    import json

    from ..experiments import compare_runs
    from ..experiments._compare import format_comparison
    from ..experiments._cv import _finite

    result = compare_runs(args.runs, args.split, args.metric, references=not args.no_reference)
    if args.json:
        print(json.dumps(_finite(result), indent=1, ensure_ascii=False))  # NaN is written as null
    else:
        print(format_comparison(result))
    return 0
