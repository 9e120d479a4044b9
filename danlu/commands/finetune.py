"""``danlu finetune RECIPE``: train from a pretrained backbone (the recipe's ``base:`` section)."""
from __future__ import annotations

HELP = "fine-tune from a pretrained backbone: base.kind minilm (text) or base.run RUN (微调)"


def add_arguments(parser) -> None:
    parser.add_argument("recipe", help="recipe YAML file with a base: section")
    parser.add_argument("--run-dir", help="run directory (default: <output.runs_dir>/<name>, numbered if taken)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key, e.g. --set base.mode=full (repeatable)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --run-dir")


def run(args) -> int:
    from ..cli import _print_summary
    from ..recipe import Recipe
    from ..transfer import finetune

    recipe = Recipe.from_yaml(args.recipe, args.overrides)
    result = finetune(recipe, args.run_dir, overwrite=args.overwrite, progress=args.progress)
    _print_summary(result.summary, result.path)
    return 0
