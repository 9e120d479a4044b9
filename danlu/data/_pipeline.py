"""The fitted import -> transform -> featurize pipeline, saved beside the model.

A pipeline is plain data: a JSON description (how to read inputs, categories, fill
values, label classes) plus two small tensors (scaling statistics) in safetensors. Loading
it runs no code from the file.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, DataError, did_you_mean
from ._augment import augment_batch, is_active
from ._csv import is_missing, read_csv, read_numeric_csv
from ._encode import FeatureEncoder, Scaler
from ._info import DataInfo, InputRows
from ._labels import LabelCodec, plain
from ._sources import IMAGE_SUFFIXES, image_files, read_arrays, read_image
from ._table import Table, check_finite, check_scaled, missing_summary, table_from_arrays, table_from_csv

FORMAT = "danlu.pipeline"
VERSION = 1
META_FILE = "pipeline.json"
TENSOR_FILE = "pipeline.safetensors"


class Pipeline:
    """Reads raw inputs and turns them into model-ready tensors exactly as in training."""

    def __init__(self, info: DataInfo, reader: dict, encoder: FeatureEncoder, scaler: Scaler,
                 labels: LabelCodec, augment: dict):
        self.info = info
        self.reader = reader
        self.encoder = encoder
        self.scaler = scaler
        self.labels = labels
        self.augment_cfg = {k: augment[k] for k in augment}
        self._noise_mask = self._make_noise_mask()

    # --- transform --------------------------------------------------------------------------

    def transform(self, table: Table) -> torch.Tensor:
        """Encoded, reshaped and scaled float32 features of a raw table."""
        X = self.encoder.transform(table).reshape(len(table), *self.info.input_shape)
        X = self.scaler.apply(torch.from_numpy(np.ascontiguousarray(X)))
        check_scaled(table, X)
        return X

    def decode(self, class_ids) -> list:
        """Class ids (tensor, array or list) -> the original labels; regression values pass through."""
        return self.labels.decode(class_ids)

    def encode_labels(self, labels: list) -> torch.Tensor:
        """Original labels (as in :class:`InputRows`) -> targets, for evaluating on a new file."""
        raw = np.empty(len(labels), dtype=object)
        raw[:] = labels
        if self.labels.task == "regression":
            if any(v is None or isinstance(v, str) for v in labels):
                raise DataError("labels must all be numbers for a regression model; fill in or fix the label column")
            return torch.from_numpy(np.asarray(labels, dtype=np.float32))
        known = set(self.labels.classes)
        unknown = [v for v in labels if plain(v) not in known]
        if unknown:
            raise DataError(f"label {unknown[0]!r} is not one of the model's classes "
                            f"({', '.join(map(str, self.labels.classes))}); fix the label column")
        return torch.from_numpy(self.labels.encode(raw))

    # --- augmentation -----------------------------------------------------------------------

    def _make_noise_mask(self) -> torch.Tensor | None:
        if not self.info.categorical:
            return None
        mask = torch.ones(self.info.input_shape)
        for j, _ in self.info.categorical:
            mask[j] = 0.0  # noise on a category code would turn it into another category
        return mask

    @property
    def augments(self) -> bool:
        return is_active(self.augment_cfg)

    def augment(self, X: torch.Tensor) -> torch.Tensor:
        if not self.augments:
            return X
        return augment_batch(X, self.augment_cfg, self.info.kind, self._noise_mask)

    # --- reading new inputs -----------------------------------------------------------------

    def load_input(self, path: str | Path) -> tuple[torch.Tensor, InputRows]:
        """Read a file or folder to predict on; returns model-ready X and the rows' ids and labels."""
        path = Path(path)
        if not path.exists():
            raise DataError(f"{path}: input not found; give a .csv, .npy or .npz file, or an image file or folder")
        suffix = path.suffix.lower()
        if path.is_dir() and self.reader["format"] != "images":
            raise DataError(f"{path}: is a directory, expected a file; give a .csv, .npy or .npz file "
                            f"(folders of images are for image models)")
        if path.is_dir() or suffix in IMAGE_SUFFIXES:
            table, rows = self._read_images(path)
        elif suffix == ".csv":
            table, rows = self._read_csv(path)
        elif suffix in (".npy", ".npz"):
            table, rows = self._read_arrays(path)
        else:
            raise DataError(f"{path}: cannot read '{suffix}' files; give a .csv, .npy or .npz file, or images")
        if len(table) == 0:
            raise DataError(f"{path}: no rows to predict (the input is empty); give at least one row")
        check_finite(table, fix="replace them with finite numbers the size of the training data's")
        self._check_missing(table)
        return self.transform(table), rows

    def _check_missing(self, table: Table) -> None:
        mask = table.missing_mask()
        if mask.any() and self.encoder.fills is None:
            raise DataError(f"{table.where}: missing values in {missing_summary(table, mask)}; this model was "
                            f"trained with data.impute: {self.encoder.impute}, so fill the cells in")

    def _read_csv(self, path: Path) -> tuple[Table, InputRows]:
        columns = self.reader.get("columns")
        if not columns:
            raise DataError(f"{path}: this model reads {self.info.kind} arrays, not CSV columns; give a .npy/.npz "
                            f"file{' or images' if self.reader['format'] == 'images' else ''}")
        label = self.reader.get("label")
        categorical = set(self.reader.get("categorical", []))
        fast = None if categorical & set(columns) else read_numeric_csv(path, columns, label)
        if fast is not None:   # plain numbers, read a column at a time; anything else reads cell by cell below
            table = Table(fast.path, list(columns), fast.values, lines=np.asarray(fast.lines), line_word="line")
            labels = _cell_labels(fast.label) if fast.label is not None else None
        else:
            csv = read_csv(path)
            for name in columns:
                if name not in csv.header:
                    more = ", ..." if len(columns) > 8 else ""
                    raise DataError(f"{path}: column '{name}' is missing{did_you_mean(name, csv.header)}; the "
                                    f"model needs the training columns {', '.join(columns[:8])}{more}")
            table = table_from_csv(csv, columns, categorical, None)
            labels = _cell_labels(csv.column(label)) if label in csv.header else None
        table.values /= self.reader.get("divisor", 1.0)
        return table, InputRows(list(range(len(table))), "row", labels)

    def _read_arrays(self, path: Path) -> tuple[Table, InputRows]:
        if self.encoder.categories:
            raise DataError(f"{path}: this model has categorical columns, which numeric arrays cannot carry; "
                            f"give a CSV file with the training columns")
        arrays = read_arrays(path)
        X, y = self._pick_arrays(path, arrays)
        X = self._fit_width(path, X)
        table = table_from_arrays(str(path), X, None, _column_names(self.reader, self.info))
        table.values /= self.reader.get("divisor", 1.0)
        return table, InputRows(list(range(len(table))), "row", _label_list(y))

    def _pick_arrays(self, path: Path, arrays: dict) -> tuple[np.ndarray, np.ndarray | None]:
        if "" in arrays:  # .npy
            X = arrays[""]
            spec = self.reader.get("npy")
            # the full training layout (label column included): pick the feature columns
            if spec and X.ndim == 2 and X.shape[1] == spec["width"] and spec["width"] != len(spec["features"]):
                return X[:, spec["features"]], X[:, spec["label"]]
            return X, None
        spec = self.reader.get("npz") or {"features": "X", "label": "y"}
        key = spec["features"] if spec["features"] in arrays else ("X" if "X" in arrays else None)
        if key is None and len(arrays) == 1:
            key = next(iter(arrays))
        if key is None:
            raise DataError(f"{path}: no array '{spec['features']}'{did_you_mean(spec['features'], arrays)}; "
                            f"the file has {', '.join(arrays) or 'no arrays'}")
        y = arrays.get(spec["label"])
        return arrays[key], (y if y is not None and len(y) == len(arrays[key]) else None)

    def _fit_width(self, path: Path, X: np.ndarray) -> np.ndarray:
        shape = self.info.input_shape
        size = int(np.prod(shape))
        if X.ndim >= 1 and tuple(X.shape[1:]) == tuple(shape):
            return X
        if X.ndim == 2 and X.shape[1] == size:
            return X
        if X.ndim == 1 and len(shape) == 1 and X.shape[0] == size:
            return X[None]  # one row
        spec = self.reader.get("npy")
        extra = f" (or {spec['width']} with the label column)" if spec else ""
        raise DataError(f"{path}: wrong width: arrays of shape {X.shape} do not fit the model's input "
                        f"{list(shape)}; give (N, {size}){extra} or (N, {', '.join(map(str, shape))})")

    def _read_images(self, path: Path) -> tuple[Table, InputRows]:
        if self.reader["format"] != "images":
            raise DataError(f"{path}: this model was not trained on image files; give a .csv, .npy or .npz file")
        files, labels = _find_images(path)
        size = tuple(self.reader["image_size"])
        X = np.stack([read_image(f, size, self.reader["grayscale"]) for f in files])
        table = table_from_arrays(str(path), X, None, _column_names(self.reader, self.info))
        base = path if path.is_dir() else path.parent
        ids = [f.relative_to(base).as_posix() for f in files]
        return table, InputRows(ids, "file", labels)

    # --- state ------------------------------------------------------------------------------

    def state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "info": self.info.to_json(),
            "reader": self.reader,
            "encoder": self.encoder.to_json(),
            "labels": self.labels.to_json(),
            "scale": {"mode": self.scaler.mode, "axis": self.scaler.axis},
            "augment": self.augment_cfg,
        }
        tensors = {"scale_shift": self.scaler.shift.contiguous(), "scale_div": self.scaler.div.contiguous()}
        return meta, tensors

    @classmethod
    def from_state(cls, meta: dict, tensors: dict[str, torch.Tensor]) -> "Pipeline":
        fmt = meta.get("format") if isinstance(meta, dict) else None
        if fmt != FORMAT:
            raise CheckpointError(f"not a danlu data pipeline (format {fmt!r}); save it with Pipeline.save")
        if meta.get("version") != VERSION:
            raise CheckpointError(f"data pipeline version {meta.get('version')!r} is not supported "
                                  f"(this danlu reads version {VERSION}); retrain or upgrade danlu")
        try:
            scaler = Scaler(meta["scale"]["mode"], int(meta["scale"]["axis"]),
                            tensors["scale_shift"].float().cpu(), tensors["scale_div"].float().cpu())
            return cls(DataInfo.from_json(meta["info"]), meta["reader"], FeatureEncoder.from_json(meta["encoder"]),
                       scaler, LabelCodec.from_json(meta["labels"]), meta["augment"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"data pipeline is incomplete or damaged (missing or bad {err}); "
                                  f"save it again from the run") from None

    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta, tensors = self.state()
        text = json.dumps(meta, indent=1, allow_nan=False, ensure_ascii=False)
        _atomic_write(directory / META_FILE, lambda p: Path(p).write_text(text, encoding="utf-8"))
        _atomic_write(directory / TENSOR_FILE, lambda p: save_file(tensors, p))

    @classmethod
    def load(cls, directory: str | Path) -> "Pipeline":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        directory = Path(directory)
        meta_path, tensor_path = directory / META_FILE, directory / TENSOR_FILE
        for p in (meta_path, tensor_path):
            if not p.is_file():
                raise CheckpointError(f"{p}: not found; the model directory must hold {META_FILE} and {TENSOR_FILE}")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"{meta_path}: not valid JSON ({err}); the file is damaged") from None
        try:
            tensors = load_file(str(tensor_path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{tensor_path}: cannot read ({err}); the file is damaged") from None
        try:
            return cls.from_state(meta, tensors)
        except CheckpointError as err:
            raise CheckpointError(f"{directory}: {err}") from None


def _atomic_write(path: Path, write) -> None:
    """Write via a temporary file in the same folder, then rename, so no half file is left."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _cell_labels(cells: list[str]) -> list:
    """Label cells of a predict input, read leniently: they are reported, never needed."""
    out = []
    for cell in cells:
        if is_missing(cell):
            out.append(None)
            continue
        try:
            out.append(plain(float(cell)))
        except ValueError:
            out.append(cell)
    return out


def _label_list(labels: np.ndarray | None) -> list | None:
    if labels is None:
        return None
    out = []
    for v in labels.tolist():
        if isinstance(v, list):
            out.append([plain(x) for x in v])
        elif v is None or (isinstance(v, float) and np.isnan(v)):
            out.append(None)
        else:
            out.append(plain(v))
    return out


def _column_names(reader: dict, info: DataInfo) -> list[str]:
    if reader.get("columns"):
        return list(reader["columns"])
    return [f"x{i}" for i in range(int(np.prod(info.input_shape)))]


def _find_images(path: Path) -> tuple[list[Path], list | None]:
    """One image, or a folder's images; images in sub-folders carry the sub-folder as label."""
    if path.is_file():
        return [path], None
    files = image_files(path)
    labels: list = [None] * len(files)
    for d in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found = image_files(d)
        files += found
        labels += [d.name] * len(found)
    if not files:
        raise DataError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder or its sub-folders")
    return files, (labels if any(v is not None for v in labels) else None)
