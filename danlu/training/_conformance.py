"""``check_callback``: does a callback keep danlu's callback contract? (as scikit-learn's
``check_estimator``, run over every built-in callback by tests/training/test_callback_conformance.py)

It runs the callback through a tiny real training run (150 rows of iris, 2 epochs, checkpoints
every epoch, the diagnosis monitors off so that a monitor under test is the only one) and checks,
in order:

1. ``hooks``      every hook has a signature danlu calls (``on_<event>(state)`` or the Keras form),
                  and every hook it defines is called in the run without a TypeError;
2. ``name``       a callback with ``state_dict()`` / ``load_state_dict()`` has a non-empty
                  string ``name`` that no other callback of the run has (its state is saved
                  under it);
3. ``state_dict`` its state after the run goes through the checkpoint's encoding (JSON with
                  tensors in safetensors) and, loaded into a fresh copy, comes back equal;
4. ``resume``     a run killed after its first epoch's checkpoint and resumed with a fresh copy
                  ends with the same metrics history, bit for bit, as the run that never stopped.

A failed check raises a :class:`~danlu.errors.UserError` naming the callback and the check.
The callback given is never used itself: each run gets a deep copy of it as it was given
(what cannot be copied, such as an output stream, is shared).
"""
from __future__ import annotations

import copy
import functools
import json
import math
import tempfile
from pathlib import Path

from ..errors import UserError
from ._state import _DANLU, _KERAS, Event, read_hooks

TINY_RECIPE = {
    "name": "check-callback",
    "seed": 0,
    "data": {"source": "sklearn", "name": "iris"},
    "model": {"kind": "mlp"},
    "train": {"epochs": 2, "batch_size": 32},
    "checkpoint": {"every_epochs": 1, "keep_last": 3},
    "output": {"progress": "none"},
    "monitors": {"gradients": {"enabled": False}, "divergence": {"enabled": False}, "fit": {"enabled": False},
                 "convergence": {"enabled": False}},
}


class _BadState(Exception):
    """A state_dict() that a checkpoint cannot hold, found while the run wrote one."""


class _Killed(Exception):
    """Stands for a kill -9 right after the first epoch's checkpoint was written."""


class _KillAfterFirstEpoch:
    """Last in the list, so the checkpoint of epoch 1 is on disk when it fires."""

    def on_epoch_end(self, state) -> None:
        if state.epoch == 1:
            raise _Killed()


def check_callback(callback, *, recipe: dict | None = None, workdir: str | Path | None = None) -> dict:
    """Check ``callback`` (an instance, as it would be passed in ``callbacks=[...]``); returns the
    facts checked (``hooks``: the hooks called and how often; ``stateful``; ``epochs``).

    ``recipe``: keys merged over the tiny recipe (e.g. a ``quant`` section for a QAT callback);
    ``workdir``: where the runs go (a temporary folder, removed afterwards, by default)."""
    label = type(callback).__name__

    def fail(check: str, why) -> UserError:
        return UserError(f"check_callback({label}): check {check!r} failed: {why}")

    try:
        hooks = read_hooks(callback)
    except UserError as err:
        raise fail("hooks", err) from None
    stateful = hasattr(callback, "state_dict") and hasattr(callback, "load_state_dict")
    if stateful and not (isinstance(getattr(callback, "name", None), str) and callback.name):
        raise fail("name", "it has state_dict() and load_state_dict() but no non-empty string name "
                           "(its state is saved under it in every checkpoint)")
    spec = _merge(copy.deepcopy(TINY_RECIPE), recipe or {})
    with tempfile.TemporaryDirectory(prefix="danlu-check-", dir=workdir) as tmp:
        root = Path(tmp)
        spec["output"]["runs_dir"] = str(root)
        whole, calls = _recording_copy(callback)
        whole_rows = _train(spec, root / "whole", [whole], fail)
        never_called = sorted(attr for attr, n in calls.items() if n == 0)
        if never_called:
            raise fail("hooks", f"{', '.join(never_called)} never called in a 2-epoch run; is it spelt as "
                                f"on_<event> for one of {', '.join(e.value for e in Event)}?")
        if stateful:
            _check_round_trip(callback, whole, fail)
        _check_resume(callback, spec, root, whole_rows, fail)
    return {"hooks": dict(calls), "stateful": stateful, "events": sorted({e.value for e, _ in hooks}),
            "epochs": len(whole_rows)}


