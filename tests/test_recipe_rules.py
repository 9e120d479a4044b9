"""Constraints as data: every check that needs only the recipe lives in the schema (unions, list
item ranges, Field rules and cross-key Section rules), so it fires in ``Recipe.from_dict`` —
before any data is read. The recipes below point at a CSV file that does not exist: a rule that
fires proves it ran before anything looked for the data.

A property test then throws random recipes at the schema: each one either validates (and survives
a round trip through ``to_dict``) or is refused with a one-line RecipeError that names the source.
"""
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from danlu.errors import RecipeError
from danlu.recipe import NUM, RECIPE, Field, Recipe, Rule, Section, check_section, union
from danlu.tune._space import recipe_leaves

NO_DATA = {"source": "csv", "path": "/nonexistent/danlu-rules/never-read.csv"}
RL = {"env": {"name": "CartPole-v1"}}


def _recipe(**sections) -> dict:
    data = {"data": dict(NO_DATA)}
    for key, value in sections.items():
        if key == "data":
            data["data"] = {**NO_DATA, **value}
        else:
            data[key] = value
    return data


# (recipe, text the one-line error must hold); one row per rule that moved into the schema
MOVED = [
    # run name (was danlu/_rundir.py check_run_name)
    (_recipe(name="a/b"), "name must be a plain folder name"),
    (_recipe(name=".."), "name must be a plain folder name"),
    # data (were danlu/data/_prepare.py and _sources.py)
    (_recipe(data={"split": {"validation": 0.5, "test": 0.45}}), "data.split.validation + data.split.test must "
                                                                  "leave rows to train on, got 0.5 + 0.45"),
    (_recipe(data={"categorical": "some"}), "data.categorical must be 'auto' or a list of strings; got 'some'"),
    (_recipe(data={"categorical": ["a", 3.5]}), "data.categorical[1] must be a string, got 3.5"),
    (_recipe(data={"shape": [1, 0, 8]}), "data.shape[1] must be >= 1, got 0"),
    (_recipe(data={"shape": [1, 2, 2, 2]}), "data.shape must be 1 to 3 integers >= 1, got [1, 2, 2, 2]"),
    (_recipe(data={"shape": []}), "data.shape must be 1 to 3 integers >= 1, got []"),
    (_recipe(data={"image_size": [8]}), "data.image_size must be two integers >= 1, got [8]"),
    (_recipe(data={"image_size": [8, 0]}), "data.image_size[1] must be >= 1, got 0"),
    # optimizer and schedule (were danlu/training/_factory.py and Recipe._check_cross)
    (_recipe(optimizer={"betas": [0.9]}), "optimizer.betas must be two numbers in [0, 1), got [0.9]"),
    (_recipe(optimizer={"betas": [0.9, 1.0]}), "optimizer.betas[1] must be < 1, got 1.0"),
    (_recipe(optimizer={"betas": [-0.1, 0.9]}), "optimizer.betas[0] must be >= 0, got -0.1"),
    (_recipe(optimizer={"kind": "sgd", "nesterov": True}), "optimizer.nesterov needs optimizer.momentum > 0, got 0"),
    (_recipe(schedule={"kind": "multistep"}), "schedule.milestones is required for schedule.kind multistep"),
    (_recipe(output={"loggers": ["tensorbord"]}), "output.loggers[0] must be one of tensorboard, mlflow; "
                                                  "got 'tensorbord' (did you mean 'tensorboard'?)"),
    # transfer (were danlu/transfer/_finetune.py and Recipe._check_cross)
    (_recipe(base={"kind": "minilm", "run": "runs/earlier"}), "base.kind and base.run both set; keep one of them"),
    (_recipe(base={"run": "runs/earlier"}, lora={"enabled": True}), "lora.enabled needs base.mode: full"),
    # reinforcement learning (were danlu/rl/_train.py and Recipe._check_cross)
    ({**RL, "device": "cuda"}, "device: cuda is not used by RL runs"),
    ({"env": {"name": "CartPole-v1", "num_envs": 1}, "rl": {"rollout": 2, "minibatches": 3}},
     "rl.minibatches (3) exceeds the 2 steps of a rollout"),
    (_recipe(rl={"steps": 100}), "env.name is required when env or rl keys are set"),
    # which data (were Recipe._check_cross)
    ({"data": {"source": "csv"}}, "data.path is required when data.source is csv"),
    ({"data": {"source": "sklearn"}}, "data.name is required when data.source is sklearn"),
    # model kinds: list items, unions and rules (were the builders in danlu/models, generative,
    # transfer and danlu/classical/_estimators.py)
    (_recipe(model={"kind": "mlp", "hidden": [16, 0]}), "model.hidden[1] must be >= 1, got 0"),
    (_recipe(model={"kind": "cnn", "channels": [8, 0]}), "model.channels[1] must be >= 1, got 0"),
    (_recipe(model={"kind": "cnn", "hidden": [0]}), "model.hidden[0] must be >= 1, got 0"),
    (_recipe(model={"kind": "cnn", "kernel_size": 4}), "model.kernel_size must be odd so that padding keeps the "
                                                       "image size, got 4; use 5"),
    (_recipe(model={"kind": "diffusion", "embed_dim": 9}), "model.embed_dim must be even (sine and cosine halves), "
                                                          "got 9; use 10"),
    (_recipe(model={"kind": "autoencoder", "hidden": [0]}), "model.hidden[0] must be >= 1, got 0"),
    (_recipe(model={"kind": "vae", "hidden": [4, -1]}), "model.hidden[1] must be >= 1, got -1"),
    (_recipe(model={"kind": "hypernetwork", "hidden": [0]}), "model.hidden[0] must be >= 1, got 0"),
    (_recipe(model={"kind": "random_forest", "n_jobs": 0}), "model.n_jobs must be -1 (all cores) or a number of "
                                                            "threads >= 1; got 0"),
    (_recipe(model={"kind": "random_forest", "max_features": 1.5}), "model.max_features must be sqrt, log2 or a "
                                                                    "fraction of features, in (0, 1]; got 1.5"),
    (_recipe(model={"kind": "random_forest", "max_features": "half"}), "model.max_features must be sqrt, log2 or"),
    (_recipe(model={"kind": "svm", "gamma": "wide"}), "model.gamma must be scale, auto or a number > 0; got 'wide'"),
    (_recipe(model={"kind": "svm", "gamma": 0}), "model.gamma must be scale, auto or a number > 0; got 0"),
]


