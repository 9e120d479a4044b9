"""Checkpoints: safetensors for tensors, JSON for the rest, written atomically, checked on load.

A checkpoint is a folder ``checkpoints/step-00000123/`` holding

* ``model.safetensors``   the model's state dict;
* ``state.safetensors``   every other tensor (optimizer moments, RNG states, best weights ...);
* ``state.json``          position, schedule, callbacks, history, with tensors referenced by key;
* ``manifest.json``       SHA-256 of the three files above, checked before anything is read
                          (all three must be listed), and the run's id.

Both state.json and the manifest carry the ``run_id`` of the run that wrote the checkpoint;
reading refuses another run's checkpoint unless the caller forces it.

It is first written to ``.tmp-step-...`` (each file fsynced), then renamed into place, so a kill
at any moment leaves either the previous set of checkpoints or the new one, never half of one.
Nothing is ever unpickled. A write the disk refuses leaves no half folder behind.

Training does not wait for the disk: the ``Checkpointer`` copies the content at the save
(:func:`snapshot`) and a :class:`BackgroundWrite` writes it, fsyncs and renames it on a thread,
one write at a time. Its error is raised at the next save or at the end of the fit; listing or
reading a folder's checkpoints first waits for the writes in flight into it.

The files of the run itself (final model, model.json, summary.json ...) are written with
``atomic_write_text`` / ``atomic_save_tensors``, which keep their checksums in the run's
manifest (``danlu._integrity``).
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import threading
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError as SafetensorsError
from safetensors.numpy import save_file as save_numpy_file
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file, save_file

from .. import _integrity as integrity
from .. import _rundir
from ..errors import CheckpointError

FORMAT = 1
CKPT_PREFIX = "step-"
_TENSOR = "__tensor__"
_ITEMS = "__items__"      # a dict whose keys are not all strings (optimizer state uses ints)
_TUPLE = "__tuple__"
CHECKED_FILES = ("model.safetensors", "state.safetensors", "state.json")


# ---------------------------------------------------------------------------------------------
# Nested state <-> (JSON, tensors)
# ---------------------------------------------------------------------------------------------

_PLAIN = frozenset({str, int, float, bool, type(None)})   # leaves JSON holds as they are


def own_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU tensor of its own: what safetensors writes, and what the next training
    step cannot change."""
    if tensor.is_cpu:
        if tensor.requires_grad:
            tensor = tensor.detach()
        return tensor.clone(memory_format=torch.contiguous_format)
    return tensor.detach().to("cpu", copy=True).contiguous()


