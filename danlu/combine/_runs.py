"""The run kind of ensembles: a folder written by `danlu ensemble` (its members, their combining
rule and figures; no recipe.yaml of its own). It evaluates and predicts like one run; it is made by
`danlu ensemble`, not trained or resumed."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..training._neural import NeuralRuns
from ..training._runs import Run


class EnsembleRuns(NeuralRuns):
    name = "ensemble"
    resumable = False

    def _no_recipe(self, run_dir) -> UserError:
        return UserError(f"{run_dir}: an ensemble folder (made by `danlu ensemble`) has no recipe.yaml of its own "
                         f"and nothing to resume; resume its member runs instead")

    def prepare_data(self, recipe, run_dir=None, rows=None):
        raise self._no_recipe(run_dir)

    def train(self, recipe, run_dir, *, overwrite, progress, callbacks, rows, prepared=None, build=None) -> Run:
        raise UserError(f"{recipe.source}: ensembles are made by `danlu ensemble RUN RUN ...`, not trained")

    def resume(self, run_dir: Path, recipe, checkpoint, *, progress, callbacks, force_foreign_checkpoint=False,
               build=None) -> Run:
        raise self._no_recipe(run_dir)

    def load_model(self, run_dir: Path, recipe=None, device="cpu", quantized=None, model=None):
        from ._model import load_ensemble

        if quantized is not None:
            raise UserError(f"{run_dir}: an ensemble has no quantized model of its own; quantize its members")
        return load_ensemble(run_dir, device)   # its members, combined

    def evaluate(self, run_dir: Path, recipe, split: str, quantized) -> dict:
        from ._model import evaluate_ensemble

        if quantized is not None:
            raise UserError(f"{run_dir}: an ensemble has no quantized model of its own; quantize its members")
        return evaluate_ensemble(run_dir, split)   # its stored rule on its members' outputs
