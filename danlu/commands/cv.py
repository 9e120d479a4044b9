"""``danlu cv RECIPE --folds K``: k-fold cross-validation (交叉验证), one run directory per fold."""
from __future__ import annotations

HELP = ("k-fold cross-validation of a recipe (交叉验证): one run per fold, then the mean and standard "
        "deviation of every test figure (exit code 1 if a fold failed)")


def add_arguments(parser) -> None:
    parser.add_argument("recipe", help="recipe YAML file")
    parser.add_argument("--folds", type=int, default=5, help="number of folds K (default: 5)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key, e.g. --set optimizer.lr=0.01 (repeatable)")
    parser.add_argument("--out", help="folder for the fold runs and cv.json (default: <output.runs_dir>/cv-<name>; "
                                      "a folder that is not empty gets a numbered suffix)")
    parser.add_argument("--metric", action="append", default=None, metavar="M",
                        help="a column of the table (repeatable; default: the main figures; cv.json has all)")
    parser.add_argument("--json", action="store_true", help="print cv.json's content instead of the table")


def run(args) -> int:
    import json

    from ..errors import UserError, did_you_mean

    if args.folds < 2:  # before the heavy imports: a typo answers at once
        raise UserError(f"--folds must be at least 2, got {args.folds}")
    from ..evaluation import METRICS
    from ..experiments import cross_validate
    from ..recipe import Recipe

    recipe = Recipe.from_yaml(args.recipe, args.overrides)
    known = set().union(*METRICS.values()) | {"loss"}
    for m in args.metric or []:
        if m not in known:
            raise UserError(f"--metric {m!r} is not a metric{did_you_mean(m, known)}; "
                            f"use one of {', '.join(sorted(known))}")
    result = cross_validate(recipe, args.folds, args.out, progress=args.progress)
    print(json.dumps(result.to_dict(), indent=1, ensure_ascii=False) if args.json else result.table(args.metric))
    return 1 if result.failed else 0
