"""``danlu tune RECIPE --space SPACE.yaml``: hyper-parameter search with Optuna
(超参数, 网格搜索, 贝叶斯优化, 模拟退火)."""
from __future__ import annotations

HELP = "search hyper-parameters with Optuna: grid, random, TPE (Bayesian) or simulated annealing"

SAMPLERS = ("grid", "random", "tpe", "anneal")   # as danlu.tune.SAMPLERS, without importing it


def add_arguments(parser) -> None:
    parser.add_argument("recipe", help="recipe YAML file")
    parser.add_argument("--space", required=True,
                        help="YAML file mapping recipe keys to distributions, e.g. "
                             "optimizer.lr: {type: float, low: 1.0e-4, high: 0.1, log: true}")
    parser.add_argument("--trials", type=int, default=20,
                        help="run until the study has this many finished trials (default 20); "
                             "running the command again continues the study")
    parser.add_argument("--sampler", choices=SAMPLERS, default="tpe",
                        help="grid, random, tpe (Bayesian, default) or anneal (simulated annealing)")
    parser.add_argument("--storage", default=None,
                        help="database URL of the study (default sqlite:///<out>/study.db); several "
                             "processes may share one, e.g. postgresql://user@host/db")
    parser.add_argument("--study", default=None, help="study name in the storage (default: the recipe's name)")
    parser.add_argument("--metric", default=None,
                        help="validation figure to optimise (default val_accuracy / val_r2 by task)")
    parser.add_argument("--direction", choices=("auto", "min", "max"), default="auto",
                        help="minimise or maximise the metric (auto: from the metric)")
    parser.add_argument("--prune", action="store_true", default=True,
                        help="stop trials that are worse than the median at the same epoch (default)")
    parser.add_argument("--no-prune", dest="prune", action="store_false", help="run every trial to its end")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key before the search (repeatable)")
    parser.add_argument("-o", "--output", default=None,
                        help="folder of the study, its trial runs and plots (default runs/tune-<name>)")


def run(args) -> int:
    from ..recipe import Recipe
    from ..tune import tune

    recipe = Recipe.from_yaml(args.recipe, args.overrides)
    result = tune(recipe, args.space, trials=args.trials, sampler=args.sampler, storage=args.storage,
                  study=args.study, metric=args.metric, direction=args.direction, prune=args.prune,
                  out_dir=args.output, progress=args.progress != "none")
    states = {}
    for row in result.trials:
        key = "interrupted" if row["interrupted"] else row["state"].lower()
        states[key] = states.get(key, 0) + 1
    print(f"study {result.study_name!r}: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    if result.best_trial is None:
        print("no trial completed; nothing to recommend")
        return 0
    print(f"best {result.metric}: {result.best_value:.6g} (trial {result.best_trial}, run {result.best_run_dir})")
    sets = " ".join(f"--set {key}={_value_text(value)}" for key, value in result.best_params.items())
    print(f"best recipe: {result.best_recipe_path}")
    print(f"  = {args.recipe} {sets}")
    print("plots: " + ", ".join(str(p) for p in result.plots))
    print(f"train it: danlu train {result.best_recipe_path}")
    return 0


def _value_text(value) -> str:
    """A value as --set reads it (YAML), without spaces so that it stays one shell word."""
    import json

    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
