"""The pieces of an RL run: recipe keys, seeds, advantages, the moving average, the diagnoses."""
import math
from pathlib import Path

import numpy as np
import pytest

from danlu.errors import RecipeError
from danlu.recipe import Recipe
from danlu.rl._diagnose import ReturnMonitor, message

ROOT = Path(__file__).resolve().parents[2]


def test_rl_keys_have_defaults_and_every_shipped_recipe_still_validates():
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        Recipe.from_yaml(path)
    plain = Recipe.from_dict({"data": {"name": "iris"}})
    assert plain.env.name is None and plain.rl.steps == 100_000 and plain.env.num_envs == 8
    shipped = Recipe.from_yaml(ROOT / "recipes" / "cartpole_ppo.yaml")
    assert shipped.env.name == "CartPole-v1" and shipped.model.activation == "tanh"


CARTPOLE = {"name": "CartPole-v1"}


@pytest.mark.parametrize("data, expected", [
    ({"env": CARTPOLE, "rl": {"gamma": 1.5}}, "rl.gamma must be <= 1, got 1.5"),
    ({"env": CARTPOLE, "rl": {"clip": 0}}, "rl.clip must be > 0, got 0"),
    ({"env": CARTPOLE | {"num_envs": 0}}, "env.num_envs must be >= 1, got 0"),
    ({"env": CARTPOLE, "rl": {"steps": 1.5}}, "rl.steps must be an integer"),
    ({"env": CARTPOLE, "rl": {"step": 10}}, "unknown key rl.step (did you mean 'steps'?)"),
    ({"env": {"num_envs": 4}}, "env.name is required when env or rl keys are set"),
    ({"rl": {"steps": 10}}, "env.name is required when env or rl keys are set"),
])
def test_rl_keys_are_checked(data, expected):
    with pytest.raises(RecipeError) as err:
        Recipe.from_dict(data)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_episode_seeds_keep_training_and_evaluation_apart():
    from danlu.rl._env import EVAL, TRAIN, episode_seed

    train = {episode_seed(0, TRAIN, i, k) for i in range(8) for k in range(50)}
    evaluation = {episode_seed(0, EVAL, j) for j in range(400)}
    assert len(train) == 400 and len(evaluation) == 400
    assert all(s % 2 == 0 for s in train) and all(s % 2 == 1 for s in evaluation)
    assert episode_seed(0, TRAIN, 3, 7) == episode_seed(0, TRAIN, 3, 7) != episode_seed(1, TRAIN, 3, 7)


def test_gae_matches_discounted_td_errors():
    torch = pytest.importorskip("torch")
    from danlu.rl._ppo import gae

    gen = torch.Generator().manual_seed(0)
    T, N, gamma, lam = 7, 3, 0.9, 0.8
    rewards, values = torch.rand(T, N, generator=gen), torch.rand(T, N, generator=gen)
    last = torch.rand(N, generator=gen)
    ended = torch.zeros(T, N, dtype=torch.bool)
    ended[2, 0] = ended[5, 1] = True
    got = gae(rewards, values, ended, last, gamma, lam)
    # Oracle: A_t = sum_k (gamma * lam)^k delta_{t+k}, summed until the episode ends.
    for n in range(N):
        nxt = [values[t + 1, n] if t + 1 < T else last[n] for t in range(T)]
        delta = [rewards[t, n] + gamma * nxt[t] * (not ended[t, n]) - values[t, n] for t in range(T)]
        for t in range(T):
            total, k = 0.0, t
            while k < T:
                total += (gamma * lam) ** (k - t) * delta[k]
                if ended[k, n]:
                    break
                k += 1
            assert got[t, n].item() == pytest.approx(float(total), rel=1e-5)


def test_moving_average_matches_a_convolution():
    pytest.importorskip("matplotlib")
    from danlu.rl._plots import moving_average

    values = np.random.default_rng(0).normal(size=250)
    got = moving_average(values, 100)
    full = np.convolve(values, np.ones(100) / 100, mode="valid")
    assert np.allclose(got[99:], full)
    assert got[0] == values[0] and np.isclose(got[9], values[:10].mean())


def _row(update, mean, entropy=0.5, step=None):
    return {"update": update, "step": step or 100 * update, "episodes": 10 * update, "mean_return_100": mean,
            "entropy": entropy}


def test_monitor_reports_solved_collapse_plateau_and_entropy():
    mon = ReturnMonitor(solved=475.0, n_actions=2, updates=100)
    seen = []
    curve = [20, 40, 100, 300, 400, 150] + [160] * 20 + [480]
    for u, mean in enumerate(curve, 1):
        seen += [(u, kind) for kind, _ in mon.check(_row(u, float(mean)))]
    # the plateau is judged 20 updates (a fifth of the run) after the best, 400 at update 5
    assert seen == [(6, "return_collapse"), (25, "return_plateau"), (27, "solved")]

    early = ReturnMonitor(solved=475.0, n_actions=2, updates=100)
    kinds = [k for u in (1, 2) for k, _ in early.check(_row(u, 20.0, entropy=0.02 * math.log(2)))]
    assert kinds == ["entropy_collapse"]   # once, not again at update 2


def test_monitor_state_round_trip_and_messages_in_both_languages():
    mon = ReturnMonitor(solved=475.0, n_actions=2, updates=100)
    for u, mean in enumerate([20.0, 100.0, 30.0], 1):
        found = mon.check(_row(u, mean))
    kind, facts = found[0]
    copy = ReturnMonitor(solved=475.0, n_actions=2, updates=100)
    copy.load_state_dict(mon.state_dict())
    assert copy.state_dict() == mon.state_dict() and copy.check(_row(4, 25.0)) == mon.check(_row(4, 25.0))
    en = message(kind, "en", {"step": 300, **facts})
    zh = message(kind, "zh", {"step": 300, **facts})
    assert en.startswith("return collapsed: the mean return fell from its best 100") and "70%" in en
    assert "optimizer.lr" in en and zh.startswith("回报崩塌：") and "optimizer.lr" in zh


def test_importing_the_package_pulls_neither_torch_nor_gymnasium():
    import subprocess
    import sys

    code = "import sys, danlu.rl\nprint(sorted({'torch', 'gymnasium'} & set(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
