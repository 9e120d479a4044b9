"""RL runs: train a PPO agent from a recipe, resume it, evaluate it.

A run directory of an RL run holds the same files as a supervised one, where they apply:
recipe.yaml, metrics.jsonl (one row per update), events.jsonl (diagnoses of the reward curve),
checkpoints/, model.safetensors and model.json (the final agent), summary.json, and
plots/returns.png.

Resume is exact: a checkpoint holds the agent, the optimizer, the schedule, every RNG state, the
counters and the reward history, and puts the environment copies back mid-episode by replaying
their actions from the episode's seed (see :mod:`danlu.rl._env`). A run resumed from any
checkpoint ends with the same weights, bit for bit, as one that never stopped.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import _integrity as integrity
from .. import training as runs
from .._rundir import lock_run
from ..errors import CheckpointError, RecipeError, UserError
from ..recipe import Recipe
from ..training import _checkpoint as ck
from ..training._factory import Schedule, build_optimizer, build_schedule
from . import _ppo
from ._agent import ActorCritic
from ._diagnose import ReturnMonitor, message
from ._env import EnvCopies, Finished, evaluate_policy, make_env, solved_return
from ._progress import ReturnProgress

RECENT = 100   # episodes in the training mean return (the "solved" rule's window)
EVALUATION = "greedy policy (most likely action), on episode seeds never used in training"


@dataclass
class Position:
    """Where a run is: counters, the logged rows and events, and every finished episode."""

    update: int = 0
    env_steps: int = 0
    time_s: float = 0.0          # training wall time before this process took over
    history: list = field(default_factory=list)
    events: list = field(default_factory=list)
    episodes: Finished = field(default_factory=Finished)


@dataclass
class RLSession:
    """Everything an RL run trains with, built in the order that fixes the random numbers."""

    recipe: Recipe
    agent: ActorCritic
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    envs: EnvCopies
    monitor: ReturnMonitor
    updates: int
    solved: float | None
    position: Position = field(default_factory=Position)


def build(recipe: Recipe) -> RLSession:
    """Seed, then the agent's initial weights, the optimizer and the environments."""
    if recipe.data.name or recipe.data.path:   # (device and rl.minibatches are checked by the recipe schema)
        raise RecipeError(f"{recipe.source}: an RL run learns from its environment ({recipe.env.name}), not from "
                          f"data; remove the data section or env.name")
    probe = make_env(recipe.env.name, recipe.source)   # a bad env id fails before anything is written
    obs_dim, n_actions = probe.observation_space.shape[0], int(probe.action_space.n)
    solved = solved_return(probe, recipe.env.solved_return)
    probe.close()
    runs.seed_everything(recipe.seed, recipe.train.deterministic)
    agent = ActorCritic(recipe.model, obs_dim, n_actions, source=recipe.source)
    optimizer = build_optimizer(recipe.optimizer, agent.parameters(), source=recipe.source)
    updates = max(1, math.ceil(recipe.rl.steps / (recipe.env.num_envs * recipe.rl.rollout)))
    # For the schedule one update is one "epoch" of one step: schedule.kind linear anneals the
    # rate to schedule.min_lr over the run, plateau watches the mean return.
    schedule = build_schedule(recipe.schedule, optimizer, 1, updates, mode="max", source=recipe.source)
    envs = EnvCopies(recipe.env.name, recipe.env.num_envs, recipe.seed, recipe.source)
    monitor = ReturnMonitor(solved, n_actions, updates)
    return RLSession(recipe, agent, optimizer, schedule, envs, monitor, updates, solved)


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------

