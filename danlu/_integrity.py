"""Checksums of everything a run writes, checked on every load; atomic writes that keep them.

Every folder danlu makes (a run directory, a quantized model folder ...; see ``danlu._rundir``'s
``.danlu-run`` marker) holds ``manifest.json``, made with the first file written there::

    {"format": 1, "run_id": "3f2c...", "files": {"model.safetensors": {"sha256": "...", "size": 1234}, ...}}

Every file danlu writes there goes through :func:`atomic_write` (``training._checkpoint``'s
``atomic_write_text`` / ``atomic_save_tensors`` call it): the file is written to a temporary
name and fsynced, its checksum is added to the manifest as *pending*, the file is renamed into
place and the checksum becomes the file's own. So a kill at any moment leaves each file matching
the checksum recorded for it, the old one or the new one — never a file the manifest disowns.

Every loader reads through :func:`read_bytes` (or :func:`verify` before handing a path to a
reader that opens it itself): a file that is not listed, differs from its checksum, or a
manifest that is missing, damaged or empty is refused with one line naming the file. The
``.jsonl`` logs are appended to while a run trains, are read tolerantly and never feed a model,
so they are not checksummed.

Each run has an identity, ``run_id``, made when the run directory is created; checkpoints carry
it, so that ``danlu resume`` can refuse another run's checkpoint.

Torch-free: the combine checks and the recipe tools import it without loading torch.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

from .errors import CheckpointError, UserError

MANIFEST = "manifest.json"
RUN_MARKER = ".danlu-run"   # written by danlu._rundir when a run directory is created (may be absent)
FORMAT = 1
UNCHECKED_SUFFIXES = (".jsonl",)   # append-only logs: read tolerantly, never loaded into a model
_SEARCH_DEPTH = 4                  # a file may sit this many folders below its run (quantized-x/..)
_lock = threading.Lock()


class StorageError(UserError, OSError):
    """The disk refused a write (full, read-only, no permission). Also an ``OSError``, so that
    code which handles failed writes keeps doing so."""


# ---------------------------------------------------------------------------------------------
# Roots: the folders that hold a manifest
# ---------------------------------------------------------------------------------------------

def _is_checkpoint_folder(folder: Path) -> bool:
    return folder.parent.name == "checkpoints"


def find_root(path: str | Path) -> Path | None:
    """The nearest folder above ``path`` that danlu made (its ``.danlu-run`` marker) or that holds
    a danlu manifest, or None. Checkpoint folders, which hold their own manifest, are skipped."""
    folder = Path(path).absolute().parent
    for _ in range(_SEARCH_DEPTH):
        if not _is_checkpoint_folder(folder) and ((folder / MANIFEST).is_file() or (folder / RUN_MARKER).is_file()):
            return folder
        if folder.parent == folder:
            break
        folder = folder.parent
    return None


def begin(folder: str | Path, run_id: str | None = None) -> str:
    """Make ``folder`` a checked folder (a new run, a quantized model folder): write an empty
    manifest unless it has one. Returns the folder's run id."""
    folder = Path(folder)
    path = folder / MANIFEST
    if path.is_file():
        return read_manifest(folder).get("run_id") or ""
    rid = run_id or _marker_id(folder) or uuid.uuid4().hex
    _write_manifest(folder, {"format": FORMAT, "run_id": rid, "files": {}})
    return rid


def begin_run(run_dir: str | Path) -> str:
    """A new run directory: its manifest and its identity."""
    return begin(run_dir)


def run_id(run_dir: str | Path) -> str | None:
    """The identity of the run in ``run_dir``: the run marker's id where there is one, else the
    manifest's; None for a folder with neither."""
    run_dir = Path(run_dir)
    marker = _marker_id(run_dir)
    if marker:
        return marker
    if (run_dir / MANIFEST).is_file():
        try:
            rid = json.loads((run_dir / MANIFEST).read_text(encoding="utf-8")).get("run_id")
        except (ValueError, UnicodeDecodeError, AttributeError, OSError):
            return None
        return rid if isinstance(rid, str) and rid else None
    return None


