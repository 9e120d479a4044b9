"""The fast path for all-numeric CSV files (danlu predict's usual input) reads exactly what the
per-cell path reads, bit for bit, and steps aside for every file it does not handle, so that
errors still name the line and column. Also: predict's answers built a whole array at a time
are the ones built row by row."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import danlu
from danlu import training
from danlu.data import _csv
from danlu.data._csv import _plain_decimals, read_csv, read_numeric_csv
from danlu.data._labels import LabelCodec
from danlu.data._table import table_from_csv
from danlu.errors import DataError
from danlu.recipe import Recipe
from danlu.training._neural import NeuralRuns


def per_cell(path, names, label=None):
    """The oracle: the csv module and _table's per-cell parsers."""
    csv = read_csv(path)
    table = table_from_csv(csv, names, set(), None)
    labels = csv.column(label) if label in csv.header else None
    return table.values, csv.lines, labels


def write(tmp_path, text, name="in.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal to the bit: -0.0 is not 0.0, and NaN equals only the same NaN."""
    return a.shape == b.shape and a.dtype == b.dtype == np.float64 and bool((a.view(np.uint64) == b.view(np.uint64)).all())


def agrees_with_per_cell(path, names, label=None) -> bool:
    """The property: the fast path reads what the per-cell path reads, or steps aside (None).
    Returns whether it took the file."""
    fast = read_numeric_csv(path, names, label)
    try:
        values, lines, labels = per_cell(path, names, label)
    except DataError:
        assert fast is None, "the fast path read a file the per-cell path refuses"
        return False
    if fast is None:
        return False
    assert same_bits(fast.values, values)
    assert fast.lines == lines
    assert fast.label == labels
    return True


@pytest.mark.parametrize("text", [
    "a,b,label\n1,2,x\n3.5,-4e3,y\n",                       # plain
    "a,b,label\r\n1,2,x\r\n3.5,-4e3,y\r\n",                 # Windows line ends
    "\ufeff a , b ,label\n\n 1 , 2 ,x\n   \n3.5,-4e3, y \n\n",  # BOM, spaces, blank lines
    "a,b,label\n1_000,inf,1\nnan,NaN,2\n1e-400,1e400,3",   # what float() reads, no final newline
    "a,b,label\n0.1000000000000000055511151231257827,١٢,z\n-0,+.5,w\n",
    "a,b,label\n1.7976931348623157e308,5e-324,1\n-0.0,9007199254740993,2\n",
    "a,b,label\n\t7\t,\xa08\u2003,1\n",                      # whitespace float() strips itself
    "a,b,label\n1, 2 ,x\n0.30000000000000004,5e-0001,y\n",  # plain decimals beside cells only float() reads
])
def test_the_fast_path_reads_what_the_per_cell_path_reads(tmp_path, text):
    path = write(tmp_path, text)
    assert read_numeric_csv(path, ["b", "a"], "label") is not None
    assert agrees_with_per_cell(path, ["b", "a"], "label")


@pytest.mark.parametrize("chunk", [1, 100, _csv.CHUNK_CHARS])   # rows read a few at a time, or all at once
def test_random_files_agree_with_the_per_cell_path(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(_csv, "CHUNK_CHARS", chunk)
    rng = np.random.default_rng(0)
    for k in range(6):
        X = rng.normal(scale=10.0 ** rng.integers(-5, 6), size=(50, 4))
        space = " " if k % 2 else ""   # with spaces: float() reads every cell; without: numpy reads most
        rows = [",".join(f"{space}{v:.{rng.integers(1, 18)}g}" for v in row) + ",y" for row in X]
        path = write(tmp_path, "w,x,y,z,label\n" + "\n".join(rows) + "\n", f"r{k}.csv")
        assert agrees_with_per_cell(path, ["z", "w", "y"], "label")


@pytest.mark.parametrize("text", [
    'a,b\n"1",2\n',           # quoting: the csv module's rules
    "a,b\n1,\n",              # a missing value
    "a,b\n1,na\n",
    "a,b\n1,two\n",           # a text cell
    "a,b\n1,2,3\n",           # a ragged row
    "a,b\n1,2\n3\n4,5,6\n",   # ragged rows whose cells add up
    "a,a\n1,2\n",             # a repeated column name
    ",b\n1,2\n",              # an unnamed column
    "a,b\n,\n1,2\n",          # a row of empty cells (read_csv skips it)
    "a,b\r1,2\r",             # bare carriage returns
    "a,b\n1,2\x00\n",         # a NUL
    "a,b\n",                  # no rows
    "a,b\n\x1c1,2\n",         # a space str.strip removes but float() does not
])
def test_anything_else_steps_aside(tmp_path, text):
    assert read_numeric_csv(write(tmp_path, text), ["a", "b"]) is None


def test_a_missing_column_or_file_steps_aside(tmp_path):
    assert read_numeric_csv(write(tmp_path, "a,b\n1,2\n"), ["a", "c"]) is None
    assert read_numeric_csv(tmp_path / "nowhere.csv", ["a"]) is None
    assert read_numeric_csv(tmp_path, ["a"]) is None
    (tmp_path / "bad.csv").write_bytes(b"a,b\n1,\xff\n")   # not UTF-8: read_csv says where
    assert read_numeric_csv(tmp_path / "bad.csv", ["a"]) is None


# --- plain decimals, read by numpy a whole file at a time ---------------------------------------

def plain_read(cells: list[str]) -> tuple[np.ndarray, np.ndarray]:
    values, plain, starts = _plain_decimals(",".join(cells), len(cells))
    assert starts.tolist() == np.cumsum([0] + [len(c) + 1 for c in cells[:-1]]).tolist()
    return values, plain


def test_plain_decimals_are_recognised_and_read_as_float_reads_them():
    cells = ["0", "-0", "+7", "12.5", "-.5", "5.", "1e3", "1.5E-3", "-2e+22", "123456789012345", "1e-22",
             "0.00000000000001", "9.99999999999999e22", "1.e5", "00.5E0"]
    values, plain = plain_read(cells)
    assert plain.all()
    assert same_bits(values, np.array([float(c) for c in cells]))
    odd = ["", " 1", "1 ", "1e", "e1", ".", "-", "+-1", "1-", "1.2.3", "1e2e3", "1e2.5", "1e1000", "0x10", "1_0",
           "inf", "nan", "1234567890123456", "1e23", "1e-23", "--1", "1e+-2", "\t1",
           "0.000000000000000000001", "1e0001", ".e1", "1.5e-"]
    assert not plain_read(odd)[1].any()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text("0123456789.+-eE", max_size=8), st.text("0123456789", min_size=1, max_size=17),
                          st.floats(allow_nan=False).map(repr), st.integers(-10 ** 16, 10 ** 16).map(str)),
                min_size=1, max_size=20))