def fit(run: RLSession, run_dir: Path, progress: str | None) -> dict:
    """Update until ``rl.steps`` environment steps are done; log, diagnose and checkpoint on the
    way; then evaluate, save and plot. Returns the summary."""
    recipe, pos = run.recipe, run.position
    shown = ReturnProgress(mode=progress or recipe.output.progress)
    _rewrite_logs(run_dir, pos)
    t0 = time.perf_counter()
    shown.start(recipe.env.name, sum(p.numel() for p in run.agent.parameters()), run.updates, run_dir)
    lang = _lang()
    while pos.update < run.updates:
        lr = run.schedule.lr()
        batch = _ppo.collect(run.agent, run.envs, recipe.rl.rollout, pos.env_steps, recipe.rl.gamma,
                             recipe.rl.gae_lambda, pos.episodes)
        stats = _ppo.update(run.agent, run.optimizer, batch, recipe.rl, recipe.train.grad_clip)
        pos.update += 1
        pos.env_steps += batch.actions.numel()
        row = _row(pos, stats, lr, pos.time_s + time.perf_counter() - t0)
        run.schedule.step()
        run.schedule.epoch_end(row["mean_return_100"])
        pos.history.append(row)
        _append(run_dir / "metrics.jsonl", row)
        for event in _diagnose(run, row, lang):
            _append(run_dir / "events.jsonl", event)
            shown.show_event(event)
        shown.update(row)
        every = recipe.rl.checkpoint_every
        if every and pos.update % every == 0 and pos.update < run.updates:
            _save_checkpoint(run, run_dir, pos.time_s + time.perf_counter() - t0)
    wall = pos.time_s + time.perf_counter() - t0
    _save_checkpoint(run, run_dir, wall)
    summary = _finish(run, run_dir, wall)
    shown.finish(summary)
    return summary


def _row(pos: Position, stats: dict, lr: float, time_s: float) -> dict:
    """One metrics.jsonl row: position, the recent mean return (null before any episode ended),
    the best of those so far, and the update's losses."""
    mean = _recent_mean(pos.episodes.returns)
    best = pos.history[-1]["best_mean_return_100"] if pos.history else None
    if mean is not None and (best is None or mean > best):
        best = mean
    return {"update": pos.update, "step": pos.env_steps, "episodes": len(pos.episodes.returns),
            "mean_return_100": mean, "best_mean_return_100": best, **stats, "lr": lr, "time_s": round(time_s, 3)}


def _recent_mean(returns: list) -> float | None:
    """Mean return of the last 100 episodes (fewer at the start; None before the first ends)."""
    recent = returns[-RECENT:]
    return sum(recent) / len(recent) if recent else None


def _diagnose(run: RLSession, row: dict, lang: str) -> list[dict]:
    """The reward curve's new diagnoses as events: facts, a message in the user's language, and
    the glossary term that explains them."""
    events = []
    for kind, facts in run.monitor.check(row):
        text = message(kind, lang, {"step": row["step"], **facts})
        events.append({"kind": kind, "update": row["update"], "step": row["step"], "message": text, "term": kind,
                       **facts})
    run.position.events += events
    return events


def _lang() -> str:
    from ..diagnose._text import user_lang

    return user_lang()


def _append(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def _rewrite_logs(run_dir: Path, pos: Position) -> None:
    """After a resume the logs may hold lines from past the checkpoint: rewrite them from the
    restored position, so that they read as if the run had never stopped."""
    ck.atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in pos.history))
    ck.atomic_write_text(run_dir / "events.jsonl", "".join(json.dumps(e) + "\n" for e in pos.events))


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------

def _save_checkpoint(run: RLSession, run_dir: Path, time_s: float) -> None:
    pos = run.position
    state = {
        "position": {"update": pos.update, "env_steps": pos.env_steps, "time_s": time_s},
        "history": pos.history,
        "events": pos.events,
        "episodes": {"returns": torch.tensor(pos.episodes.returns, dtype=torch.float64),
                     "lengths": torch.tensor(pos.episodes.lengths, dtype=torch.int64),
                     "steps": torch.tensor(pos.episodes.steps, dtype=torch.int64)},
        "envs": run.envs.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "schedule": run.schedule.state_dict(),
        "monitor": run.monitor.state_dict(),
        "rng": ck.capture_rng(),
        "recipe": run.recipe.to_dict(),
    }
    root = run_dir / "checkpoints"
    ck.write_checkpoint(root, pos.env_steps, _weights(run.agent), state)
    ck.prune_checkpoints(root, run.recipe.checkpoint.keep_last, set())


