"""Data that does not fit: rows read from disk batch by batch (``data.stream``).

Each streamable kind of source registers a :class:`Streamer` (.npy / .npz here; CSV and Parquet
in ``_stream_table``, image folders in ``_stream_images``; a torch Dataset in ``_python``) whose
:class:`StreamSource` reads raw rows. A streamed split's ``X`` is a :class:`StreamedArray`. It
answers what the loop asks of a tensor — ``len``, ``.shape``, ``.device``, ``.to(device)``,
``X[row_tensor]`` and ``X[i:j]`` — by reading those rows and scaling them, so the loop, its seeded order of each epoch and the
position a checkpoint holds are the same as for data in memory, and a streamed run resumes exactly.

Labels are small and stay in memory: the split (and its stratification) is the same
:func:`split_rows` on the same labels as in memory. Scaling statistics are fitted on the training
rows in chunks (float64 per chunk, chunks combined as Chan et al.), so a streamed run and the
in-memory run of the same file get the same split and, to float32 rounding, the same statistics.
"""
from __future__ import annotations

import atexit
import math
import os
import shutil
import struct
import tempfile
import weakref
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError, RecipeError
from ._encode import FeatureEncoder, Scaler
from ._info import DataInfo
from ._labels import LabelCodec
from ._pipeline import Pipeline
from ._sources import kind_of, npy_columns, resolve_path
from ._split import split_or_given
from ._table import FLOAT32_MAX, Table

#: auto streams when the float32 features would take more than this share of the free memory
MEMORY_SHARE = 0.25
#: rows are read in chunks of about this many bytes in the statistics pass
CHUNK_BYTES = 32 * 2**20


#: after this many bytes read, freed heap memory is handed back to the system (see _hand_back)
TRIM_BYTES = 256 * 2**20


def _libc_trim():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):   # not glibc: nothing to do
        return None


_TRIM = _libc_trim()


def _hand_back() -> None:
    """Batches are large short-lived buffers; glibc keeps freed ones in its heap, fragmented between
    small live objects, so a long pass grows the process by gigabytes that nothing uses (measured:
    +1.3 GB scoring 208,000 rows of 2,048 columns). ``malloc_trim`` returns those pages."""
    if _TRIM is not None:
        _TRIM(0)


# --- the file ---------------------------------------------------------------------------------