def test_every_plain_cell_is_what_float_reads(cells):
    values, plain = plain_read(cells)
    for cell, value, is_plain in zip(cells, values, plain):
        if is_plain:
            assert same_bits(np.array([float(cell)]), np.array([value])), cell


# --- generated CSV text ------------------------------------------------------------------------

SPACES = st.sampled_from(["", " ", "  ", "\t", "\x0b", "\x0c", "\x1c", "\x85", "\xa0", "\u2003", "\u2028"])
ODD = st.sampled_from(["", "na", "N/A", "null", "nan", "NaN", "-nan", "inf", "-Infinity", "+inf", "1e308", "1e400",
                       "-1e-400", "1_000", "1__0", "_1", "0x10", "1e", "e5", ".", "-", "+.5", "5.", "-0", "00012",
                       "١٢", "1,5", "1 2", "x", "1d5", "١.٥", "\u00b2", "\u2155"])


@st.composite
def number_cell(draw):
    value = draw(st.floats(allow_nan=False, allow_infinity=False, width=64))
    style = draw(st.sampled_from(["repr", "g", "e", "f", "int", "digits"]))
    if style == "repr":
        text = repr(value)
    elif style == "g":
        text = f"{value:.{draw(st.integers(1, 20))}g}"
    elif style == "e":
        text = f"{value:.{draw(st.integers(0, 20))}e}"
    elif style == "f":
        text = f"{value:.{draw(st.integers(0, 25))}f}"
    elif style == "int":
        text = str(draw(st.integers(-10 ** 20, 10 ** 20)))
    else:   # hand-made digit strings: leading zeros, many digits, a point anywhere, an exponent
        digits = draw(st.text("0123456789", min_size=1, max_size=25))
        cut = draw(st.integers(0, len(digits)))
        text = draw(st.sampled_from(["", "-", "+"])) + digits[:cut] + draw(st.sampled_from(["", "."])) + digits[cut:]
        if draw(st.booleans()):
            text += draw(st.sampled_from(["e", "E"])) + draw(st.sampled_from(["", "-", "+"])) + str(draw(st.integers(0, 400)))
    return text


