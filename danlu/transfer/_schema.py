"""The ``lora:`` and ``base:`` sections of a recipe, registered by danlu.transfer."""
from __future__ import annotations

from ..recipe import NUM, Field, Rule, Section, _f, register_section, sizes, union  # noqa: F401

# danlu/transfer — start from a pretrained backbone (`danlu finetune`)
BASE = Section({
    "kind": _f(str, None, choices=("minilm",),
               doc="minilm: the packaged all-MiniLM-L6-v2 sentence encoder (text column -> embedding -> head); "
                   "null: no pretrained backbone unless base.run is set"),
    "run": _f(str, None, doc="an earlier danlu run directory whose weights start this one (new head if the "
                             "number of outputs differs)"),
    "mode": _f(str, "probe", choices=("probe", "full", "gradual"), nullable=False,
               doc="probe: frozen backbone, train the head only; full: train everything; gradual: unfreeze "
                   "one backbone block from the top every base.unfreeze_every epochs"),
    "lr": _f(NUM, None, min=0, min_exclusive=True,
             doc="learning rate of the backbone (optimizer.lr is the head's); null: optimizer.lr / 10"),
    "unfreeze_every": _f(int, 1, min=1, nullable=False, doc="gradual mode: epochs between two unfreezings"),
    "allow_overlap": _f(bool, False, doc="base.run on the same data but another seed or split: accept that this "
                                         "run's test rows may be the base run's training rows (refused otherwise)"),
    "text": _f(str, "text", nullable=False, doc="minilm: the CSV column holding the text"),
    "max_length": _f(int, 64, min=4, max=512, nullable=False, doc="minilm: tokens kept per text"),
}, doc="pretrained backbone and fine-tuning mode (预训练, 微调)", rules=(
    Rule(keys=("kind", "run"), check=lambda kind, run: kind is None or run is None,
         message="base.kind and base.run both set; keep one of them"),
))

# danlu/transfer — LoRA adapters, applied when the model is built (train only the adapters)
LORA = Section({
    "enabled": _f(bool, False, nullable=False,
                  doc="freeze the model and train low-rank adapters (LoRA) on its linear layers"),
    "rank": _f(int, 8, min=1, nullable=False, doc="rank r of each adapter update B @ A"),
    "alpha": _f(NUM, 16, min=0, min_exclusive=True, nullable=False,
                doc="the update is scaled by alpha / rank"),
    "dropout": _f(NUM, 0.0, min=0, max=0.95, nullable=False, doc="dropout on the adapter input while training"),
    "target_modules": _f(list, None, item=str,
                         doc="module-name patterns of the linear layers to adapt (e.g. [body.*]); "
                             "null: every linear layer except the head"),
    "train_head": _f(bool, True, nullable=False, doc="keep the task head (last linear layer) fully trainable"),
}, doc="LoRA (low-rank adaptation): fine-tune a small fraction of the weights")



TRANSFER_RULES = (
    Rule(keys=("lora.enabled", "base.kind", "base.run", "base.mode"),
         check=lambda lora, kind, run, mode: not (lora and (kind or run)) or mode == "full",
         message="lora.enabled needs base.mode: full (probe freezes the adapters too, gradual unfreezes the "
                 "base weights); got base.mode: {3}"),
)

register_section("lora", LORA)
register_section("base", BASE, rules=TRANSFER_RULES)
