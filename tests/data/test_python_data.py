"""Data given as Python objects (arrays, DataFrames, torch Datasets and DataLoaders): each gives the
same splits, tensors and pipeline as the built-in source holding the same numbers, and bad input
is refused in one line."""
import warnings

import numpy as np
import pytest
import torch
from data_testkit import mixed_rows, write_csv
from sklearn.datasets import load_digits

from danlu.data import Pipeline, prepare, prepare_python, rows_from_python
from danlu.errors import DataError, UserError

COLUMNS = ["age", "income", "plan", "label"]


def same_splits(a, b):
    assert list(a.splits) == list(b.splits)
    for name in a.splits:
        assert torch.equal(a.splits[name][0], b.splits[name][0]), name
        assert torch.equal(a.splits[name][1], b.splits[name][1]), name
    for key in ("task", "kind", "input_shape", "n_classes", "classes", "categorical", "n_targets"):
        assert getattr(a.info, key) == getattr(b.info, key), key


def without_python(state):
    meta, tensors = state
    return {**meta, "reader": {k: v for k, v in meta["reader"].items() if k != "python"}}, tensors


def same_pipeline(a, b):
    (ma, ta), (mb, tb) = without_python(a.state()), without_python(b.state())
    assert ma == mb
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


@pytest.fixture(scope="module")
def digits():
    bunch = load_digits()
    return bunch.data, bunch.target


class PairDataset(torch.utils.data.Dataset):
    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return torch.as_tensor(self.X[i], dtype=torch.float64), torch.tensor(int(self.y[i]))


# --- the same numbers, the same tensors -------------------------------------------------------

def test_digits_arrays_split_like_the_sklearn_source(digits):
    X, y = digits
    cfg = {"split": {"validation": 0.2, "test": 0.1}}
    builtin = prepare({"source": "sklearn", "name": "digits", **cfg}, 5)
    same_splits(builtin, prepare_python((X.reshape(-1, 1, 8, 8) / 16.0, y), cfg, 5))
    # flat rows with data.shape, and tensors instead of arrays
    flat = prepare_python((torch.from_numpy(X / 16.0), torch.from_numpy(y)), {**cfg, "shape": [1, 8, 8]}, 5)
    same_splits(builtin, flat)
    other_seed = prepare_python((X.reshape(-1, 1, 8, 8) / 16.0, y), cfg, 6)
    assert not torch.equal(other_seed.splits["test"][1], builtin.splits["test"][1])


def test_a_dataset_and_a_dataloader_give_the_arrays_tensors(digits):
    X, y = digits[0][:300] / 16.0, digits[1][:300]
    cfg = {"split": {"validation": 0.2, "test": 0.2}}
    arrays = prepare_python((X, y), cfg, 1)
    same_splits(arrays, prepare_python(PairDataset(X, y), cfg, 1))
    loader = torch.utils.data.DataLoader(PairDataset(X, y), batch_size=17, shuffle=True)
    with pytest.warns(UserWarning, match="batch_size 17 is not used.*train.batch_size \\(64\\)"):
        from_loader = prepare_python(loader, cfg, 1, batch_size=64)
    same_splits(arrays, from_loader)
    assert from_loader.pipeline.reader["python"] == {"type": "DataLoader", "class": "PairDataset",
                                                        "batch_size": 17, "rows": 300}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare_python(loader, cfg, 1, batch_size=17)   # the same size: nothing to say


def test_text_labels_and_regression_targets(digits):
    X = digits[0][:200]
    names = np.array(["even", "odd"])[digits[1][:200] % 2]
    prepared = prepare_python((X, names), {}, 0)
    assert prepared.info.classes == ["even", "odd"] and prepared.info.task == "classification"
    rng = np.random.default_rng(0)
    targets = rng.normal(size=(200, 2))
    reg = prepare_python((X, targets), {}, 0)
    assert reg.info.task == "regression" and reg.info.n_targets == 2
    assert reg.splits["train"][1].shape[1:] == (2,)


def test_missing_cells_follow_data_impute_like_a_file():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), np.arange(40) % 2
    X[3, 1] = np.nan
    with pytest.raises(DataError, match=r"^arrays: missing values in 'x1' \(1\) \(first on row 3\); set data.impute"):
        prepare_python((X, y), {}, 0)
    filled = prepare_python((X, y), {"impute": "mean"}, 0)
    assert all(torch.isfinite(Xs).all() for Xs, _ in filled.splits.values())


# --- DataFrames read like CSV files -----------------------------------------------------------

def test_a_dataframe_gives_the_csv_sources_tensors_and_pipeline(tmp_path):
    pd = pytest.importorskip("pandas")
    rows = mixed_rows()
    path = write_csv(tmp_path / "mixed.csv", COLUMNS, rows)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    cfg = {"split": {"validation": 0.2, "test": 0.2}}
    from_csv = prepare({"source": "csv", "path": str(path), **cfg}, 3)
    from_frame = prepare_python(frame, cfg, 3)
    same_splits(from_csv, from_frame)
    assert from_frame.info.categorical == [(2, 4)]   # plan: 3 categories + unknown
    same_pipeline(from_csv.pipeline, from_frame.pipeline)
    # (features, label Series) is the same data
    same_splits(from_frame, prepare_python((frame[COLUMNS[:3]], frame["label"]), cfg, 3))