def split_tensors(obj, tensors: dict, prefix: str = "t"):
    """Replace every tensor leaf of ``obj`` by a reference and collect own copies of them in
    ``tensors``; the containers returned are new ones too.

    A checkpoint is taken on the training thread, and it holds the Python RNG state (625 ints),
    histories of floats and optimizer settings: plain values are copied as they are, without a
    call each."""
    if type(obj) in _PLAIN:
        return obj
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = own_copy(obj)
        return {_TENSOR: prefix}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: v if type(v) in _PLAIN else split_tensors(v, tensors, f"{prefix}.{k}") for k, v in obj.items()}
        return {_ITEMS: [[k, v if type(v) in _PLAIN else split_tensors(v, tensors, f"{prefix}.{k}")]
                         for k, v in obj.items()]}
    if isinstance(obj, (tuple, list)):
        items = [v if type(v) in _PLAIN else split_tensors(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
        return {_TUPLE: items} if isinstance(obj, tuple) else items
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def join_tensors(obj, tensors: dict):
    """Inverse of :func:`split_tensors`."""
    if isinstance(obj, dict):
        if _TENSOR in obj:
            return tensors[obj[_TENSOR]]
        if _ITEMS in obj:
            return {k: join_tensors(v, tensors) for k, v in obj[_ITEMS]}
        if _TUPLE in obj:
            return tuple(join_tensors(v, tensors) for v in obj[_TUPLE])
        return {k: join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [join_tensors(v, tensors) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------
# RNG states
# ---------------------------------------------------------------------------------------------

def capture_rng() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


# ---------------------------------------------------------------------------------------------
# Atomic files
# ---------------------------------------------------------------------------------------------

_fsync_dir = integrity.fsync_dir   # one copy of the directory fsync, in danlu._integrity


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    """Write a small text file so that readers see the old or the new content, never a mix
    (and its checksum is kept in the run's manifest, see ``danlu._integrity``)."""
    data = text.encode("utf-8")
    integrity.atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), kill_point=_kill_point)


# dtypes numpy holds as torch does: safetensors writes the same bytes from either, and from numpy
# arrays without its per-tensor Python work (a third of the time for a checkpoint's ~100 tensors)
_NUMPY_DTYPES = frozenset({torch.float64, torch.float32, torch.float16, torch.int64, torch.int32, torch.int16,
                           torch.int8, torch.uint8, torch.bool})


def save_tensors(path: Path, tensors: dict, metadata: dict | None = None, *, owned: bool = False) -> None:
    """safetensors refuses shared or non-contiguous storage, so every tensor is an own copy
    (``owned``: they already are, contiguous CPU tensors, as a :class:`Snapshot`'s are)."""
    clean = tensors if owned else {k: own_copy(v) for k, v in tensors.items()}
    try:
        if owned and all(v.dtype in _NUMPY_DTYPES for v in clean.values()):
            save_numpy_file({k: v.numpy() for k, v in clean.items()}, str(path), metadata=metadata)
        else:
            save_file(clean, str(path), metadata=metadata)
    except SafetensorsError as err:   # a full disk comes back as "I/O error: ... (os error 28)"
        code = re.search(r"os error (\d+)", str(err))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from None


def atomic_save_tensors(path: Path, tensors: dict) -> None:
    integrity.atomic_write(path, lambda tmp: save_tensors(tmp, tensors), kill_point=_kill_point)


sha256 = integrity.sha256_file   # a file's checksum, as the manifest of a checkpoint folder records it


# ---------------------------------------------------------------------------------------------
# Checkpoint folders
# ---------------------------------------------------------------------------------------------

def checkpoint_name(step: int) -> str:
    return f"{CKPT_PREFIX}{step:08d}"


@dataclass(frozen=True)
class Snapshot:
    """A checkpoint's content, copied out of the run: what a write needs and nothing the next
    training step can change (see :func:`snapshot`)."""

    root: Path          # the run's checkpoints folder
    step: int
    model: dict         # the model's state dict: own contiguous CPU tensors
    tensors: dict       # every other tensor, own CPU copies, by the keys state_json refers to
    state_json: str     # the rest of the state as JSON text, tensors referenced by key
    run_id: str | None  # the run's identity when the copy was taken


def snapshot(ckpt_root: Path, step: int, model_state: dict, state: dict) -> Snapshot:
    """Copy a checkpoint's content now: every tensor cloned to the CPU (split_tensors clones) and
    the rest encoded as JSON, so that training may go on changing the live weights, optimizer
    moments and history while the copy is written. A state JSON cannot hold fails here, at the
    save, as it always did.

    The run's id is read now too: should the run's folder be replaced (train --overwrite) while
    the copy waits to be written, the checkpoint still names the run it belongs to, and a resume
    of the new run refuses it."""
    tensors: dict = {}
    meta = json.dumps(split_tensors(state, tensors))
    model = {k: own_copy(v) for k, v in model_state.items()}
    ckpt_root = Path(ckpt_root)
    return Snapshot(ckpt_root, step, model, tensors, meta, integrity.run_id(ckpt_root.parent))


def write_checkpoint(ckpt_root: Path, step: int, model_state: dict, state: dict) -> Path:
    """Write one checkpoint atomically, now; returns its folder. (:class:`BackgroundWrite` runs
    :func:`write_snapshot` on a thread instead.)"""
    return write_snapshot(snapshot(ckpt_root, step, model_state, state))


def write_snapshot(snap: Snapshot) -> Path:
    """Write one checkpoint atomically; returns its folder.

    The checkpoint carries its run's identity (``run_id``, in state.json and the manifest), so
    that a resume can refuse another run's checkpoint. A write the disk refuses (full, read-only,
    no permission) removes the half-written folder and raises one ``StorageError``: the earlier
    checkpoints are untouched and ``danlu resume`` continues from the newest.
    """
    ckpt_root = snap.root
    final = ckpt_root / checkpoint_name(snap.step)
    tmp = ckpt_root / f".tmp-{checkpoint_name(snap.step)}"
    try:
        ckpt_root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        _write_folder(tmp, snap)
        _kill_point("before_rename")
        if final.exists():  # the same step written again after a resume: replace it whole
            old = ckpt_root / f".old-{checkpoint_name(snap.step)}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(ckpt_root)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise integrity.storage_error(final, err) from None
    return final


def _write_folder(tmp: Path, snap: Snapshot) -> None:
    run_id = snap.run_id
    tmp.mkdir()
    save_tensors(tmp / "model.safetensors", snap.model, owned=True)
    save_tensors(tmp / "state.safetensors", snap.tensors, owned=True)
    # the JSON of {"format": ..., "run_id": ..., "state": meta}, meta already encoded by snapshot()
    state_json = f'{{"format": {FORMAT}, "run_id": {json.dumps(run_id)}, "state": {snap.state_json}}}'
    (tmp / "state.json").write_text(state_json, encoding="utf-8")
    for name in CHECKED_FILES:
        _fsync_file(tmp / name)
        _kill_point("after_file")
    manifest = {"format": FORMAT, "step": snap.step, "run_id": run_id,
                "sha256": {n: sha256(tmp / n) for n in CHECKED_FILES}}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    _fsync_file(tmp / "manifest.json")
    _fsync_dir(tmp)


# ---------------------------------------------------------------------------------------------
# Writing in the background
# ---------------------------------------------------------------------------------------------

_IN_FLIGHT: set = set()          # the BackgroundWrites of this process not finished yet
_IN_FLIGHT_LOCK = threading.Lock()
_WRITER: list = []               # [(pid, the executor whose one thread writes checkpoints)]
_ON_WRITER = threading.local()   # .busy: this thread is the writer, running a write


def _writer() -> ThreadPoolExecutor:
    """The process's checkpoint writer: one thread, started at the first write and kept (starting
    a thread per write cost the training thread a millisecond or more each time). Its thread is
    joined at interpreter exit after the writes queued, as a thread that is not a daemon is; a
    forked child makes its own."""
    with _IN_FLIGHT_LOCK:
        if not _WRITER or _WRITER[0][0] != os.getpid():
            _WRITER[:] = [(os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="danlu-checkpoint"))]
        return _WRITER[0][1]


class BackgroundWrite:
    """Run ``write()`` (a checkpoint's write and pruning, in ``ckpt_root``) on the writer thread,
    so that training goes on while the files are written and fsynced; :meth:`wait` waits for it
    and raises what the write raised (a full disk is the same one-line ``StorageError`` as a
    write in the foreground).

    The commit is still the rename: a process killed while a write is in flight leaves the
    checkpoints before it, whole, and a ``.tmp-`` folder that listing ignores. A process that
    ends normally (or on an error) finishes the write first."""

    def __init__(self, ckpt_root: Path, write: Callable[[], object]):
        self.root = _key(ckpt_root)
        self._raised = False
        with _IN_FLIGHT_LOCK:
            _IN_FLIGHT.add(self)
        try:
            self._done = _writer().submit(self._run, write)
        except BaseException:
            self._finished()
            raise

    def _run(self, write) -> None:
        _ON_WRITER.busy = True
        try:
            write()
        finally:
            _ON_WRITER.busy = False
            self._finished()

    def _finished(self) -> None:
        with _IN_FLIGHT_LOCK:
            _IN_FLIGHT.discard(self)

    def join(self) -> None:
        """Until the write is done (or failed)."""
        if not writing_here():
            futures.wait([self._done])

    def wait(self) -> None:
        """Until the write is done; raises its error (once)."""
        self.join()
        if self._done.done() and not self._raised:
            error = self._done.exception()
            self._raised = True
            if error is not None:
                raise error


def writing_here() -> bool:
    """Whether this thread is the writer, in the middle of a write."""
    return getattr(_ON_WRITER, "busy", False)


def _key(ckpt_root: Path) -> str:
    return os.path.realpath(ckpt_root)


def wait_for_writes(ckpt_root: Path | None = None) -> None:
    """Until the checkpoints this process is writing in the background into ``ckpt_root`` (every
    folder: None) are on disk or failed; a failure is raised by the writer's owner
    (``Checkpointer.wait``), not here. Everything that lists or reads checkpoints waits so: a
    resume in the same process, right after a run that raised, sees the run's last checkpoint."""
    if writing_here():
        return   # the writer pruning a folder: it waits for no one (the writes queued wait for it)
    with _IN_FLIGHT_LOCK:
        pending = list(_IN_FLIGHT)
    if pending and ckpt_root is not None:
        key = _key(ckpt_root)
        pending = [writing for writing in pending if writing.root == key]
    for writing in pending:
        writing.join()


def _settle_run(run_dir: Path) -> None:
    """Before a run's lock is released: its checkpoints still in flight land first."""
    wait_for_writes(Path(run_dir) / "checkpoints")


_rundir.SETTLE_BEFORE_RELEASE.append(_settle_run)


def _kill_point(where: str) -> None:
    """Fault injection for the resume tests: DANLU_KILL_AT=before_rename:3 kills the process
    (SIGKILL, no clean-up) at the 3rd time that point is reached.

    Points: ``after_file`` and ``before_rename`` in a checkpoint write; ``before_replace`` and
    ``after_replace`` in every atomic file write, also as ``before_replace/model.safetensors``
    for one file (see ``danlu._integrity.atomic_write``)."""
    spec = os.environ.get("DANLU_KILL_AT")
    if not spec:
        return
    point, _, count = spec.partition(":")
    if point != where:
        return
    _kill_point.hits = getattr(_kill_point, "hits", 0) + 1
    if _kill_point.hits >= int(count or 1):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    """Finished checkpoint folders, oldest first (temporary folders of killed writes are ignored);
    the writes of this process still in flight into ``ckpt_root`` are waited for first."""
    wait_for_writes(ckpt_root)
    if not ckpt_root.is_dir():
        return []
    found = [p for p in ckpt_root.iterdir() if p.is_dir() and p.name.startswith(CKPT_PREFIX)]
    return sorted(found, key=lambda p: p.name)


def verify_checkpoint(path: Path) -> dict:
    """Check the manifest and every checksum; return the manifest or raise CheckpointError."""
    return _read_verified(Path(path))[0]


def _read_verified(path: Path) -> tuple[dict, dict]:
    """(manifest, {file name: bytes}) of a checkpoint whose files all match the manifest, which
    must list every file a checkpoint holds (an empty or partial table is refused)."""
    earlier = "resume from an earlier checkpoint with --checkpoint"
    wait_for_writes(path.parent)   # a folder of this process's may be being written (or replaced)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise CheckpointError(f"{path}: not a danlu checkpoint (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        sums = manifest["sha256"]
        if not isinstance(sums, dict) or not all(isinstance(v, str) for v in sums.values()):
            raise TypeError("sha256 is not a table of checksums")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise CheckpointError(f"{path}/manifest.json is damaged; {earlier}") from None
    unlisted = [name for name in CHECKED_FILES if name not in sums]
    if unlisted:
        raise CheckpointError(f"{manifest_path}: lists no checksum for {', '.join(unlisted)}, so the checkpoint "
                              f"cannot be checked; {earlier}")
    contents = {}
    for name in CHECKED_FILES:
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"{path}: {name} is missing; {earlier}")
        data = f.read_bytes()
        if integrity.sha256_bytes(data) != sums[name]:
            raise CheckpointError(f"{path}: {name} does not match its checksum (truncated or modified); {earlier}")
        contents[name] = data
    return manifest, contents


