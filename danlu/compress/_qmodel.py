"""Quantized layers, the model transform that puts them in, and the folder a quantized model
lives in.

:class:`QuantLinear` and :class:`QuantConv` hold integer codes and their parameters as buffers
(no float weight). How a layer computes depends on its activation mode:

* ``none``: weight-only quantization; the weight is dequantized on the fly for each call;
* ``dynamic``: activations are quantized to 8 bits per batch at inference;
* ``static``: activations use a fixed range measured on calibration batches.

With quantized activations and 8-bit uniform weights (per tensor or per channel), a Linear runs
an int8 x int8 -> int32 matrix product (see ``_kernels``) and scales the int32 sums once. Other
weights (4/2 bits, log, lut, group-wise) and convolutions round the activation to its 8-bit
grid and dequantize the weight on the fly.

A quantized model folder holds ``quantized.safetensors`` (packed codes, scales, zero points,
codebooks and the float tensors left as they were) and ``quant.json`` (the layers, their specs,
the plan and what is needed to rebuild the network).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from . import _kernels
from ._observe import act_codes, act_qparams, batch_qparams, fake_quant_act
from ._quantize import QTensor, dequantize, memory_codes, pack_codes, quantize, stored_codes, unpack_codes
from ._spec import QuantSpec

FORMAT = 1
WEIGHTS_FILE = "quantized.safetensors"
META_FILE = "quant.json"
ACT_MODES = ("none", "dynamic", "static")
KERNELS = ("auto", "int_mm", "fbgemm", "dequant")
_QUANTIZABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


class _QuantLayer(nn.Module):
    """Buffers of a quantized weight plus the activation mode; shared by Linear and Conv."""

    def __init__(self, spec: QuantSpec, weight_shape, bias: bool, act: str, act_scheme: str):
        super().__init__()
        if act not in ACT_MODES:
            raise ValueError(f"act must be one of {ACT_MODES}, got {act!r}")
        self.spec = spec
        self.weight_shape = tuple(int(s) for s in weight_shape)
        self.act = act
        self.act_scheme = act_scheme
        self.kernel = "auto"
        shell = QTensor.empty(spec, self.weight_shape)
        self.register_buffer("codes", shell.codes)
        for name, tensor in shell.parameters().items():
            self.register_buffer(name, tensor)
        self.register_buffer("bias", torch.zeros(self.weight_shape[0]) if bias else None)
        if act == "static":
            self.register_buffer("act_scale", torch.ones(()))
            self.register_buffer("act_zero_point", torch.zeros((), dtype=torch.int32))

    def set_weight(self, q: QTensor) -> None:
        self.codes = q.codes.to(self.codes.device)
        for name, tensor in q.parameters().items():
            setattr(self, name, tensor.to(self.codes.device))

    def qweight(self) -> QTensor:
        names = ("scale", "zero_point", "offset", "codebook")
        return QTensor(self.spec, self.weight_shape, self.codes, **{n: getattr(self, n, None) for n in names})

    def weight(self) -> torch.Tensor:
        return dequantize(self.qweight())

    def set_act_range(self, lo: float, hi: float) -> None:
        scale, zero_point = act_qparams(lo, hi, self.act_scheme)
        self.act_scale = scale.to(self.codes.device)
        self.act_zero_point = zero_point.to(self.codes.device)

    def act_params(self, x: torch.Tensor):
        if self.act == "static":
            return self.act_scale, self.act_zero_point
        return batch_qparams(x, self.act_scheme)

    def quant_input(self, x: torch.Tensor) -> torch.Tensor:
        """The input rounded to its 8-bit grid (identity without activation quantization)."""
        if self.act == "none":
            return x
        return fake_quant_act(x, *self.act_params(x), self.act_scheme)

    def nbytes(self) -> int:
        """Bytes on disk: packed codes, parameters, bias and activation parameters."""
        extra = [t for t in (self.bias, getattr(self, "act_scale", None), getattr(self, "act_zero_point", None))
                 if t is not None]
        return self.qweight().nbytes() + sum(t.numel() * t.element_size() for t in extra)

    def config(self) -> dict:
        return {"spec": self.spec.to_json(), "weight_shape": list(self.weight_shape), "bias": self.bias is not None,
                "act": self.act, "act_scheme": self.act_scheme}

    def extra_repr(self) -> str:
        return f"{self.spec.tag}, shape={self.weight_shape}, act={self.act}"


class QuantLinear(_QuantLayer):
    """A Linear layer with quantized weights."""

    kind = "linear"

    def __init__(self, in_features: int, out_features: int, spec: QuantSpec, bias: bool = True, act: str = "none",
                 act_scheme: str = "asym"):
        super().__init__(spec, (out_features, in_features), bias, act, act_scheme)
        self.in_features, self.out_features = in_features, out_features
        self._int_cache: dict = {}

    @classmethod
    def from_float(cls, layer: nn.Linear, spec: QuantSpec, act: str = "none", act_scheme: str = "asym"):
        new = cls(layer.in_features, layer.out_features, spec, layer.bias is not None, act, act_scheme)
        new.to(layer.weight.device)
        new.set_weight(quantize(layer.weight, spec))
        if layer.bias is not None:
            new.bias = layer.bias.detach().clone().float()
        return new

    def _load_from_state_dict(self, *args, **kwargs):
        self._int_cache = {}  # derived from the codes: stale once they change
        super()._load_from_state_dict(*args, **kwargs)

    def set_weight(self, q: QTensor) -> None:
        super().set_weight(q)
        self._int_cache = {}

    def pick_kernel(self, x: torch.Tensor) -> str:
        if self.act == "none" or not self.spec.integer_kernel_ok:
            return "dequant"
        if self.kernel == "fbgemm" and self.act != "dynamic":
            return "int_mm"  # fbgemm quantizes the input itself, per batch: it cannot take a calibrated range
        if self.kernel != "auto":
            return self.kernel
        if self.act == "dynamic" and x.device.type == "cpu" and _kernels.fbgemm_available():
            return "fbgemm"
        return "int_mm"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.pick_kernel(x)
        if kernel == "dequant":
            return F.linear(self.quant_input(x), self.weight().to(x.dtype), self.bias)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if kernel == "fbgemm":
            out = _kernels.fbgemm_linear(x2.float(), self._cached("fbgemm", x.device))
        else:
            out = self._int_mm_forward(x2)
        return out.reshape(*lead, self.out_features).to(x.dtype)

    # -- the integer path ----------------------------------------------------------------------

    def _int8_weights(self):
        """Weight codes in the int8 domain (asym codes 0..255 shifted by -128) and their zero point."""
        codes = self.codes.reshape(self.out_features, self.in_features)
        if self.codes.dtype == torch.int8:
            return codes, None
        zero = (self.zero_point.reshape(-1).to(torch.int32) - 128).expand(self.out_features)
        return (codes.to(torch.int16) - 128).to(torch.int8), zero

    def _cached(self, what: str, device):
        key = (what, str(device))
        if key not in self._int_cache:
            codes, zero = self._int8_weights()
            scale = self.scale.reshape(-1).float().expand(self.out_features)
            if what == "fbgemm":
                self._int_cache[key] = _kernels.fbgemm_pack(codes, scale, zero, self.bias)
            else:
                wt = codes.t().contiguous().to(device)
                self._int_cache[key] = (wt, wt.sum(0, dtype=torch.int32), scale.to(device),
                                        None if zero is None else zero.to(device))
        return self._int_cache[key]

    def _int_mm_forward(self, x: torch.Tensor) -> torch.Tensor:
        """sum_k (x_k - zx)(w_k - zw) = x.w - zw sum(x) - zx sum(w) + K zx zw, all in int32."""
        wt, wsum, w_scale, w_zero = self._cached("int_mm", x.device)
        a_scale, a_zero = self.act_params(x)
        codes = act_codes(x, a_scale, a_zero, self.act_scheme)
        if self.act_scheme == "asym":             # 0..255 into the int8 domain
            codes, a_zero = codes - 128, a_zero - 128
        acc = _kernels.int8_matmul(codes.to(torch.int8), wt)
        if w_zero is not None:
            acc = acc - codes.sum(1, keepdim=True, dtype=torch.int32) * w_zero
        if self.act_scheme == "asym":
            acc = acc - a_zero * wsum
            if w_zero is not None:
                acc = acc + self.in_features * a_zero * w_zero
        out = acc.float() * (a_scale * w_scale)
        return out if self.bias is None else out + self.bias


class QuantConv(_QuantLayer):
    """A Conv1d / Conv2d with quantized weights, dequantized on the fly."""

    kind = "conv"

    def __init__(self, dims: int, in_channels: int, out_channels: int, kernel_size, spec: QuantSpec, stride=1,
                 padding=0, dilation=1, groups: int = 1, bias: bool = True, act: str = "none",
                 act_scheme: str = "asym"):
        kernel_size = _tuple(kernel_size, dims)
        super().__init__(spec, (out_channels, in_channels // groups, *kernel_size), bias, act, act_scheme)
        self.dims = dims
        self.stride, self.dilation = _tuple(stride, dims), _tuple(dilation, dims)
        self.padding = padding if isinstance(padding, str) else _tuple(padding, dims)
        self.groups = groups
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size

    @classmethod
    def from_float(cls, layer, spec: QuantSpec, act: str = "none", act_scheme: str = "asym"):
        new = cls(len(layer.kernel_size), layer.in_channels, layer.out_channels, layer.kernel_size, spec,
                  layer.stride, layer.padding, layer.dilation, layer.groups, layer.bias is not None, act, act_scheme)
        new.to(layer.weight.device)
        new.set_weight(quantize(layer.weight, spec))
        if layer.bias is not None:
            new.bias = layer.bias.detach().clone().float()
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = F.conv1d if self.dims == 1 else F.conv2d
        return conv(self.quant_input(x), self.weight().to(x.dtype), self.bias, self.stride, self.padding,
                    self.dilation, self.groups)

    def config(self) -> dict:
        return {**super().config(), "dims": self.dims, "in_channels": self.in_channels,
                "out_channels": self.out_channels, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride), "dilation": list(self.dilation), "groups": self.groups,
                "padding": self.padding if isinstance(self.padding, str) else list(self.padding)}


def _tuple(value, dims: int) -> tuple:
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),) * dims


# ---------------------------------------------------------------------------------------------
# The model transform
# ---------------------------------------------------------------------------------------------

def quantizable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Layers whose weights the transform quantizes: plain Linear, Conv1d and Conv2d (zero padding).

    Exact types only: subclasses such as attention's output projection are read by their
    owner as raw weights, so replacing them would break it. Embeddings and recurrent layers stay float.
    """
    found = {}
    for name, module in model.named_modules():
        if type(module) not in _QUANTIZABLE:
            continue
        if isinstance(module, nn.Conv1d | nn.Conv2d) and module.padding_mode != "zeros":
            continue
        found[name] = module
    return found


