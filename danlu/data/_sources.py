"""Sources: each turns ``recipe.data`` into a :class:`Table` plus what it knows of the shape.

Every source also returns a ``reader`` — the JSON description that lets the saved
pipeline read new inputs the same way at predict time.
"""
from __future__ import annotations

import math
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, RecipeError, did_you_mean
from ._csv import read_csv
from ._table import Table, categorical_columns, choose_columns, table_from_arrays, table_from_csv

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")

# Only data sets bundled with scikit-learn: nothing is ever downloaded.
SKLEARN_LOADERS = {
    "iris": "load_iris",
    "breast_cancer": "load_breast_cancer",
    "wine": "load_wine",
    "digits": "load_digits",
    "diabetes": "load_diabetes",
}
SEQUENCE_TASKS = ("sum", "trend", "parity")


@dataclass
class Loaded:
    table: Table
    shape: tuple[int, ...]       # per-sample shape
    kind: str                    # tabular | image | sequence
    feature_names: list[str]
    reader: dict
    class_names: list | None = None  # class order fixed by the source (sklearn, generated)


def kind_of(shape: tuple[int, ...]) -> str:
    return {1: "tabular", 2: "sequence", 3: "image"}[len(shape)]


def resolve_path(path: str, source_name: str) -> Path:
    """A relative data.path is looked up from the working directory, then beside the recipe."""
    p = Path(path).expanduser()
    candidates = [p] if p.is_absolute() else [p, Path(source_name).parent / p]
    for c in candidates:
        if c.exists():
            return c
    raise DataError(f"{path}: data file not found (data.path in {source_name}); give an existing file or "
                    f"folder, relative to the working directory or to the recipe")


def load(cfg, seed: int, source_name: str) -> Loaded:
    source = cfg["source"]
    if source == "sklearn":
        return load_sklearn(cfg["name"])
    if source == "sequence":
        return make_sequence(cfg["name"], cfg["length"], cfg["samples"], seed)
    path = resolve_path(cfg["path"], source_name)
    if source == "csv":
        return load_csv(path, cfg)
    if source == "npy":
        return load_npy(path, cfg)
    if source == "parquet":
        from ._stream_table import load_parquet

        return load_parquet(path, cfg)
    return load_images(path, cfg["image_size"], cfg["grayscale"])


# --- built-in data ----------------------------------------------------------------------------

def load_sklearn(name: str) -> Loaded:
    if name not in SKLEARN_LOADERS:
        raise DataError(f"data.name '{name}' is not a scikit-learn data set danlu ships"
                        f"{did_you_mean(name, SKLEARN_LOADERS)}; use one of {', '.join(SKLEARN_LOADERS)}")
    from sklearn import datasets

    bunch = getattr(datasets, SKLEARN_LOADERS[name])()
    names = [str(n) for n in bunch.feature_names]
    X = np.asarray(bunch.data, dtype=np.float64)
    reader = {"format": "table", "columns": names, "label": "target", "divisor": 1.0}
    if name == "diabetes":
        table = table_from_arrays(name, X, np.asarray(bunch.target, dtype=np.float64), names)
        return Loaded(table, (X.shape[1],), "tabular", names, reader)
    class_names = [c.item() if hasattr(c, "item") else c for c in bunch.target_names]
    labels = np.empty(len(X), dtype=object)
    labels[:] = [class_names[i] for i in bunch.target]
    if name == "digits":
        # pixel intensities run 0..16; bring them to [0, 1] like image files
        reader["divisor"] = 16.0
        table = table_from_arrays(name, X / 16.0, labels, names)
        return Loaded(table, (1, 8, 8), "image", names, reader, class_names)
    table = table_from_arrays(name, X, labels, names)
    return Loaded(table, (X.shape[1],), "tabular", names, reader, class_names)


