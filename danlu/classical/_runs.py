"""The run kind of classical models: a scikit-learn estimator fitted once on the training rows
(no loop, no checkpoints), sharing the data pipeline, metrics and run files of neural runs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..training._neural import NeuralRuns
from ..training._runfiles import plan_run_dir, read_model_meta
from ..training._runs import Run


class ClassicalRuns(NeuralRuns):
    name = "classical"
    resumable = False   # fitted in one go: a killed fit leaves a run to fit again, not to continue

    def train(self, recipe, run_dir, *, overwrite: bool, progress, callbacks, rows, prepared=None, build=None) -> Run:
        from ._fit import plan

        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise UserError(f"{recipe.source}: classical model {recipe.model.kind!r} is fitted in one process; "
                            f"drop --nproc / torchrun")
        if callbacks:
            raise UserError(f"{recipe.source}: classical model {recipe.model.kind!r} is fitted once, without the "
                            f"training loop, so callbacks have nothing to call; remove them")
        prepared = prepared if prepared is not None else self.prepare_data(recipe, rows=rows)
        fitting = plan(recipe, prepared)   # checked against the data before anything is written
        target = plan_run_dir(recipe, run_dir, overwrite)
        with target.claim():
            self.write_run_files(target.path, recipe, prepared, rows)
            return Run(target.path, fitting.fit_run(prepared, target.path, progress))

    def resume(self, run_dir: Path, recipe, checkpoint, *, progress, callbacks, force_foreign_checkpoint=False,
               build=None) -> Run:
        if (run_dir / "summary.json").is_file() and checkpoint is None:
            return Run(run_dir)
        raise UserError(f"{run_dir}: a classical model is fitted in one go and has no checkpoints to resume from; "
                        f"fit it again with `danlu train {run_dir / 'recipe.yaml'} --run-dir {run_dir} --overwrite`")

    def load_model(self, run_dir: Path, recipe, device="cpu", quantized=None, model=None):
        """model.skops read against its trust list, as a module."""
        from ._fit import load_module
        from ._persist import check_structures

        if quantized is not None:
            raise UserError(f"{run_dir}: a classical model has no quantized version; use it as it is")
        for name in ("model.skops", "model.json", "pipeline.json"):
            if not (run_dir / name).is_file():
                raise UserError(f"{run_dir}: {name} is missing — the model was not fitted; fit it again with "
                                f"`danlu train {run_dir / 'recipe.yaml'}`")
        meta, pipeline = read_model_meta(run_dir, classical_run=True)
        module = load_module(run_dir, meta, pipeline.info)
        check_structures(module.estimator, run_dir / meta["file"],
                         n_features=int(np.prod(pipeline.info.input_shape)))
        return module.to(device).eval(), pipeline, meta, recipe

    def split_figures(self, sc, X, y, autocast: bool = False) -> dict:   # a fitted estimator: no autocast
        from ._fit import split_figures

        return split_figures(sc.model, X, y, sc.prepared.info, sc.recipe.seed)   # as at fit time

    def answers(self, model, X, meta: dict, pipeline, where: str, given) -> list[dict]:
        if meta.get("unsupervised"):   # a cluster id (k-means) or the components pc1..pcK (pca)
            from ._fit import unsupervised_answers

            return unsupervised_answers(model, X)
        return super().answers(model, X, meta, pipeline, where, given)
