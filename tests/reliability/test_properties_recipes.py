"""Generated recipes — valid-ish and hostile — through validation and `danlu train`.

Every recipe ends in exit 0 with a finished, finite run whose saved recipe reads back as the one
validated, or exit 2 with one line; nothing outside the run directory changes.
"""
from __future__ import annotations

import copy
import math

import yaml
from properties_kit import budget
from hypothesis import example, given
from hypothesis import strategies as st

from danlu.errors import UserError
from danlu.recipe import RECIPE, Field, Recipe, Section, describe

BASE = {"name": "attack", "seed": 0, "data": {"source": "sklearn", "name": "iris"},
        "model": {"kind": "mlp", "hidden": [4]}, "optimizer": {"kind": "adam", "lr": 0.01},
        "train": {"epochs": 1, "batch_size": 32, "early_stopping": {"enabled": False}},
        "checkpoint": {"every_epochs": 1}, "output": {"progress": "none"},
        "monitors": {"gradients": {"enabled": False}}}

LEAF_PATHS = [p for p, _default, _doc in describe()]
MODEL_PATHS = ["model.hidden", "model.activation", "model.dropout", "model.batch_norm", "model.embedding_dim",
               "model.channels", "model.kernel_size", "model.cell", "model.hidden_size", "model.max_depth",
               "model.n_estimators", "model.clusters"]
ODD_PATHS = ["optimizer", "train", "data", "model", "data.split", "monitors", "plugins", "optimiser.lr",
             "train.epoch", "data.split.valid", "train.early_stopping", "__class__", "name.first", "seed.x"]
SECTIONS = ["optimizer", "train", "data", "model", "data.split", "monitors.divergence", "schedule", "quant"]
PATHS = st.one_of(
    st.sampled_from(LEAF_PATHS + MODEL_PATHS + ODD_PATHS),
    st.text(min_size=1, max_size=12).map(lambda s: "junk." + s),
    st.tuples(st.sampled_from(SECTIONS), st.text(min_size=1, max_size=8)).map(".".join),   # unknown keys
    st.tuples(st.sampled_from(SECTIONS), st.sampled_from(["a\nb", "a\rb", "a\x0cb", "a\u2028b", "a\x85b"])).map(
        ".".join),
)

# number spellings, YAML 1.1 oddities, control characters, scripts, bidi marks
SPELLINGS = ["3e-4", "3E-4", "1e3", "1.5e+2", "1_000", "0x10", "0o17", "017", ".5", "5.", "+1", "-0", "-0.0",
             ".inf", "-.inf", ".nan", ".NaN", "NaN", "nan", "inf", "Infinity", "1,5", "１２", "٣", "½", "2**8",
             "1e400", "-1e400", "1e-400", "99999999999999999999999", "yes", "no", "on", "off", "y", "n", "~",
             "null", "Null", "True", "FALSE", "2026-12-06", "1:30", "0.1.2", "", " ", "\t", "é", "炸炉", "\u202e",
             "a\nb", "\x07", "[", "{", "&a", "*a", "!!python/object:os.system", "- 1", "'quoted'", "%TAG"]

SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.sampled_from([0, 1, -1, 2, 2 ** 31, 2 ** 63, 2 ** 64, 10 ** 30, -(10 ** 30)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, 0.0, -0.0, 1e-300]),
    st.sampled_from(SPELLINGS),
    st.text(max_size=16),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


