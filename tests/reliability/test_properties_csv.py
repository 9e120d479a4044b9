"""Generated CSV files for `danlu train` and `danlu predict`: numbers, text, gaps, nan, inf, 1e308,
huge cells, bytes that are not UTF-8, ragged rows, quotes.

Exit 0 must come with a correct result — a finished run with finite figures; one prediction per row,
probabilities that are finite and sum to 1, and for every row of plain cells the same answer as
that row predicted in a clean file — or exit 2 with one line. Nothing outside the run changes.
"""
from __future__ import annotations

import csv
import io
import math

import yaml
from hypothesis import example, given
from hypothesis import strategies as st
from properties_kit import TABLE_HEADER, budget, finite_summary

import danlu

NUMBER_SPELLINGS = ["1e308", "-1e308", "1e309", "-1e309", "inf", "-inf", "Infinity", "nan", "NaN", "NA", "n/a",
                    "null", "", " ", "1,5", "0x1F", "1_000", "１２", "٣", "+.5", "5.", "-0", "1e-320", "  7  ",
                    "9" * 400, "1e+00000000000000000001"]
ODD_TEXT = ['"', '""', "a,b", "a\nb", "a\r\nb", "\r", "\x00", "é", "炸炉", "\ufeff", "\u2028", "=1+1", "x" * 5000,
            "red ", "RED", "None", "true"]
NUMBER_CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10 ** 30), 10 ** 30).map(str),
    st.sampled_from(NUMBER_SPELLINGS),
)
TEXT_CELLS = st.sampled_from(ODD_TEXT) | st.text(max_size=10)
ANY_CELL = NUMBER_CELLS | TEXT_CELLS


def to_bytes(header, rows, quoting, junk) -> bytes:
    """The CSV file: csv.writer's quoting, or cells joined by bare commas; then ``junk`` bytes
    (often not UTF-8) spliced in at a position."""
    if quoting:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
        text = buf.getvalue()
    else:
        text = "\n".join(",".join(cells) for cells in [header, *rows]) + "\n"
    data = text.encode("utf-8", "surrogatepass")
    if junk is not None:
        at, raw = junk
        at = at % (len(data) + 1)
        data = data[:at] + raw + data[at:]
    return data


def rare(draw, n: int) -> bool:
    """True about once in ``n`` draws. Hypothesis favours the ends of a range (and 0 most), so the
    rare branch is a value in the middle of it."""
    return draw(st.integers(0, n - 1)) == n // 2


JUNK = st.none() | st.none() | st.none() | st.tuples(st.integers(0, 10 ** 6), st.sampled_from(
    [b"\xff", b"\xfe\xff", b"\xc3", b"\x80abc", b"\xed\xa0\x80", b"\x00", b"\r", b'"', b"\n\n"]))


# --- predict ----------------------------------------------------------------------------------

def _plain_number(cell: str) -> bool:
    try:
        return math.isfinite(float(cell)) and cell.strip().lower() not in ("nan", "na", "n/a", "null", "")
    except ValueError:
        return False


def _plain_rows(header, rows, columns, numeric, categories) -> list[int]:
    """Rows every needed cell of which is a finite number or a known category: their answers
    must not depend on the file around them."""
    index = {name: header.index(name) for name in columns if name in header}
    if len(index) != len(columns):
        return []
    out = []
    for i, row in enumerate(rows):
        if len(row) != len(header):
            return []
        cells = {name: row[j].strip() for name, j in index.items()}
        if all(_plain_number(cells[n]) if n in numeric else cells[n] in categories.get(n, ()) for n in columns):
            out.append(i)
    return out


def _check_predictions(got: list[dict], n_rows: int, classes) -> str | None:
    if len(got) != n_rows:
        return f"{len(got)} predictions for {n_rows} rows"
    for row in got:
        probs = [float(row[f"proba_{c}"]) for c in classes]
        if not all(math.isfinite(p) and 0 <= p <= 1 for p in probs) or abs(sum(probs) - 1) > 1e-4:
            return f"probabilities {probs}"
        if str(row["prediction"]) not in {str(c) for c in classes}:
            return f"prediction {row['prediction']!r} is not a class"
    return None