@pytest.mark.parametrize("data, expected", MOVED, ids=[m[1][:40] for m in MOVED])
def test_a_recipe_only_rule_fires_when_the_recipe_is_read(data, expected):
    with pytest.raises(RecipeError) as err:
        Recipe.from_dict(data, source="r.yaml")
    text = str(err.value)
    assert text.startswith("r.yaml: ") and "\n" not in text
    assert expected in text


ACCEPTED = [
    (_recipe(data={"categorical": ["city", "colour"]}), ("data", "categorical"), ["city", "colour"]),
    (_recipe(data={"shape": [1, 8, 8], "image_size": [28, 28]}), ("data", "shape"), [1, 8, 8]),
    (_recipe(optimizer={"betas": [0.0, 0.999]}), ("optimizer", "betas"), [0.0, 0.999]),
    (_recipe(optimizer={"kind": "sgd", "nesterov": True, "momentum": 0.9}), ("optimizer", "nesterov"), True),
    (_recipe(optimizer={"kind": "adam", "nesterov": True}), ("optimizer", "nesterov"), True),   # only sgd uses it
    (_recipe(model={"kind": "random_forest", "n_jobs": -1}), ("model", "n_jobs"), -1),
    (_recipe(model={"kind": "random_forest", "n_jobs": 3}), ("model", "n_jobs"), 3),
    (_recipe(model={"kind": "random_forest", "max_features": "log2"}), ("model", "max_features"), "log2"),
    (_recipe(model={"kind": "random_forest", "max_features": 1}), ("model", "max_features"), 1),
    (_recipe(model={"kind": "svm", "gamma": 0.5}), ("model", "gamma"), 0.5),
    (_recipe(model={"kind": "cnn", "kernel_size": 5}), ("model", "kernel_size"), 5),
    ({"env": {"name": "CartPole-v1", "num_envs": 2}, "rl": {"rollout": 2, "minibatches": 4}}, ("rl", "minibatches"), 4),
]


