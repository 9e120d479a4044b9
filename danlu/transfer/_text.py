"""Text data for the MiniLM backbone: a CSV text column -> model-ready tensors, and the pipeline
that does the same to new rows at predict / embed time.

Two inputs are possible, chosen by ``base.mode``:
- ``probe`` (frozen backbone): X holds the sentence embeddings (N, 384), computed once. Training
  then only runs the head, which is what makes a linear probe cheap on a CPU.
- ``full`` / ``gradual``: X holds token ids and attention masks (N, 2, L) for the encoder.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch

from ..data import DataInfo, InputRows, Prepared
from ..data._labels import LabelCodec
from ..data._split import split_rows
from ..errors import DataError, did_you_mean
from ._backbone import EMBEDDING_DIM, encode_texts, tokenize

FORMAT = "danlu.text-pipeline"
META_FILE = "pipeline.json"


def read_text_csv(path: str | Path, text_column: str, label_column: str | None) -> tuple[list[str], list | None]:
    """The text column (and the label column when asked for and present) of a UTF-8 CSV file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; give a CSV file with a '{text_column}' column")
    try:
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            rows = list(reader)
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}); save the file as UTF-8") from None
    if text_column not in header:
        raise DataError(f"{path}: no text column '{text_column}'{did_you_mean(text_column, header)}; "
                        f"set base.text to one of {', '.join(header)}")
    texts = [r[text_column] or "" for r in rows]
    empty = [i + 2 for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise DataError(f"{path}: column '{text_column}' is empty on line {empty[0]} ({len(empty)} rows); "
                        f"fill in the text or drop those rows")
    if label_column is None or label_column not in header:
        return texts, None
    labels = [r[label_column] for r in rows]
    missing = [i + 2 for i, v in enumerate(labels) if v is None or not v.strip()]
    if missing:
        raise DataError(f"{path}: label column '{label_column}' is empty on line {missing[0]} "
                        f"({len(missing)} rows); fill in the labels or drop those rows")
    return texts, labels


class TextPipeline:
    """Texts -> embeddings or token ids, exactly as in training; saved as plain JSON.

    It offers what danlu's loop and ``predict`` use of a :class:`danlu.data.Pipeline`:
    ``info``, ``augments``/``augment``, ``decode``, ``load_input``, ``save``/``load``.
    """

    def __init__(self, info: DataInfo, labels: LabelCodec, text_column: str, label_column: str | None,
                 max_length: int, inputs: str):
        self.info = info
        self.labels = labels
        self.text_column = text_column
        self.label_column = label_column
        self.max_length = max_length
        self.inputs = inputs   # "embedding" (frozen backbone, head only) or "tokens"
        self.encoder = None    # a sentence encoder to reuse for embeddings (loaded on first need)

    augments = False

    def augment(self, X: torch.Tensor) -> torch.Tensor:
        return X

    def decode(self, class_ids) -> list:
        return self.labels.decode(class_ids)

    def features(self, texts: list[str]) -> torch.Tensor:
        if self.inputs == "embedding":
            return encode_texts(texts, self.max_length, encoder=self.encoder)
        return tokenize(texts, self.max_length)

    def load_input(self, path: str | Path) -> tuple[torch.Tensor, InputRows]:
        texts, labels = read_text_csv(path, self.text_column, self.label_column)
        return self.features(texts), InputRows(list(range(len(texts))), "row", labels)

    def save(self, directory: str | Path) -> None:
        from ..training._checkpoint import atomic_write_text

        meta = {"format": FORMAT, "version": 1, "info": self.info.to_json(), "labels": self.labels.to_json(),
                "text_column": self.text_column, "label_column": self.label_column,
                "max_length": self.max_length, "inputs": self.inputs}
        Path(directory).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(directory) / META_FILE, json.dumps(meta, indent=1, ensure_ascii=False))

    @classmethod
    def load(cls, directory: str | Path) -> "TextPipeline":
        from .. import _integrity as integrity
        from ..errors import CheckpointError

        path = Path(directory) / META_FILE
        meta = integrity.read_json(path)   # refused unless it matches its checksum in the run's manifest
        if meta.get("format") != FORMAT:
            raise DataError(f"{directory}: not a text pipeline (format {meta.get('format')!r})")
        try:
            return cls(DataInfo.from_json(meta["info"]), LabelCodec.from_json(meta["labels"]), meta["text_column"],
                       meta["label_column"], int(meta["max_length"]), meta["inputs"])
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CheckpointError(f"{path}: cannot be read ({type(err).__name__}: {err}); the file is damaged or "
                                  f"was edited — train the run again") from None


def is_text_run(run_dir: str | Path) -> bool:
    path = Path(run_dir) / META_FILE
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == FORMAT
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False


def prepare_text(recipe, rows: dict | None = None) -> Prepared:
    """recipe (data.source csv + base.kind minilm) -> a :class:`danlu.data.Prepared` of text features.

    Splits are danlu's seeded, stratified ones; labels are encoded as in any classification run.
    """
    data, base = recipe.data, recipe.base
    if data.source != "csv":
        raise DataError(f"{recipe.source}: base.kind minilm reads a CSV file with a text column; "
                        f"set data.source: csv and data.path")
    label = data.label if isinstance(data.label, str) else "label"
    texts, raw = read_text_csv(data.path, base.text, label)
    if raw is None:
        raise DataError(f"{data.path}: no label column '{label}'; set data.label to the column holding the classes")
    raw = np.asarray(raw, dtype=object)
    codec = LabelCodec.fit(raw, data.task, str(data.path), label)
    y = codec.encode(raw)
    if rows is None:
        split = data.split
        strata = y if codec.task == "classification" and split.stratify else None
        rows = split_rows(len(texts), split.validation, split.test, recipe.seed, strata, codec.classes, str(data.path))
    inputs = "embedding" if base.mode == "probe" else "tokens"
    # the info describes what the task head sees — a sentence embedding — in both modes, so the
    # recipe's model section builds the head; TextClassifier puts the encoder in front of it
    info = DataInfo(task=codec.task, kind="tabular", input_shape=(EMBEDDING_DIM,),
                    n_classes=len(codec.classes) if codec.task == "classification" else None,
                    classes=list(codec.classes), feature_names=[f"emb_{i}" for i in range(EMBEDDING_DIM)],
                    n_targets=codec.n_targets)
    pipeline = TextPipeline(info, codec, base.text, label, base.max_length, inputs)
    X = pipeline.features(texts)
    y_t = torch.from_numpy(np.asarray(y))
    splits = {name: (X[torch.as_tensor(idx)], y_t[torch.as_tensor(idx)]) for name, idx in rows.items() if len(idx)}
    return Prepared(info=info, splits=splits, pipeline=pipeline)