class MappedArray:
    """An array stored in a file (a .npy, or a .npy member of an .npz stored uncompressed), read
    row by row with positioned reads (``os.preadv``) into fresh buffers. Not a memory map: the
    kernel maps whole large pages of a mapped file on each touch, so random rows of a map make the
    process's resident memory grow to the file's size; read rows live in the page cache instead,
    which the kernel owns and frees as it needs, and the process holds only the batch it asked for."""

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype, fortran: bool):
        self.path, self.offset, self.shape, self.dtype, self.fortran = path, offset, shape, dtype, fortran
        self.row_shape = tuple(shape[1:])
        self.row_bytes = math.prod(self.row_shape) * dtype.itemsize
        self._fd = None
        self._read_since_trim = 0

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self):   # a copy in another process opens the file again
        return {k: v for k, v in self.__dict__.items() if k != "_fd"}

    def __setstate__(self, state):
        self.__dict__.update(state, _fd=None)

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)

    def _read_into(self, view: memoryview, offset: int) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        done = 0
        while done < len(view):
            part = view[done:]
            if hasattr(os, "preadv"):
                got = os.preadv(self._fd, [part], offset + done)
            else:   # pragma: no cover - platforms without preadv
                os.lseek(self._fd, offset + done, os.SEEK_SET)
                got = os.readv(self._fd, [part])
            if got <= 0:
                raise DataError(f"{self.path}: the file ended early (truncated while in use?); write it again")
            done += got
        self._read_since_trim += len(view)
        if self._read_since_trim >= TRIM_BYTES:
            self._read_since_trim = 0
            _hand_back()

    def range(self, lo: int, hi: int) -> np.ndarray:
        """Rows lo..hi-1, in one read."""
        out = np.empty((hi - lo, *self.row_shape), self.dtype)
        if hi > lo:
            self._read_into(memoryview(out.reshape(-1).view(np.uint8)), self.offset + lo * self.row_bytes)
        return out

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The rows ``rows`` (sorted), each run of consecutive rows in one read."""
        k = len(rows)
        out = np.empty((k, *self.row_shape), self.dtype)
        if k == 0:
            return out
        raw = out.reshape(k, -1).view(np.uint8)
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for s, e in zip(np.concatenate(([0], breaks)), np.concatenate((breaks, [k]))):
            self._read_into(memoryview(raw[s:e].reshape(-1)), self.offset + int(rows[s]) * self.row_bytes)
        return out


def _npy_header(f, where: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    try:
        version = np.lib.format.read_magic(f)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(f)
    except (ValueError, OSError, EOFError, SyntaxError) as err:
        raise DataError(f"{where}: not a readable numpy file ({err}); write it with numpy.save / numpy.savez") from None
    if dtype.hasobject or dtype.kind not in "fiub":
        raise DataError(f"{where}: holds {dtype} values; streamed data must be a plain numeric array "
                        f"(save numbers with numpy.save)")
    return tuple(int(s) for s in shape), dtype, bool(fortran)


def map_npy(path: Path) -> MappedArray:
    with open(path, "rb") as f:
        shape, dtype, fortran = _npy_header(f, str(path))
        offset = f.tell()
    if fortran and len(shape) > 1:
        raise DataError(f"{path}: the array is stored in Fortran (column) order, which cannot be read row by row; "
                        f"save it as numpy.save(path, numpy.ascontiguousarray(a)) or set data.stream: false")
    need = offset + math.prod(shape) * dtype.itemsize
    if path.stat().st_size < need:
        raise DataError(f"{path}: the file is truncated ({path.stat().st_size} bytes, the header says {need}); "
                        f"write it again with numpy.save")
    return MappedArray(path, offset, shape, dtype, fortran)


# --- cache folders ----------------------------------------------------------------------------
# Streaming sometimes writes the rows it reads to a file of danlu's own (an .npz member extracted, a
# table's encoded rows, an IterableDataset's items). Each such file lives in a folder made here,
# with an ``owner`` file naming the process; the folder goes when nothing reads it any more, at the
# latest when the process ends, and a killed process's folder goes when the next one is made.

CACHE_PREFIX = "danlu-stream-"
_CACHES: list[Path] = []


def _remove_caches() -> None:
    for folder in list(_CACHES):
        drop_cache(folder, os.getpid())


def _process_tag(pid: int) -> str | None:
    """A running process's id and start time (Linux), or None: a reused id is not the same process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return f"{pid} {stat.rsplit(')', 1)[1].split()[19]}"


def _remove_orphans(base: Path) -> None:
    """Cache folders whose process is gone (killed: nothing ran at its exit)."""
    if _process_tag(os.getpid()) is None:   # no /proc: the owners cannot be told apart
        return
    for folder in base.glob(f"{CACHE_PREFIX}*"):
        try:
            owner = (folder / "owner").read_text()
            pid = int(owner.split()[0])
        except (OSError, ValueError, IndexError):
            continue   # not ours, or being created
        if _process_tag(pid) != owner:
            shutil.rmtree(folder, ignore_errors=True)


def cache_folder() -> Path:
    """A new cache folder of danlu's own in the temporary directory (``TMPDIR``), removed at exit."""
    base = Path(tempfile.gettempdir())
    _remove_orphans(base)
    folder = Path(tempfile.mkdtemp(prefix=CACHE_PREFIX, dir=base))
    (folder / "owner").write_text(_process_tag(os.getpid()) or str(os.getpid()))
    if not _CACHES:
        atexit.register(_remove_caches)
    _CACHES.append(folder)
    return folder


def drop_cache(folder: Path, owner: int) -> None:
    """Remove a cache folder, only in the process ``owner`` that made it (a forked DataLoader worker
    that inherited what reads it leaves the parent's files alone)."""
    if os.getpid() != owner:
        return
    shutil.rmtree(folder, ignore_errors=True)
    if folder in _CACHES:
        _CACHES.remove(folder)


def drop_with(reader, folder: Path) -> None:
    """Remove ``folder`` once ``reader`` (what reads the files in it) is garbage."""
    weakref.finalize(reader, drop_cache, folder, os.getpid())