@st.composite
def numeric_csv(draw, odd: bool):
    width = draw(st.integers(1, 4))
    names = [f"c{j}" for j in range(width)]
    n = draw(st.integers(1, 6))
    cell = st.one_of(number_cell(), ODD) if odd else number_cell()
    rows = []
    for _ in range(n):
        cells = [draw(cell) for _ in range(width)]
        if odd:
            cells = [draw(SPACES) + c + draw(SPACES) for c in cells]
        rows.append(",".join(cells))
        if odd and draw(st.integers(0, 5)) == 0:
            rows.append(draw(SPACES))   # a blank line
    end = draw(st.sampled_from(["\n", "\r\n"])) if odd else "\n"
    text = end.join([",".join(names)] + rows) + draw(st.sampled_from(["", end]))
    chosen = draw(st.permutations(names))[:draw(st.integers(1, width))]
    return text, list(chosen)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(numeric_csv(odd=False))
def test_generated_number_files_take_the_fast_path_and_agree(tmp_path, case):
    text, names = case
    path = write(tmp_path, text, "gen.csv")
    assert agrees_with_per_cell(path, names)   # taken, and bit-identical


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(numeric_csv(odd=True))
def test_generated_odd_files_agree_or_step_aside(tmp_path, case):
    text, names = case
    agrees_with_per_cell(write(tmp_path, text, "odd.csv"), names, label=names[0])


# --- danlu predict through either path ---------------------------------------------------------

@pytest.fixture(scope="module")
def numeric_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("fastcsv")
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 3))
    rows = "\n".join(f"{a:.5f},{b:.5f},{c:.5f},{int(a > 0)}" for a, b, c in X)
    (work / "train.csv").write_text("a,b,c,label\n" + rows + "\n")
    recipe = Recipe.from_dict({"data": {"source": "csv", "path": str(work / "train.csv"), "label": "label"},
                               "model": {"kind": "mlp", "hidden": [8]}, "train": {"epochs": 1},
                               "output": {"progress": "none"}})
    return danlu.train(recipe, work / "run").path


def test_predict_is_the_same_through_either_path(numeric_run, tmp_path):
    plain = write(tmp_path, "extra,c,b,a,label\n7,1,2,3,1\n8,-1,0.5,2e-1,0\n", "plain.csv")   # reordered, extra
    quoted = write(tmp_path, 'extra,c,b,a,label\n7,"1",2,3,1\n8,-1,0.5,2e-1,"0"\n', "quoted.csv")   # per-cell path
    assert read_numeric_csv(plain, ["a", "b", "c"], "label") is not None
    assert read_numeric_csv(quoted, ["a", "b", "c"], "label") is None
    fast = training.predict(numeric_run, plain, tmp_path / "p1.csv")
    slow = training.predict(numeric_run, quoted, tmp_path / "p2.csv")
    assert fast == slow and len(fast) == 2
    assert (tmp_path / "p1.csv").read_bytes() == (tmp_path / "p2.csv").read_bytes()
    pipeline = danlu.data.Pipeline.load(numeric_run)
    X1, rows1 = pipeline.load_input(plain)
    X2, rows2 = pipeline.load_input(quoted)
    assert torch.equal(X1, X2) and rows1 == rows2 and rows1.labels == [1, 0]


@pytest.mark.parametrize("text, expected", [
    ("a,b,c\n1,2,3\n\n4,five,6\n", ["column 'b' line 4", "'five'"]),
    ("a,b,c\n1,2,3\n4,5,inf\n", ["column 'c'", "infinite", "line 3"]),
    ("a,b,c\n1,2,3\n4,1e308,6\n", ["column 'b'", "float32", "line 3"]),
    ("a,b,c\n1,2,3\n4,,6\n", ["'b' (1)", "line 3", "data.impute"]),
    ("a,c\n1,3\n", ["column 'b' is missing"]),
])
def test_a_bad_cell_still_names_its_line_and_column(numeric_run, tmp_path, text, expected):
    bad = write(tmp_path, text, "bad.csv")
    with pytest.raises(DataError) as got:
        training.predict(numeric_run, bad, tmp_path / "p.csv")
    message = str(got.value)
    assert all(part in message for part in expected), message
    assert "\n" not in message and not (tmp_path / "p.csv").exists()


