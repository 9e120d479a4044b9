"""Bad data gives one-line DataErrors that name the file, the column or line, and the fix."""
from __future__ import annotations

import numpy as np
import pytest
from data_testkit import mixed_rows, write_csv

from danlu.data import prepare
from danlu.errors import DataError, RecipeError, UserError

HEADER = ["age", "income", "plan", "label"]


def _csv(tmp_path, rows, header=HEADER, name="bad.csv"):
    return str(write_csv(tmp_path / name, header, rows))


def _error(cfg) -> str:
    with pytest.raises(DataError) as info:
        prepare(cfg, seed=0)
    message = str(info.value)
    assert "\n" not in message
    assert isinstance(info.value, UserError)
    return message


def test_missing_values_name_columns_and_counts(tmp_path):
    rows = mixed_rows(30)
    rows[3][0] = ""
    rows[7][0] = "NA"
    rows[9][2] = "null"
    msg = _error({"source": "csv", "path": _csv(tmp_path, rows)})
    assert "bad.csv" in msg and "'age' (2)" in msg and "'plan' (1)" in msg and "data.impute" in msg


def test_missing_labels_need_drop(tmp_path):
    rows = mixed_rows(30)
    rows[4][3] = ""
    msg = _error({"source": "csv", "path": _csv(tmp_path, rows), "impute": "mean"})
    assert "label 'label'" in msg and "line 6" in msg and "impute: drop" in msg


def test_infinite_values(tmp_path):
    rows = mixed_rows(30)
    rows[2][1] = "inf"
    rows[5][1] = "-Infinity"
    msg = _error({"source": "csv", "path": _csv(tmp_path, rows)})
    assert "'income'" in msg and "2 infinite" in msg and "line 4" in msg


def test_ragged_row_names_the_line(tmp_path):
    rows = mixed_rows(10)
    rows[6] = rows[6] + ["extra"]
    msg = _error({"source": "csv", "path": _csv(tmp_path, rows)})
    assert "line 8 has 5 cells but the header has 4" in msg


def test_non_numeric_value_in_mostly_numeric_column(tmp_path):
    rows = mixed_rows(40)
    rows[12][1] = "12,5k"
    msg = _error({"source": "csv", "path": _csv(tmp_path, rows)})
    assert "column 'income' line 14: '12,5k' is not a number" in msg


def test_non_numeric_value_when_categorical_list_is_declared(tmp_path):
    rows = mixed_rows(20)
    msg = _error({"source": "csv", "path": _csv(tmp_path, rows), "categorical": []})
    assert "column 'plan' line 2: 'basic' is not a number (20 such cells)" in msg and "data.categorical" in msg


def test_undecodable_text_names_byte_offset(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"x,y\n1,caf\xe9\n2,b\n")
    msg = _error({"source": "csv", "path": str(path)})
    assert "latin.csv" in msg and "not UTF-8" in msg and "byte 9" in msg and "line 2" in msg


