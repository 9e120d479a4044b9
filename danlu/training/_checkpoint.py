"""Checkpoints: safetensors for tensors, JSON for the rest, written atomically, checked on load.

A checkpoint is a folder ``checkpoints/step-00000123/`` holding

* ``model.safetensors``   the model's state dict;
* ``state.safetensors``   every other tensor (optimizer moments, RNG states, best weights ...);
* ``state.json``          position, schedule, callbacks, history, with tensors referenced by key;
* ``manifest.json``       SHA-256 of the three files above, checked before anything is read.

It is first written to ``.tmp-step-...`` (each file fsynced), then renamed into place, so a kill
at any moment leaves either the previous set of checkpoints or the new one, never half of one.
Nothing is ever unpickled.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError as SafetensorsError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError

FORMAT = 1
CKPT_PREFIX = "step-"
_TENSOR = "__tensor__"
_ITEMS = "__items__"      # a dict whose keys are not all strings (optimizer state uses ints)
_TUPLE = "__tuple__"


# ---------------------------------------------------------------------------------------------
# Nested state <-> (JSON, tensors)
# ---------------------------------------------------------------------------------------------

def split_tensors(obj, tensors: dict, prefix: str = "t"):
    """Replace every tensor leaf of ``obj`` by a reference and collect it in ``tensors``."""
    if isinstance(obj, torch.Tensor):
        key = f"{prefix}"
        tensors[key] = obj.detach().to("cpu", copy=True).contiguous()
        return {_TENSOR: key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: split_tensors(v, tensors, f"{prefix}.{k}") for k, v in obj.items()}
        return {_ITEMS: [[k, split_tensors(v, tensors, f"{prefix}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {_TUPLE: [split_tensors(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [split_tensors(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
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

def _fsync_dir(path: Path) -> None:
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


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    """Write a small text file so that readers see the old or the new content, never a mix."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def save_tensors(path: Path, tensors: dict, metadata: dict | None = None) -> None:
    """safetensors refuses shared or non-contiguous storage, so every tensor is an own copy."""
    clean = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    save_file(clean, str(path), metadata=metadata)


def atomic_save_tensors(path: Path, tensors: dict) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    save_tensors(tmp, tensors)
    _fsync_file(tmp)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Checkpoint folders
# ---------------------------------------------------------------------------------------------

def checkpoint_name(step: int) -> str:
    return f"{CKPT_PREFIX}{step:08d}"


def write_checkpoint(ckpt_root: Path, step: int, model_state: dict, state: dict) -> Path:
    """Write one checkpoint atomically; returns its folder."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / checkpoint_name(step)
    tmp = ckpt_root / f".tmp-{checkpoint_name(step)}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    tensors: dict = {}
    meta = split_tensors(state, tensors)
    save_tensors(tmp / "model.safetensors", model_state)
    save_tensors(tmp / "state.safetensors", tensors)
    (tmp / "state.json").write_text(json.dumps({"format": FORMAT, "state": meta}), encoding="utf-8")
    files = ["model.safetensors", "state.safetensors", "state.json"]
    for name in files:
        _fsync_file(tmp / name)
        _kill_point("after_file")
    manifest = {"format": FORMAT, "step": step, "sha256": {n: sha256(tmp / n) for n in files}}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    _fsync_file(tmp / "manifest.json")
    _fsync_dir(tmp)
    _kill_point("before_rename")
    if final.exists():  # the same step written again after a resume: replace it whole
        old = ckpt_root / f".old-{checkpoint_name(step)}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(ckpt_root)
    return final


def _kill_point(where: str) -> None:
    """Fault injection for the resume tests: DANLU_KILL_AT=before_rename:3 kills the process
    (SIGKILL, no clean-up) at the 3rd time that point is reached."""
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
    """Finished checkpoint folders, oldest first (temporary folders of killed writes are ignored)."""
    if not ckpt_root.is_dir():
        return []
    found = [p for p in ckpt_root.iterdir() if p.is_dir() and p.name.startswith(CKPT_PREFIX)]
    return sorted(found, key=lambda p: p.name)


def verify_checkpoint(path: Path) -> dict:
    """Check the manifest and every checksum; return the manifest or raise CheckpointError."""
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise CheckpointError(f"{path}: not a danlu checkpoint (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        sums = manifest["sha256"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise CheckpointError(f"{path}/manifest.json is damaged; resume from an earlier checkpoint "
                              f"with --checkpoint") from None
    for name, expected in sums.items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"{path}: {name} is missing; resume from an earlier checkpoint with --checkpoint")
        if sha256(f) != expected:
            raise CheckpointError(f"{path}: {name} does not match its checksum (truncated or modified); "
                                  f"resume from an earlier checkpoint with --checkpoint")
    return manifest


def read_checkpoint(path: Path, device="cpu") -> tuple[dict, dict]:
    """Return (model state dict, state) of a verified checkpoint."""
    path = Path(path)
    verify_checkpoint(path)
    try:
        model_state = load_file(str(path / "model.safetensors"), device=str(device))
        tensors = load_file(str(path / "state.safetensors"), device="cpu")
        meta = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (SafetensorsError, ValueError, OSError) as err:
        raise CheckpointError(f"{path}: cannot be read ({err}); resume from an earlier checkpoint") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {meta.get('format')} is not supported by this danlu")
    return model_state, join_tensors(meta["state"], tensors)


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
            return load_file(str(path), device=str(device))
        except SafetensorsError as err:
            raise CheckpointError(f"{path}: not a valid safetensors file ({err})") from None
    if path.suffix in _FOREIGN:
        if not allow_pickle_format:
            raise CheckpointError(f"{path}: {path.suffix} files may run code when loaded; convert to "
                                  f".safetensors, or pass --allow-torch-format to load tensors only "
                                  f"(weights_only=True)")
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
