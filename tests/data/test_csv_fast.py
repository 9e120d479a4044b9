"""The fast path for all-numeric CSV files (danlu predict's usual input) reads exactly what the
per-cell path reads, and steps aside for every file it does not handle, so that errors still
name the line and column."""
import numpy as np
import pytest

import danlu
from danlu.data._csv import read_csv, read_numeric_csv
from danlu.data._table import table_from_csv
from danlu.errors import DataError
from danlu.recipe import Recipe


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


@pytest.mark.parametrize("text", [
    "a,b,label\n1,2,x\n3.5,-4e3,y\n",                       # plain
    "a,b,label\r\n1,2,x\r\n3.5,-4e3,y\r\n",                 # Windows line ends
    "\ufeff a , b ,label\n\n 1 , 2 ,x\n   \n3.5,-4e3, y \n\n",  # BOM, spaces, blank lines
    "a,b,label\n1_000,inf,1\nnan,NaN,2\n1e-400,1e400,3",   # what float() reads, no final newline
    "a,b,label\n0.1000000000000000055511151231257827,١٢,z\n-0,+.5,w\n",
])
def test_the_fast_path_reads_what_the_per_cell_path_reads(tmp_path, text):
    path = write(tmp_path, text)
    fast = read_numeric_csv(path, ["b", "a"], "label")
    assert fast is not None
    values, lines, labels = per_cell(path, ["b", "a"], "label")
    np.testing.assert_array_equal(fast.values, values)   # NaN equal to NaN, bit-exact otherwise
    assert fast.lines == lines and fast.label == labels


def test_random_files_agree_with_the_per_cell_path(tmp_path):
    rng = np.random.default_rng(0)
    for k in range(5):
        X = rng.normal(scale=10.0 ** rng.integers(-5, 6), size=(50, 4))
        rows = [",".join(f" {v:.{rng.integers(1, 18)}g}" for v in row) for row in X]
        path = write(tmp_path, "w,x,y,z\n" + "\n".join(rows) + "\n", f"r{k}.csv")
        fast = read_numeric_csv(path, ["z", "w", "y"])
        np.testing.assert_array_equal(fast.values, per_cell(path, ["z", "w", "y"])[0])


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
])
def test_anything_else_steps_aside(tmp_path, text):
    assert read_numeric_csv(write(tmp_path, text), ["a", "b"]) is None


def test_a_missing_column_or_file_steps_aside(tmp_path):
    assert read_numeric_csv(write(tmp_path, "a,b\n1,2\n"), ["a", "c"]) is None
    assert read_numeric_csv(tmp_path / "nowhere.csv", ["a"]) is None
    assert read_numeric_csv(tmp_path, ["a"]) is None


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
    plain = write(tmp_path, "c,b,a,label\n1,2,3,1\n-1,0.5,2,0\n", "plain.csv")
    quoted = write(tmp_path, 'c,b,a,label\n"1",2,3,1\n-1,0.5,2,"0"\n', "quoted.csv")   # the per-cell path
    from danlu import training

    fast = training.predict(numeric_run, plain, tmp_path / "p1.csv")
    slow = training.predict(numeric_run, quoted, tmp_path / "p2.csv")
    assert fast == slow and len(fast) == 2


def test_a_bad_cell_still_names_its_line_and_column(numeric_run, tmp_path):
    bad = write(tmp_path, "a,b,c\n1,2,3\n\n4,five,6\n", "bad.csv")
    from danlu import training

    with pytest.raises(DataError) as got:
        training.predict(numeric_run, bad, tmp_path / "p.csv")
    message = str(got.value)
    assert "column 'b' line 4" in message and "'five'" in message and "\n" not in message