def predict_case(attack, run, header, rows, quoting, junk, columns, numeric, categories, classes, to_stdout):
    note = repr((header, rows, quoting, junk))[:1500]
    with attack.case("csv-predict", note=note) as case:
        data = to_bytes(header, rows, quoting, junk)
        path = case.write("rows.csv", data)
        out = case.root / "out" / "pred.csv"
        case.outputs.append(case.root / "out")
        plain = _plain_rows(header, rows, columns, numeric, categories) if junk is None and quoting else []
        reference = None
        if plain:   # the plain rows alone, in a clean file: the answers the attacked file must give
            clean = case.scratch / "rows.csv"
            with open(clean, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(header)
                w.writerows(rows[i] for i in plain)
            try:
                reference = danlu.predict(run, clean)
            except danlu.UserError:   # refused alone too: nothing to compare against
                plain = []
        result = case.cli("predict", run, path, *([] if to_stdout else ["-o", out]))

        def oracle():
            text = result.out if to_stdout else out.read_text(encoding="utf-8")
            got = list(csv.DictReader(io.StringIO(text)))
            expected_rows = sum(1 for r in csv.reader(io.StringIO(data.decode("utf-8-sig")))
                                if r and any(c.strip() for c in r)) - 1
            bad = _check_predictions(got, expected_rows, classes)
            if bad:
                return bad
            for k, i in enumerate(plain):
                for c in classes:
                    if abs(float(got[i][f"proba_{c}"]) - reference[k][f"proba_{c}"]) > 1e-6:
                        return f"row {i} of plain cells answers {got[i]}, alone it answers {reference[k]}"
            return None

        attack.judge(case, result, oracle)


PLAIN_NUMBER = st.floats(-100, 100, allow_nan=False).map(lambda v: f"{v:.3g}")
HOSTILE_CELL = {"size": NUMBER_CELLS | TEXT_CELLS, "weight": NUMBER_CELLS | TEXT_CELLS,
                "colour": st.sampled_from(["purple", "", "Red"]) | TEXT_CELLS,
                "kind": st.sampled_from(["small", "huge", ""]) | TEXT_CELLS}
PLAIN_CELL = {"size": PLAIN_NUMBER, "weight": PLAIN_NUMBER, "colour": st.sampled_from(["red", "green", "blue"]),
              "kind": st.sampled_from(["small", "large", "odd"])}
EXTRA_COLUMNS = st.lists(st.sampled_from(["extra", "", "size", "Size", "é", "a,b", "\ufeffsize"]), max_size=2)


@st.composite
def spoiled(draw, header, plain, hostile, n_rows):
    """Rows of plain cells, then a few cells made hostile and, now and then, a ragged row."""
    rows = [[draw(plain.get(name, PLAIN_NUMBER)) for name in header] for _ in range(n_rows)]
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 3]))):
        i, j = draw(st.integers(0, n_rows - 1)), draw(st.integers(0, len(header) - 1))
        rows[i][j] = draw(hostile.get(header[j], ANY_CELL))
    if rare(draw, 10):
        i = draw(st.integers(0, n_rows - 1))
        rows[i] = rows[i][:-1] if draw(st.booleans()) else rows[i] + ["1"]
    return rows


@st.composite
def table_files(draw):
    header = draw(st.permutations(TABLE_HEADER))
    if rare(draw, 6):   # some training columns left out
        header = header[:draw(st.integers(1, 3))]
    if rare(draw, 5):
        header = header + draw(EXTRA_COLUMNS)
    rows = draw(spoiled(header, PLAIN_CELL, HOSTILE_CELL, draw(st.integers(1, 6))))
    return header, rows, not rare(draw, 6), draw(JUNK), rare(draw, 5)


