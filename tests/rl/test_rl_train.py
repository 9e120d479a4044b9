"""RL runs end to end: the return improves on a fixed seed, runs repeat, resume is exact."""
import json
import shutil

import pytest

pytest.importorskip("gymnasium")
torch = pytest.importorskip("torch")

from danlu.errors import RecipeError, UserError  # noqa: E402
from danlu.rl import evaluate_rl, load_policy, resume_rl, train_rl  # noqa: E402
from danlu.training import _checkpoint as ck  # noqa: E402

# Small and quick, yet enough updates for PPO to learn CartPole clearly.
# Many copies and short rollouts: one policy call serves 16 environment steps.
SHORT = {"seed": 0, "env": {"name": "CartPole-v1", "num_envs": 16, "eval_episodes": 10},
         "model": {"kind": "mlp", "hidden": [32, 32], "activation": "tanh"},
         "optimizer": {"lr": 0.005}, "train": {"grad_clip": 0.5},
         "rl": {"steps": 5120, "rollout": 16, "epochs": 4, "minibatches": 2, "checkpoint_every": 0}}
# A few updates only: for the checks that need several runs.
TINY = SHORT | {"rl": {"steps": 512, "rollout": 32, "epochs": 2, "minibatches": 2, "checkpoint_every": 1},
                "checkpoint": {"keep_last": 10}, "env": SHORT["env"] | {"num_envs": 4, "eval_episodes": 2}}


def _rows(run_dir):
    """metrics.jsonl without the wall time, which no two runs share."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "time_s"} for row in rows]


def _weights(run_dir):
    return ck.load_weights(run_dir / "model.safetensors")


def _same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("rl") / "run"
    return train_rl(SHORT, path, progress="none")


def test_return_improves_on_a_fixed_seed(short_run):
    rows = _rows(short_run.path)
    first = [r["mean_return_100"] for r in rows[:3]]
    last = [r["mean_return_100"] for r in rows[-3:]]
    assert sum(last) / 3 > 1.5 * sum(first) / 3, (first, last)
    test = short_run.summary["test"]
    assert short_run.summary["run"]["evaluation"].startswith("greedy") and test["episodes"] == 10
    assert test["mean_return"] > 2 * first[0]   # the greedy policy beats the untrained sampling one
    assert test["solved_return"] == 475.0 and test["solved"] == (test["mean_return"] >= 475)


def test_run_files(short_run):
    path, summary = short_run.path, short_run.summary
    for name in ("recipe.yaml", "metrics.jsonl", "events.jsonl", "model.safetensors", "model.json",
                 "summary.json", "plots/returns.png"):
        assert (path / name).is_file(), name
    assert (path / "plots" / "returns.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = _rows(path)
    assert [r["update"] for r in rows] == list(range(1, len(rows) + 1))
    assert rows[-1]["step"] == summary["run"]["env_steps"] == len(rows) * 16 * 16 == 5120
    logged = {"episodes", "mean_return_100", "best_mean_return_100", "policy_loss", "value_loss", "entropy", "lr"}
    assert logged <= set(rows[0])
    assert rows[-1]["lr"] == pytest.approx(0.005)   # schedule.kind constant (the default)
    assert summary["train"]["episodes"] == rows[-1]["episodes"]
    assert summary["run"]["wall_s"] > 0 and json.loads((path / "model.json").read_text())["rl"] is True
    assert ck.list_checkpoints(path / "checkpoints")   # the final one, even with checkpoint_every 0


def test_evaluate_rl_repeats_the_runs_evaluation(short_run):
    assert evaluate_rl(short_run.path, episodes=10) == short_run.summary["test"]
    agent, meta, _ = load_policy(short_run.path)
    assert _same_weights(agent.state_dict(), _weights(short_run.path)) and meta["env"] == "CartPole-v1"


def test_same_seed_same_run_and_resume_is_exact(tmp_path, capsys):
    first = train_rl(TINY, tmp_path / "a", progress="lines")
    shown = capsys.readouterr().err
    assert "danlu: training a PPO agent" in shown and "update 4/4" in shown and "mean_return_100" in shown
    again = train_rl(TINY, tmp_path / "b", progress="none")
    assert _rows(first.path) == _rows(again.path)
    assert _same_weights(_weights(first.path), _weights(again.path))
    other = train_rl(TINY | {"seed": 1}, tmp_path / "c", progress="none")
    assert _rows(other.path) != _rows(first.path)

    # Resume from the checkpoint after update 2 (environments mid-episode): same end, bit for bit.
    copy = tmp_path / "resumed"
    shutil.copytree(first.path, copy)
    names = [p.name for p in ck.list_checkpoints(copy / "checkpoints")]
    assert len(names) == 4
    resumed = resume_rl(copy, checkpoint=names[1], progress="none")
    assert _same_weights(_weights(first.path), _weights(copy))
    assert _rows(copy) == _rows(first.path)
    assert resumed.summary["test"] == first.summary["test"]
    assert resume_rl(copy).summary == resumed.summary   # a finished run is left as it is


def test_env_errors_are_one_line_and_write_nothing(tmp_path, monkeypatch):
    cases = [({"rl": {"steps": 100}}, "env.name is required"),
             ({"env": {"name": "CartPol-v1"}}, "env.name 'CartPol-v1' is not a Gymnasium environment"),
             ({"env": {"name": "Pendulum-v1"}}, "needs discrete ones"),
             ({"env": {"name": "CartPole-v1", "num_envs": 1}, "rl": {"rollout": 2, "minibatches": 3}},
              "rl.minibatches (3) exceeds"),
             ({"data": {"source": "sklearn", "name": "iris"}}, "env.name is required"),
             ({"env": {"name": "CartPole-v1"}, "data": {"name": "iris"}}, "not from data")]
    for recipe, expected in cases:
        with pytest.raises(RecipeError) as err:
            train_rl(recipe, tmp_path / "run")
        assert expected in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()
    monkeypatch.setitem(__import__("sys").modules, "gymnasium", None)   # as if it were not installed
    with pytest.raises(UserError, match=r"pip install danlu\[rl\]"):
        train_rl({"env": {"name": "CartPole-v1"}}, tmp_path / "run")


def test_story_tells_the_run_in_both_languages(short_run):
    from danlu.rl import story_rl

    en, zh = story_rl(short_run.path, "en"), story_rl(short_run.path, "zh")
    assert en.startswith("Run run: PPO agent in CartPole-v1, seed 0")
    assert f"{short_run.summary['run']['env_steps']:,} environment steps" in en
    assert "Greedy evaluation over 10 episodes" in en and "What to try next" in en
    assert zh.startswith("运行 run：CartPole-v1 中的 PPO 智能体") and "下一步可以试试" in zh