def map_npz_member(path: Path, key: str) -> MappedArray:
    """An array of an .npz file, mapped where it lies when stored uncompressed (numpy.savez);
    a compressed one (numpy.savez_compressed) is first extracted once to a .npy file in a cache
    folder of danlu's own, removed when nothing reads it."""
    try:
        with zipfile.ZipFile(path) as z:
            info = z.getinfo(f"{key}.npy")
            if info.compress_type == zipfile.ZIP_STORED:
                with open(path, "rb") as f:
                    f.seek(info.header_offset)
                    local = f.read(30)
                    if len(local) < 30 or local[:4] != b"PK\x03\x04":
                        raise zipfile.BadZipFile("bad local header")
                    name_len, extra_len = struct.unpack("<HH", local[26:30])
                    f.seek(info.header_offset + 30 + name_len + extra_len)
                    shape, dtype, fortran = _npy_header(f, f"{path}: array '{key}'")
                    offset = f.tell()
                if fortran and len(shape) > 1:
                    raise DataError(f"{path}: array '{key}' is stored in Fortran (column) order, which cannot be "
                                    f"read row by row; save numpy.ascontiguousarray of it, or set data.stream: false")
                return MappedArray(path, offset, shape, dtype, fortran)
            folder = cache_folder()
            cache = folder / f"{key}.npy"
            with z.open(info) as src, open(cache, "wb") as dst:
                shutil.copyfileobj(src, dst, 16 * 2**20)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as err:
        raise DataError(f"{path}: not a readable numpy file ({err}); write it with numpy.savez") from None
    mapped = map_npy(cache)
    drop_with(mapped, folder)
    return mapped


# --- the lazy split ---------------------------------------------------------------------------

class StreamedArray:
    """The float32, scaled features of some rows of a mapped file, read when indexed.

    ``rows`` are the file rows of this split, in the split's order; ``columns`` picks the feature
    columns of a .npy table (a slice or indices), ``shape`` is the per-sample shape.
    """

    dtype = torch.float32

    def __init__(self, source: MappedArray, rows: np.ndarray, columns, shape: tuple[int, ...], scaler: Scaler,
                 device: torch.device | str = "cpu"):
        self.source, self.rows, self.columns, self.sample_shape = source, rows, columns, tuple(shape)
        self.scaler = scaler
        self.device = torch.device(device)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.sample_shape))

    @property
    def ndim(self) -> int:
        return 1 + len(self.sample_shape)

    def dim(self) -> int:
        return self.ndim

    def size(self, d: int | None = None):
        return self.shape if d is None else self.shape[d]

    def numel(self) -> int:
        return math.prod(self.shape)

    def to(self, device=None, *args, **kwargs) -> "StreamedArray":
        if isinstance(device, torch.dtype) or device is None:
            return self
        return StreamedArray(self.source, self.rows, self.columns, self.sample_shape, self.scaler, device)

    def cpu(self) -> "StreamedArray":
        return self.to("cpu")

    def numpy(self) -> np.ndarray:
        """Every row, read into memory (what a model fitted in one piece needs)."""
        return self[:].cpu().numpy()

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        """torch functions given a streamed split: ``is_floating_point`` answers from the dtype; any
        other reads every row into memory first (code that wants a few rows slices them: ``X[:n]``)."""
        if func is torch.is_floating_point:
            return True
        args = [a[:] if isinstance(a, StreamedArray) else a for a in args]
        return func(*args, **(kwargs or {}))

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, slice):
            rows = self.rows[key]
        elif isinstance(key, torch.Tensor):
            rows = self.rows[key.cpu().numpy()]
        elif isinstance(key, (int, np.integer)):
            return self[np.array([int(key)])][0]
        else:
            rows = self.rows[np.asarray(key)]
        return self.read(rows)

    def read(self, rows: np.ndarray) -> torch.Tensor:
        """The scaled features of file rows ``rows``, in that order, on this array's device."""
        # read in file order (sequential on disk), then put back in the order asked for
        order = np.argsort(rows, kind="stable")
        block = self._raw(rows[order])
        out = np.empty_like(block)
        out[order] = block
        X = self.scaler.apply(torch.from_numpy(out))
        if self.device.type == "cuda":
            return X.pin_memory().to(self.device, non_blocking=True)
        return X.to(self.device)

    def _raw(self, rows: np.ndarray) -> np.ndarray:
        block = self.source.take(rows)
        if self.columns is not None:
            block = block[:, self.columns]
        return np.ascontiguousarray(block, dtype=np.float32).reshape(len(rows), *self.sample_shape)

    def __repr__(self) -> str:
        return f"StreamedArray({self.source.path}, rows={len(self)}, shape={tuple(self.shape)}, device={self.device})"


