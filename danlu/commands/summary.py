"""``danlu summary RUN|RECIPE``: a model's layers, output shapes, parameters and memory (模型概要).

A run directory gives its trained model (danlu.training.load_model); a recipe gives the model it
would train, built as `danlu train` builds it (its data prepared for the input shape, its
adapters and wrappers included) but not trained. The table comes from
danlu.models._summary.summarize on a batch of zeros.
"""
from __future__ import annotations

HELP = "layers, output shapes, parameters and memory of a run's model or of the model a recipe would train"

EPILOG = """examples:
  danlu summary recipes/digits_cnn.yaml          # the model the recipe would train (not trained)
  danlu summary runs/digits_cnn --batch 64       # a trained run's model; activations for a batch of 64
  danlu summary runs/digits_cnn --json           # the same as JSON
"""


def add_arguments(parser) -> None:
    import argparse

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("path", metavar="RUN|RECIPE", help="a run directory or a recipe YAML file")
    parser.add_argument("--batch", type=int, default=1,
                        help="batch size of the forward pass that sizes the activations (default 1)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args) -> int:
    import json
    from pathlib import Path

    from ..errors import UserError

    if args.batch < 1:
        raise UserError(f"--batch must be >= 1, got {args.batch}")
    path = Path(args.path)
    if path.is_dir():
        model, info = _run_model(path)
    elif path.is_file():
        model, info = _recipe_model(path)
    else:
        raise UserError(f"{path}: no such run directory or recipe file; give a run folder (runs/<name>) "
                        f"or a recipe .yaml")
    from ..models._summary import summarize

    summary = summarize(model, info.input_shape, args.batch)
    print(json.dumps(summary.to_json(), indent=1) if args.json else summary.table())
    return 0


def _refuse_classical(where, kind, recipe, settings: str = "the recipe's model section") -> None:
    from ..errors import UserError

    if kind.name == "classical":
        raise UserError(f"{where}: model kind {recipe.model.kind!r} is a scikit-learn estimator, which has no "
                        f"layers to summarize; its settings are {settings} (`danlu keys` lists them)")


def _run_model(run_dir):
    """A finished run's model and its data's facts; agents and classical runs refuse in one line."""
    from .. import training

    kind, recipe = training.kind_of_dir(run_dir)
    if recipe is not None:
        _refuse_classical(run_dir, kind, recipe, f"the model section of {run_dir / 'recipe.yaml'}")
    model, pipeline, _meta, _recipe = training.load_model(run_dir)   # an agent's run refuses here
    return model, pipeline.info


def _recipe_model(path):
    """The model a recipe would train, on CPU, built by the session that `danlu train` builds."""
    from .. import training
    from .._extras import check_extras
    from ..recipe import Recipe

    recipe = Recipe.from_yaml(path).with_overrides({"device": "cpu"})
    check_extras(recipe)
    kind = training.kind_of_recipe(recipe)
    _refuse_classical(recipe.source, kind, recipe)
    prepared = kind.prepare_data(recipe)   # an agent's recipe refuses here: it has no data rows
    session = training.build_session(recipe, None, prepared, "none")
    return session.state.model, prepared.info