@pytest.mark.parametrize("data, path, value", ACCEPTED)
def test_values_inside_the_rules_are_kept(data, path, value):
    recipe = Recipe.from_dict(data)
    assert recipe[path[0]][path[1]] == value


def test_the_checks_hold_for_a_section_checked_on_its_own():
    """Builders that complete a plain dict (build_optimizer({...})) go through the same rules."""
    from danlu.recipe import OPTIMIZER, SCHEDULE

    with pytest.raises(RecipeError, match="optimizer.nesterov needs optimizer.momentum > 0"):
        check_section(OPTIMIZER, {"kind": "sgd", "nesterov": True}, "optimizer", "recipe")
    with pytest.raises(RecipeError, match="schedule.milestones is required"):
        check_section(SCHEDULE, {"kind": "multistep"}, "schedule", "recipe")


def test_rules_unions_and_item_ranges_as_data():
    """The machinery on a section of one's own: a union, a list with an item range and a length,
    a rule on one value and a rule across keys — each refused in one line that names the key."""
    section = Section({
        "size": union(Field(str, choices=("auto",)), Field(int, min=1), default="auto"),
        "window": Field(list, None, item=Field(NUM, min=0, max=1, max_exclusive=True), min_items=2, max_items=3),
        "odd": Field(int, 3, rules=(Rule(check=lambda v: v % 2 == 1, message="must be odd, got {0}"),)),
        "low": Field(NUM, 0.0),
        "high": Field(NUM, 1.0),
    }, rules=(Rule(keys=("low", "high"), check=lambda lo, hi: lo < hi, message="x.low must be below x.high, "
                                                                               "got {0} and {1}"),))
    ok = check_section(section, {"size": 4, "window": [0, 0.5]}, "x", "src")
    assert (ok.size, ok.window, ok.odd) == (4, [0, 0.5], 3)
    assert check_section(section, {}, "x", "src").size == "auto"
    cases = [({"size": "big"}, "src: x.size must be auto or an integer >= 1; got 'big'"),
             ({"size": 0}, "src: x.size must be auto or an integer >= 1; got 0"),
             ({"window": [0.5]}, "src: x.window must be 2 to 3 numbers in [0, 1), got [0.5]"),
             ({"window": [0.5, 1]}, "src: x.window[1] must be < 1, got 1"),
             ({"odd": 4}, "src: x.odd must be odd, got 4"),
             ({"low": 2}, "src: x.low must be below x.high, got 2 and 1.0")]
    for data, expected in cases:
        with pytest.raises(RecipeError) as err:
            check_section(section, data, "x", "src")
        assert str(err.value) == expected


# ---------------------------------------------------------------------------------------------
# Property: random recipes validate or are refused in one line
# ---------------------------------------------------------------------------------------------

MODEL_KINDS = sorted(RECIPE.fields["model"].by_kind())
# every leaf key of the schema (the model keys of every kind too), as `danlu tune` reads them
LEAVES = {key: spec for key, spec in recipe_leaves(MODEL_KINDS).items() if isinstance(spec, Field)}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 300), st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-2, 2), st.sampled_from(["auto", "", "a/b", "..", "sgd", "multistep", "csv", "cuda", "tensorbord",
                                       "1e-3", "scale", "log2", "minilm", "full", "CartPole-v1"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=4), st.dictionaries(st.sampled_from(["a", "kind"]), scalars,
                                                                            max_size=2))


def _value_for(key: str):
    spec = LEAVES[key]
    typed = st.sampled_from(list(spec.choices)) if spec.choices else values
    return st.one_of(typed, values, st.just(spec.default))


@st.composite
def random_recipes(draw):
    data = {"data": {"source": "sklearn", "name": "iris"}}
    for key in draw(st.lists(st.sampled_from(sorted(LEAVES)), max_size=8, unique=True)):
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = draw(_value_for(key))
    if draw(st.booleans()):
        data.setdefault("model", {})["kind"] = draw(st.sampled_from(MODEL_KINDS + ["mpl", 3]))
    return data


