"""Generated .npy / .npz files for `danlu predict` and `danlu train`: every dtype (object arrays
holding a pickle that would write a file when unpickled), shapes, nan/inf, empty arrays, damaged
headers.

Exit 0 must come with one prediction per row equal to the same rows given as a CSV, or a finished
run with finite figures; otherwise exit 2 with one line. No pickle is ever run.
"""
from __future__ import annotations

import csv
import io
import math

import numpy as np
import yaml
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from properties_kit import budget, finite_summary

import danlu

IRIS_COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
IRIS_CLASSES = ["setosa", "versicolor", "virginica"]


class Unpickled:
    """Unpickling this calls open(marker, 'w'): the marker file proves a pickle ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


DTYPES = st.one_of(
    hnp.floating_dtypes(endianness="="), hnp.integer_dtypes(endianness="="), hnp.unsigned_integer_dtypes(),
    hnp.boolean_dtypes(), hnp.complex_number_dtypes(), hnp.datetime64_dtypes(), hnp.timedelta64_dtypes(),
    st.sampled_from([np.dtype(">f8"), np.dtype(">i4"), np.dtype("<U3"), np.dtype("S3"),
                     np.dtype([("a", "f8"), ("b", "i4")])]),
)
SHAPES = st.sampled_from([(), (0,), (4,), (3,), (0, 4), (1, 4), (3, 4), (2, 5), (3, 3), (2, 2, 2), (2, 4, 1),
                          (2, 1, 4), (3, 4, 0)])


@st.composite
def arrays(draw):
    kind = draw(st.sampled_from(["float", "float", "float", "any"]))
    if kind == "float":
        dtype = draw(st.sampled_from([np.float64, np.float32, np.float16, np.int64, np.uint8]))
        shape = draw(st.sampled_from([(1, 4), (3, 4), (5, 4), (4,), (2, 4), (0, 4)]))
        elements = st.floats(-10, 10, allow_nan=False, width=16) if np.dtype(dtype).kind == "f" else None
        arr = draw(hnp.arrays(dtype, shape, elements=elements))
        if arr.size and draw(st.integers(0, 2)) == 0 and arr.dtype.kind == "f":   # a hostile value or two
            flat = arr.reshape(-1)
            with np.errstate(over="ignore"):   # 1e308 into float16 is inf, as intended
                flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from(
                    [np.nan, np.inf, -np.inf, 1e308, -1e308, 3.5e38, 65504.0, 5e-324]))
        return arr
    return draw(hnp.arrays(draw(DTYPES), draw(SHAPES)))


def _file_bytes(arr, container, damage) -> tuple[bytes, str]:
    buf = io.BytesIO()
    if container == "npy":
        np.save(buf, arr, allow_pickle=False)
    else:
        np.savez(buf, **{container: arr})
    data = buf.getvalue()
    if damage is not None:
        where, how = damage
        at = where % (len(data) + 1)
        data = data[:at] if how == "truncate" else data[:at] + bytes([how]) + data[at + 1:]
    return data, ".npy" if container == "npy" else ".npz"


DAMAGE = st.none() | st.none() | st.none() | st.tuples(st.integers(0, 400),
                                                       st.sampled_from(["truncate", 0, 0xFF, ord("{"), ord("'")]))


def _numpy_reads(path, container):
    if container == "npy":
        return np.load(path, allow_pickle=False)
    with np.load(path, allow_pickle=False) as z:
        return z[container]


def _csv_reference(run, rows, folder):
    path = folder / "rows.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(IRIS_COLUMNS)
        w.writerows([[repr(float(v)) for v in row] for row in rows])
    return danlu.predict(run, path)


@given(arrays(), st.sampled_from(["npy", "npy", "X", "data"]), DAMAGE)
@example(np.zeros((0, 4), np.uint8), "npy", (115, ord("{")))   # found at 10x: a header numpy cannot tokenize
@example(np.zeros(4, np.int64), "X", (223, ord("{")))           # found at 10x: a zip entry flagged "patched"
def _predict_prop(attack, runs, arr, container, damage):
    note = f"{container} {damage} dtype={arr.dtype} shape={arr.shape} {arr!r}"[:1500]
    with attack.case("npy-predict", note=note) as case:
        try:
            data, suffix = _file_bytes(arr, container, damage)
        except (ValueError, TypeError):   # numpy itself cannot save it without pickling
            return
        path = case.write("rows" + suffix, data)
        out = case.root / "out" / "pred.csv"
        case.outputs.append(case.root / "out")
        result = case.cli("predict", runs["iris"], path, "-o", out)

        def oracle():
            got = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
            try:   # a damaged file may still be a valid file (a changed data byte): what does numpy read?
                loaded = _numpy_reads(path, container)
            except Exception:   # noqa: BLE001 — numpy cannot read it: danlu must not have answered
                return "a damaged file that numpy cannot read was answered"
            rows = np.asarray(loaded, dtype=np.float64).reshape(-1, 4)
            if len(got) != len(rows):
                return f"{len(got)} predictions for {len(rows)} rows"
            want = _csv_reference(runs["iris"], rows, case.scratch) if len(rows) else []
            for g, w in zip(got, want):
                for c in IRIS_CLASSES:
                    p = float(g[f"proba_{c}"])
                    if not math.isfinite(p) or abs(p - w[f"proba_{c}"]) > 1e-5:
                        return f"row answers {g}, as CSV it answers {w}"
            return None

        attack.judge(case, result, oracle)


def test_generated_arrays_predict_or_refuse_in_one_line(attack, attack_runs):
    budget(50)(_predict_prop)(attack, attack_runs)


@given(st.sampled_from(["npy", "X", "y"]), st.sampled_from(["predict", "train"]),
       st.sampled_from([(1,), (2, 4), (30, 5)]))
def _pickle_prop(attack, runs, container, verb, shape):
    with attack.case("npy-pickle", note=f"object array {shape} in {container} for {verb}") as case:
        marker = case.root / "outside" / "unpickled"
        arr = np.empty(shape, dtype=object)
        arr.reshape(-1)[:] = [Unpickled(marker) for _ in range(arr.size)]
        buf = io.BytesIO()
        if container == "npy":
            np.save(buf, arr, allow_pickle=True)
        else:
            np.savez(buf, X=arr if container == "X" else np.zeros((shape[0], 4)),
                     y=arr if container == "y" else np.zeros(shape[0]))
        path = case.write("rows" + (".npy" if container == "npy" else ".npz"), buf.getvalue())
        if verb == "predict":
            result = case.cli("predict", runs["iris"], path, "-o", case.root / "out" / "pred.csv")
            case.outputs.append(case.root / "out")
        else:
            recipe = {"name": "npy", "data": {"source": "npy", "path": str(path), "label": -1},
                      "model": {"kind": "mlp", "hidden": [4]}, "train": {"epochs": 1},
                      "output": {"progress": "none"}}
            result = case.cli("train", case.write("recipe.yaml", yaml.safe_dump(recipe)), "--run-dir", case.run_dir)
        attack.judge(case, result, lambda: "an array of pickled objects was accepted")
        assert not marker.exists(), "a pickle in the input file was run"


def test_object_arrays_are_refused_without_unpickling(attack, attack_runs):
    budget(12)(_pickle_prop)(attack, attack_runs)


# --- train --------------------------------------------------------------------------------------

@st.composite
def training_arrays(draw):
    n = draw(st.integers(24, 40))
    dtype = draw(st.sampled_from([np.float64, np.float32, np.float16, np.int32, np.uint8, np.bool_]))
    X = (np.arange(n * 4).reshape(n, 4) * 7 % 11).astype(dtype)
    y = (np.arange(n) % 3).astype(draw(st.sampled_from([np.int64, np.float64, np.uint8, "<U2"])))
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        if X.dtype.kind == "f":
            with np.errstate(over="ignore"):   # 1e308 into float16 is inf, as intended
                X[draw(st.integers(0, n - 1)), draw(st.integers(0, 3))] = draw(
                    st.sampled_from([np.nan, np.inf, -np.inf, 1e308, 6e4]))
    layout = draw(st.sampled_from(["npy", "npy", "npz", "npz-3d", "npz-short-y"]))
    label = draw(st.sampled_from([-1, -1, 4, 0, 5, -6, "y", None]))
    return X, y, layout, label


@given(training_arrays())
def _train_prop(attack, generated):
    X, y, layout, label = generated
    with attack.case("npy-train", note=f"{layout} label={label!r} X={X.dtype} y={y.dtype} {X.tolist()}"[:1500]) \
            as case:
        buf = io.BytesIO()
        if layout == "npy":
            if y.dtype.kind == "U":
                return   # a .npy table is one dtype
            np.save(buf, np.column_stack([X.astype(np.float64), y.astype(np.float64)]))
            path = case.write("data.npy", buf.getvalue())
        else:
            Xs = X.reshape(len(X), 2, 2) if layout == "npz-3d" else X
            np.savez(buf, X=Xs, y=y[:-1] if layout == "npz-short-y" else y)
            path = case.write("data.npz", buf.getvalue())
        data = {"source": "npy", "path": str(path)}
        if label is not None:
            data["label"] = label
        recipe = {"name": "npy", "seed": 0, "data": data, "model": {"kind": "mlp", "hidden": [4]},
                  "train": {"epochs": 1, "batch_size": 8}, "output": {"progress": "none"},
                  "monitors": {"gradients": {"enabled": False}}}
        result = case.cli("train", case.write("recipe.yaml", yaml.safe_dump(recipe)), "--run-dir", case.run_dir)
        attack.judge(case, result, lambda: finite_summary(case.run_dir))


def test_generated_arrays_train_or_refuse_in_one_line(attack):
    budget(20)(_train_prop)(attack)
