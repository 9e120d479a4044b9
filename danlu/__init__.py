"""danlu (丹炉, "the furnace"): train, watch, rescue, evaluate and explain models from one recipe.

The verbs mirror the command line::

    import danlu
    run = danlu.train(danlu.Recipe.from_yaml("recipes/digits_cnn.yaml"))
    danlu.evaluate(run.path, "test"); danlu.predict(run.path, "rows.csv", "out.csv")

Names are loaded on first use so that ``import danlu`` (and ``danlu --help``) stays fast.
"""
__version__ = "0.1.0"

_LAZY = {
    "Recipe": ("danlu.recipe", "Recipe"),
    "train": ("danlu.training", "train"),
    "resume": ("danlu.training", "resume"),
    "evaluate": ("danlu.training", "evaluate"),
    "predict": ("danlu.training", "predict"),
    "load_model": ("danlu.training", "load_model"),
    "Run": ("danlu.training", "Run"),
    "register_model": ("danlu.models", "register_model"),
    "explain": ("danlu.glossary", "explain"),
    "UserError": ("danlu.errors", "UserError"),
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'danlu' has no attribute {name!r}")