def set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def quantize_layer(layer: nn.Module, spec: QuantSpec, act: str = "none", act_scheme: str = "asym") -> _QuantLayer:
    if isinstance(layer, nn.Linear):
        return QuantLinear.from_float(layer, spec, act, act_scheme)
    return QuantConv.from_float(layer, spec, act, act_scheme)


def quantize_model(model: nn.Module, plan: Mapping[str, QuantSpec | None], *, act: str = "none",
                   act_scheme: str = "asym", act_ranges: Mapping[str, tuple] | None = None) -> nn.Module:
    """A copy of ``model`` whose layers named in ``plan`` are quantized (``None``: left float).

    ``act``: ``none`` (weights only), ``dynamic`` or ``static`` (``act_ranges`` gives each layer's
    calibrated input range).
    """
    if act == "static" and not act_ranges:
        raise ValueError("static activation quantization needs act_ranges from calibration")
    qmodel = copy.deepcopy(model)
    for name, spec in plan.items():
        if spec is None:
            continue
        layer = quantize_layer(qmodel.get_submodule(name), spec, act, act_scheme)
        if act == "static":
            layer.set_act_range(*act_ranges[name])
        set_submodule(qmodel, name, layer)
    return qmodel.eval()


def quantized_layers(model: nn.Module) -> dict[str, _QuantLayer]:
    return {name: m for name, m in model.named_modules() if isinstance(m, _QuantLayer)}


