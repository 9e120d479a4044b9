"""``danlu tune``: hyper-parameter search (超参数) with Optuna — grid, random, Bayesian (TPE)
and simulated annealing.

Each trial is an ordinary danlu run (``<out>/trial-N``) of the recipe with the trial's values;
its objective is the best per-epoch validation value of the chosen metric. Bad trials are
pruned from those per-epoch values (median rule): the pruning callback asks the loop to stop
(``state.request_stop``), and the trial is then reported to Optuna as pruned.

The study lives in a database (``<out>/study.db``, SQLite, unless ``storage`` names another one
Optuna accepts, e.g. PostgreSQL for several machines), so running the same command again
continues it: ``trials`` is the number of finished trials the study should have, not how many
to add. A trial whose process was killed stays RUNNING in the database; on the next start a
RUNNING trial whose worker (host and process id, recorded when the trial began) is this host's
and is no longer alive is marked FAIL (user attribute ``interrupted``) and does not count as
finished. Trials of workers on other hosts are left to Optuna's heartbeat, which fails them once
they have been silent for :data:`GRACE_S` seconds.
"""
from __future__ import annotations

import json
import math
import os
import random
import socket
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from .._rundir import MARKER, holds_something, numbered, plan_dir, read_marker
from ..errors import RecipeError, UserError, did_you_mean
from ._space import Space, load_space, with_values

SAMPLERS = ("grid", "random", "tpe", "anneal")
HEARTBEAT_S = 60     # a running trial tells the database it is alive this often
GRACE_S = 300        # ... and is failed by other workers after this long without a sign
RACE_TRIES = 5       # tries of a write that tuners starting together may race on (_retry_race)
TRIAL_PREFIX = "trial-"
TUNE_KIND = "tune"   # the kind in the .danlu-run marker of a study's folder
STUDY_FILES = ("study.db", "tune.json")   # what a study's folder from before markers holds


def _optuna():
    try:
        import optuna
    except ImportError:
        raise UserError("danlu tune needs Optuna; install it with: pip install 'danlu[tune]'") from None
    return optuna


@dataclass
class TuneResult:
    """What a search found. ``trials`` has one row per trial (number, state, value, params, run_dir)."""

    study_name: str
    storage: str
    out_dir: Path
    metric: str
    direction: str
    trials: list[dict]
    best_value: float | None = None
    best_trial: int | None = None
    best_params: dict = field(default_factory=dict)
    best_run_dir: str | None = None
    best_recipe_path: Path | None = None
    plots: list[Path] = field(default_factory=list)
    interrupted: list[int] = field(default_factory=list)   # trials marked FAIL on this start

    @property
    def best_recipe(self):
        from ..recipe import Recipe

        return Recipe.from_yaml(self.best_recipe_path) if self.best_recipe_path else None


# ---------------------------------------------------------------------------------------------
# The search
# ---------------------------------------------------------------------------------------------

