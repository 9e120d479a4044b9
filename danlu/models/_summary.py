"""A model's layers, output shapes, parameters and memory, like Keras' ``model.summary()`` and torchinfo.

>>> from danlu.models._summary import summarize
>>> print(summarize(model, info.input_shape, batch=32).table())

One forward pass of a batch of zeros (no gradient, eval mode, the model's own device) with a hook
on every layer: the leaf modules, and any module that holds parameters of its own beside its
children (a LoRA wrapper around its base layer). Rows follow the order in which the forward
calls them; a layer called twice is listed twice, its parameters counted once; layers the forward
never calls come last, so the rows' parameters always add up to the model's total.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import UserError


@dataclass
class Layer:
    """One row: where the layer sits in the model, what it is, what it returns, what it holds."""

    name: str
    type: str
    output_shape: list | None   # a list of ints; a list of such lists for tuple outputs; None: not called
    params: int                 # parameters first counted on this row (a shared one counts once)
    trainable: int              # of which requires_grad
    output_bytes: int = 0


@dataclass
class Summary:
    model_type: str
    input_shape: tuple
    batch: int
    layers: list[Layer] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    param_bytes: int = 0
    buffer_bytes: int = 0
    input_bytes: int = 0
    activation_bytes: int = 0   # the outputs of the listed layers for one forward pass of the batch

    @property
    def frozen_params(self) -> int:
        return self.total_params - self.trainable_params

    @property
    def total_bytes(self) -> int:
        """What one forward pass of the batch holds: input, parameters, buffers and layer outputs
        (torchinfo's "estimated total size" without its doubling for the backward pass)."""
        return self.input_bytes + self.param_bytes + self.buffer_bytes + self.activation_bytes

    def to_json(self) -> dict:
        return {"model": self.model_type, "input_shape": list(self.input_shape), "batch": self.batch,
                "layers": [asdict(layer) for layer in self.layers],
                "total_params": self.total_params, "trainable_params": self.trainable_params,
                "frozen_params": self.frozen_params,
                "memory_bytes": {"parameters": self.param_bytes, "buffers": self.buffer_bytes,
                                 "input": self.input_bytes, "activations": self.activation_bytes,
                                 "total": self.total_bytes}}

    def table(self) -> str:
        """Fixed-width ASCII: one line per layer, then the totals and the memory."""
        header = ["layer", "type", "output shape", "params", "trainable"]
        body = [[_ascii(layer.name), _ascii(layer.type), _shape_text(layer.output_shape),
                 f"{layer.params:,}", f"{layer.trainable:,}"] for layer in self.layers]
        widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]
        lines = [f"{self.model_type} on input {_shape_text([self.batch, *self.input_shape])}",
                 _row(header, widths), "  ".join("-" * w for w in widths)]
        lines += [_row(row, widths) for row in body]
        lines += ["",
                  f"total params: {self.total_params:,} (trainable {self.trainable_params:,}, "
                  f"frozen {self.frozen_params:,})",
                  f"parameters: {format_bytes(self.param_bytes)}, buffers: {format_bytes(self.buffer_bytes)}",
                  f"input (batch {self.batch}): {format_bytes(self.input_bytes)}, "
                  f"activations of one forward pass: {format_bytes(self.activation_bytes)}",
                  f"estimated total: {format_bytes(self.total_bytes)}"]
        return "\n".join(lines)


