"""The probe: one forward pass per epoch over the first training rows, shared by the monitors.

The fit monitor scores the first ``_GAP_ROWS`` training rows for the generalisation gap (in the
epochs where the score can matter) and the divergence monitor looks for dead ReLU units on the
first ``_DEAD_ROWS`` of them. Both ask here, and the pass runs once for the weights in place: the
first to ask starts it, covering the rows the other said it will want (``want_rows``).

In evaluation mode the network maps each row on its own (batch normalisation uses its running
statistics, dropout is off), so the ReLU outputs of the first 256 rows of a 1024-row pass are
those of a 256-row pass: slicing them gives the same dead units. Where that does not hold, the
dead units get a pass over their own rows, as before: a batch normalisation without running
statistics (it normalises over the rows of the pass), or a ReLU whose output does not have one
row per input row (a sequence-first layout).

The pass is kept on the state (``state._diagnose_probe``) for the weights it saw: the key holds
the epoch, the step and each parameter's and buffer's storage and version counter, so weights
swapped in place (an average put in for validation, a rollback) call for a fresh pass.
"""
from __future__ import annotations

import torch

_ATTR = "_diagnose_probe"
_CHUNK = 1024   # model_outputs' batch size


def relu_layers(model) -> list:
    """(name, module) of the model's ReLU layers, in module order."""
    return [(name or "relu", m) for name, m in model.named_modules() if isinstance(m, (torch.nn.ReLU, torch.nn.ReLU6))]


class _Probe:
    def __init__(self, key):
        self.key = key
        self.rows = 0           # rows the pass covered (0: no pass yet)
        self.outputs = None     # the model's outputs on them (model_outputs)
        self.alive = None       # {ReLU layer: units non-zero on some of the first alive_rows rows}
        self.alive_rows = 0
        self.wants = {}         # {id(monitor): rows(state)}


def _weights(model) -> tuple:
    """Each parameter's and buffer's storage and version counter: an in-place change (an
    optimizer step, ``copy_``, ``load_state_dict``) moves the counter."""
    return tuple((t.data_ptr(), t._version) for t in (*model.parameters(), *model.buffers()))


def _key(state) -> tuple:
    return (state.epoch, state.step, id(state.splits["train"][0]), _weights(state.model))


def _probe(state) -> _Probe:
    key = _key(state)
    probe = getattr(state, _ATTR, None)
    if probe is None or probe.key != key:
        wants = probe.wants if probe is not None else {}
        probe = _Probe(key)
        probe.wants.update(wants)
        setattr(state, _ATTR, probe)
    return probe


def want_rows(state, owner, rows) -> None:
    """``rows(state)``: how many training rows ``owner`` will score this epoch (0: none), asked
    when another monitor starts the pass, so that it covers them too."""
    probe = getattr(state, _ATTR, None)
    if probe is None:
        probe = _Probe(None)
        setattr(state, _ATTR, probe)
    probe.wants[id(owner)] = rows


def _wanted(state, probe: _Probe) -> int:
    return max((rows(state) for rows in probe.wants.values()), default=0)


def drop(state) -> None:
    """Forget the pass (the weights were replaced)."""
    probe = getattr(state, _ATTR, None)
    if probe is not None:
        probe.key, probe.rows, probe.outputs, probe.alive = None, 0, None, None


def train_outputs(state, rows: int) -> torch.Tensor:
    """``model_outputs(state.model, X[:rows])`` on the training rows, from the shared pass."""
    probe = _probe(state)
    n = min(rows, len(state.splits["train"][0]))
    if probe.outputs is None or probe.rows != n:
        _run(state, probe, n, alive_rows=0)
    return probe.outputs


def train_alive(state, rows: int) -> dict[str, torch.Tensor] | None:
    """Per ReLU layer, which units (output positions) are non-zero for some of the first ``rows``
    training rows in evaluation mode, as a pass over exactly those rows sees them (the first call
    of each layer with a tensor of two or more dimensions); empty without ReLU layers."""
    probe = _probe(state)
    X = state.splits["train"][0]
    n = min(rows, len(X))
    if probe.alive is not None and probe.alive_rows == n:
        return probe.alive
    total = max(n, min(_wanted(state, probe), len(X))) if _rows_apart(state.model) else n
    _run(state, probe, total, alive_rows=n)
    if probe.alive is None:   # could not be sliced from the whole pass: a pass of its own
        own = _Probe(None)
        _run(state, own, n, alive_rows=n)
        return own.alive
    return probe.alive


