"""``danlu distill --teacher RUN --student RECIPE``: knowledge distillation (模型蒸馏)."""
from __future__ import annotations

HELP = ("train a student recipe on the soft targets of trained teacher runs (模型蒸馏) and compare it with "
        "the same student trained alone")

SHOWN = ("accuracy", "f1_macro", "log_loss", "roc_auc")


def add_arguments(parser) -> None:
    parser.add_argument("--teacher", dest="teachers", action="append", required=True, metavar="RUN",
                        help="a finished classifier run trained on the same data and seed (repeat for several "
                             "teachers: their softened probabilities are averaged)")
    parser.add_argument("--student", required=True, metavar="RECIPE", help="the student's recipe YAML (a neural model)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the student recipe (repeatable)")
    parser.add_argument("--temperature", type=float, default=4.0,
                        help="T: teacher and student logits are divided by T before the softmax (default: 4)")
    parser.add_argument("--alpha", type=float, default=0.7,
                        help="weight of the soft-target loss; 1 - alpha goes to the hard labels (default: 0.7)")
    parser.add_argument("--run-dir", default=None,
                        help="the distilled student's run directory (default: <runs_dir>/<name>-distilled); "
                             "the student trained alone goes to <run-dir>-alone")
    parser.add_argument("--baseline", default=None, metavar="RUN",
                        help="a finished run of the student trained alone, instead of training one")
    parser.add_argument("--overwrite", action="store_true", help="replace existing run directories")


def run(args) -> int:
    from ..distill import distill, table_rows
    from ..evaluation import format_table
    from ..recipe import Recipe

    recipe = Recipe.from_yaml(args.student, args.overrides)
    result = distill(recipe, args.teachers, temperature=args.temperature, alpha=args.alpha, run_dir=args.run_dir,
                     baseline=args.baseline, overwrite=args.overwrite, progress=args.progress)
    rows = {name: {k: figs.get(k) for k in SHOWN if k in figs} for name, figs in table_rows(result).items()}
    print(f"test split, temperature {result['temperature']:g}, alpha {result['alpha']:g}:")
    print(format_table(rows, digits=4).replace("split", "run  ", 1))   # rows are runs here, not splits
    sizes = [(name.split(" (")[0], figs.get("parameters")) for name, figs in table_rows(result).items()]
    print("parameters: " + ", ".join(f"{name} {n:,}" for name, n in sizes if n is not None))
    print(f"distill.json written to {result['path']}")
    return 0
