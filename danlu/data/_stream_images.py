"""data.stream for image folders (``data.source: images``): images decoded when their rows are read.

The file list and the labels (the class sub-folder names) are collected without decoding anything;
a row is decoded by the same :func:`~danlu.data._sources.read_image` as the in-memory reader, at the
same size (``data.image_size``, else the first image's), so a streamed row holds exactly the values
the in-memory table holds. The check pass of :func:`~danlu.data._stream.prepare_source` decodes every
image once and refuses an unreadable one by its file name, as the in-memory reader does.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import DataError
from ._sources import first_size, image_hw, listed_images, read_image, resolve_path
from ._stream import Streamer, StreamSource, register_streamer


class ImageRows:
    """The images of a folder as rows of ``(C, H, W)`` float32 values, decoded when read; what
    :class:`~danlu.data._stream.StreamSource` calls ``mapped``."""

    dtype = np.dtype(np.float32)

    def __init__(self, path: Path, files: list[Path], size: tuple[int, int], grayscale: bool):
        self.path, self.files, self.size, self.grayscale = path, files, size, grayscale
        self.row_shape = (1 if grayscale else 3, *size)
        self.shape = (len(files), *self.row_shape)
        self.row_bytes = math.prod(self.row_shape) * 4

    def __len__(self) -> int:
        return len(self.files)

    def range(self, lo: int, hi: int) -> np.ndarray:
        return self.take(np.arange(lo, hi))

    def take(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.row_shape), np.float32)
        for k, i in enumerate(rows):
            out[k] = read_image(self.files[int(i)], self.size, self.grayscale)
        return out


def _image_size(files: list[Path], cfg) -> tuple[int, int]:
    """(H, W): data.image_size, else the first image's, read from its header."""
    return image_hw(cfg["image_size"]) or first_size(files[0])


def _claims(cfg, source_name: str) -> Path | None:
    if cfg["source"] != "images" or cfg["path"] is None:
        return None
    return resolve_path(cfg["path"], source_name)


def _size(folder: Path, cfg) -> int | None:
    """Bytes the float32 images would take in memory: n_images x C x H x W x 4."""
    try:
        files, _ = listed_images(folder)
        height, width = _image_size(files, cfg)
    except (DataError, OSError):
        return None   # the in-memory reader reports what is wrong with the folder
    return len(files) * (1 if cfg["grayscale"] else 3) * height * width * 4


def _refuse(cfg) -> str | None:
    if cfg["task"] == "multilabel":
        return "data.stream: true does not read multi-label image folders; set data.stream: false"
    return None


def _open(folder: Path, cfg) -> StreamSource:
    files, labels = listed_images(folder)
    size = _image_size(files, cfg)
    grayscale = bool(cfg["grayscale"])
    mapped = ImageRows(folder, files, size, grayscale)
    y = np.empty(len(files), dtype=object)
    y[:] = labels
    reader = {"format": "images", "columns": None, "label": None, "divisor": 1.0,
              "image_size": list(size), "grayscale": grayscale}
    names = ["gray"] if grayscale else ["red", "green", "blue"]
    return StreamSource(folder, mapped, None, y, mapped.row_shape, names, reader, "label")


register_streamer(Streamer("images", "image folders (data.source: images)", _claims, _open, _size, _refuse))