def summarize(model, input_shape, batch: int = 1, dtype=None) -> Summary:
    """Run one forward pass of ``batch`` zeros of ``input_shape`` (without the batch axis) through
    ``model`` and return its :class:`Summary`. ``dtype``: the input's (default: the dtype of the
    model's first floating parameter, else float32). The model's training mode is restored."""
    import torch

    if batch < 1:
        raise UserError(f"--batch must be >= 1, got {batch}")
    params = _unique(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    if dtype is None:
        dtype = next((p.dtype for p in params if p.is_floating_point()), torch.float32)
    x = torch.zeros((batch, *input_shape), dtype=dtype, device=device)
    layers = _forward_rows(model, x)
    summary = Summary(type(model).__name__, tuple(int(s) for s in input_shape), batch, layers)
    summary.total_params = sum(p.numel() for p in params)
    summary.trainable_params = sum(p.numel() for p in params if p.requires_grad)
    summary.param_bytes = sum(p.numel() * p.element_size() for p in params)
    summary.buffer_bytes = sum(b.numel() * b.element_size() for b in _unique(model.buffers()))
    summary.input_bytes = x.numel() * x.element_size()
    summary.activation_bytes = sum(layer.output_bytes for layer in layers)
    return summary


def _forward_rows(model, x) -> list[Layer]:
    import torch

    listed = [(name, m) for name, m in model.named_modules() if _is_layer(m)]
    rows: list[Layer] = []
    seen: set[int] = set()   # parameters already counted on an earlier row

    def own_counts(module) -> tuple[int, int]:
        fresh = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in fresh)
        return sum(p.numel() for p in fresh), sum(p.numel() for p in fresh if p.requires_grad)

    def pre_hook(name):
        def hook(mod, args):
            rows.append(Layer(name or "(model)", type(mod).__name__, None, *own_counts(mod)))
            open_rows.setdefault(id(mod), []).append(rows[-1])
        return hook

    def post_hook(mod, args, output):
        row = open_rows[id(mod)].pop()
        row.output_shape = _shapes(output)
        row.output_bytes = _bytes(output)

    open_rows: dict[int, list[Layer]] = {}
    handles = []
    for name, module in listed:
        handles.append(module.register_forward_pre_hook(pre_hook(name)))
        handles.append(module.register_forward_hook(post_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        what = str(err).strip().splitlines()
        raise UserError(f"{type(model).__name__}: a forward pass of zeros shaped {list(x.shape)} failed "
                        f"({type(err).__name__}: {what[0][:200] if what else ''}); "
                        f"check the input shape the model expects") from None
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    called = set(open_rows)   # ids of the modules whose pre-hook ran
    for name, module in listed:   # never called by the forward: listed last, shape unknown
        if id(module) not in called:
            rows.append(Layer(name or "(model)", type(module).__name__, None, *own_counts(module)))
    return rows


def _is_layer(module) -> bool:
    """A leaf module, or one with parameters of its own beside its children; an empty
    container (Sequential, ModuleList, ModuleDict) is not a layer."""
    import torch.nn as nn

    if list(module.parameters(recurse=False)):
        return True
    return not list(module.children()) and not isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict))


def _unique(tensors) -> list:
    out, ids = [], set()
    for t in tensors:
        if id(t) not in ids:
            ids.add(id(t))
            out.append(t)
    return out


def _tensors(output):
    import torch

    if isinstance(output, torch.Tensor):
        yield output
    elif isinstance(output, (list, tuple)):
        for item in output:
            yield from _tensors(item)
    elif isinstance(output, dict):
        for item in output.values():
            yield from _tensors(item)


def _shapes(output):
    import torch

    if isinstance(output, torch.Tensor):
        return [int(s) for s in output.shape]
    if isinstance(output, (list, tuple)):
        return [_shapes(item) for item in output]
    if isinstance(output, dict):
        return [_shapes(item) for item in output.values()]
    return []


def _bytes(output) -> int:
    return sum(t.numel() * t.element_size() for t in _tensors(output))


def _shape_text(shape) -> str:
    if shape is None:
        return "(not called)"
    if shape and all(isinstance(s, int) for s in shape):
        return "[" + ", ".join(str(s) for s in shape) + "]"
    if not shape:
        return "-"
    return "(" + ", ".join(_shape_text(s) for s in shape) + ")"


def format_bytes(n: int) -> str:
    """Binary units, as torchinfo and Keras report sizes: 1536 -> '1.5 KiB'."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _row(cells: list[str], widths: list[int]) -> str:
    # names and types left-aligned, counts right-aligned (as danlu's metric tables)
    left = [cell.ljust(w) for cell, w in zip(cells[:3], widths[:3])]
    right = [cell.rjust(w) for cell, w in zip(cells[3:], widths[3:])]
    return "  ".join(left + right).rstrip()


def _ascii(text) -> str:
    return str(text).encode("ascii", "backslashreplace").decode("ascii")
