"""The run kind of recipes with a pretrained backbone (``base:``): a MiniLM sentence encoder on a
text column, or an earlier run's network fine-tuned (probe, full or gradual unfreezing)."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..training._neural import NeuralRuns
from ..training._runs import Run
from ..training._session import with_positive


class FinetuneRuns(NeuralRuns):
    name = "finetune"
    resumable = False   # the backbone is attached after the session is built; resume is refused in one line

    def prepare_data(self, recipe, run_dir=None, rows=None):
        if recipe.base.kind == "minilm":   # text: sentences -> token ids or cached sentence embeddings
            from ._text import prepare_text

            return with_positive(prepare_text(recipe, rows), recipe)
        return super().prepare_data(recipe, run_dir, rows)

    def train(self, recipe, run_dir, *, overwrite: bool, progress, callbacks, rows, prepared=None, build=None) -> Run:
        from ._finetune import finetune

        if rows is not None:
            raise UserError(f"{recipe.source}: a run with a pretrained backbone (base:) splits its rows by its seed; "
                            f"fixed row lists (cross-validation folds) are not supported for it yet")
        return finetune(recipe, run_dir, overwrite=overwrite, progress=progress, callbacks=callbacks)

    def resume(self, run_dir: Path, recipe, checkpoint, *, progress, callbacks, force_foreign_checkpoint=False,
               build=None) -> Run:
        if (run_dir / "summary.json").is_file() and checkpoint is None:
            return Run(run_dir)
        raise UserError(f"{run_dir}: runs that start from a pretrained backbone (base:) cannot be resumed yet; "
                        f"train again with `danlu finetune {run_dir / 'recipe.yaml'}`")

    def load_model(self, run_dir: Path, recipe, device="cpu", quantized=None, model=None):
        from ._text import is_text_run

        if is_text_run(run_dir):
            from ._finetune import load_text_model

            return load_text_model(run_dir, device)
        return super().load_model(run_dir, recipe, device, quantized, model)