# --- answers: whole arrays against the row-by-row oracle ---------------------------------------

def row_by_row(scores: np.ndarray, info, codec: LabelCodec) -> list[dict]:
    """The answers as they were built before, one row at a time (the oracle)."""
    out = []
    for i in range(len(scores)):
        row = {}
        if info.task == "multilabel":
            row["prediction"] = codec.decode((scores[i:i + 1] >= 0.5).astype(np.int64))[0]
            row.update({f"proba_{label}": float(p) for label, p in zip(info.classes, scores[i])})
        elif info.task == "classification":
            row["prediction"] = codec.decode([int(scores[i].argmax())])[0]
            for c, label in enumerate(info.classes):
                row[f"proba_{label}"] = float(scores[i, c])
        else:
            values = np.atleast_1d(scores[i])
            if len(values) == 1:
                row["prediction"] = float(values[0])
            else:
                row.update({f"prediction_{k}": float(v) for k, v in enumerate(values)})
        out.append(row)
    return out


@pytest.mark.parametrize("task, classes, width", [
    ("classification", [0, 1, 2], 3),
    ("classification", ["cat", "dog"], 2),
    ("multilabel", ["sports", "tech", "art"], 3),
    ("regression", [], 1),
    ("regression", [], 3),
])
@pytest.mark.parametrize("n", [0, 1, 37])
def test_answers_are_the_row_by_row_answers(task, classes, width, n):
    rng = np.random.default_rng(n + width)
    raw = rng.random((n, width)).astype(np.float32)
    if task == "classification":
        raw /= raw.sum(axis=1, keepdims=True)
        raw[:, 0] = raw[:, -1] if n else raw[:, 0]   # a tie: the first of the largest wins
    info = SimpleNamespace(task=task, classes=classes, n_targets=width, n_classes=len(classes) or None)
    codec = LabelCodec(task, classes, width)
    pipeline = SimpleNamespace(info=info, decode=codec.decode)
    X = torch.from_numpy(raw)
    loss_kind = "probabilities" if task != "regression" else "values"
    given = SimpleNamespace(ids=list(range(n)), id_name="row")
    got = NeuralRuns().answers(torch.nn.Identity(), X, {"loss_kind": loss_kind}, pipeline, "rows", given)
    from danlu.training._factory import scores_to_proba

    scores = scores_to_proba(X, loss_kind, info).numpy()
    expected = row_by_row(scores, info, codec)
    assert got == expected
    assert [list(r) for r in got] == [list(r) for r in expected]   # the same keys in the same order
    assert all(type(v) is type(w) for r, s in zip(got, expected) for v, w in zip(r.values(), s.values()))


def test_predict_reads_the_run_recipe_once(numeric_run, tmp_path, monkeypatch):
    from danlu.training import _runfiles

    calls = []
    real = _runfiles.read_run_recipe
    monkeypatch.setattr(_runfiles, "read_run_recipe", lambda run_dir: calls.append(run_dir) or real(run_dir))
    rows = training.predict(numeric_run, write(tmp_path, "a,b,c\n1,2,3\n"), tmp_path / "p.csv")
    assert len(rows) == 1 and len(calls) == 1
    training.load_model(numeric_run)   # outside predict, every call reads it (the file may have changed)
    assert len(calls) == 2


def test_the_predictions_csv_is_what_dictwriter_writes(tmp_path):
    import csv
    import io

    from danlu.training._runfiles import write_csv

    def dictwriter(rows):
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()

    same = [{"row": i, "prediction": "a,b" if i else 'say "x"', "proba_a": 0.1 + i, "proba_b": None} for i in range(5)]
    mixed = same[:2] + [{"proba_b": 2.5, "row": 9, "prediction": 3}, {"row": 10}]   # other order, keys left out
    for rows in (same, mixed):
        write_csv(rows, tmp_path / "out.csv")
        assert (tmp_path / "out.csv").read_bytes() == dictwriter(rows).encode("utf-8")
    with pytest.raises(ValueError):   # a key the first row lacks, as before
        write_csv(same + [{"row": 1, "other": 2}], tmp_path / "bad.csv")