def test_a_dataframe_runs_pipeline_reads_csv_files_and_dataframes_after_a_round_trip(tmp_path):
    pd = pytest.importorskip("pandas")
    rows = mixed_rows()
    frame = pd.DataFrame(rows, columns=COLUMNS)
    prepared = prepare_python(frame, {}, 0)
    prepared.pipeline.save(tmp_path / "run")
    loaded = Pipeline.load(tmp_path / "run")
    csv_path = write_csv(tmp_path / "new.csv", COLUMNS, rows[:10])
    from_file, file_rows = loaded.load_input(csv_path)
    from_frame, frame_rows = rows_from_python(frame.iloc[:10], loaded)
    assert torch.equal(from_file, from_frame)
    assert frame_rows.labels == file_rows.labels == [r[3] for r in rows[:10]]
    # the columns are found by name, in any order, and the label column may be absent
    shuffled, no_labels = rows_from_python(frame[["plan", "income", "age"]].iloc[:10], loaded)
    assert torch.equal(shuffled, from_frame) and no_labels.labels is None
    # the training tensors are the pipeline's transform of those rows
    rows = {"train": np.arange(0, 45), "test": np.arange(45, 60)}
    fixed = prepare_python(frame, {}, 0, rows=rows)
    every, _ = rows_from_python(frame, fixed.pipeline)
    assert torch.equal(every[:45], fixed.splits["train"][0]) and torch.equal(every[45:], fixed.splits["test"][0])


