"""Folding batch normalisation into the quantized layer before it.

At inference a BatchNorm after a Linear or Conv is a fixed affine map per output channel:
``y = c * (W x + b) + s`` with ``c = gamma / sqrt(var + eps)`` and ``s = beta - mean * c``. Folded,
the network loses one layer per block (less to store, less to run).

Folding is done *after* quantization, on the quantization parameters, and is then exact: each
unit (a channel, or a group within a channel) has its own scale, and multiplying a channel's
dequantized values by ``c`` is the same as multiplying its scales (log: scale and offset; lut:
codebook) by ``c``. The codes stay as they are — so a model trained with QAT keeps exactly the
grid it was trained on. Two details keep it exact everywhere:

* a negative ``c`` is taken as ``|c|`` with mirrored codes (sym: ``-code``; asym:
  ``top - code`` with ``top - zero_point``; log: the sign bit flipped), so scales stay positive;
* a per-tensor layer first becomes per-channel with the same codes (its one scale copied to
  every channel), since the channels now need different scales.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ._qmodel import QuantConv, QuantLinear, set_submodule
from ._quantize import QTensor

_PAIRS = ((QuantLinear, nn.BatchNorm1d), (QuantConv, nn.BatchNorm2d), (QuantConv, nn.BatchNorm1d),
          (nn.Linear, nn.BatchNorm1d), (nn.Conv2d, nn.BatchNorm2d), (nn.Conv1d, nn.BatchNorm1d))


def foldable_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(layer, batch norm) names where the batch norm directly follows the layer in a Sequential
    and normalises its output channels with running statistics."""
    pairs = []
    for parent_name, parent in model.named_modules():
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.named_children())
        for (name, layer), (bn_name, bn) in zip(children, children[1:]):
            if not any(isinstance(layer, a) and type(bn) is b for a, b in _PAIRS):
                continue
            if bn.running_mean is None or bn.num_features != _out_channels(layer):
                continue
            prefix = f"{parent_name}." if parent_name else ""
            pairs.append((prefix + name, prefix + bn_name))
    return pairs


def _out_channels(layer) -> int:
    return getattr(layer, "out_features", None) or getattr(layer, "out_channels", None) or layer.weight_shape[0]


def bn_affine(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(c, s) with bn(z) == c * z + s per channel, in eval mode."""
    inv = torch.rsqrt(bn.running_var.float() + bn.eps)
    gamma = bn.weight.detach().float() if bn.weight is not None else torch.ones_like(inv)
    beta = bn.bias.detach().float() if bn.bias is not None else torch.zeros_like(inv)
    c = gamma * inv
    return c, beta - bn.running_mean.float() * c


@torch.no_grad()
def fold_batch_norms(qmodel: nn.Module, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Fold each batch norm into the quantized layer before it (in place); returns the pairs folded."""
    done = []
    for layer_name, bn_name in pairs:
        layer = qmodel.get_submodule(layer_name)
        if not isinstance(layer, QuantLinear | QuantConv):
            continue
        c, s = bn_affine(qmodel.get_submodule(bn_name))
        _fold_affine(layer, c.to(layer.codes.device), s.to(layer.codes.device))
        set_submodule(qmodel, bn_name, nn.Identity())
        done.append((layer_name, bn_name))
    return done


def _fold_affine(layer, c: torch.Tensor, s: torch.Tensor) -> None:
    """layer(x) becomes c * layer(x) + s (c, s per output channel)."""
    q = layer.qweight()
    if q.spec.granularity == "tensor":
        q = _per_channel(q)
    per_row = q.codes.shape[0] // q.layout.rows
    row_c = c.repeat_interleave(per_row).unsqueeze(1)            # one factor per unit
    if q.codebook is not None:
        q.codebook = q.codebook * row_c                          # a codebook takes any sign as it is
    else:
        q = _mirror(q, row_c < 0)
        q.scale = q.scale * row_c.abs()
        if q.offset is not None:
            q.offset = q.offset * row_c
    layer.spec = q.spec
    _replace_weight(layer, q)
    bias = s if layer.bias is None else c * layer.bias + s
    layer.register_buffer("bias", bias.float())


def _per_channel(q: QTensor) -> QTensor:
    """The same codes, one unit per channel (the single scale / codebook copied to each)."""
    spec = dataclasses.replace(q.spec, granularity="channel")
    rows = q.layout.rows

    def spread(t):
        return None if t is None else t.expand(rows, t.shape[1]).clone()

    return QTensor(spec, q.shape, q.codes.reshape(rows, -1), spread(q.scale), spread(q.zero_point),
                   spread(q.offset), spread(q.codebook))


def _mirror(q: QTensor, negative: torch.Tensor) -> QTensor:
    """Codes and parameters of the negated values, in the rows flagged ``negative`` (units, 1)."""
    if not bool(negative.any()):
        return q
    spec, codes = q.spec, q.codes
    if spec.method == "log":
        sign_bit = 1 << (spec.bits - 1)
        flipped = torch.where((codes & (sign_bit - 1)) > 0, codes ^ sign_bit, codes)
        q.codes = torch.where(negative, flipped, codes)
        return q
    if spec.scheme == "sym":
        q.codes = torch.where(negative, -codes, codes)
        return q
    top = 2 ** spec.bits - 1
    q.codes = torch.where(negative, (top - codes.to(torch.int16)).to(torch.uint8), codes)
    q.zero_point = torch.where(negative, (top - q.zero_point.to(torch.int16)).to(torch.uint8), q.zero_point)
    return q


def _replace_weight(layer, q: QTensor) -> None:
    """Swap the weight buffers, whose shapes may have changed (per tensor -> per channel)."""
    layer.codes = q.codes
    for name in ("scale", "zero_point", "offset", "codebook"):
        if name in layer._buffers:
            layer.register_buffer(name, getattr(q, name))
    if hasattr(layer, "_int_cache"):
        layer._int_cache = {}
