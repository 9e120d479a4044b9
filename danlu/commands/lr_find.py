"""``danlu lr-find RECIPE``: sweep the learning rate, plot loss against it, suggest a rate."""
from __future__ import annotations

HELP = "find a learning rate: sweep it over training batches, plot the loss, suggest one (找最优学习率)"


def add_arguments(parser) -> None:
    parser.add_argument("recipe", help="recipe YAML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key, e.g. --set optimizer.kind=sgd (repeatable)")
    parser.add_argument("--min", dest="min_lr", type=float, default=1e-7, help="smallest rate of the sweep (1e-7)")
    parser.add_argument("--max", dest="max_lr", type=float, default=10.0, help="largest rate of the sweep (10)")
    parser.add_argument("--steps", type=int, default=100, help="batches in the sweep, one rate each (100)")
    parser.add_argument("--rule", choices=("steepest", "min10"), default="steepest",
                        help="steepest: where the smoothed loss falls fastest (default); "
                             "min10: the rate at the lowest loss / 10")
    parser.add_argument("-o", "--output", default=None,
                        help="folder for lr_find.png and lr_find.json (default runs/lr-find-<name>; "
                             "an existing one gets a numbered suffix)")


def run(args) -> int:
    import sys
    from pathlib import Path

    from ..recipe import Recipe
    from ..tune import lr_find
    from .._rundir import holds_something, numbered
    from ..tune._lr_find import default_out_dir

    recipe = Recipe.from_yaml(args.recipe, args.overrides)
    out = numbered(Path(args.output), holds_something) if args.output else default_out_dir(recipe)
    result = lr_find(recipe, min_lr=args.min_lr, max_lr=args.max_lr, steps=args.steps, rule=args.rule,
                     progress=args.progress != "none")
    result.save(out)
    print(f"lr-find: {len(result.lrs)} steps from {result.lrs[0]:.3g} to {result.lrs[-1]:.3g}; {result.reason}",
          file=sys.stderr)
    print(f"lowest smoothed loss at lr {result.min_loss_lr:.3g}")
    print(f"suggested learning rate: {result.suggested:.3g} ({result.rule} rule)")
    print(f"plot: {out / 'lr_find.png'}")
    print(f"use it: danlu train {args.recipe} {result.set_line()}")
    return 0
