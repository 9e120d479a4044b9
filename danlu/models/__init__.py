"""Models: a registry of kinds, each declaring its recipe keys, and the built-in networks.

>>> from danlu.models import build_model
>>> model = build_model({"kind": "cnn"}, info, out_dim=10)   # info: the data's DataInfo

Your own ``torch.nn.Module`` joins with :func:`register_model` and then works in recipes as
``model: {kind: <name>, ...}`` (name the module that registers it under the recipe's ``plugins:``
so that every command finds it); :func:`check_model_builder` tells whether it conforms. The
capabilities register their kinds the same way (classical, generative, transfer: danlu._plugins).

Importing this package does not import torch (recipe validation uses it); the network classes
below are loaded on first use.
"""
from .._lazy import lazy_getattr
from . import _builtin  # noqa: F401  (registers linear, logistic, perceptron, mlp, cnn, rnn)
from ._check import check_model_builder, random_batch
from ._registry import (
    MODELS,
    ModelEntry,
    build_model,
    complete_model_cfg,
    register_model,
    registered_params,
    unregister_model,
)

_LAZY = {  # public name -> private module that needs torch
    "summarize": "_summary",
    "Summary": "_summary",
    "FeatureInput": "_inputs",
    "auto_embedding_dim": "_inputs",
    "MLP": "_nets",
    "CNN": "_nets",
    "RecurrentNet": "_nets",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "MODELS", "ModelEntry", "build_model", "check_model_builder", "complete_model_cfg", "random_batch",
    "register_model", "registered_params", "unregister_model", *_LAZY,
]
