"""``finetune``: train a task head on top of a pretrained backbone (预训练 -> 微调).

The backbone is either the packaged MiniLM sentence encoder (``base.kind: minilm``, a text column
in, a sentence embedding out) or an earlier danlu run (``base.run: runs/xyz``, its weights loaded
into the same architecture, with a fresh head when the number of outputs differs). The recipe's
``model`` section describes the head (MiniLM) or is replaced by the earlier run's (``base.run``).

Modes (``base.mode``):
- ``probe``: the backbone stays frozen and only the head learns. With MiniLM the sentence
  embeddings are computed once and the loop only sees them: a linear probe costs seconds.
- ``full``: everything learns; the backbone at ``base.lr``, the head at ``optimizer.lr``.
- ``gradual``: like full, but the backbone starts frozen and one block is unfrozen from the top
  every ``base.unfreeze_every`` epochs (:class:`GradualUnfreeze`, an ``epoch_start`` callback).

Everything else — the loop, checkpoints, early stopping, monitors, the run directory — is the one
path of ``danlu train``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from torch import nn

from .. import _integrity as integrity
from .. import training as runs
from ..errors import RecipeError, UserError
from ..recipe import Recipe
from ..training import _checkpoint as ck
from ._backbone import SentenceEncoder, TextClassifier
from ._text import prepare_text


class GradualUnfreeze:
    """Unfreeze backbone blocks from the top: at epoch e, the top ``e // every + 1`` blocks learn.

    ``blocks`` is bottom-to-top; ``rest`` (e.g. the token embeddings) is unfrozen once every block is.
    The blocks are filled in after the model is built (see :func:`finetune`).
    """

    name = "gradual_unfreeze"

    def __init__(self, every: int):
        self.every = every
        self.blocks: list[nn.Module] = []
        self.rest: list[nn.Module] = []
        self.unfrozen = 0

    def on_epoch_start(self, state) -> None:
        count = min(state.epoch // self.every + 1, len(self.blocks))
        for i, block in enumerate(reversed(self.blocks)):
            block.requires_grad_(i < count)
        all_open = count == len(self.blocks) and state.epoch // self.every + 1 > len(self.blocks)
        for module in self.rest:
            module.requires_grad_(all_open)
        if count != self.unfrozen:
            print(f"finetune: epoch {state.epoch + 1}: top {count} of {len(self.blocks)} backbone blocks learn",
                  file=sys.stderr)
        self.unfrozen = count


def finetune(recipe: Recipe | dict, run_dir: str | Path | None = None, *, overwrite: bool = False,
             progress: str | None = None, callbacks=()) -> "runs.Run":
    """Train a recipe with a ``base:`` section into a new run directory; returns the finished run."""
    if not isinstance(recipe, Recipe):
        recipe = Recipe.from_dict(recipe)
    recipe = _checked(recipe)
    text = recipe.base.kind == "minilm"
    prepared = prepare_text(recipe) if text else runs.prepare_run_data(recipe)   # bad data fails before writing
    target = runs.plan_run_dir(recipe, run_dir, overwrite)   # checked; nothing is written before the model is built
    path = target.path
    gradual = GradualUnfreeze(recipe.base.unfreeze_every) if recipe.base.mode == "gradual" else None
    backbone = PretrainedBackbone(recipe, text, gradual)   # a callback: attaches or loads the base when built
    session = runs.build_session(_head_recipe(recipe, text), path, prepared, progress, [*callbacks, gradual, backbone])
    state = session.state
    with target.claim() as claim:   # created, marked and locked by this process for the whole run
        ck.atomic_write_text(path / "recipe.yaml", recipe.to_yaml())
        runs.save_pipeline(prepared.pipeline, path)   # with checksums, as runs.load_model reads it
        claim.started()
        runs.fit(state, session.callbacks)
        summary = runs.finish(state, path)
        _record_base(path, recipe, prepared.pipeline)
    return runs.Run(path, summary)


def _checked(recipe: Recipe) -> Recipe:
    base = recipe.base
    if base.kind is None and base.run is None:
        raise RecipeError(f"{recipe.source}: finetune needs a backbone; set base.kind: minilm or base.run: RUN_DIR")
    if base.run is None:
        return recipe
    earlier = runs.read_run_recipe(Path(base.run))
    _check_base_split(recipe, earlier, Path(base.run))
    # the same architecture as the base run, so its weights fit
    return recipe.with_overrides({"model": json.loads(json.dumps(earlier.model))})


def _check_base_split(recipe: Recipe, earlier: Recipe, base_dir: Path) -> None:
    """On the rows the base run learned from, this run must split them the same way, or its test
    rows may be the base's training rows (a seed-1 run on a seed-0 base: 186 of 270 test rows).
    The check is the one ensembles and distillation use; ``base.allow_overlap`` accepts the overlap."""
    from ..combine import check_same_data, data_identity

    same_rows = all(recipe.data.get(k) == earlier.data.get(k) for k in ("source", "name", "path"))
    if not same_rows or recipe.base.allow_overlap:
        return
    where = "the fine-tuning recipe" + ("" if recipe.source == "recipe" else f" {recipe.source}")
    check_same_data((str(base_dir), data_identity(earlier, base_dir)), (where, data_identity(recipe)),
                    role="a run and its base.run on the same data",
                    fix=" (else its test rows may be the base run's training rows); use the base run's seed and "
                        "data section, or set base.allow_overlap: true to accept the overlap knowingly")


def _head_recipe(recipe: Recipe, text: bool) -> Recipe:
    """The recipe the session builds the head from: with MiniLM, LoRA adapters belong on the
    encoder, so they are added after the encoder is attached, not to the bare head."""
    lora = recipe.get("lora")
    if text and lora and lora.get("enabled"):
        return recipe.with_overrides({"lora.enabled": False})
    return recipe


def _lora_enabled(recipe: Recipe) -> bool:
    lora = recipe.get("lora")
    return bool(lora and lora.get("enabled"))


class PretrainedBackbone:
    """Fine-tuning's part in the run, as build-time hooks of a callback (no step after the session
    is built replaces the model or the optimizer):

    * ``transform_model``: the MiniLM encoder goes in front of the head (or, for a probe, the head
      alone learns on cached embeddings), or the base run's weights are loaded into the same
      architecture; the backbone's blocks go to gradual unfreezing;
    * ``param_groups``: the head at ``optimizer.lr``, the backbone at ``base.lr`` (default a tenth),
      both under the recipe's schedule.
    """

    def __init__(self, recipe: Recipe, text: bool, gradual: GradualUnfreeze | None):
        self.recipe, self.text, self.gradual = recipe, text, gradual
        self.backbone: list[nn.Parameter] = []

    def transform_model(self, model, info):
        attach = _attach_minilm if self.text else _load_base_run
        model, self.backbone = attach(model, self.recipe, self.gradual)
        return model

    def param_groups(self, model) -> list[dict]:
        backbone_ids = {id(p) for p in self.backbone}
        groups = [{"params": [p for p in model.parameters() if id(p) not in backbone_ids and p.requires_grad]}]
        if self.backbone:
            base = self.recipe.base
            groups.append({"params": self.backbone,
                           "lr": base.lr if base.lr is not None else self.recipe.optimizer.lr / 10})
        return groups


def _attach_minilm(model, recipe: Recipe, gradual: GradualUnfreeze | None):
    """Probe: the head alone (the inputs are cached embeddings). Otherwise the encoder goes in
    front of the head. Returns the model and the backbone's parameters (for their own rate)."""
    if recipe.base.mode == "probe":
        return model, []
    encoder = SentenceEncoder()
    encoder.bert.pooler.requires_grad_(False)   # unused: sentence embeddings are mean-pooled
    model = TextClassifier(encoder, model)
    if _lora_enabled(recipe):
        from ._lora import lora_from_recipe

        lora_from_recipe(model, recipe.lora)   # freezes all but the adapters and the head
    if gradual is not None:
        gradual.blocks = encoder.blocks()
        gradual.rest = [encoder.bert.embeddings]
    return model, [p for p in encoder.parameters() if p.requires_grad]


