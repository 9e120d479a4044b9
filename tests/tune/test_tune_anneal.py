"""The simulated-annealing sampler: bounds, seeding, the Metropolis walk, and that it searches."""
import math

import pytest

optuna = pytest.importorskip("optuna")
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: E402

from danlu.tune import AnnealingSampler  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.ERROR)

SPACE = {
    "lr": FloatDistribution(1e-5, 1e-1, log=True),
    "momentum": FloatDistribution(0.0, 0.9, step=0.1),
    "batch": IntDistribution(16, 128, step=16),
    "layers": IntDistribution(1, 6),
    "act": CategoricalDistribution(["relu", "tanh", "gelu"]),
}


def _objective(trial):
    # a bumpy function of every parameter, so that the walk moves around
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    momentum = trial.suggest_float("momentum", 0.0, 0.9, step=0.1)
    batch = trial.suggest_int("batch", 16, 128, step=16)
    layers = trial.suggest_int("layers", 1, 6)
    act = trial.suggest_categorical("act", ["relu", "tanh", "gelu"])
    return ((math.log10(lr) + 2.5) ** 2 + (momentum - 0.6) ** 2 + abs(batch - 64) / 64
            + 0.3 * math.sin(3 * layers) + {"relu": 0.0, "tanh": 0.2, "gelu": 0.1}[act])


def _run(seed, n=25, space=SPACE):
    study = optuna.create_study(sampler=AnnealingSampler(space, seed=seed))
    study.optimize(_objective, n_trials=n)
    return study


def test_values_stay_inside_the_distributions():
    for t in _run(seed=3).trials:
        p = t.params
        assert 1e-5 <= p["lr"] <= 1e-1
        assert 0.0 <= p["momentum"] <= 0.9 and round(p["momentum"] * 10) == pytest.approx(p["momentum"] * 10)
        assert isinstance(p["batch"], int) and 16 <= p["batch"] <= 128 and p["batch"] % 16 == 0
        assert isinstance(p["layers"], int) and 1 <= p["layers"] <= 6
        assert p["act"] in ("relu", "tanh", "gelu")


def test_same_seed_same_sequence_other_seed_another():
    a = [t.params for t in _run(seed=7).trials]
    b = [t.params for t in _run(seed=7).trials]
    c = [t.params for t in _run(seed=8).trials]
    assert a == b
    assert a != c


def test_the_walk_is_rebuilt_from_the_storage_alone():
    # a fresh sampler (another process, after a kill) continues exactly where the first one was
    whole = _run(seed=5, n=12)
    study = optuna.create_study(sampler=AnnealingSampler(SPACE, seed=5))
    study.optimize(_objective, n_trials=6)
    study.sampler = AnnealingSampler(SPACE, seed=5)
    study.optimize(_objective, n_trials=6)
    assert [t.params for t in study.trials] == [t.params for t in whole.trials]


def _done(number, value):
    trial = optuna.trial.create_trial(params={"layers": 2}, distributions={"layers": SPACE["layers"]}, value=value)
    trial.number = number
    return trial


def test_metropolis_always_accepts_a_better_value_and_never_a_much_worse_one_when_cold():
    sampler = AnnealingSampler(SPACE, seed=0, t0=1.0, cooling=0.5)
    minimize, maximize = optuna.study.StudyDirection.MINIMIZE, optuna.study.StudyDirection.MAXIMIZE
    better = [_done(0, 5.0), _done(1, 1.0)]
    assert sampler.walk(better, minimize).number == 1
    assert sampler.walk(better, maximize).number == 0      # maximising flips what "better" means
    # after 30 halvings of the temperature a worsening by the whole spread has chance exp(-2**30)
    cold = [_done(i, 1.0) for i in range(30)] + [_done(30, 2.0)]
    assert sampler.walk(cold, minimize).value == 1.0     # (equal values move the walk along)
    # hot (t0 huge, no cooling) a small worsening is almost always taken
    hot = AnnealingSampler(SPACE, seed=0, t0=1e9, cooling=1.0)
    assert hot.walk([_done(0, 1.0), _done(1, 2.0)], minimize).number == 1


def test_it_searches_better_than_its_start():
    study = _run(seed=1, n=40)
    values = [t.value for t in study.trials]
    assert min(values) < sorted(values[:5])[0]        # improves on the early trials
    assert study.best_value < 0.5                      # the optimum is about -0.3 .. 0


def test_without_a_space_it_learns_it_from_completed_trials():
    study = optuna.create_study(sampler=AnnealingSampler(seed=2))
    study.optimize(_objective, n_trials=8)
    assert len({t.params["lr"] for t in study.trials}) == 8


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        AnnealingSampler(SPACE, cooling=1.5)