def _merge(base: dict, over: dict) -> dict:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _recording_copy(callback):
    """A deep copy of ``callback`` whose hooks count their calls (same signatures, so the
    callback list reads them as it would the originals)."""
    cb = _fresh(callback)
    calls = {}
    for attr in sorted(set(_DANLU) | set(_KERAS)):
        method = getattr(cb, attr, None)
        if not callable(method):
            continue
        calls[attr] = 0

        def counted(*args, _method=method, _attr=attr, **kwargs):
            calls[_attr] += 1
            return _method(*args, **kwargs)

        try:
            setattr(cb, attr, functools.wraps(method)(counted))
        except (AttributeError, TypeError):   # slots or a read-only attribute: not counted
            del calls[attr]
    if callable(getattr(cb, "state_dict", None)):
        saved_by = cb.state_dict

        def checked_state_dict():
            state = saved_by()
            try:
                _encode(state)
            except (TypeError, ValueError) as err:
                raise _BadState(f"{type(err).__name__}: {err}") from None
            return state

        try:
            cb.state_dict = checked_state_dict
        except (AttributeError, TypeError):
            pass
    return cb, calls


def _encode(state):
    """``state`` as a checkpoint holds it and reads it back: JSON, with its tensors in safetensors."""
    from safetensors.torch import load as load_bytes
    from safetensors.torch import save as save_bytes

    from ._checkpoint import join_tensors, split_tensors

    tensors = {}
    text = json.dumps(split_tensors(state, tensors), allow_nan=True)
    return join_tensors(json.loads(text), load_bytes(save_bytes(tensors)) if tensors else {})


def _fresh(callback):
    """A deep copy, sharing what cannot be copied (an output stream, a client)."""
    memo = {}
    for value in getattr(callback, "__dict__", {}).values():
        try:
            copy.deepcopy(value)
        except Exception:  # noqa: BLE001 — whatever refuses to be copied is shared instead
            memo[id(value)] = value
    return copy.deepcopy(callback, memo)


def _train(spec: dict, run_dir: Path, callbacks: list, fail) -> list[dict]:
    import danlu

    try:
        danlu.train(spec, run_dir, progress="none", callbacks=callbacks)
    except UserError as err:
        text = str(err)
        check = "compute_loss" if "compute_loss" in text else "name" if "named" in text or "no name" in text else "run"
        raise fail(check, err) from None
    except _BadState as err:
        raise fail("state_dict", f"its state_dict() cannot be saved in a checkpoint as JSON with tensors in "
                                 f"safetensors ({err})") from None
    except TypeError as err:   # a hook that does not take what danlu passes it
        raise fail("hooks", f"TypeError in the run: {err}") from None
    except _Killed:
        raise
    except Exception as err:  # noqa: BLE001 — the callback's bug, named as the check that found it
        raise fail("run", f"{type(err).__name__}: {err}") from None
    return _history(run_dir)


def _history(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _check_round_trip(callback, trained, fail) -> None:
    saved = trained.state_dict()
    try:
        restored = _encode(saved)
    except (TypeError, ValueError) as err:
        raise fail("state_dict", f"its state_dict() cannot be saved as JSON with tensors in safetensors "
                                 f"({type(err).__name__}: {err})") from None
    fresh = _fresh(callback)
    try:
        fresh.load_state_dict(restored)
    except Exception as err:  # noqa: BLE001 — any failure here is the callback's, reported as the check
        raise fail("state_dict", f"load_state_dict() of its own saved state raised {type(err).__name__}: {err}") \
            from None
    where = _difference(saved, fresh.state_dict())
    if where is not None:
        raise fail("state_dict", f"state_dict() -> checkpoint -> load_state_dict() -> state_dict() differs at {where}")


def _check_resume(callback, spec: dict, root: Path, whole_rows: list[dict], fail) -> None:
    import danlu

    killed = root / "killed"
    try:
        _train(spec, killed, [_fresh(callback), _KillAfterFirstEpoch()], fail)
    except _Killed:
        pass
    else:
        raise fail("resume", "the run meant to be killed after epoch 1 was not (did the callback stop it?)")
    try:
        danlu.resume(killed, progress="none", callbacks=[_fresh(callback)])
    except UserError as err:
        raise fail("resume", err) from None
    except Exception as err:  # noqa: BLE001
        raise fail("resume", f"{type(err).__name__}: {err}") from None
    where = _difference(whole_rows, _history(killed))
    if where is not None:
        raise fail("resume", f"killed after epoch 1 and resumed, the metrics history differs from the run that "
                             f"never stopped at {where}")


def _difference(a, b, where: str = "state") -> str | None:
    """The first place where ``a`` and ``b`` differ (tensors exactly, NaN equal to NaN), or None."""
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(a.cpu(), b.cpu()))
        return None if same else where
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{where} (keys {sorted(map(str, set(a) ^ set(b)))})"
        for key in a:
            found = _difference(a[key], b[key], f"{where}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{where} (length {len(a)} vs {len(b)})"
        for i, (x, y) in enumerate(zip(a, b)):
            found = _difference(x, y, f"{where}[{i}]")
            if found:
                return found
        return None
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return None
    return None if a == b else f"{where} ({a!r} vs {b!r})"