def _rows_apart(model) -> bool:
    """No layer the probe knows to mix rows in evaluation mode: a batch normalisation without
    running statistics normalises over the rows of the pass."""
    return not any(isinstance(m, torch.nn.modules.batchnorm._NormBase) and m.running_mean is None
                   and not isinstance(m, torch.nn.modules.instancenorm._InstanceNorm) for m in model.modules())


def _run(state, probe: _Probe, rows: int, alive_rows: int) -> None:
    from ..training import model_outputs

    X = state.splits["train"][0][:rows]
    layers = relu_layers(state.model) if alive_rows else []
    alive: dict[str, torch.Tensor] = {}
    sliceable = True
    first = min(len(X), _CHUNK)   # the rows of model_outputs' first call

    def hook(name):
        def seen(module, inputs, output):
            nonlocal sliceable
            if name in alive or not isinstance(output, torch.Tensor) or output.dim() < 2:
                return   # the first call with a tensor only
            if first > alive_rows and output.shape[0] != first:
                sliceable = False
            alive[name] = (output.detach()[:alive_rows].flatten(1) != 0).any(0)
        return seen

    handles = [m.register_forward_hook(hook(name)) for name, m in layers]
    try:
        with torch.no_grad():
            out = model_outputs(state.model, X)
    finally:
        for h in handles:
            h.remove()
    probe.rows, probe.outputs = len(X), out
    if alive_rows:
        probe.alive = alive if sliceable else None
        probe.alive_rows = alive_rows


# -- the validation pass's own outputs ---------------------------------------------------------

class ValidationOutputs:
    """The outputs of the validation pass's first call (its first ``_CHUNK`` rows), caught by a
    forward hook on the model between ``start`` (at validation start) and ``outputs`` (at its
    end), for a monitor that would otherwise run the very same call again.

    They stand in for ``model_outputs(model, X[:rows])`` only where that call would compute the
    same thing: the same model in evaluation mode, the same input (the first rows of the
    validation tensor, unchanged), the same weights (storage and version counters, so weights
    swapped in or out since count as other weights) and no autocast. Otherwise ``outputs`` is None
    and the caller runs the pass itself.
    """

    def __init__(self):
        self._handle = None
        self._seen = None    # (weights, input version, outputs)

    def start(self, state) -> None:
        self.stop()
        self._seen = None
        X = _validation_rows(state)
        if X is None:
            return
        rows = min(len(X), _CHUNK)

        def seen(module, inputs, output):
            if self._seen is not None or module.training or not inputs or not isinstance(output, torch.Tensor):
                return
            x = inputs[0]
            if not isinstance(x, torch.Tensor) or x.data_ptr() != X.data_ptr() or x.dtype != X.dtype \
                    or x.device != X.device or x.shape != (rows, *X.shape[1:]) or x.stride() != X.stride():
                return
            if not _autocast_on(output.device.type):
                self._seen = (_weights(module), X._version, output.detach())

        self._handle = state.model.register_forward_hook(seen)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def outputs(self, state, rows: int) -> torch.Tensor | None:
        """``model_outputs(state.model, X[:rows])`` of the validation rows as the validation pass
        computed it, or None where it cannot stand in."""
        self.stop()
        seen, self._seen = self._seen, None
        X = _validation_rows(state)
        if seen is None or X is None:
            return None
        weights, version, out = seen
        if min(rows, len(X)) != len(out) or X._version != version or _weights(state.model) != weights:
            return None
        return out.float() if out.dtype in (torch.bfloat16, torch.float16) else out   # as model_outputs


def _validation_rows(state):
    X = ((getattr(state, "splits", None) or {}).get("validation") or (None,))[0]
    return X if isinstance(X, torch.Tensor) and len(X) > 0 else None


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:   # torch before 2.4
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()
