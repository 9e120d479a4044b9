"""The built-in model kinds: their recipe keys (as data) and their builders.

The keys below are the schema of ``model: {kind: ...}``; the recipe validator enforces types,
choices, ranges, list items and rules (an odd kernel size). Builders check only what needs the
data to judge (the input shape). torch is imported inside the
builders so that registering the kinds stays free of it.
"""
from __future__ import annotations

import math

from ..errors import RecipeError, UserError
from ..recipe import NUM, Field, Rule, sizes
from ._registry import register_model

_ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid", "leaky_relu", "elu")

SHARED = {
    "embedding_dim": Field(int, None, min=1, doc="size of the embedding of each categorical column; "
                                                   "null: min(50, (categories + 1) // 2)"),
}


def _dropout(default: float) -> Field:
    return Field(NUM, default, min=0, max=0.95, nullable=False, doc="fraction of units dropped while training")


def _activation() -> Field:
    return Field(str, "relu", choices=_ACTIVATIONS, nullable=False, doc="nonlinearity between layers")


LINEAR_PARAMS = dict(SHARED)

MLP_PARAMS = SHARED | {
    "hidden": sizes(default=[128, 64], nullable=False, doc="sizes of the hidden layers"),
    "activation": _activation(),
    "dropout": _dropout(0.0),
    "batch_norm": Field(bool, False, nullable=False, doc="batch normalisation after each hidden layer"),
}

CNN_PARAMS = SHARED | {
    "channels": sizes(default=[32, 64], nullable=False, doc="output channels of each conv block"),
    "kernel_size": Field(int, 3, min=1, nullable=False, doc="odd convolution window size", rules=(
        Rule(check=lambda k: k % 2 == 1,
             message=lambda k: f"must be odd so that padding keeps the image size, got {k}; use {k + 1}"),)),
    "pool": Field(str, "max", choices=("max", "avg", "none"), nullable=False,
                  doc="2x2 pooling after each conv block"),
    "batch_norm": Field(bool, True, nullable=False, doc="batch normalisation after each convolution"),
    "dropout": _dropout(0.25),
    "hidden": sizes(default=[128], nullable=False, doc="hidden layer sizes of the dense head"),
    "activation": _activation(),
}

RNN_PARAMS = SHARED | {
    "cell": Field(str, "lstm", choices=("rnn", "lstm", "gru"), nullable=False, doc="recurrent cell type"),
    "hidden_size": Field(int, 64, min=1, nullable=False, doc="size of the recurrent state"),
    "layers": Field(int, 1, min=1, nullable=False, doc="stacked recurrent layers"),
    "bidirectional": Field(bool, False, nullable=False, doc="also read the sequence backwards"),
    "dropout": _dropout(0.0),
}


def _categorical(info) -> list:
    return list(getattr(info, "categorical", None) or [])


def _shape_hint(shape: tuple, prefix: list, generic: str) -> str:
    """A concrete ``data.shape`` to suggest when the per-sample size is a perfect square."""
    n = math.prod(shape)
    side = math.isqrt(n)
    return str(prefix + [side, side]) if side * side == n else generic


def build_linear(cfg, info, out_dim):
    from ._nets import MLP

    return MLP(tuple(info.input_shape), out_dim, categorical=_categorical(info),
               embedding_dim=cfg["embedding_dim"])


def build_mlp(cfg, info, out_dim):
    from ._nets import MLP

    return MLP(tuple(info.input_shape), out_dim, hidden=cfg["hidden"], activation=cfg["activation"],
               dropout=cfg["dropout"], batch_norm=cfg["batch_norm"], categorical=_categorical(info),
               embedding_dim=cfg["embedding_dim"])


def build_cnn(cfg, info, out_dim):
    from ._nets import CNN

    shape = tuple(info.input_shape)
    if len(shape) != 3:
        hint = _shape_hint(shape, [1], "[channels, height, width]")
        raise RecipeError(f"model.kind cnn needs images of shape (channels, height, width), but each sample "
                          f"has shape {shape}; set data.shape, e.g. data.shape: {hint}, or use model.kind mlp")
    return CNN(shape, out_dim, channels=cfg["channels"], kernel_size=cfg["kernel_size"], pool=cfg["pool"],
               batch_norm=cfg["batch_norm"], dropout=cfg["dropout"], hidden=cfg["hidden"],
               activation=cfg["activation"])


def build_rnn(cfg, info, out_dim):
    from ._nets import RecurrentNet

    shape = tuple(info.input_shape)
    if len(shape) != 2:
        hint = _shape_hint(shape, [], "[steps, features]")
        raise RecipeError(f"model.kind rnn needs sequences of shape (time steps, features), but each sample "
                          f"has shape {shape}; use data.source: sequence or set data.shape, "
                          f"e.g. data.shape: {hint}, or use model.kind mlp")
    return RecurrentNet(shape, out_dim, cell=cfg["cell"], hidden_size=cfg["hidden_size"], layers=cfg["layers"],
                        bidirectional=cfg["bidirectional"], dropout=cfg["dropout"])


# linear, logistic and perceptron share one architecture; the names follow the vocabulary
# (least squares / log loss / hinge loss) and the loss picks the behaviour.
register_model("linear", build_linear, LINEAR_PARAMS)
register_model("logistic", build_linear, LINEAR_PARAMS)
register_model("perceptron", build_linear, LINEAR_PARAMS)
register_model("mlp", build_mlp, MLP_PARAMS)
register_model("cnn", build_cnn, CNN_PARAMS)
register_model("rnn", build_rnn, RNN_PARAMS)


def _python_object(cfg, info, out_dim):
    """``model: {kind: python, class: ...}``: a run trained on a model given as a Python object
    (danlu.train(model=...)); a folder cannot rebuild it, so the verbs are told how to proceed."""
    raise UserError(f"model.kind python: this run's model was the Python object {cfg.get('class', '?')}, which "
                    f"a folder cannot rebuild; pass it again (danlu.resume / evaluate / predict / load_model with "
                    f"model=...), or register a builder with danlu.register_model in a module listed under plugins:")


register_model("python", _python_object, None)