def test_dataframe_dtypes_read_as_their_csv_text_would(tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({
        "n": pd.array([1, 2, None, 4, 5, 6, 7, 8], dtype="Int64"),       # nullable ints: NaN where missing
        "flag": [True, False] * 4,                                        # bools are categories, as text
        "code": pd.Categorical(["a", "b", "a", "c", "b", "a", "c", "b"]),
        "y": ["p", "q"] * 4,
    })
    path = tmp_path / "dtypes.csv"
    frame.to_csv(path, index=False)
    cfg = {"impute": "mean", "split": {"validation": 0.25, "test": 0.25, "stratify": False}}
    same_splits(prepare({"source": "csv", "path": str(path), **cfg}, 0), prepare_python(frame, cfg, 0))


def test_dataframe_label_and_categorical_keys(tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(mixed_rows(), columns=COLUMNS)
    moved = frame[["label", "age", "income", "plan"]]
    a = prepare_python(frame, {}, 0)
    b = prepare_python(moved, {"label": "label"}, 0)
    assert b.info.feature_names == ["age", "income", "plan"]
    same_splits(a, b)
    declared = prepare_python(frame, {"categorical": ["plan", "age"]}, 0)
    assert [j for j, _ in declared.info.categorical] == [0, 2]


# --- predicting from arrays -------------------------------------------------------------------

def test_an_arrays_runs_pipeline_round_trip_reads_npy_and_arrays(tmp_path, digits):
    X, y = digits[0][:200], digits[1][:200]
    rows = {"train": np.arange(0, 150), "test": np.arange(150, 200)}
    prepared = prepare_python((X.reshape(-1, 1, 8, 8), y), {}, 0, rows=rows)
    prepared.pipeline.save(tmp_path / "run")
    loaded = Pipeline.load(tmp_path / "run")
    np.save(tmp_path / "test.npy", X[150:])
    from_file, _ = loaded.load_input(tmp_path / "test.npy")
    from_arrays, given = rows_from_python(X[150:].reshape(-1, 1, 8, 8), loaded)
    assert torch.equal(from_file, from_arrays)
    assert torch.equal(from_arrays, prepared.splits["test"][0])
    assert given.ids == list(range(50)) and given.labels is None
    one, _ = rows_from_python(torch.from_numpy(X[150:151]), loaded)   # a tensor, flat (N, 64)
    assert torch.equal(one, prepared.splits["test"][0][:1])


def test_predict_inputs_that_do_not_fit_are_refused(tmp_path, digits):
    pd = pytest.importorskip("pandas")
    X, y = digits[0][:100], digits[1][:100]
    arrays_run = prepare_python((X.reshape(-1, 1, 8, 8), y), {}, 0).pipeline
    with pytest.raises(DataError, match=r"^arrays: wrong width: arrays of shape \(3, 5\)"):
        rows_from_python(np.zeros((3, 5)), arrays_run)
    with pytest.raises(DataError, match="not columns; give a NumPy array"):
        rows_from_python(pd.DataFrame(X), arrays_run)
    flat_run = prepare_python((X, y), {}, 0).pipeline
    with pytest.raises(DataError, match=r"column 'x0' is missing.*trained on arrays: give df.to_numpy\(\)"):
        rows_from_python(pd.DataFrame(X), flat_run)
    named = pd.DataFrame(X[:, ::-1], columns=[f"x{j}" for j in range(63, -1, -1)])   # by name, any order
    assert torch.equal(rows_from_python(named, flat_run)[0], rows_from_python(X, flat_run)[0])
    with pytest.raises(DataError, match=r"^arrays: column 'x7' has 1 infinite value\(s\) \(first on row 1\)"):
        bad = X[:2].copy()
        bad[1, 7] = np.inf
        rows_from_python(bad, arrays_run)
    frame_run = prepare_python(pd.DataFrame(mixed_rows(), columns=COLUMNS), {}, 0).pipeline
    with pytest.raises(DataError, match="column 'income' is missing .*did you mean 'incomes'"):
        rows_from_python(pd.DataFrame({"age": [30], "incomes": [1.0], "plan": ["pro"]}), frame_run)
    with pytest.raises(DataError, match="categorical columns, which numeric arrays cannot carry"):
        rows_from_python(np.zeros((2, 3)), frame_run)
    with pytest.raises(DataError, match=r"column 'age' row 1: 'old' is not a number"):
        rows_from_python(pd.DataFrame({"age": ["30", "old"], "income": [1.0, 2.0], "plan": ["pro", "x"]}),
                         frame_run)


# --- bad input: one line each -----------------------------------------------------------------

class NotPairs(PairDataset):
    def __getitem__(self, i):
        return {"x": self.X[i], "y": self.y[i]}


class Ragged(PairDataset):
    def __getitem__(self, i):
        return torch.zeros(3 if i < 5 else 4), 0


class Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        yield torch.zeros(2), 0
        yield torch.zeros(2)


@pytest.mark.parametrize("data, error, message", [
    ((np.zeros((0, 3)), np.zeros(0)), DataError, r"^arrays: no rows; the data set is empty"),
    ((np.zeros((5, 3)), np.zeros(4)), DataError, r"^arrays: X has 5 rows but y has 4; give one label per row"),
    ((np.array([[1.0, np.inf]] * 6), np.arange(6) % 2), DataError,
     r"^arrays: column 'x1' has 6 infinite value\(s\) \(first on row 0\)"),
    ((np.ones((6, 2)), np.array([0, 1, np.nan, 0, 1, 0])), DataError, r"label 'label' is missing on 1 row\(s\)"),
    (([[1, 2], [3]], [0, 1]), DataError, "^arrays: X is ragged or not numbers"),
    ((np.array([["a", "b"]] * 4), np.arange(4) % 2), DataError, "features must be numbers"),
    ((np.zeros((4, 2)), np.zeros(4), np.zeros(4)), UserError, "must be a pair \\(X, y\\), got 3 items"),
    ("data.csv", UserError, "data must be NumPy arrays \\(X, y\\), a pandas DataFrame"),
    (NotPairs(np.zeros((4, 2)), np.zeros(4)), DataError,
     r"^Dataset NotPairs: item 0 is a dict, not an \(x, y\) pair; make __getitem__ return \(features, label\)"),
    (Ragged(np.zeros((8, 2)), np.zeros(8)), DataError,
     r"^Dataset Ragged: item 5 has x of shape \(4,\) but item 0 has \(3,\)"),
    (PairDataset(np.zeros((0, 2)), np.zeros(0)), DataError, "^Dataset PairDataset: no items"),
    (Stream(), DataError, r"^Dataset Stream: item 1 is a Tensor, not an \(x, y\) pair"),
])
def test_bad_python_data_is_one_line(data, error, message):
    with pytest.raises(error, match=message) as err:
        prepare_python(data, {}, 0)
    assert "\n" not in str(err.value)


def test_bad_dataframes_are_one_line():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(mixed_rows(), columns=COLUMNS)
    cases = [
        (frame.iloc[:0], r"^DataFrame: no rows; the data set is empty"),
        (frame, r"^DataFrame: no column 'labels' \(did you mean 'label'\?\); fix data.label"),
        (frame.assign(income=[np.inf] + [1.0] * 59),
         r"^DataFrame: column 'income' has 1 infinite value\(s\) \(first on row 0\)"),
        (frame.assign(age=["12"] * 59 + ["twelve"]), r"^DataFrame: column 'age' row 59: 'twelve' is not a number"),
        (frame.set_axis(["a", "a", "plan", "label"], axis=1), "column name 'a' appears twice"),
    ]
    for data, message in cases:
        cfg = {"label": "labels"} if data is frame else {}
        with pytest.raises(DataError, match=message) as err:
            prepare_python(data, cfg, 0)
        assert "\n" not in str(err.value)
    with pytest.raises(DataError, match=r"X has 60 rows but y has 3"):
        prepare_python((frame[COLUMNS[:3]], np.zeros(3)), {}, 0)