def _marker_id(run_dir: Path) -> str | None:
    """The run id kept in the run marker file (JSON with ``run_id``/``id``, or the id as text)."""
    path = Path(run_dir) / RUN_MARKER
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        doc = text
    if isinstance(doc, dict):
        doc = doc.get("run_id") or doc.get("id")
    return str(doc) if isinstance(doc, (str, int)) and str(doc) else None


# ---------------------------------------------------------------------------------------------
# The manifest
# ---------------------------------------------------------------------------------------------

def read_manifest(root: Path) -> dict:
    """The manifest of ``root``, checked for shape; a missing, damaged or empty one is refused."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise CheckpointError(_no_manifest(Path(root)))
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: damaged ({type(err).__name__}), so no file of {root} can be checked; "
                              f"train the run again") from None
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict) or not all(_entry_ok(e) for e in files.values()):
        raise CheckpointError(f"{path}: has no valid checksum table ('files'), so no file of {root} can be "
                              f"checked; train the run again")
    return doc


def _entry_ok(entry) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and isinstance(entry.get("size"), int)
            and (entry.get("pending") is None or _entry_ok(entry["pending"])))


def _no_manifest(root: Path) -> str:
    return (f"{root}: has no {MANIFEST} (the checksums of its files): it predates checksums or was not "
            f"written by danlu, so its files cannot be trusted; train it again with this danlu")


def _write_manifest(root: Path, doc: dict, sync_dir: bool = True) -> None:
    path = Path(root) / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(doc, indent=1, sort_keys=True))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        _unlink(tmp)
        raise storage_error(path, err) from None
    if sync_dir:
        fsync_dir(path.parent)


def _update(path: Path, change) -> Path | None:
    """Change the manifest entry of ``path`` (if it lies in a checked folder); returns the folder,
    whose directory entry the caller syncs once for all its renames."""
    root = find_root(path)
    if root is None or Path(path).name.endswith(UNCHECKED_SUFFIXES):
        return
    key = Path(path).absolute().relative_to(root.absolute()).as_posix()
    with _lock, _folder_lock(root):   # threads of this process, and other processes (danlu report on a live run)
        if not (root / MANIFEST).is_file():   # a folder danlu made (marked): its first checked file
            begin(root)
        doc = read_manifest(root)
        change(doc["files"], key)
        _write_manifest(root, doc, sync_dir=False)
    return root


@contextmanager
def _folder_lock(root: Path):
    """An exclusive ``flock`` on the folder itself for one read-change-write of its manifest."""
    try:
        import fcntl
    except ImportError:   # pragma: no cover - Windows: one process at a time is assumed
        yield
        return
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)   # closing drops the lock


def record_pending(path: Path, digest: str, size: int) -> Path | None:
    """Before ``path`` is replaced: accept the new content beside the old one."""
    def change(files, key):
        entry = files.get(key)
        files[key] = {**(entry or {"sha256": digest, "size": size}), "pending": {"sha256": digest, "size": size}}
    return _update(path, change)


def record(path: Path, digest: str | None = None, size: int | None = None) -> None:
    """``path`` now holds what danlu wrote: its checksum becomes the file's own."""
    if digest is None:
        digest, size = file_digest(path)
    root = _update(path, lambda files, key: files.__setitem__(key, {"sha256": digest, "size": size}))
    if root is not None:
        fsync_dir(root)


def sha256_bytes(data: bytes) -> str:
    """The hex SHA-256 of ``data``: the one checksum danlu writes and compares."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file, read in 1 MiB blocks."""
    return file_digest(path)[0]