# --- the decision -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Streamer:
    """A kind of source that can stay on disk. Each registers itself with :func:`register_streamer`;
    ``wants_stream`` and ``prepare_streamed`` know nothing of the formats.

    ``claims(cfg, source_name)`` -> the resolved path (or other handle) of a data section this
    streamer reads, else None; ``open(handle, cfg)`` -> a :class:`StreamSource`;
    ``size(handle, cfg)`` -> bytes the float32 features would take in memory (None: unknown, so
    ``auto`` does not stream); ``refuse(cfg)`` -> why ``data.stream: true`` cannot stream this
    section (None: it can; a refused section is read whole under ``auto``).
    """

    name: str
    what: str   # what it streams, for messages: ".npy or .npz files (data.source: npy)"
    claims: Callable[[Any, str], Any]
    open: Callable[[Any, Any], "StreamSource"]
    size: Callable[[Any, Any], int | None] = lambda handle, cfg: None
    refuse: Callable[[Any], str | None] = lambda cfg: None


STREAMERS: list[Streamer] = []


def register_streamer(streamer: Streamer) -> Streamer:
    """Add (or replace, by name) a kind of streamed source."""
    STREAMERS[:] = [s for s in STREAMERS if s.name != streamer.name] + [streamer]
    return streamer


def streamer_for(cfg, source_name: str):
    """(streamer, handle) of the first registered streamer claiming this data section, or (None, None)."""
    for streamer in STREAMERS:
        handle = streamer.claims(cfg, source_name)
        if handle is not None:
            return streamer, handle
    return None, None


def stream_limit(available: int | None = None) -> float:
    """Bytes of float32 features ``data.stream: auto`` keeps in memory: a share of the free memory
    (``available``, else looked up now; inf when unknown, so auto never streams blindly)."""
    from ..models import _budget

    free = _budget.available_memory() if available is None else available
    return math.inf if free is None else MEMORY_SHARE * free


def decide_stream(choice, why: str | None, nbytes, where: str, available: int | None = None) -> bool:
    """The one rule of ``data.stream`` for any source: ``choice`` true, false or auto; ``why`` this
    source cannot stream (None: it can; under true a one-line error, under auto read whole);
    ``nbytes`` the float32 features' size (None: unknown, read whole under auto), or a callable
    giving it, asked only when auto needs it."""
    if choice is False:
        return False
    if choice is True:
        if why is not None:
            raise RecipeError(f"{where}: {why}")
        return True
    if why is not None:
        return False
    size = nbytes() if callable(nbytes) else nbytes
    return size is not None and size > stream_limit(available)


def wants_stream(cfg, source_name: str, available: int | None = None) -> bool:
    """Whether ``data.stream`` (true, false or auto) streams this data set."""
    choice = cfg.get("stream", "auto")
    if choice is False:
        return False
    streamer, handle = streamer_for(cfg, source_name)
    if streamer is None:
        kinds = "; ".join(s.what for s in STREAMERS)
        why = (f"data.stream: true reads {kinds}; this data set (data.source: {cfg['source']}) is read whole: "
               f"set data.stream: auto or false")
        return decide_stream(choice, why, None, source_name)
    return decide_stream(choice, streamer.refuse(cfg), lambda: streamer.size(handle, cfg), source_name, available)


def _npy_claims(cfg, source_name: str) -> Path | None:
    if cfg["source"] != "npy" or cfg["path"] is None:
        return None
    path = resolve_path(cfg["path"], source_name)
    return path if path.suffix in (".npy", ".npz") else None


