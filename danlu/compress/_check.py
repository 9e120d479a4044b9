"""``check_quantizer(spec)``: the properties every quantization scheme must have.

Run over every combination of bits, scheme, granularity and method by the tests (the
conformance check of this plugin kind). Raises :class:`QuantizerError` naming the broken property
(a check that holds under ``python -O`` too: no bare ``assert``).
"""
from __future__ import annotations

import torch

from ._quantize import QTensor, dequantize, quantize, stored_codes
from ._spec import QuantSpec


class QuantizerError(AssertionError):
    """A quantization scheme breaks one of the properties every scheme must have."""


def _require(ok, message: str) -> None:
    if not ok:
        raise QuantizerError(message)

# Shapes a quantizer meets: a Linear weight, a conv weight, a row that does not divide into groups,
# a single channel.
SHAPES = ((12, 20), (6, 3, 3, 3), (5, 13), (1, 40))


def check_quantizer(spec: QuantSpec, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for shape in SHAPES:
        w = torch.randn(shape, generator=gen)
        _check_tensor(spec, w)
    _check_tensor(spec, torch.zeros(4, 16), exact=True)
    _check_tensor(spec, torch.rand(4, 16, generator=gen) + 1.0)     # all positive


def _check_tensor(spec: QuantSpec, w: torch.Tensor, exact: bool = False) -> None:
    where = f"{spec.tag} on shape {tuple(w.shape)}"
    q = quantize(w, spec)
    _require(isinstance(q, QTensor), f"{where}: quantize must return a QTensor")
    units = q.layout.unit_count(spec)
    _require(q.codes.shape[0] == units, f"{where}: {q.codes.shape[0]} code rows for {units} units")
    for name, t in q.parameters().items():
        _require(t.shape[0] == units, f"{where}: {name} has {t.shape[0]} rows for {units} units")

    stored = stored_codes(q.codes, spec).long()
    _require(int(stored.min()) >= 0 and int(stored.max()) < spec.levels, f"{where}: codes outside [0, 2^bits)")

    d = dequantize(q)
    _require(d.shape == w.shape and d.dtype == torch.float32, f"{where}: dequantize gives {tuple(d.shape)} {d.dtype}")
    _require(torch.isfinite(d).all(), f"{where}: dequantized values are not finite")
    if exact:
        _require(torch.equal(d, w), f"{where}: a tensor of zeros must come back as zeros")
    # No value may leave the span of the data by more than one step of the finest grid (a rounded
    # zero point may shift the top level by half a step). The span holds zero; a symmetric one is
    # [-max|w|, max|w|] (a log level may round a value up to the next power of two within it).
    lo, hi = min(float(w.min()), 0.0), max(float(w.max()), 0.0)
    if spec.scheme == "sym":
        lo, hi = -max(-lo, hi), max(-lo, hi)
    slack = (hi - lo) / (spec.levels - 1) + 1e-6
    _require(float(d.min()) >= lo - slack and float(d.max()) <= hi + slack, f"{where}: dequantized values leave the range")
    _require(float((d - w).abs().max()) <= hi - lo + slack, f"{where}: error larger than the data's range")

    again = quantize(w, spec)
    _require(torch.equal(dequantize(again), d), f"{where}: quantizing twice gives different results")

    tensors = q.tensors()
    packed = tensors["codes"]
    _require(packed.dtype == torch.uint8, f"{where}: packed codes must be uint8")
    expected = -(-q.codes.numel() * spec.bits // 8)
    _require(packed.numel() == expected, f"{where}: {packed.numel()} packed bytes, expected {expected}")
    back = QTensor.from_tensors(spec, w.shape, tensors)
    _require(torch.equal(dequantize(back), d), f"{where}: pack / unpack round trip changes the values")