@given(table_files())
def _predict_table_prop(attack, runs, generated):
    header, rows, quoting, junk, to_stdout = generated
    predict_case(attack, runs["table"], header, rows, quoting, junk, ["size", "colour", "weight"],
                 {"size", "weight"}, {"colour": {"red", "green", "blue"}}, ["large", "odd", "small"], to_stdout)


def test_generated_csv_rows_predict_or_refuse_in_one_line(attack, attack_runs):
    budget(50)(_predict_table_prop)(attack, attack_runs)


IRIS_COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


@st.composite
def iris_files(draw):
    header = list(IRIS_COLUMNS)
    if rare(draw, 6):
        header = draw(st.permutations(IRIS_COLUMNS + ["target"]))
    rows = draw(spoiled(header, {}, {}, draw(st.integers(1, 5))))
    return header, rows, True, draw(JUNK), False


@given(iris_files())
def _predict_iris_prop(attack, runs, generated):
    header, rows, quoting, junk, to_stdout = generated
    predict_case(attack, runs["iris"], header, rows, quoting, junk, IRIS_COLUMNS, set(IRIS_COLUMNS), {},
                 ["setosa", "versicolor", "virginica"], to_stdout)


def test_generated_numeric_rows_predict_or_refuse_in_one_line(attack, attack_runs):
    budget(40)(_predict_iris_prop)(attack, attack_runs)


# --- train ------------------------------------------------------------------------------------

@st.composite
def training_files(draw):
    """A trainable table (a, b numeric, c text, y label) with a few hostile cells spliced in."""
    n = draw(st.one_of(st.integers(20, 40), st.integers(20, 40), st.integers(4, 19)))
    numeric_labels = draw(st.booleans())
    rows = []
    for i in range(n):
        y = str(i % 3) if numeric_labels else ("p", "q", "r")[i % 3]
        rows.append([f"{(i * 37) % 11 / 4:.2f}", str((i * 5) % 7), ("u", "v")[i % 2], y])
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2]))):
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, 3))
        rows[i][j] = draw(ANY_CELL)
    if rare(draw, 10):
        i = draw(st.integers(0, n - 1))
        rows[i] = rows[i][:-1]
    header = ["a", "b", "c", "y"]
    if rare(draw, 6):
        header = draw(st.sampled_from([["a", "a", "c", "y"], ["a", "", "c", "y"], ["a", "b", "c", "Y"],
                                       ["a", "b", "c", " y "], ["\ufeffa", "b", "c", "y"]]))
    recipe_data = {"label": "y", "impute": draw(st.sampled_from(["none", "mean", "median", "most_frequent",
                                                                  "drop"])),
                   "task": draw(st.sampled_from(["auto", "auto", "auto", "classification", "regression"]))}
    return header, rows, not rare(draw, 6), draw(JUNK), recipe_data


TINY_REGRESSION = [["0.00", "0", "u", "0"], ["1.00", "5", "v", "1"], ["2.00", "3", "u", "2"], ["0.25", "1", "v", "0"]]


@given(training_files())
@example((["a", "b", "c", "y"], TINY_REGRESSION, True, None,   # one validation row: R² undefined, the rest finite
          {"label": "y", "impute": "none", "task": "regression"}))
def _train_prop(attack, generated):
    header, rows, quoting, junk, recipe_data = generated
    with attack.case("csv-train", note=repr(generated)[:1500]) as case:
        path = case.write("data.csv", to_bytes(header, rows, quoting, junk))
        recipe = {"name": "csv", "seed": 0, "data": {"source": "csv", "path": str(path), **recipe_data},
                  "model": {"kind": "mlp", "hidden": [4]}, "train": {"epochs": 1, "batch_size": 8},
                  "output": {"progress": "none"}, "monitors": {"gradients": {"enabled": False}}}
        recipe_path = case.write("recipe.yaml", yaml.safe_dump(recipe))
        result = case.cli("train", recipe_path, "--run-dir", case.run_dir)
        attack.judge(case, result, lambda: finite_summary(case.run_dir))


def test_generated_csv_files_train_or_refuse_in_one_line(attack):
    budget(35)(_train_prop)(attack)