def _npy_size(path: Path, cfg) -> int | None:
    """Bytes the float32 features would take in memory, from the file's header alone."""
    try:
        if path.suffix == ".npy":
            shape = map_npy(path).shape
            return math.prod(shape) * 4
        if path.suffix == ".npz":
            key = str((cfg["features"] or ["X"])[0])
            with zipfile.ZipFile(path) as z:
                with z.open(f"{key}.npy") as f:
                    shape, _, _ = _npy_header(f, str(path))
            return math.prod(shape) * 4
    except (DataError, KeyError, OSError, zipfile.BadZipFile):
        return None   # the in-memory reader reports what is wrong with the file
    return None


def _npy_refuse(cfg) -> str | None:
    if cfg["task"] == "multilabel":
        return "data.stream: true does not read multi-label .npy data yet; set data.stream: false"
    if cfg["impute"] not in ("none", "drop"):
        return (f"data.impute: {cfg['impute']} needs the data in memory; with data.stream: true fill the "
                f"missing cells in beforehand, or set data.stream: false")
    return None


def _npy_open(path: Path, cfg) -> "StreamSource":
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a .npy or .npz file")
    return _open_npz(path, cfg) if path.suffix == ".npz" else _open_npy(path, cfg)


# --- streamed preparation ---------------------------------------------------------------------

