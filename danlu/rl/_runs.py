"""The run kind of agents: a policy trained by acting in its environment (no data set). It shares
the run directory, checkpoints, metrics log, exact resume and the verbs' one-line refusals."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..training._runs import Run, RunKind


class AgentRuns(RunKind):
    name = "agent"
    predicts_rows = False

    def _refuse_rows(self, run_dir, recipe) -> UserError:
        env = recipe.env.name if recipe is not None else "an environment"
        return UserError(f"{run_dir}: an agent's run ({env}) holds a policy that acts in its environment, "
                         f"not a model of data rows; use `danlu eval`, `danlu diagnose`, `danlu report` or "
                         f"`danlu resume` on it")

    def prepare_data(self, recipe, run_dir=None, rows=None):
        raise self._refuse_rows(run_dir or recipe.source, recipe)

    def train(self, recipe, run_dir, *, overwrite: bool, progress, callbacks, rows) -> Run:
        from ._train import train_rl

        if callbacks:
            raise UserError(f"{recipe.source}: an agent's run is trained by acting in {recipe.env.name}, not by the "
                            f"loop over data batches, so callbacks have nothing to call; remove them")
        if rows is not None:
            raise UserError(f"{recipe.source}: an agent's run has no data rows to split")
        return train_rl(recipe, run_dir, overwrite=overwrite, progress=progress)

    def resume(self, run_dir: Path, recipe, checkpoint, *, progress, callbacks, force_foreign_checkpoint=False) -> Run:
        from ._train import resume_rl

        return resume_rl(run_dir, checkpoint, progress=progress, force_foreign_checkpoint=force_foreign_checkpoint)

    def evaluate(self, run_dir: Path, recipe, split: str, quantized) -> dict:
        from ._train import evaluate_rl

        if quantized is not None:
            raise UserError(f"{run_dir}: an agent's policy has no quantized version")
        # its greedy policy over the evaluation episodes (no data splits)
        return {"test": evaluate_rl(run_dir, recipe.env.eval_episodes)}

    def load_model(self, run_dir: Path, recipe, device="cpu", quantized=None):
        raise self._refuse_rows(run_dir, recipe)

    def predict(self, run_dir: Path, data, output, *, overwrite: bool = False, quantized=None):
        from ..training._runfiles import read_run_recipe

        raise self._refuse_rows(run_dir, read_run_recipe(run_dir))
