"""Numbers as people write them are numbers wherever a number is expected (recipe files, --set,
Python dicts), and text that merely looks odd stays text where text is expected."""
import math

import pytest

from danlu.errors import RecipeError
from danlu.recipe import Recipe

BASE = "data: {source: sklearn, name: iris}\n"


def _recipe(tmp_path, body: str, overrides=None) -> Recipe:
    path = tmp_path / "r.yaml"
    path.write_text(body if body.startswith("data:") else BASE + body, encoding="utf-8")
    return Recipe.from_yaml(path, overrides)


# each spelling is checked against Python's own reading of the same digits
SPELLINGS = ["3e-4", "1E5", "+1e-3", ".5", "5.", "1.5e+2", "2E-8", "0.25", "1_000.5", ".5e-3", "7"]
NEGATIVE = ["-2e-3", "-1E5", "-.5", "-5.", "-7"]


@pytest.mark.parametrize("text", SPELLINGS)
def test_float_spellings_in_a_file_and_in_set(tmp_path, text):
    expected = float(text.replace("_", ""))
    r = _recipe(tmp_path, f"optimizer: {{weight_decay: {text}}}\n")
    assert r.optimizer.weight_decay == expected and type(r.optimizer.weight_decay) in (int, float)
    assert _recipe(tmp_path, "", [f"optimizer.weight_decay={text}"]).optimizer.weight_decay == expected


@pytest.mark.parametrize("text", NEGATIVE)
def test_negative_spellings(tmp_path, text):
    expected = float(text)
    r = _recipe(tmp_path, f"env: {{name: CartPole-v1, solved_return: {text}}}\n")
    assert r.env.solved_return == expected
    r = _recipe(tmp_path, "", ["env.name=CartPole-v1", f"env.solved_return={text}"])
    assert r.env.solved_return == expected


def test_learning_rate_as_written_in_papers(tmp_path):
    assert _recipe(tmp_path, "optimizer: {lr: 3e-4}\n").optimizer.lr == 3e-4
    assert _recipe(tmp_path, "", ["optimizer.lr=1e-3"]).optimizer.lr == 1e-3
    r = Recipe.from_yaml(tmp_path / "r.yaml").with_overrides(["optimizer.lr=2E-5", "optimizer.eps=1e-8"])
    assert (r.optimizer.lr, r.optimizer.eps) == (2e-5, 1e-8)
    assert type(r.optimizer.lr) is float
    # the resolved recipe writes plain numbers and reads back to the same values
    again = tmp_path / "again.yaml"
    again.write_text(r.to_yaml(), encoding="utf-8")
    assert Recipe.from_yaml(again).optimizer.lr == 2e-5


@pytest.mark.parametrize("text, value", [("1_000", 1000), ("1e2", 100), ("010", 10), ("0x20", 32), ("2.0", 2),
                                         ("+64", 64), ("1E3", 1000)])
def test_integer_keys_take_whole_numbers_in_any_spelling(tmp_path, text, value):
    r = _recipe(tmp_path, f"train: {{batch_size: {text}}}\n")
    assert r.train.batch_size == value and type(r.train.batch_size) is int
    r = _recipe(tmp_path, "", [f"train.epochs={text}", f"model.hidden=[{text}, 4]"])
    assert r.train.epochs == value and r.model.hidden == [value, 4]
    assert type(r.model.hidden[0]) is int


@pytest.mark.parametrize("text", ["2.5", "1e-1", "ten", "1.2.3", "1e", "0x"])
def test_integer_keys_refuse_fractions_and_text(tmp_path, text):
    with pytest.raises(RecipeError, match="train.epochs must be an integer"):
        _recipe(tmp_path, f"train: {{epochs: {text}}}\n")


@pytest.mark.parametrize("value", ["3e-4", "1E-3", ".01", "+1e-2"])
def test_numeric_strings_are_numbers_where_a_number_is_expected(tmp_path, value):
    expected = float(value)
    assert Recipe.from_dict({"data": {"name": "iris"}, "optimizer": {"lr": value}}).optimizer.lr == expected
    assert _recipe(tmp_path, f"optimizer: {{lr: '{value}'}}\n").optimizer.lr == expected   # quoted in YAML
    assert _recipe(tmp_path, "", [f"optimizer.lr='{value}'"]).optimizer.lr == expected


@pytest.mark.parametrize("text", ["1e3", "007", "1_000", "0x1F", "1:30", "3e-4", ".5"])
def test_odd_looking_text_stays_text_where_text_is_expected(tmp_path, text):
    assert _recipe(tmp_path, f"name: {text}\n").name == text
    assert _recipe(tmp_path, "", [f"name={text}"]).name == text
    assert _recipe(tmp_path, f"output: {{runs_dir: {text}}}\n").output.runs_dir == text


def test_label_column_named_like_a_number_stays_its_name(tmp_path):
    r = _recipe(tmp_path, "data: {source: csv, path: x.csv, label: 1e3, features: [a, 2e5, 7]}\n")
    assert r.data.label == "1e3"
    assert r.data.features == ["a", "2e5", 7]   # an integer is still a column index


def test_sexagesimal_and_octal_are_not_yaml_1_1_surprises(tmp_path):
    from danlu._yaml import loads

    data = loads("a: 1:30\nb: 010\nc: 0o17\nd: 1_000\ne: 12e\nf: e5\ng: .\n")
    assert data == {"a": "1:30", "b": 10, "c": 15, "d": 1000, "e": "12e", "f": "e5", "g": "."}


def test_other_yaml_keeps_its_types(tmp_path):
    r = _recipe(tmp_path, "data: {name: digits, augment: {hflip: true}}\nmodel: {kind: cnn, channels: [4, 8]}\n")
    assert r.data.augment.hflip is True and r.model.channels == [4, 8]


def test_search_space_files_read_numbers_too(tmp_path):
    from danlu.recipe import load_yaml

    path = tmp_path / "space.yaml"
    path.write_text("optimizer.lr: {type: float, low: 1e-5, high: 1e-1, log: true}\n", encoding="utf-8")
    data = load_yaml(path)
    spec = data["optimizer.lr"]
    assert spec["low"] == 1e-5 and type(spec["low"]) is float and math.isclose(spec["high"], 0.1)


def test_resolved_recipe_reads_back_the_same_with_either_yaml_reader(tmp_path):
    import yaml

    r = _recipe(tmp_path, "data: {source: csv, path: x.csv, label: '0o17', features: ['010', 2e5, 3]}\n"
                          "name: 1e3\noutput: {runs_dir: '1:30'}\noptimizer: {lr: 3e-4, eps: 1e-8}\n")
    text = r.to_yaml()
    again = tmp_path / "again.yaml"
    again.write_text(text, encoding="utf-8")
    assert Recipe.from_yaml(again).to_dict() == r.to_dict()
    assert yaml.safe_load(text) == r.to_dict()   # danlu's other readers use plain PyYAML
    assert r.data.features == ["010", "2e5", 3] and r.data.label == "0o17" and r.output.runs_dir == "1:30"
