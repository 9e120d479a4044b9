"""Experiment trackers as callbacks: TensorBoard event files and MLflow runs.

``output.loggers: [tensorboard, mlflow]`` adds these beside metrics.jsonl; they write the same
figures, so any of them can be compared with the others:

* every epoch's row of metrics.jsonl (losses, validation metrics, lr), at the optimizer step the
  epoch ended on (the x-axis of Lightning and Keras' TensorBoard callback);
* the gradient monitor's samples (``grad_norm/total``, ``grad_norm/<layer>``) at their step;
* diagnoses and rescues as text (TensorBoard: the ``diagnoses`` text tag; MLflow: the artifact
  ``diagnoses.txt``), as they happen, through ``state.event_sinks``.

TensorBoard files go to ``RUN/tensorboard/``. MLflow logs to ``output.mlflow_uri`` or, by default,
to a SQLite store in ``RUN/mlflow/`` (MLflow 3 retired the plain-file store), artifacts beside it;
view it with ``mlflow ui --backend-store-uri sqlite:///RUN/mlflow/mlflow.db``. A resumed run goes
on writing the same MLflow run and TensorBoard directory. The packages are optional extras
(``danlu[tensorboard]``, ``danlu[mlflow]``), checked before a run starts (``danlu._extras``).
"""
from __future__ import annotations

import logging
import re
import time
from pathlib import Path

from ._state import State

TENSORBOARD_DIR = "tensorboard"
MLFLOW_DIR = "mlflow"


def _scalars(row: dict) -> dict[str, float]:
    """The numbers of a metrics.jsonl row, without its position keys."""
    return {k: float(v) for k, v in row.items()
            if k not in ("epoch", "step") and isinstance(v, (int, float)) and not isinstance(v, bool)}


def _grad_scalars(sample: dict) -> dict[str, float]:
    out = {"grad_norm/total": sample["total"]}
    out.update({f"grad_norm/{layer}": value for layer, value in sample["layers"].items()})
    return {k: float(v) for k, v in out.items() if v is not None}


def _new_grad_samples(state: State, after: int) -> list[dict]:
    samples = state.grad_norms
    return [s for s in samples if s["step"] > after]


def _event_text(event: dict) -> str:
    return f"[{event['kind']}] epoch {event.get('epoch')}, step {event.get('step')}: " \
           f"{event.get('message') or event['kind']}"


class TensorBoardLogger:
    """Scalars and diagnoses to TensorBoard event files in ``RUN/tensorboard/``."""

    def __init__(self, run_dir: Path):
        self.log_dir = Path(run_dir) / TENSORBOARD_DIR
        self.writer = None
        self._grad_step = -1

    def on_fit_start(self, state: State) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # After a resume, whatever an earlier process wrote past the checkpoint is hidden by
        # TensorBoard's purge, so the curves read as if the run had never stopped. The checkpoint's
        # own epoch row (at its step) was written before it; a gradient sample labelled with that
        # step is taken after it, and was either written then or is skipped now.
        resumed = bool(state.history)
        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=state.step + 1 if resumed else None)
        self._grad_step = state.step if resumed else -1
        if not state.history:
            self.writer.add_text("recipe", "```yaml\n" + state.recipe.to_yaml() + "```", 0)
        state.event_sinks.append(self._event)

    def _event(self, event: dict) -> None:
        if self.writer is not None:
            self.writer.add_text("diagnoses", _event_text(event), event.get("step", 0))
            self.writer.flush()

    def on_batch_end(self, state: State) -> None:
        for sample in _new_grad_samples(state, self._grad_step):
            for tag, value in _grad_scalars(sample).items():
                self.writer.add_scalar(tag, value, sample["step"])
            self._grad_step = sample["step"]

    def on_epoch_end(self, state: State) -> None:
        row = state.history[-1]
        for tag, value in _scalars(row).items():
            self.writer.add_scalar(tag, value, row["step"])
        self.writer.add_scalar("epoch", row["epoch"], row["step"])
        self.writer.flush()

    def on_fit_end(self, state: State) -> None:
        if self.writer is not None:
            self.writer.close()