def make_sequence(name: str, length: int, samples: int, seed: int) -> Loaded:
    """Generated sequence tasks, deterministic for a seed; inputs are (T, 1)."""
    if name not in SEQUENCE_TASKS:
        raise DataError(f"data.name '{name}' is not a generated sequence task{did_you_mean(name, SEQUENCE_TASKS)}; "
                        f"use one of {', '.join(SEQUENCE_TASKS)}")
    _check_generated_size(samples, length)
    rng = np.random.default_rng(seed)
    class_names = None
    if name == "sum":
        X = rng.uniform(0.0, 1.0, (samples, length)) + rng.normal(0.0, 0.1, (samples, length))
        y = X.sum(axis=1)
    elif name == "trend":
        class_names = ["rising", "falling", "flat"]
        ids = rng.integers(0, 3, samples)
        slope = np.array([1.0, -1.0, 0.0])[ids] * rng.uniform(0.5, 1.5, samples)
        t = np.linspace(0.0, 1.0, length)
        X = (rng.uniform(-1.0, 1.0, (samples, 1)) + slope[:, None] * t[None, :]
             + rng.normal(0.0, 0.15, (samples, length)))
        y = np.array([class_names[i] for i in ids], dtype=object)
    else:
        class_names = ["even", "odd"]
        X = rng.integers(0, 2, (samples, length)).astype(np.float64)
        y = np.array([class_names[int(s) % 2] for s in X.sum(axis=1)], dtype=object)
    columns = [f"t{i}" for i in range(length)]
    table = table_from_arrays(f"sequence '{name}'", X, y, columns)
    reader = {"format": "table", "columns": columns, "label": None, "divisor": 1.0}
    return Loaded(table, (length, 1), "sequence", ["x"], reader, class_names)


def _check_generated_size(samples: int, length: int) -> None:
    """Refuse generated data that cannot fit before numpy tries: a few float64 arrays of samples x length."""
    from ..models._budget import available_memory

    needed = samples * length * 8 * 4   # the sequence, its noise, the table and the tensor
    free = available_memory()
    if free is not None and needed > free // 2:
        raise RecipeError(f"data.samples x data.length = {samples:,} x {length:,} values need about "
                          f"{needed / 1e9:,.1f} GB, more than half of the {free / 1e9:,.1f} GB of memory free; "
                          f"lower data.samples or data.length")


# --- files ------------------------------------------------------------------------------------

def load_csv(path: Path, cfg) -> Loaded:
    csv = read_csv(path)
    names, label = choose_columns(csv, cfg["features"], cfg["label"])
    cat_names = categorical_columns(csv, names, cfg["categorical"])   # 'auto' or a list (the schema checked)
    table = table_from_csv(csv, names, cat_names, label)
    reader = {"format": "table", "columns": names, "label": label, "divisor": 1.0,
              "categorical": [n for n in names if n in cat_names]}
    return Loaded(table, (len(names),), "tabular", names, reader)


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Arrays of a .npy (key '') or .npz file, never unpickling anything."""
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a .npy or .npz file")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        return {"": np.load(path, allow_pickle=False)}
    except ValueError as err:
        raise DataError(f"{path}: cannot read the arrays ({err}); save plain numeric arrays with numpy.save "
                        f"or numpy.savez (object arrays are refused)") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, tokenize.TokenError,   # truncated or not numpy
            NotImplementedError, RuntimeError) as err:   # a damaged zip entry: "compressed patched", "encrypted"
        raise DataError(f"{path}: not a readable numpy file ({err}); write it with numpy.save / numpy.savez") from None


def _npz_key(arrays: dict, key: str, what: str, path: Path) -> np.ndarray:
    if key not in arrays:
        raise DataError(f"{path}: no array '{key}'{did_you_mean(key, arrays)}; set {what} to one of "
                        f"{', '.join(arrays) or '(none: the file is empty)'}")
    return arrays[key]


def load_npy(path: Path, cfg) -> Loaded:
    arrays = read_arrays(path)
    if path.suffix == ".npz":
        return _from_npz(path, arrays, cfg)
    if path.suffix != ".npy":
        raise DataError(f"{path}: data.source npy reads .npy or .npz files; got '{path.suffix}'")
    return _from_npy(path, arrays[""], cfg)


def npy_columns(path: Path, shape: tuple, cfg) -> tuple[int, list[int], list[str], int]:
    """A .npy table's label column, feature columns (data.label / data.features as indices) and
    their names, checked against its shape — for loading it whole or streaming it."""
    if len(shape) != 2:
        raise DataError(f"{path}: a .npy file must hold a 2-D table (rows x columns), got shape {tuple(shape)}; "
                        f"use an .npz file with arrays X and y for other shapes")
    width = shape[1]
    label = cfg["label"]
    if not isinstance(label, int) or isinstance(label, bool) or not -width <= label < width:
        raise DataError(f"{path}: for a .npy file data.label must be the index of the label column "
                        f"(0..{width - 1}, or -1 for the last), got {label!r}")
    label %= width
    features = cfg["features"]
    if features is None:
        idx = [j for j in range(width) if j != label]
    else:
        bad = [f for f in features if not isinstance(f, int) or not -width <= f < width]
        if bad:
            raise DataError(f"{path}: data.features must be column indices 0..{width - 1} for a .npy file, "
                            f"got {bad[0]!r}")
        idx = [f % width for f in features]
        if label in idx:
            raise DataError(f"{path}: label column {label} is also listed in data.features; remove it from data.features")
    return label, idx, [f"col{j}" for j in idx], width


def _from_npy(path: Path, arr: np.ndarray, cfg) -> Loaded:
    label, idx, names, width = npy_columns(path, arr.shape, cfg)
    table = table_from_arrays(str(path), arr[:, idx], arr[:, label], names)
    reader = {"format": "table", "columns": names, "label": None, "divisor": 1.0,
              "npy": {"features": idx, "label": label, "width": width}}
    return Loaded(table, (len(idx),), "tabular", names, reader)


def _from_npz(path: Path, arrays: dict, cfg) -> Loaded:
    features = cfg["features"] or ["X"]
    if len(features) != 1:
        raise DataError(f"{path}: for an .npz file data.features names one array key, got {features}")
    fkey, lkey = str(features[0]), str(cfg["label"] if cfg["label"] is not None else "y")
    X = _npz_key(arrays, fkey, "data.features", path)
    y = _npz_key(arrays, lkey, "data.label", path)
    if len(X) != len(y):
        raise DataError(f"{path}: '{fkey}' has {len(X)} rows but '{lkey}' has {len(y)}; they must match")
    if X.ndim not in (2, 3, 4) or y.ndim not in (1, 2):
        raise DataError(f"{path}: '{fkey}' must be (N, F), (N, T, F) or (N, C, H, W) and '{lkey}' (N,) or "
                        f"(N, K); got {X.shape} and {y.shape}")
    if y.dtype.kind not in "fiub":
        y = y.astype(object)  # text labels (unicode arrays) become Python strings
    shape = tuple(X.shape[1:])
    flat = [f"x{i}" for i in range(int(np.prod(shape)))]
    names = flat if X.ndim == 2 else [f"channel{i}" for i in range(shape[-1] if X.ndim == 3 else shape[0])]
    table = table_from_arrays(str(path), X, y, flat)
    reader = {"format": "table", "columns": flat if X.ndim == 2 else None, "label": None, "divisor": 1.0,
              "npz": {"features": fkey, "label": lkey}}
    return Loaded(table, shape, kind_of(shape), names, reader)


# --- image folders ----------------------------------------------------------------------------

def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image(path: Path, size: tuple[int, int] | None, grayscale: bool) -> np.ndarray:
    """One image as (C, H, W) floats in [0, 1], resized to ``size`` = (H, W) when given."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L" if grayscale else "RGB")
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{path}: cannot read the image ({err}); remove or replace the file") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def first_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.size[1], img.size[0]
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{path}: cannot read the image ({err}); remove or replace the file") from None