def _restore(run: RLSession, model_state: dict, saved: dict) -> None:
    run.agent.load_state_dict(model_state)
    run.optimizer.load_state_dict(saved["optimizer"])
    run.schedule.load_state_dict(saved["schedule"])
    run.monitor.load_state_dict(saved["monitor"])
    run.envs.load_state_dict(saved["envs"])
    p, ep = saved["position"], saved["episodes"]
    run.position = Position(update=int(p["update"]), env_steps=int(p["env_steps"]), time_s=float(p["time_s"]),
                            history=list(saved["history"]), events=list(saved["events"]),
                            episodes=Finished(ep["returns"].tolist(), ep["lengths"].tolist(), ep["steps"].tolist()))
    ck.restore_rng(saved["rng"])


def _weights(agent) -> dict:
    return {k: v.detach() for k, v in agent.state_dict().items()}


# ---------------------------------------------------------------------------------------------
# Finishing
# ---------------------------------------------------------------------------------------------

def _finish(run: RLSession, run_dir: Path, wall: float) -> dict:
    """Greedy evaluation on unseen seeds, summary.json, model files and the returns plot."""
    from ._plots import plot_returns

    recipe, pos = run.recipe, run.position
    run.agent.eval()
    test = evaluation_figures(evaluate_policy(run.agent, recipe.env.name, recipe.seed, recipe.env.eval_episodes),
                              run.solved)
    summary = {
        "train": {"mean_return_100": _recent_mean(pos.episodes.returns),
                  "best_mean_return_100": pos.history[-1]["best_mean_return_100"] if pos.history else None,
                  "episodes": len(pos.episodes.returns)},
        "test": test,
        "run": {"env": recipe.env.name, "algorithm": "ppo", "evaluation": EVALUATION, "updates": pos.update,
                "env_steps": pos.env_steps,
                "wall_s": round(wall, 2), "parameters": sum(p.numel() for p in run.agent.parameters()),
                "device": "cpu", "events": len(pos.events), "stop_reason": None},
    }
    obs_dim = run.envs.envs[0].observation_space.shape[0]
    ck.atomic_save_tensors(run_dir / "model.safetensors", _weights(run.agent))
    meta = {"rl": True, "algorithm": "ppo", "env": recipe.env.name, "obs_dim": obs_dim,
            "n_actions": int(run.envs.envs[0].action_space.n), "model": dict(recipe.model)}
    ck.atomic_write_text(run_dir / "model.json", json.dumps(meta, indent=1))
    ck.atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1))
    plot_returns(pos.episodes.steps, pos.episodes.returns, run_dir / "plots" / "returns.png", run.solved,
                 (pos.env_steps, test["mean_return"]), recipe.env.name)
    run.envs.close()
    runs.index_run_dir(run_dir)
    return summary


def evaluation_figures(returns: list[float], solved: float | None) -> dict:
    """The figures of an evaluation: mean (the "solved" rule's number), spread and the verdict.
    Numbers only (``solved`` is true/false, or null without a threshold), so that they print as
    a table beside supervised runs' figures."""
    t = torch.tensor(returns, dtype=torch.float64)
    mean = float(t.mean())
    return {"mean_return": mean, "std_return": float(t.std(unbiased=False)), "min_return": float(t.min()),
            "max_return": float(t.max()), "episodes": len(returns), "solved_return": solved,
            "solved": None if solved is None else mean >= solved}


# ---------------------------------------------------------------------------------------------
# Verbs
# ---------------------------------------------------------------------------------------------