def tune(recipe, space, *, trials: int = 20, sampler: str = "tpe", storage=None, study: str | None = None,
         metric: str | None = None, direction: str = "auto", prune: bool = True, pruner=None,
         out_dir: str | Path | None = None, progress: bool = True) -> TuneResult:
    """Search ``space`` (a YAML path, a mapping or a :class:`Space`) around ``recipe``.

    Runs trials until the study holds ``trials`` finished ones (complete, pruned or failed by
    their own values), then writes ``best_recipe.yaml``, ``tune.json``, ``history.png`` and
    ``importance.png`` into ``out_dir`` (default ``runs/tune-<name>``).
    """
    from ..recipe import Recipe

    if not isinstance(recipe, Recipe):
        recipe = Recipe.from_dict(recipe)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise UserError(f"--trials must be a positive integer, got {trials!r}")
    if sampler not in SAMPLERS:
        raise UserError(f"--sampler must be one of {', '.join(SAMPLERS)}; "
                        f"got {sampler!r}{did_you_mean(sampler, SAMPLERS)}")
    if direction not in ("auto", "min", "max"):
        raise UserError(f"--direction must be auto, min or max; got {direction!r}")
    space = load_space(space, recipe)
    if sampler == "grid":
        space.grid()  # a float range without grid/points is refused before anything starts
    optuna = _optuna()
    metric, direction = _objective_of(recipe, metric, direction)
    out = Path(out_dir) if out_dir is not None else Path(recipe.output.runs_dir) / f"tune-{recipe.name or 'run'}"
    target = plan_tune_dir(out)   # None: the folder of a study, continued
    study_name = study or recipe.name or "study"

    quiet = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # danlu prints its own line per trial
    try:
        # a new folder is created and marked here, and removed again if the study cannot be opened
        with target.claim(lock=False) if target is not None else nullcontext():
            storage_obj, url = _open_storage(optuna, storage, out)
            the_study = _retry_race(_open_study, optuna, storage_obj, url, study_name, direction, metric,
                                    _make_sampler(optuna, sampler, space, recipe.seed, trials),
                                    pruner if pruner is not None else _make_pruner(optuna, prune))
        interrupted = _retry_race(fail_interrupted, the_study, storage_obj)
        _retry_race(_note_sampler, the_study, sampler, trials, url)
        if interrupted and progress:
            print(f"tune: marked interrupted trial(s) {', '.join(map(str, interrupted))} as failed; "
                  f"they do not count towards --trials", file=sys.stderr)
        _run_trials(optuna, the_study, recipe, space, metric, direction, trials, out, prune, progress)
        result = _finish(optuna, the_study, recipe, space, metric, direction, out, url)
    finally:
        optuna.logging.set_verbosity(quiet)
    result.interrupted = interrupted
    return result


def is_tune_dir(path: Path) -> bool:
    """A folder danlu made for a study: marked so, or (from before markers) holding the files a
    study writes."""
    path = Path(path)
    if not path.is_dir():
        return False
    if (read_marker(path) or {}).get("kind") == TUNE_KIND:
        return True
    return any((path / name).is_file() for name in STUDY_FILES)


def plan_tune_dir(out: Path):
    """The study's folder, checked before anything is written: a folder of a study is continued
    (None is returned); a new or empty one is planned with danlu._rundir (created and marked on
    claim); any other folder that holds something is refused — it is the user's."""
    if is_tune_dir(out):
        return None
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"{out}: already exists and is not the folder of a danlu study (no {MARKER} marker, "
                        f"{' or '.join(STUDY_FILES)}); choose another -o for a new study, or give the folder "
                        f"of the study to continue")
    return plan_dir(out, flag="-o", kind=TUNE_KIND)


def _objective_of(recipe, metric: str | None, direction: str) -> tuple[str, str]:
    """The validation figure to optimise and its direction; needs a validation split."""
    from ..training import prepare_run_data as _prepare_data
    from ..evaluation import PRIMARY_METRIC, metric_direction

    prepared = _prepare_data(recipe)  # also refuses bad data before any trial starts
    if "validation" not in prepared.splits:
        raise RecipeError(f"{recipe.source}: tuning needs a validation split, but data.split.validation is 0; "
                          f"set data.split.validation: 0.15")
    task = prepared.info.task
    name = metric or f"val_{PRIMARY_METRIC[task]}"
    if not name.startswith("val_"):
        name = f"val_{name}"
    known = ["val_loss"] + [f"val_{m}" for m in _metric_names(prepared)]
    if name not in known:
        raise UserError(f"--metric {name!r} is not a validation figure of this {task} task"
                        f"{did_you_mean(name, known)}; use one of {', '.join(known)}")
    if direction == "auto":
        direction = "min" if name == "val_loss" else metric_direction(name)
    return name, direction