def read_checkpoint(path: Path, device="cpu", *, run_dir: Path | None = None,
                    force_foreign: bool = False) -> tuple[dict, dict]:
    """Return (model state dict, state) of a verified checkpoint of the run in ``run_dir``.

    ``run_dir`` defaults to the run the checkpoint's folder lies in. A checkpoint of another run
    (its ``run_id`` differs, or it has none) is refused unless ``force_foreign``, which only warns.
    """
    path = Path(path)
    manifest, contents = _read_verified(path)
    where = f"{path}/state.json"
    try:
        meta = json.loads(contents["state.json"].decode("utf-8"))
        model_state = load_bytes(contents["model.safetensors"])
        tensors = load_bytes(contents["state.safetensors"])
    except (SafetensorsError, ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: cannot be read ({type(err).__name__}: {err}); resume from an earlier "
                              f"checkpoint with --checkpoint") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("state"), dict):
        raise CheckpointError(f"{where}: expected an object with a 'state' object; the checkpoint is damaged, "
                              f"resume from an earlier checkpoint with --checkpoint")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {meta.get('format')} is not supported by this danlu")
    _check_owner(path, manifest, meta, run_dir, force_foreign)
    try:
        state = join_tensors(meta["state"], tensors)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{where}: refers to tensors state.safetensors does not hold ({err}); the checkpoint "
                              f"is damaged, resume from an earlier checkpoint with --checkpoint") from None
    if str(device) != "cpu":
        model_state = {k: v.to(device) for k, v in model_state.items()}
    return model_state, state