def _fields(section: Section = RECIPE, prefix: str = "") -> dict[str, Field]:
    out = {}
    for key, spec in section.fields.items():
        if isinstance(spec, Section):
            out.update(_fields(spec, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = spec
    return out


FIELDS = _fields()


def _validish(field: Field):
    """Values a user might well write for this key: in range, at the edges, or a near miss."""
    if field.choices is not None:
        words = [c for c in field.choices if isinstance(c, str)]
        return st.sampled_from(list(field.choices) + [w.upper() for w in words] + [w + "s" for w in words])
    types = field.type if isinstance(field.type, tuple) else (field.type,)
    low = field.min if field.min is not None else -5
    high = field.max if field.max is not None else low + 10
    options = []
    if bool in types:
        options.append(st.booleans())
    if int in types:
        options.append(st.integers(int(math.floor(low)), int(math.floor(low)) + 3))
    if float in types:
        options.append(st.floats(low, high, allow_nan=False))
        options.append(st.sampled_from([low, high, f"{high:g}", f"{max(low, 1e-4):.0e}"]))
    if str in types:
        options.append(st.text(max_size=8))
    if list in types:
        item = field.item or int
        item = item[0] if isinstance(item, tuple) else item
        options.append(st.lists(st.integers(0, 6) if item in (int, float) else st.text(max_size=4), max_size=3))
    options.append(st.none())   # `key:` with nothing after it
    return st.one_of(options)


VALIDISH = st.sampled_from(sorted(FIELDS)).flatmap(lambda p: st.tuples(st.just(p), _validish(FIELDS[p])))
# a list or a mapping where a kind's name goes
KINDS = st.tuples(st.sampled_from(["model.kind", "optimizer.kind", "loss.kind", "schedule.kind", "data.source"]),
                  st.sampled_from([["mlp"], {"mlp": 1}, [], {}, [[1]]]))
MUTATIONS = st.lists(st.one_of(st.tuples(PATHS, VALUES), VALIDISH, VALIDISH, KINDS), min_size=1, max_size=3)


def set_path(doc: dict, path: str, value) -> None:
    parts = path.split(".")
    node = doc
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value


def mutated(mutations) -> dict:
    doc = copy.deepcopy(BASE)
    for path, value in mutations:
        set_path(doc, path, copy.deepcopy(value))
    return doc


def dump(doc) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


# --- what a generated recipe may cost ---------------------------------------------------------

def _ints(value):
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _ints(v)


def cheap(recipe: Recipe, root) -> bool:
    """Train it for real only when it is sure to be small: a few epochs of a small model on small
    data, no backbone, no agent, no checkpoint every step."""
    d, t, cp = recipe.data, recipe.train, recipe.checkpoint
    if recipe.env.name or recipe.base.kind or recipe.base.run or t.epochs > 2:
        return False
    if d.source == "sklearn" and d.name not in ("iris", "wine", "breast_cancer", "diabetes"):
        return False
    if d.source == "sequence" and (d.samples > 400 or d.length > 30):
        return False
    if d.source in ("csv", "npy", "images") and not str(d.path).startswith(str(root)):
        return False
    if cp.every_steps and (cp.every_steps < 5 or t.batch_size < 8):
        return False
    if t.batch_size < 4 or recipe.model.kind in ("diffusion", "vae", "hypernetwork", "cnn", "rnn"):
        return False
    sizes = [v for k, v in recipe.model.items() if k != "kind" for v in _ints(v)]
    return all(0 <= v <= 128 for v in sizes) and recipe.monitors.gradients.every >= 1


def _finite_figures(summary: dict) -> str | None:
    for split in ("train", "validation", "test"):
        for key, value in (summary.get(split) or {}).items():
            if isinstance(value, float) and not math.isfinite(value):
                return f"summary {split}.{key} is {value}"
    return None


def train_case(attack, surface: str, text: bytes, note: str, overrides=()):
    """Write ``text`` as a recipe, validate it, and run `danlu train` on it when that is cheap."""
    with attack.case(surface, note=note) as case:
        path = case.write("recipe.yaml", text)
        try:
            recipe = Recipe.from_yaml(path, [f"{k}={v}" for k, v in overrides])
        except UserError:
            recipe = None   # the command line must say the same in one line
        except Exception:   # noqa: BLE001 — judged below through the command line, which raises too
            recipe = None
        if recipe is not None and not cheap(recipe, case.root):
            attack.judge_value(case, lambda: recipe)   # validated: expensive to train, not trained here
            return
        argv = ["train", path, "--run-dir", case.run_dir]
        for key, value in overrides:
            argv += ["--set", f"{key}={value}"]
        result = case.cli(*argv)

        def oracle():
            summary_path = case.run_dir / "summary.json"
            if not summary_path.is_file():
                return "the run has no summary.json"
            import json

            bad = _finite_figures(json.loads(summary_path.read_text()))
            if bad:
                return bad
            saved = Recipe.from_yaml(case.run_dir / "recipe.yaml")
            if dump(saved.to_dict()) != dump(recipe.to_dict()):
                return "the saved recipe differs from the validated one"
            return None

        attack.judge(case, result, oracle)


@given(MUTATIONS)
@example([("loss.label_smoothing", None)])   # found by this property: null reached torch
@example([("model.kind", ["mlp"])])          # found by this property: an unhashable kind
def _mutations_prop(attack, mutations):
    train_case(attack, "recipe-yaml", dump(mutated(mutations)).encode(), repr(mutations))


def test_generated_recipes_train_or_refuse_in_one_line(attack):
    budget(50)(_mutations_prop)(attack)


# --- YAML texts: spellings, duplicates, aliases, bytes ----------------------------------------

SECTION_KEYS = [("optimizer", "lr"), ("train", "epochs"), ("train", "batch_size"), ("seed", None),
                ("data.split", "validation"), ("model", "hidden"), ("schedule", "gamma"), ("name", None),
                ("loss", "label_smoothing"), ("train", "grad_clip")]


def _spelled(key_and_spelling) -> str:
    (section, key), spelling = key_and_spelling
    body = dump(BASE)
    if key is None:
        return body + f"{section}: {spelling}\n"
    return body + f"{section}:\n  {key}: {spelling}\n" if "." not in section else \
        body + "data:\n  source: sklearn\n  name: iris\n  split:\n    validation: " + spelling + "\n"


def _bomb(depth_width) -> str:
    depth, width = depth_width
    lines = ["a0: &a0 [x]"]
    for i in range(1, depth + 1):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + f"\nname: *a{depth}\n" + dump({k: v for k, v in BASE.items() if k != "name"})


def _duplicate(args) -> str:
    (section, key), first, second = args
    if key is None or "." in section:
        return dump(BASE) + f"seed: {first}\nseed: {second}\n"
    return dump({k: v for k, v in BASE.items() if k != section}) + f"{section}:\n  {key}: {first}\n  {key}: {second}\n"


TEXTS = st.one_of(
    st.tuples(st.sampled_from(SECTION_KEYS), st.sampled_from(SPELLINGS) | st.text(max_size=10)).map(_spelled),
    st.tuples(st.integers(1, 6), st.integers(1, 6)).map(_bomb),
    st.tuples(st.sampled_from(SECTION_KEYS), st.sampled_from(["0.1", "2", "x", "[1]"]),
              st.sampled_from(["0.2", "3", "y", "{}"])).map(_duplicate),
    st.text(max_size=200),
    st.sampled_from(["", "---\n...\n", "- 1\n- 2\n", "42\n", "null\n", "!!binary aGk=\n", "a: !!set {x}\n",
                     "a: !!python/tuple [1]\n", "? [1, 2]\n: 3\n", "<<: {seed: 1}\n", "\ufeffname: bom\n",
                     "name: x\n\tseed: 1\n", "{" * 50 + "}" * 50, "[" * 200 + "]" * 200]),
)
BYTES = st.one_of(
    TEXTS.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.tuples(st.integers(0, 400), st.binary(min_size=1, max_size=4)).map(
        lambda kb: dump(BASE).encode()[:kb[0]] + kb[1] + dump(BASE).encode()[kb[0]:]),
    st.integers(0, 400).map(lambda k: dump(BASE).encode()[:k]),
    st.binary(max_size=64),
)


@given(BYTES)
def _texts_prop(attack, data):
    train_case(attack, "recipe-text", data, repr(data[:300]))


def test_generated_yaml_texts_train_or_refuse_in_one_line(attack):
    budget(40)(_texts_prop)(attack)


# --- --set overrides on the command line ------------------------------------------------------

OVERRIDE_TEXT = st.sampled_from(SPELLINGS) | st.text(max_size=12).filter(lambda s: "\x00" not in s)
OVERRIDE_KEYS = PATHS.filter(lambda s: "\x00" not in s) | st.sampled_from(["", ".", "..", "=", "a..b", " lr"])


@given(st.lists(st.tuples(OVERRIDE_KEYS, OVERRIDE_TEXT), min_size=1, max_size=3))
def _overrides_prop(attack, overrides):
    train_case(attack, "recipe-set", dump(BASE).encode(), repr(overrides), overrides)


def test_generated_set_overrides_train_or_refuse_in_one_line(attack):
    budget(30)(_overrides_prop)(attack)


# --- the Python API: dicts with values YAML cannot hold ---------------------------------------

PY_VALUES = VALUES | st.sampled_from([(1, 2), {1, 2}, b"bytes", 1 + 2j, object(), float, [[[[[]]]]], {"": {}}])


@given(st.lists(st.tuples(PATHS, PY_VALUES), min_size=1, max_size=3))
@example([("model.kind", {"mlp": 1})])   # found by this property: an unhashable kind
@example([("optimizer.a\nb", 1)])        # found by this property: a key that breaks the line
def _api_prop(attack, mutations):
    with attack.case("recipe-api", note=repr(mutations)) as case:
        case.arm()
        attack.judge_value(case, lambda: Recipe.from_dict(mutated(mutations)))


def test_generated_recipe_dicts_validate_or_raise_user_error(attack):
    budget(100)(_api_prop)(attack)