def image_hw(image_size) -> tuple[int, int] | None:
    """``data.image_size`` as (height, width): two sizes >= 1 (the schema checked them), or None."""
    if image_size is None:
        return None
    return int(image_size[0]), int(image_size[1])


def listed_images(folder: Path) -> tuple[list[Path], list[str]]:
    """The image files of a class-per-sub-folder folder and their labels (classes sorted, files
    sorted), without decoding any image."""
    if not folder.is_dir():
        raise DataError(f"{folder}: data.source images needs a folder with one sub-folder per class")
    classes = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    files, labels = [], []
    for d in classes:
        found = image_files(d)
        if not found:
            raise DataError(f"{d}: class folder has no images ({', '.join(IMAGE_SUFFIXES)}); add images or "
                            f"remove the folder")
        files += found
        labels += [d.name] * len(found)
    if not files:
        raise DataError(f"{folder}: no class sub-folders with images; put each class's images in its own "
                        f"sub-folder, e.g. {folder}/cat/1.png")
    return files, labels


def load_images(folder: Path, image_size, grayscale: bool) -> Loaded:
    """A folder with one sub-folder of images per class; the class is the sub-folder name."""
    files, labels = listed_images(folder)
    size = image_hw(image_size) or first_size(files[0])
    X = np.stack([read_image(f, size, grayscale) for f in files])
    y = np.empty(len(files), dtype=object)
    y[:] = labels
    table = table_from_arrays(str(folder), X, y, [f"pixel{i}" for i in range(math.prod(X.shape[1:]))])
    reader = {"format": "images", "columns": None, "label": None, "divisor": 1.0,
              "image_size": list(size), "grayscale": grayscale}
    names = ["gray"] if grayscale else ["red", "green", "blue"]
    return Loaded(table, tuple(X.shape[1:]), "image", names, reader)