def head_module(model: nn.Module) -> tuple[str, nn.Linear]:
    """The task head: the last ``nn.Linear`` in module order."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise UserError("the base run's model has no linear output layer to replace; finetune needs one")
    return found[-1]


def _load_base_run(model, recipe: Recipe, gradual: GradualUnfreeze | None):
    """Weights of the earlier run into the same architecture; tensors whose shape changed (the head,
    when the number of outputs differs) keep their fresh initialisation. Returns the model and the
    backbone's parameters."""
    base_dir = Path(recipe.base.run)
    weights_file = base_dir / "model.safetensors"
    if not weights_file.is_file():
        raise UserError(f"{base_dir}: model.safetensors is missing — the base run has not finished; "
                        f"finish it with `danlu resume {base_dir}`")
    saved = ck.load_weights(weights_file, device="cpu")
    own = model.state_dict()
    usable = {k: v for k, v in saved.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise UserError(f"{base_dir}: none of its weights fit this model; the data must have the same "
                        f"features as the base run's")
    model.load_state_dict(usable, strict=False)
    skipped = sorted(set(own) - set(usable))
    if skipped:
        print(f"finetune: kept fresh weights for {', '.join(skipped)} (shape differs from {base_dir})",
              file=sys.stderr)
    head_name, head = head_module(model)
    layers = [m for n, m in model.named_modules()
              if m is not head and not list(m.children()) and any(True for _ in m.parameters(recurse=False))]
    head_ids = {id(p) for p in head.parameters()}
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    if recipe.base.mode == "probe":
        for p in backbone:
            p.requires_grad_(False)
        return model, []
    if gradual is not None:
        gradual.blocks = layers
    return model, backbone


def _record_base(path: Path, recipe: Recipe, pipeline) -> None:
    """model.json says which backbone the weights belong to, so loading can rebuild it."""
    meta = integrity.read_json(path / "model.json")   # as this run just wrote it
    meta["base"] = {"kind": recipe.base.kind, "run": recipe.base.run, "mode": recipe.base.mode,
                    "inputs": getattr(pipeline, "inputs", "features")}
    ck.atomic_write_text(path / "model.json", json.dumps(meta, indent=1))


def load_text_model(run_dir: str | Path, device="cpu"):
    """(model, pipeline, meta, recipe) of a finished MiniLM run: the head alone for a probe (its
    pipeline turns texts into embeddings), the encoder and head otherwise."""
    from ..models import build_model
    from ..training._factory import output_dim
    from ._text import TextPipeline

    run_dir = Path(run_dir)
    recipe = runs.read_run_recipe(run_dir)
    meta = integrity.read_json(run_dir / "model.json")   # refused unless it matches its checksum
    integrity.require(run_dir / "model.json", {"loss_kind": str}, meta)
    pipeline = TextPipeline.load(run_dir)   # checked the same way
    model = build_model(recipe.model, pipeline.info, output_dim(meta["loss_kind"], pipeline.info))
    if meta.get("target_scaled"):
        model = runs.TargetScaled(model, [0.0] * pipeline.info.n_targets, [1.0] * pipeline.info.n_targets)
    if pipeline.inputs == "tokens":
        model = TextClassifier(SentenceEncoder(), model)
        if _lora_enabled(recipe):
            from ._lora import add_lora

            cfg = recipe.lora   # same wrapping as in training, so the adapter weights have a place
            add_lora(model, rank=cfg.rank, alpha=cfg.alpha, dropout=cfg.dropout,
                     target_modules=cfg.target_modules, train_head=cfg.train_head, verbose=False)
    model.load_state_dict(ck.load_weights(run_dir / "model.safetensors", device="cpu"))
    return model.to(device).eval(), pipeline, meta, recipe