def file_digest(path: Path) -> tuple[str, int]:
    """(hex SHA-256, size in bytes) of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def storage_error(path: Path, err: OSError) -> StorageError:
    """One line for a write the disk refused, naming the file and what to do."""
    reason = err.strerror or type(err).__name__
    out = StorageError(f"{path}: cannot write ({reason}); nothing was half-written — free disk space or fix "
                       f"the folder's permissions, then run the command again (`danlu resume RUN` continues a "
                       f"run from its last checkpoint)")
    out.errno, out.strerror, out.filename = err.errno, err.strerror, str(path)
    return out


def atomic_write(path: str | Path, write, kill_point=None) -> None:
    """Write ``path`` through ``write(tmp_path)`` so that readers see the old or the new content,
    and the manifest of its folder (if any) always holds a checksum the file on disk matches.

    A refused write (full disk, read-only, no permission) removes the temporary file and raises
    one :class:`StorageError`; the previous file and its checksum stay as they were.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        digest, size = file_digest(tmp)
        root = record_pending(path, digest, size)
        _kill(kill_point, "before_replace", path)
        os.replace(tmp, path)
        _kill(kill_point, "after_replace", path)
        record(path, digest, size)   # syncs the manifest's folder
    except OSError as err:
        _unlink(tmp)
        if isinstance(err, StorageError):
            raise
        raise storage_error(path, err) from None
    except BaseException:
        _unlink(tmp)
        raise
    if root is None or root != path.absolute().parent:
        fsync_dir(path.parent)


def _kill(kill_point, where: str, path: Path) -> None:
    """Fault injection for the tests: ``where`` for any file, ``where/NAME`` for one file."""
    if kill_point is not None:
        kill_point(where)
        kill_point(f"{where}/{path.name}")


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------

def read_bytes(path: str | Path) -> bytes:
    """The content of ``path``, refused unless its folder's manifest lists it with this checksum."""
    path = Path(path)
    root = find_root(path)
    if root is None:
        raise CheckpointError(_no_manifest(path.parent))
    files = read_manifest(root)["files"]
    if not files:
        raise CheckpointError(f"{root / MANIFEST}: its checksum table is empty, so no file of {root} can be "
                              f"checked; train the run again")
    key = path.absolute().relative_to(root.absolute()).as_posix()
    entry = files.get(key)
    if entry is None:
        raise CheckpointError(f"{path}: not listed in {root / MANIFEST}, so danlu did not write it (or wrote it "
                              f"before checksums); only files a run wrote are loaded — train the run again")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing, though {root / MANIFEST} lists it; restore it from a backup "
                              f"or train the run again") from None
    digest = sha256_bytes(data)
    accepted = [entry] + ([entry["pending"]] if entry.get("pending") else [])
    if not any(e["sha256"] == digest and e["size"] == len(data) for e in accepted):
        raise CheckpointError(f"{path}: does not match its checksum in {root / MANIFEST} (damaged or changed "
                              f"after danlu wrote it); restore it from a backup or train the run again")
    return data


def verify(path: str | Path) -> None:
    """Refuse ``path`` unless it matches its checksum (for readers that open the file themselves)."""
    read_bytes(path)


def is_checked(path: str | Path) -> bool:
    """Whether ``path`` lies in a folder with a manifest (so that loading it must verify it)."""
    return find_root(path) is not None


def read_text(path: str | Path) -> str:
    data = read_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{path}: not UTF-8 text (byte {err.start}); the file is damaged — train the "
                              f"run again") from None


def read_json(path: str | Path, expect: type = dict):
    """A verified JSON file whose top level is ``expect`` (dict or list)."""
    text = read_text(path)
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise CheckpointError(f"{path}: not valid JSON ({err}); the file is damaged — train the run again") from None
    if not isinstance(doc, expect):
        want = "object" if expect is dict else "list"
        raise CheckpointError(f"{path}: expected a JSON {want}, got {type(doc).__name__}; the file is damaged "
                              f"— train the run again")
    return doc


def require(path: str | Path, checks: dict, doc: dict) -> None:
    """Refuse ``doc`` (read from ``path``) unless each key in ``checks`` holds a value of its type."""
    for key, kinds in checks.items():
        if not isinstance(doc.get(key), kinds) or (kinds is int and isinstance(doc.get(key), bool)):
            names = "/".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
            raise CheckpointError(f"{path}: '{key}' must be {names}, got {type(doc.get(key)).__name__}; "
                                  f"the file is damaged or was edited — train the run again")


def warn(message: str) -> None:
    print(f"danlu: warning: {message}", file=sys.stderr)