class StreamSource:
    """What a streamed source gives: its rows on disk, the labels (in memory) and the reader.

    ``mapped`` reads raw rows: ``len()``, ``row_bytes``, ``range(lo, hi)`` and ``take(sorted_rows)``
    (:class:`MappedArray` for a file of numbers; another streamer may decode rows as it reads them);
    ``columns`` picks the feature columns of a raw row (None: all); ``labels`` is one label per row;
    ``shape`` the per-sample shape; ``names`` the feature names; ``reader`` the pipeline's reader
    (how ``predict`` reads new input); ``label_name`` names the labels in messages.
    """

    def __init__(self, path, mapped, columns, labels, shape, names, reader, label_name):
        self.path, self.mapped, self.columns, self.labels = path, mapped, columns, labels
        self.shape, self.names, self.reader, self.label_name = shape, names, reader, label_name
        self.label_column = None   # a .npy table: the labels are this column, read by check_pass

    def fit_encoder(self, train_rows: np.ndarray, cfg) -> FeatureEncoder:
        """The feature encoder, fitted on the training rows (a source with categorical columns or
        imputed cells fits them here); its ``cardinalities()`` are left unscaled. Rows read from
        ``mapped`` are already encoded: the encoder is what ``predict`` applies to new input."""
        return FeatureEncoder(cfg["impute"], {}, None)

    def check_pass(self) -> None:
        """One pass over every row: refuse values no model can use (as in memory, on all rows) and,
        for a .npy table, read the label column."""
        if self.label_column is not None:
            self.labels = np.empty(len(self.mapped), dtype=self.mapped.dtype)
        for idx, full in self.chunks():
            if self.label_column is not None:
                self.labels[idx[0]:idx[-1] + 1] = full[:, self.label_column]
            _bad_values(self, self.features(full), idx)

    def features(self, full: np.ndarray) -> np.ndarray:
        return full if self.columns is None else full[:, self.columns]

    def chunks(self, rows: np.ndarray | None = None):
        """(file rows, whole raw rows) in chunks of about CHUNK_BYTES: every row, or ``rows`` (sorted)."""
        step = max(1, CHUNK_BYTES // max(1, self.mapped.row_bytes))
        n = len(self.mapped) if rows is None else len(rows)
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            if rows is None:
                yield np.arange(lo, hi), self.mapped.range(lo, hi)
            else:
                yield rows[lo:hi], self.mapped.take(rows[lo:hi])


def _column_selector(idx: list[int]):
    """A slice when the columns are consecutive (reading them copies nothing), else the indices."""
    if idx == list(range(idx[0], idx[0] + len(idx))):
        return slice(idx[0], idx[0] + len(idx))
    return np.asarray(idx)


def _open_npy(path: Path, cfg) -> StreamSource:
    mapped = map_npy(path)
    label, idx, names, width = npy_columns(path, mapped.shape, cfg)
    reader = {"format": "table", "columns": names, "label": None, "divisor": 1.0,
              "npy": {"features": idx, "label": label, "width": width}}
    src = StreamSource(path, mapped, _column_selector(idx), None, (len(idx),), names, reader, "label")
    src.label_column = label   # read in the pass that checks the values (it touches every page anyway)
    return src


def _open_npz(path: Path, cfg) -> StreamSource:
    features = cfg["features"] or ["X"]
    if len(features) != 1:
        raise DataError(f"{path}: for an .npz file data.features names one array key, got {features}")
    fkey, lkey = str(features[0]), str(cfg["label"] if cfg["label"] is not None else "y")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            for key, what in ((fkey, "data.features"), (lkey, "data.label")):
                if key not in keys:
                    from ..errors import did_you_mean

                    raise DataError(f"{path}: no array '{key}'{did_you_mean(key, keys)}; set {what} to one of "
                                    f"{', '.join(keys) or '(none: the file is empty)'}")
            y = z[lkey]
    except ValueError as err:
        raise DataError(f"{path}: cannot read the arrays ({err}); save plain numeric arrays with numpy.savez "
                        f"(object arrays are refused)") from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable numpy file ({err}); write it with numpy.savez") from None
    mapped = map_npz_member(path, fkey)
    X_shape = mapped.shape
    if X_shape[0] != len(y):
        raise DataError(f"{path}: '{fkey}' has {X_shape[0]} rows but '{lkey}' has {len(y)}; they must match")
    if len(X_shape) not in (2, 3, 4) or y.ndim not in (1, 2):
        raise DataError(f"{path}: '{fkey}' must be (N, F), (N, T, F) or (N, C, H, W) and '{lkey}' (N,) or "
                        f"(N, K); got {X_shape} and {y.shape}")
    if y.dtype.kind not in "fiub":
        y = y.astype(object)
    shape = tuple(X_shape[1:])
    flat = [f"x{i}" for i in range(math.prod(shape))]
    names = flat if len(X_shape) == 2 else [f"channel{i}" for i in range(shape[-1] if len(X_shape) == 3 else shape[0])]
    reader = {"format": "table", "columns": flat if len(X_shape) == 2 else None, "label": None, "divisor": 1.0,
              "npz": {"features": fkey, "label": lkey}}
    return StreamSource(path, mapped, None, y, shape, names, reader, lkey)


def _sample_shape(src: StreamSource, shape_cfg) -> tuple[int, ...]:
    if shape_cfg is None:
        return tuple(src.shape)
    shape = tuple(int(s) for s in shape_cfg)
    width = math.prod(src.shape)
    if math.prod(shape) != width:
        raise DataError(f"{src.path}: data.shape {list(shape)} holds {math.prod(shape)} values but each "
                        f"row has {width}; fix data.shape")
    return shape


def _checked_labels(src: StreamSource, cfg) -> tuple[LabelCodec, np.ndarray]:
    """Labels checked and encoded as in memory: missing and infinite labels refused."""
    table = Table(str(src.path), [], np.empty((len(src.labels), 0)), {}, src.labels, None, "row")
    missing = table.label_missing()
    if missing.any():
        raise DataError(f"{table.where}: label '{src.label_name}' is missing on {int(missing.sum())} row(s) (first on "
                        f"row {int(np.argmax(missing))}); fill the labels in (streamed data cannot drop rows: "
                        f"or set data.stream: false and data.impute: drop)")
    from ._table import check_finite

    check_finite(table, src.label_name)
    codec = LabelCodec.fit(src.labels, cfg["task"], table.where, src.label_name, None)
    return codec, codec.encode(src.labels)


def _bad_values(src: StreamSource, block: np.ndarray, idx: np.ndarray) -> None:
    """Missing (NaN), infinite or beyond-float32 values: one line naming the column and the first row."""
    if block.dtype.kind != "f":
        return
    flat = block.reshape(len(block), -1)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(flat) | (np.abs(flat) > FLOAT32_MAX)
    if not bad.any():
        return
    j = int(np.argmax(bad.any(axis=0)))
    i = int(np.argmax(bad[:, j]))
    value = float(flat[i, j])
    name = src.names[j] if len(src.names) == flat.shape[1] else f"value {j}"
    what = ("a missing value (NaN)" if math.isnan(value) else "an infinite value" if math.isinf(value)
            else f"a value beyond the float32 range ({value:g})")
    raise DataError(f"{src.path}: column '{name}' has {what} on row {int(idx[i])}; streamed data must be finite: "
                    f"fix the file, or set data.stream: false to use data.impute")


def fit_streamed_scaler(src: StreamSource, train_rows: np.ndarray, shape: tuple[int, ...], mode: str,
                        axis: int, skip=()) -> Scaler:
    """Scaler.fit over the training rows in chunks: float64 per chunk, combined (Chan et al.)."""
    channels = (len(train_rows), *shape)[axis]
    count, mean, m2 = 0, np.zeros(channels), np.zeros(channels)
    lo, hi = np.full(channels, np.inf), np.full(channels, -np.inf)
    for _, full in src.chunks(np.sort(train_rows)):
        X = np.asarray(src.features(full), dtype=np.float32).reshape(len(full), *shape)
        flat = np.moveaxis(X, axis, -1).reshape(-1, channels).astype(np.float64)
        if mode == "standardize":
            n = len(flat)
            m = flat.mean(axis=0)
            s = ((flat - m) ** 2).sum(axis=0)
            delta = m - mean
            total = count + n
            mean = mean + delta * (n / total)
            m2 = m2 + s + delta ** 2 * (count * n / total)
            count = total
        elif mode == "normalize":
            lo, hi = np.minimum(lo, flat.min(axis=0)), np.maximum(hi, flat.max(axis=0))
    shift, div = np.zeros(channels), np.ones(channels)
    if mode == "standardize":
        shift, div = mean, np.sqrt(m2 / max(count, 1))
    elif mode == "normalize":
        shift, div = lo, hi - lo
    div = np.where(div > 0, div, 1.0)
    for j in skip:   # category codes are not scaled (as Scaler.fit)
        shift[j], div[j] = 0.0, 1.0
    return Scaler(mode, axis, torch.tensor(shift, dtype=torch.float32), torch.tensor(div, dtype=torch.float32))


def prepare_streamed(cfg, seed: int, source_name: str, rows: dict | None = None):
    """``prepare`` for a streamed source: labels in memory, features left on disk."""
    streamer, handle = streamer_for(cfg, source_name)
    if streamer is None:
        raise RecipeError(f"{source_name}: this data set (data.source: {cfg['source']}) cannot be streamed; "
                          f"set data.stream: auto or false")
    return prepare_source(streamer.open(handle, cfg), cfg, seed, rows, source_name)


def prepare_source(src: StreamSource, cfg, seed: int, rows: dict | None = None, source_name: str | None = None):
    """The rest of ``prepare`` for any opened :class:`StreamSource`: values checked in one pass,
    labels encoded, the seeded split, the encoder and scaler fitted on the training rows."""
    from ._prepare import Prepared, _check_augment

    path = src.path
    source_name = source_name or str(path)
    shape = _sample_shape(src, cfg["shape"])
    kind = kind_of(shape)
    _check_augment(cfg["augment"], kind, source_name)
    src.check_pass()
    codec, y = _checked_labels(src, cfg)

    rows = split_or_given(y, codec, cfg["split"], seed, str(path), rows)

    encoder = src.fit_encoder(rows["train"], cfg)
    skip = [j for j, _ in encoder.cardinalities()]
    scaler = fit_streamed_scaler(src, rows["train"], shape, cfg["scale"], 2 if kind == "sequence" else 1, skip)
    info = DataInfo(task=codec.task, kind=kind, input_shape=shape,
                    n_classes=len(codec.classes) if codec.task == "classification" else None,
                    classes=codec.classes, feature_names=src.names, categorical=encoder.cardinalities(),
                    n_targets=codec.n_targets)
    pipeline = Pipeline(info, src.reader, encoder, scaler, codec, dict(cfg["augment"]))
    y_all = torch.from_numpy(y)
    splits = {name: (StreamedArray(src.mapped, np.asarray(idx, dtype=np.int64), src.columns, shape, scaler),
                     y_all[torch.from_numpy(np.asarray(idx, dtype=np.int64))])
              for name, idx in rows.items()}
    return Prepared(info, splits, pipeline)


register_streamer(Streamer("npy", ".npy or .npz files (data.source: npy)", _npy_claims, _npy_open, _npy_size, _npy_refuse))
from . import _stream_images  # noqa: E402,F401  registers image folders
from . import _stream_table  # noqa: E402,F401  registers csv/parquet