_MLFLOW_KEY = re.compile(r"[^\w\-. /]")


def _flat(d: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)[:6000]
    return out


class MLflowLogger:
    """Parameters (the flattened recipe), scalars and diagnoses to an MLflow run."""

    name = "mlflow_logger"

    def __init__(self, run_dir: Path, uri: str | None = None, experiment: str = "danlu"):
        self.run_dir = Path(run_dir).resolve()
        self.default_store = uri is None
        self.uri = uri or f"sqlite:///{self.run_dir / MLFLOW_DIR / 'mlflow.db'}"
        self.experiment = experiment
        self.run_id = None
        self.client = None
        self._grad_step = -1
        self._diagnoses: list[str] = []

    # -- resume ------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"run_id": self.run_id, "diagnoses": list(self._diagnoses)}

    def load_state_dict(self, d: dict) -> None:
        self.run_id = d.get("run_id")
        self._diagnoses = list(d.get("diagnoses") or [])

    # -- hooks -------------------------------------------------------------------------------------

    def on_fit_start(self, state: State) -> None:
        from mlflow.tracking import MlflowClient

        if self.default_store:
            (self.run_dir / MLFLOW_DIR).mkdir(parents=True, exist_ok=True)
            # creating the SQLite tables logs a page of INFO lines from MLflow and Alembic
            for noisy in ("mlflow.store.db.utils", "alembic.runtime.migration"):
                logging.getLogger(noisy).setLevel(logging.WARNING)
        self.client = MlflowClient(tracking_uri=self.uri)
        if self.run_id is None:
            self.run_id = self._create_run(state)
        else:
            self.client.update_run(self.run_id, status="RUNNING")
        self._grad_step = state.step if state.history else -1
        state.event_sinks.append(self._event)
        state.mlflow_run_id = self.run_id

    def _create_run(self, state: State) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            artifacts = (self.run_dir / MLFLOW_DIR / "artifacts").as_uri() if self.default_store else None
            experiment_id = self.client.create_experiment(self.experiment, artifact_location=artifacts)
        run = self.client.create_run(experiment_id, run_name=self.run_dir.name,
                                     tags={"danlu.run_dir": str(self.run_dir)})
        from mlflow.entities import Param

        params = [Param(k, v) for k, v in _flat(state.recipe.to_dict()).items()]
        for i in range(0, len(params), 100):   # MLflow takes at most 100 parameters per batch
            self.client.log_batch(run.info.run_id, params=params[i:i + 100])
        return run.info.run_id

    def _log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(_MLFLOW_KEY.sub("_", k), v, now, step) for k, v in values.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def _event(self, event: dict) -> None:
        if self.client is None:
            return
        self._diagnoses.append(_event_text(event))
        self.client.log_text(self.run_id, "\n".join(self._diagnoses) + "\n", "diagnoses.txt")

    def on_batch_end(self, state: State) -> None:
        for sample in _new_grad_samples(state, self._grad_step):
            self._log(_grad_scalars(sample), sample["step"])
            self._grad_step = sample["step"]

    def on_epoch_end(self, state: State) -> None:
        row = state.history[-1]
        self._log(_scalars(row) | {"epoch": float(row["epoch"])}, row["step"])

    def on_fit_end(self, state: State) -> None:
        if self.client is not None and self.run_id is not None:
            self.client.set_terminated(self.run_id, "FINISHED")


def logger_callbacks(recipe, run_dir: Path | None) -> list:
    """The callbacks ``output.loggers`` asks for (none without a run directory)."""
    names = recipe.output.get("loggers") or ()
    if run_dir is None:
        return []
    out = []
    if "tensorboard" in names:
        out.append(TensorBoardLogger(run_dir))
    if "mlflow" in names:
        out.append(MLflowLogger(run_dir, recipe.output.get("mlflow_uri"), recipe.output.get("mlflow_experiment")
                                or "danlu"))
    return out