def train_rl(recipe: Recipe | dict, run_dir: str | Path | None = None, *, overwrite: bool = False,
             progress: str | None = None) -> "runs.Run":
    """Train the recipe's agent in its environment into a new run directory."""
    if not isinstance(recipe, Recipe):
        recipe = Recipe.from_dict(recipe)
    if not recipe.env.name:
        raise RecipeError(f"{recipe.source}: env.name is required for a reinforcement-learning run; "
                          f"name a Gymnasium environment, e.g. env.name: CartPole-v1")
    run = build(recipe)   # bad env ids and keys fail before anything is written
    target = runs.plan_run_dir(recipe, run_dir, overwrite)
    path = target.path
    with target.claim() as claim:   # created, marked and locked by this process for the whole run
        ck.atomic_write_text(path / "recipe.yaml", recipe.to_yaml())
        claim.started()
        return runs.Run(path, fit(run, path, progress))


def resume_rl(run_dir: str | Path, checkpoint: str | None = None, progress: str | None = None,
              force_foreign_checkpoint: bool = False) -> "runs.Run":
    """Continue an RL run from its newest checkpoint (or the one named); a finished run is left
    as it is unless a checkpoint is named. A checkpoint written by another run is refused unless
    ``force_foreign_checkpoint``."""
    run_dir = Path(run_dir)
    recipe = runs.read_run_recipe(run_dir)
    if (run_dir / "summary.json").is_file() and checkpoint is None:
        return runs.Run(run_dir)
    with lock_run(run_dir):   # one writer per run directory
        chosen = ck.choose_checkpoint(run_dir, checkpoint)
        run = build(recipe)
        if chosen is not None:
            model_state, saved = ck.read_checkpoint(chosen, run_dir=run_dir, force_foreign=force_foreign_checkpoint)
            try:
                _restore(run, model_state, saved)
            except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as err:
                raise CheckpointError(f"{chosen}: does not fit this run's agent and training state "
                                      f"({type(err).__name__}); it comes from another run or was damaged — "
                                      f"resume from another checkpoint with --checkpoint") from None
        return runs.Run(run_dir, fit(run, run_dir, progress))


def load_policy(run_dir: str | Path) -> tuple[ActorCritic, dict, Recipe]:
    """(agent, model.json, recipe) of a finished RL run, weights from model.safetensors."""
    run_dir = Path(run_dir)
    recipe = runs.read_run_recipe(run_dir)
    for name in ("model.safetensors", "model.json"):
        if not (run_dir / name).is_file():
            raise UserError(f"{run_dir}: {name} is missing — the run has not finished; "
                            f"finish it with `danlu resume {run_dir}`")
    meta = integrity.read_json(run_dir / "model.json")   # refused unless it matches its checksum
    if not meta.get("rl"):
        raise UserError(f"{run_dir}: not a reinforcement-learning run (its recipe has no env.name)")
    integrity.require(run_dir / "model.json", {"model": dict, "obs_dim": int, "n_actions": int, "env": str}, meta)
    agent = ActorCritic(meta["model"], meta["obs_dim"], meta["n_actions"], source=str(run_dir / "recipe.yaml"))
    agent.load_state_dict(ck.load_weights(run_dir / "model.safetensors"))
    return agent.eval(), meta, recipe


def evaluate_rl(run_dir: str | Path, episodes: int = 100) -> dict:
    """The greedy policy of a finished run over ``episodes`` evaluation episodes (the same seeds
    as the run's own final evaluation, never used in training)."""
    if episodes < 1:
        raise UserError(f"episodes must be >= 1, got {episodes}")
    agent, meta, recipe = load_policy(run_dir)
    probe = make_env(meta["env"], str(Path(run_dir) / "recipe.yaml"))
    solved = solved_return(probe, recipe.env.solved_return)
    probe.close()
    return evaluation_figures(evaluate_policy(agent, meta["env"], recipe.seed, episodes), solved)