def test_empty_file_and_header_only(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    assert "empty" in _error({"source": "csv", "path": str(tmp_path / "empty.csv")})
    (tmp_path / "head.csv").write_text("a,b\n\n")
    assert "no data rows" in _error({"source": "csv", "path": str(tmp_path / "head.csv")})


def test_missing_column_did_you_mean(tmp_path):
    path = _csv(tmp_path, mixed_rows(20))
    msg = _error({"source": "csv", "path": path, "label": "lable"})
    assert "no column 'lable'" in msg and "did you mean 'label'" in msg
    msg = _error({"source": "csv", "path": path, "features": ["age", "incme"]})
    assert "did you mean 'income'" in msg and "data.features" in msg
    msg = _error({"source": "csv", "path": path, "categorical": ["plna"]})
    assert "did you mean 'plan'" in msg


def test_file_not_found(tmp_path):
    msg = _error({"source": "csv", "path": str(tmp_path / "nope.csv")})
    assert "nope.csv" in msg and "not found" in msg


def test_labels_that_do_not_fit_the_task(tmp_path):
    path = _csv(tmp_path, mixed_rows(20))
    msg = _error({"source": "csv", "path": path, "task": "regression"})
    assert "label 'label' holds text" in msg and "data.task: classification" in msg

    rows = [[float(i), i * 0.37] for i in range(20)]
    path = _csv(tmp_path, rows, ["x", "y"], "float.csv")
    msg = _error({"source": "csv", "path": path, "task": "classification"})
    assert "non-integer numbers" in msg and "data.task: regression" in msg


def test_single_class(tmp_path):
    rows = [[float(i), "same"] for i in range(10)]
    msg = _error({"source": "csv", "path": _csv(tmp_path, rows, ["x", "y"])})
    assert "single class" in msg


def test_npy_label_must_be_an_index(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((10, 3)))
    msg = _error({"source": "npy", "path": str(tmp_path / "a.npy"), "label": "y"})
    assert "data.label must be the index of the label column" in msg


def test_npz_missing_key(tmp_path):
    np.savez(tmp_path / "a.npz", inputs=np.zeros((10, 3)), y=np.arange(10) % 2)
    msg = _error({"source": "npy", "path": str(tmp_path / "a.npz")})
    assert "no array 'X'" in msg and "inputs" in msg


def test_object_arrays_are_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([[1, "a"], [2, "b"]], dtype=object), allow_pickle=True)
    msg = _error({"source": "npy", "path": str(tmp_path / "obj.npy"), "label": -1})
    assert "object arrays are refused" in msg


def test_bad_image_and_empty_class_folder(tmp_path, image_folder):
    (image_folder / "bright" / "broken.png").write_bytes(b"not a png")
    msg = _error({"source": "images", "path": str(image_folder)})
    assert "broken.png" in msg and "cannot read the image" in msg
    (image_folder / "bright" / "broken.png").unlink()
    (image_folder / "none").mkdir()
    assert "has no images" in _error({"source": "images", "path": str(image_folder)})


def test_shape_that_does_not_fit():
    msg = _error({"source": "sklearn", "name": "iris", "shape": [1, 3, 3]})
    assert "data.shape [1, 3, 3] holds 9 values but each row has 4" in msg


def test_geometric_augment_on_tables_is_a_recipe_error():
    with pytest.raises(RecipeError, match="data.augment.hflip applies to image data"):
        prepare({"source": "sklearn", "name": "iris", "augment": {"hflip": True}}, seed=0)


def test_unknown_builtin_name():
    msg = _error({"source": "sklearn", "name": "irsi"})
    assert "did you mean 'iris'" in msg


def test_all_rows_dropped(tmp_path):
    rows = [["", 1.0, "a", "x"], ["", 2.0, "b", "y"]]
    msg = _error({"source": "csv", "path": _csv(tmp_path, rows), "impute": "drop"})
    assert "leaves nothing" in msg


def test_stray_text_in_numeric_label_names_the_line(tmp_path):
    rows = [[float(i), i * 0.5] for i in range(30)]
    rows[17][1] = "n/a?"
    msg = _error({"source": "csv", "path": _csv(tmp_path, rows, ["x", "y"])})
    assert "column 'y' line 19: 'n/a?' is not a number" in msg


def test_infinite_label(tmp_path):
    rows = [[float(i), i * 0.5] for i in range(30)]
    rows[3][1] = "inf"
    msg = _error({"source": "csv", "path": _csv(tmp_path, rows, ["x", "y"])})
    assert "label 'y' has 1 infinite value(s) (first on line 5)" in msg


def test_builtin_classification_set_as_regression():
    assert "digits is a classification data set" in _error({"source": "sklearn", "name": "digits",
                                                            "task": "regression"})


def test_empty_array_file(tmp_path):
    np.savez(tmp_path / "e.npz", X=np.zeros((0, 3)), y=np.zeros(0))
    assert "no rows" in _error({"source": "npy", "path": str(tmp_path / "e.npz")})