def _finite(x) -> bool:
    return not isinstance(x, float) or math.isfinite(x)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_recipes())
def test_random_recipes_validate_or_are_refused_in_one_line(data):
    try:
        recipe = Recipe.from_dict(data, source="fuzz.yaml")
    except RecipeError as err:
        text = str(err)
        assert text.startswith("fuzz.yaml: ") and "\n" not in text and len(text) < 1000, text
        return
    # what validates is a fixed point: the same recipe once more, and every rule holds on it
    again = Recipe.from_dict(recipe.to_dict(), source="fuzz.yaml")
    assert again.to_dict() == recipe.to_dict()
    split = recipe.data.split
    assert split.validation + split.test < 0.95
    assert recipe.optimizer.betas is None or (len(recipe.optimizer.betas) == 2
                                              and all(0 <= b < 1 for b in recipe.optimizer.betas))
    assert all(_finite(v) for v in (recipe.optimizer.lr, recipe.optimizer.weight_decay, recipe.loss.delta))


# ---------------------------------------------------------------------------------------------
# The search space of `danlu tune`: its distributions are checked by the same machinery
# ---------------------------------------------------------------------------------------------

SPACE_RULES = [
    ({"type": "float", "grid": []}, "optimizer.lr: grid must be a non-empty list of numbers"),
    ({"type": "int", "low": 1}, "optimizer.lr: low and high are required for type int, e.g. {type: int, low: 1, "
                                "high: 10}"),
    ({"type": "float", "low": 0.5, "high": 0.1}, "optimizer.lr: low must be below high, got low 0.5 and high 0.1"),
    ({"type": "float", "low": 0.0, "high": 0.1, "log": True}, "optimizer.lr: log: true needs low > 0, got low 0.0"),
    ({"type": "float", "low": 0.1, "high": 0.9, "step": 0.1, "log": True}, "step and log: true cannot be used "
                                                                           "together"),
    ({"type": "float", "low": 0.1, "high": 0.9, "grid": [0.5], "points": 3}, "give either grid or points, not both"),
    ({"type": "float", "low": 0.1, "high": 0.9, "grid": [0.5, 2.0]}, "a grid value is outside low 0.1 .. high 0.9"),
    ({"type": "float", "low": 0.1, "high": float("nan")}, "optimizer.lr.high must be a finite number; got nan"),
    ({"type": "int", "low": 1.5, "high": 4}, "optimizer.lr.low must be an integer; got 1.5"),
    ({"type": "float", "low": 0.1, "high": 0.9, "points": 1}, "optimizer.lr.points must be an integer >= 2; got 1"),
    ({"type": "float", "low": 0.1, "high": 0.9, "step": 0}, "optimizer.lr.step must be > 0, got 0"),
    ({"type": "categorical", "choices": []}, "optimizer.lr: choices must be a non-empty list"),
    ({"type": "categorical", "choices": [1, 1]}, "optimizer.lr: choices has duplicates"),
    ({"type": "gaussian"}, "optimizer.lr.type must be one of categorical, float, int; got 'gaussian'"),
]


@pytest.mark.parametrize("spec, expected", SPACE_RULES, ids=[s[1][:40] for s in SPACE_RULES])
def test_a_distribution_is_checked_by_its_schema(spec, expected):
    from danlu.tune._space import DISTRIBUTION

    with pytest.raises(RecipeError) as err:
        check_section(DISTRIBUTION, spec, "optimizer.lr", "space.yaml")
    assert str(err.value).startswith("space.yaml: ") and "\n" not in str(err.value)
    assert expected in str(err.value)


def test_a_grid_alone_gives_the_range():
    from danlu.tune._space import DISTRIBUTION

    cfg = check_section(DISTRIBUTION, {"type": "int", "grid": [4, 2, 8]}, "train.batch_size", "space")
    assert (cfg["low"], cfg["high"], cfg["grid"]) == (None, None, [4, 2, 8])   # the ends come from the grid
    cfg = check_section(DISTRIBUTION, {"type": "float", "grid": [0.5]}, "optimizer.lr", "space")
    assert cfg["grid"] == [0.5]   # one value is a range of its own