def _check_owner(path: Path, manifest: dict, meta: dict, run_dir, force_foreign: bool) -> None:
    """Refuse a checkpoint that another run wrote (unless forced, with a warning)."""
    if run_dir is None:
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
    expected = integrity.run_id(run_dir) if run_dir is not None else None
    owner = manifest.get("run_id")
    if owner != meta.get("run_id"):
        raise CheckpointError(f"{path}: its manifest.json and state.json name different runs; the checkpoint was "
                              f"edited — resume from another checkpoint with --checkpoint")
    if expected is None or owner == expected:   # no run to compare with (a checkpoint of one's own), or its run
        return
    whose = f"another run ({owner})" if owner else "no run (written before checkpoints carried their run's id)"
    if not force_foreign:
        raise CheckpointError(f"{path}: belongs to {whose}, not to {run_dir}; resume from one of this run's "
                              f"checkpoints, or pass --force-foreign-checkpoint to continue from it anyway")
    integrity.warn(f"{path} belongs to {whose}; continuing {run_dir} from it because of --force-foreign-checkpoint")


def check_state_dict(model: torch.nn.Module, weights: dict, path: Path, fix: str) -> None:
    """Refuse ``weights`` (read from ``path``) unless they are exactly the tensors ``model`` holds,
    each of its shape: a renamed key or another architecture's weights is one line, not a
    traceback from ``load_state_dict``."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    extra = [k for k in weights if k not in own]
    shapes = [f"{k} is {list(weights[k].shape)}, the model needs {list(v.shape)}"
              for k, v in own.items() if k in weights and tuple(weights[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"missing tensor {missing[0]!r}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    if extra:
        problems.append(f"unknown tensor {extra[0]!r}" + (f" and {len(extra) - 1} more" if len(extra) > 1 else ""))
    if shapes:
        problems.append(shapes[0] + (f" (and {len(shapes) - 1} more shapes differ)" if len(shapes) > 1 else ""))
    if problems:
        raise CheckpointError(f"{path}: {'; '.join(problems)}; {fix}")


def prune_checkpoints(ckpt_root: Path, keep_last: int, keep: set[str]) -> None:
    """Delete all but the newest ``keep_last`` checkpoints and those named in ``keep``."""
    done = list_checkpoints(ckpt_root)
    for path in done[:-keep_last] if keep_last else done:
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
    for stale in ckpt_root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


_FOREIGN = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")


def load_weights(path: Path, allow_pickle_format: bool = False, device="cpu") -> dict:
    """Load a state dict from safetensors; other formats only when the user explicitly allows it,
    and then with ``torch.load(weights_only=True)``, which refuses arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        try:
            if integrity.is_checked(path):   # a file a run wrote: loaded only if it matches its checksum
                tensors = load_bytes(integrity.read_bytes(path))
                return {k: v.to(device) for k, v in tensors.items()} if str(device) != "cpu" else tensors
            return load_file(str(path), device=str(device))
        except SafetensorsError as err:
            raise CheckpointError(f"{path}: not a valid safetensors file ({err})") from None
    if path.suffix in _FOREIGN:
        if not allow_pickle_format:
            raise CheckpointError(f"{path}: {path.suffix} files may run code when loaded, and danlu loads "
                                  f"safetensors only; convert it with safetensors.torch.save_file in your own "
                                  f"Python session, or, if you trust the file, load it from Python with "
                                  f"danlu.training._checkpoint.load_weights(path, allow_pickle_format=True) "
                                  f"(tensors only, weights_only=True)")
        try:
            obj = torch.load(str(path), map_location=device, weights_only=True)
        except Exception as err:  # torch raises many types here; all mean "refused"
            raise CheckpointError(f"{path}: refused by the weights-only loader ({type(err).__name__}); "
                                  f"it must hold plain tensors") from None
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise CheckpointError(f"{path}: expected a dict of tensors (a state dict)")
        return obj
    raise CheckpointError(f"{path}: unknown weights format {path.suffix!r}; use .safetensors")


def choose_checkpoint(run_dir: Path, name: str | None) -> Path | None:
    """The checkpoint a resume starts from: ``name`` (a folder in RUN/checkpoints or a path), else
    the newest one; None when the run has none yet. Every run kind resumes through this."""
    root = Path(run_dir) / "checkpoints"
    wait_for_writes(root)
    if name is None:
        found = list_checkpoints(root)
        return found[-1] if found else None
    chosen = root / name if (root / name).is_dir() else Path(name)
    if not chosen.is_dir():
        names = ", ".join(p.name for p in list_checkpoints(root)) or "none"
        if chosen.is_file():
            raise CheckpointError(f"{name}: is a file, expected a checkpoint folder; those in {root}: {names}")
        raise CheckpointError(f"{name}: no such checkpoint in {root}; available: {names}")
    return chosen