def _metric_names(prepared) -> list[str]:
    """The metrics an epoch reports for these data (binary-only ones such as f1 are absent for
    three classes), found by scoring a constant guess."""
    import numpy as np

    from ..evaluation import compute_metrics

    info = prepared.info
    y = prepared.splits["validation"][1].numpy()
    if info.task == "classification":
        guess = np.full((len(y), info.n_classes), 1.0 / info.n_classes)
    else:
        guess = np.zeros(y.shape, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # a constant guess makes some metrics ill-defined
        return list(compute_metrics(info.task, y, guess, n_classes=info.n_classes))


def _open_storage(optuna, storage, out: Path):
    if storage is not None and not isinstance(storage, str):
        return storage, type(storage).__name__   # an Optuna storage object from Python
    url = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    driver_url = with_postgres_driver(url)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _retry_race(optuna.storages.RDBStorage, driver_url, heartbeat_interval=HEARTBEAT_S,
                               grace_period=GRACE_S), url
    except Exception as err:  # sqlalchemy's errors: bad URL, missing driver, refused connection
        raise UserError(f"--storage {url}: cannot open the study database ({type(err).__name__}: "
                        f"{str(err).splitlines()[0]}); give a URL such as sqlite:///study.db or "
                        f"postgresql://user@host/db") from None


def _retry_race(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, tried again after a short pause when another process did the same
    write to the study's database at the same moment. Tuners started together on one database
    (PostgreSQL) all create its tables, record the study's metric and sampler, and fail the same
    dead worker's trial; Optuna reads, then inserts, so all but one of them get a unique-key
    error, and the next try finds the other's row."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError   # ProgrammingError: table already exists

    for attempt in range(RACE_TRIES):
        try:
            return fn(*args, **kwargs)
        except (IntegrityError, ProgrammingError):
            if attempt == RACE_TRIES - 1:
                raise
            time.sleep(0.1 * (attempt + 1) + random.random() * 0.1)


POSTGRES_DRIVERS = (("psycopg2", "postgresql+psycopg2://"), ("psycopg", "postgresql+psycopg://"))


def with_postgres_driver(url: str) -> str:
    """``postgresql://...`` with the PostgreSQL driver that is installed named in it.

    SQLAlchemy reads a bare ``postgresql://`` as psycopg2 (2.0) or psycopg 3 (2.1), so the same
    URL would fail on one of them with only the other driver installed; a URL that names its
    driver (``postgresql+psycopg2://``) is left alone. With neither driver, the error says which
    package to install."""
    if not url.startswith("postgresql://"):
        return url
    from importlib.util import find_spec

    for module, prefix in POSTGRES_DRIVERS:
        if find_spec(module) is not None:
            return prefix + url[len("postgresql://"):]
    raise UserError(f"--storage {url}: PostgreSQL needs a driver; install it with: pip install psycopg2-binary")


def _open_study(optuna, storage, url, name, direction, metric, sampler, pruner):
    wanted = "maximize" if direction == "max" else "minimize"
    study = optuna.create_study(storage=storage, sampler=sampler, pruner=pruner, study_name=name,
                                direction=wanted, load_if_exists=True)
    if study.direction.name.lower() != wanted:
        raise UserError(f"study {name!r} in {url} was created to {study.direction.name.lower()}, not to {wanted}; "
                        f"pass the same --direction, or another --study name")
    stored = study.user_attrs.get("metric")
    if stored is None:
        study.set_user_attr("metric", metric)
    elif stored != metric:
        raise UserError(f"study {name!r} in {url} optimises {stored}, not {metric}; pass --metric {stored}, "
                        f"or another --study name")
    return study


def _note_sampler(study, sampler: str, trials: int, url: str) -> None:
    """Record the sampler a study was made with; warn when it is continued with another one.

    ``--trials`` counts the study's finished trials, whichever sampler ran them, so continuing a
    20-trial TPE study with ``--sampler random --trials 20`` runs no new trial: the warning says so
    and gives the ``--trials`` that adds some (Optuna's own ``n_trials`` counts new trials; danlu
    counts the total so that re-running the same command after a kill finishes the same study)."""
    used = study.user_attrs.get("samplers")
    done = finished_count(study)
    if used is None:   # a new study, or one from before danlu recorded its samplers
        study.set_user_attr("samplers", [sampler])
        return
    if sampler in used:
        return
    if done < trials:   # recorded once it runs trials, so that the warning repeats until then
        study.set_user_attr("samplers", [*used, sampler])
    if done >= trials:
        more = f"no new trial will run: --trials counts the study's {done} finished trials, so pass " \
               f"--trials {done + trials} to add {trials} {sampler} trials"
    else:
        more = f"it will run {trials - done} {sampler} trial(s) to reach --trials {trials} " \
               f"(the {done} earlier ones count)"
    print(f"danlu: warning: study {study.study_name!r} in {url} was made with --sampler {', '.join(used)}, not "
          f"{sampler}; {more}, or use another --study name (or -o folder) for a separate search", file=sys.stderr)


def _make_sampler(optuna, name: str, space: Space, seed: int, trials: int):
    if name == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "anneal":
        from ._anneal import AnnealingSampler

        return AnnealingSampler(space.distributions(), seed=seed)
    # TPE's default of 10 random start-up trials would leave nothing to model in a short search
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(3, trials // 3)))


def _make_pruner(optuna, prune: bool):
    if not prune:
        return optuna.pruners.NopPruner()
    # a trial is stopped when its value at an epoch is worse than the median of earlier trials
    # at that epoch, once 3 trials have finished and after its first 2 epochs
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)


# ---------------------------------------------------------------------------------------------
# Interrupted trials
# ---------------------------------------------------------------------------------------------

def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _worker_gone(worker: str) -> bool:
    """True when the process that ran a trial is known to be dead (same host, pid gone or zombie)."""
    host, _, pid_text = worker.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False   # another machine: Optuna's heartbeat decides
    pid = int(pid_text)
    if pid == os.getpid():
        return True    # this process is only starting: whatever it ran before has ended
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a killed child not yet reaped still answers kill(0)
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def fail_interrupted(study, storage) -> list[int]:
    """Mark RUNNING trials of dead workers on this host as FAIL; returns their numbers."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    marked = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker")
        if worker is None or not _worker_gone(worker):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            storage.set_trial_user_attr(trial_id, "interrupted", True)
            if "grid_id" in t.system_attrs:
                # GridSampler counts a failed trial's grid point as visited; detaching the trial
                # from the grid's search space puts the point back on the list to run.
                storage.set_trial_system_attr(trial_id, "search_space", {})
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue   # another process finished or failed it meanwhile
        marked.append(t.number)
    return marked


def finished_count(study) -> int:
    """Trials that ended by themselves: complete, pruned, or failed by their own values."""
    from optuna.trial import TrialState

    n = 0
    for t in study.get_trials(deepcopy=False):
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            n += 1
        elif t.state == TrialState.FAIL and "outcome" in t.user_attrs:
            n += 1
    return n


# ---------------------------------------------------------------------------------------------
# Trials
# ---------------------------------------------------------------------------------------------

class TrialReporter:
    """A training callback: reports each epoch's value to the trial and stops a pruned one."""

    def __init__(self, trial, metric: str, direction: str, prune: bool):
        self.trial, self.metric, self.direction, self.prune = trial, metric, direction, prune
        self.best: float | None = None
        self.last: float | None = None
        self.pruned_epoch: int | None = None

    def on_validation_end(self, state) -> None:
        value = state.metrics.get(self.metric)
        if value is None or not math.isfinite(value):
            return
        value = float(value)
        self.last = value
        if self.best is None or (value > self.best if self.direction == "max" else value < self.best):
            self.best = value
        epoch = int(state.metrics.get("epoch", state.epoch + 1))
        self.trial.report(value, epoch)
        finished = epoch >= state.recipe.train.epochs   # nothing left to save by stopping now
        if self.prune and not finished and self.trial.should_prune():
            self.pruned_epoch = epoch
            state.request_stop("pruned by the tuner")


class _Failed(Exception):
    """A trial that failed on its own terms (a value the recipe refuses, no finite metric)."""


def _objective(optuna, recipe, space: Space, metric: str, direction: str, out: Path, prune: bool):
    from ..training import train

    def objective(trial):
        trial.set_user_attr("worker", worker_id())
        params = space.suggest(trial)
        run_dir = numbered(out / f"{TRIAL_PREFIX}{trial.number}", holds_something)
        trial.set_user_attr("run_dir", str(run_dir))
        try:
            trial_recipe = with_values(recipe, params)
            reporter = TrialReporter(trial, metric, direction, prune)
            train(trial_recipe, run_dir, progress="none", callbacks=[reporter])
        except UserError as err:
            trial.set_user_attr("outcome", f"error: {err}")
            raise _Failed(str(err)) from None
        if reporter.pruned_epoch is not None:
            trial.set_user_attr("last_value", reporter.last)
            raise optuna.TrialPruned(f"pruned at epoch {reporter.pruned_epoch}")
        if reporter.best is None:
            trial.set_user_attr("outcome", f"no finite {metric}")
            raise _Failed(f"no finite {metric}")
        trial.set_user_attr("outcome", "complete")
        return reporter.best

    return objective


def _run_trials(optuna, study, recipe, space, metric, direction, trials, out, prune, progress) -> None:
    done = finished_count(study)
    if done >= trials:
        if progress:
            print(f"tune: study {study.study_name!r} already has {done} finished trials (--trials {trials})",
                  file=sys.stderr)
        return
    if isinstance(study.sampler, optuna.samplers.GridSampler) and study.sampler.is_exhausted(study):
        if progress:
            print("tune: every point of the grid has been run", file=sys.stderr)
        return

    def after_trial(study, frozen):
        count = finished_count(study)
        if progress:
            print(_trial_line(frozen, study, count, trials, metric, direction), file=sys.stderr)
        if count >= trials:
            study.stop()   # other workers may have finished trials too

    objective = _objective(optuna, recipe, space, metric, direction, out, prune)
    study.optimize(objective, n_trials=trials - done, callbacks=[after_trial], catch=(_Failed,),
                   gc_after_trial=False)


def _trial_line(frozen, study, count: int, trials: int, metric: str, direction: str) -> str:
    params = "  ".join(f"{k}={_short(v)}" for k, v in frozen.params.items())
    seconds = frozen.duration.total_seconds() if frozen.duration is not None else 0.0
    state = frozen.state.name
    if state == "COMPLETE":
        what = f"{metric} {frozen.value:.4g}"
    elif state == "PRUNED":
        last = frozen.user_attrs.get("last_value")
        what = f"pruned at epoch {frozen.last_step}" + (f" ({metric} {last:.4g})" if last is not None else "")
    else:
        what = f"failed: {frozen.user_attrs.get('outcome', 'error')}"
    try:
        best = f"  best {study.best_value:.4g} (trial {study.best_trial.number})"
    except ValueError:
        best = ""
    return f"trial {frozen.number} [{count}/{trials}]  {what}{best}  {params}  {seconds:.1f}s"


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

def _rows(study, space: Space) -> list[dict]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"number": t.number, "state": t.state.name, "value": t.value,
                     "last": t.user_attrs.get("last_value"), "params": space.decode(t.params),
                     "run_dir": t.user_attrs.get("run_dir"), "interrupted": bool(t.user_attrs.get("interrupted")),
                     "outcome": t.user_attrs.get("outcome")})
    return rows