def set_kernel(model: nn.Module, kernel: str) -> None:
    """Force one kernel (``int_mm``, ``fbgemm``, ``dequant``) or ``auto`` in every quantized Linear."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    for layer in quantized_layers(model).values():
        layer.kernel = kernel


def model_nbytes(model: nn.Module) -> int:
    """Bytes the saved model takes: quantized layers packed, every other tensor as it is."""
    qlayers = quantized_layers(model)
    total = sum(layer.nbytes() for layer in qlayers.values())
    for key, tensor in model.state_dict().items():
        owner = key.rpartition(".")[0]
        if owner not in qlayers:
            total += tensor.numel() * tensor.element_size()
    return total


# ---------------------------------------------------------------------------------------------
# The folder
# ---------------------------------------------------------------------------------------------

def save_quantized(model: nn.Module, out_dir: str | Path, meta: dict) -> Path:
    """Write ``model`` to ``out_dir``: packed tensors and ``quant.json``.

    ``meta`` must hold ``model`` (the run's model.json: loss_kind, info, model, target_scaled);
    anything else in it (plan, source run) is kept.
    """
    from .. import _integrity
    from ..training._checkpoint import atomic_save_tensors, atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _integrity.begin(out)   # the folder keeps its files' checksums; loading checks them
    qlayers = quantized_layers(model)
    tensors = {}
    for key, tensor in model.state_dict().items():
        owner, _, leaf = key.rpartition(".")
        if owner in qlayers and leaf == "codes":
            tensor = pack_codes(stored_codes(tensor, qlayers[owner].spec), qlayers[owner].spec.bits)
        tensors[key] = tensor
    atomic_save_tensors(out / WEIGHTS_FILE, tensors)
    layers = {name: {"kind": layer.kind, **layer.config()} for name, layer in qlayers.items()}
    doc = {"format": FORMAT, **meta, "layers": layers}
    atomic_write_text(out / META_FILE, json.dumps(doc, indent=1))
    return out


def read_meta(qdir: str | Path) -> dict:
    qdir = Path(qdir)
    if not (qdir / META_FILE).is_file() or not (qdir / WEIGHTS_FILE).is_file():
        raise UserError(f"{qdir}: not a quantized model folder (needs {META_FILE} and {WEIGHTS_FILE}); "
                        f"make one with `danlu quantize RUN`")
    from .. import _integrity

    meta = _integrity.read_json(qdir / META_FILE)   # and the weights through load_weights: both checked
    if meta.get("format") != FORMAT:
        raise UserError(f"{qdir}: quantized model format {meta.get('format')!r} is not {FORMAT}; "
                        f"quantize the run again with this danlu")
    return meta


def load_quantized(qdir: str | Path, device="cpu") -> nn.Module:
    """The quantized model saved in ``qdir``, in eval mode, usable with ``model_outputs``."""
    from ..data import DataInfo
    from ..models import build_model
    from ..training._checkpoint import load_weights
    from ..training._factory import output_dim
    from ..training._target import TargetScaled

    qdir = Path(qdir)
    meta = read_meta(qdir)
    about = meta["model"]
    info = DataInfo.from_json(about["info"])
    model = build_model(about["model"], info, output_dim(about["loss_kind"], info))
    if about.get("target_scaled"):
        model = TargetScaled(model, [0.0] * info.n_targets, [1.0] * info.n_targets)  # buffers come from the file
    for name, cfg in meta["layers"].items():
        set_submodule(model, name, _shell(cfg))
    for name in meta.get("folded", []):
        set_submodule(model, name, nn.Identity())     # folded into the layer before it
    tensors = load_weights(qdir / WEIGHTS_FILE)
    for name, cfg in meta["layers"].items():
        spec, key = QuantSpec.from_cfg(cfg["spec"]), f"{name}.codes"
        shell = model.get_submodule(name)
        tensors[key] = memory_codes(unpack_codes(tensors[key], spec.bits, shell.codes.numel()), spec) \
            .reshape(shell.codes.shape)
    model.load_state_dict(tensors)
    return model.to(device).eval()


def _shell(cfg: dict) -> _QuantLayer:
    spec = QuantSpec.from_cfg(cfg["spec"])
    if cfg["kind"] == "linear":
        out_features, in_features = cfg["weight_shape"]
        return QuantLinear(in_features, out_features, spec, cfg["bias"], cfg["act"], cfg["act_scheme"])
    padding = cfg["padding"] if isinstance(cfg["padding"], str) else tuple(cfg["padding"])
    return QuantConv(cfg["dims"], cfg["in_channels"], cfg["out_channels"], tuple(cfg["kernel_size"]), spec,
                     tuple(cfg["stride"]), padding, tuple(cfg["dilation"]), cfg["groups"], cfg["bias"], cfg["act"],
                     cfg["act_scheme"])