def _finish(optuna, study, recipe, space, metric, direction, out: Path, url: str) -> TuneResult:
    from ..training._checkpoint import atomic_write_text
    from ._plots import plot_history, plot_importance

    rows = _rows(study, space)
    result = TuneResult(study_name=study.study_name, storage=url, out_dir=out, metric=metric,
                        direction=direction, trials=rows)
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    if complete:
        best = study.best_trial
        result.best_value, result.best_trial = best.value, best.number
        result.best_params = space.decode(best.params)
        result.best_run_dir = best.user_attrs.get("run_dir")
        best_recipe = with_values(recipe, result.best_params)
        result.best_recipe_path = out / "best_recipe.yaml"
        header = (f"# best of study {study.study_name!r}: trial {best.number}, {metric} {best.value:.6g}\n"
                  f"# tuned: {', '.join(f'{k}={_short(v)}' for k, v in result.best_params.items())}\n")
        atomic_write_text(result.best_recipe_path, header + best_recipe.to_yaml())
    result.plots.append(plot_history(rows, metric, direction, out / "history.png"))
    importances = _importances(optuna, study) if len(complete) >= 2 else {}
    if importances:
        result.plots.append(plot_importance(importances, out / "importance.png"))
    summary = {"study": study.study_name, "storage": url, "metric": metric, "direction": direction,
               "best_value": result.best_value, "best_trial": result.best_trial, "best_params": result.best_params,
               "best_run_dir": result.best_run_dir, "importances": importances, "trials": rows}
    atomic_write_text(out / "tune.json", json.dumps(summary, indent=1, default=str))
    return result


def _importances(optuna, study) -> dict:
    """Parameter importances, or {} when they cannot be told (one value tried, constant objective)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError, ZeroDivisionError):
        return {}
    return {k: float(v) for k, v in found.items() if math.isfinite(v)}
