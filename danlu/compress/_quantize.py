"""Weight quantizers on plain tensors: ``quantize(w, spec) -> QTensor`` and ``dequantize(q)``.

Every granularity is reduced to one picture: the weight is viewed as a matrix of *units*,
one unit per row, and each unit has its own parameters (a scale, a zero point, a codebook).

* ``tensor``:  one unit holding every weight;
* ``channel``: one unit per output channel (the first dimension of a Linear or Conv weight);
* ``group``:   each channel cut into groups of ``group_size`` consecutive input weights; a
  channel whose length is not a multiple is padded with copies of its last weight, which
  changes no group's range, and the padding is dropped again on dequantization.

Methods, for ``b`` bits:

* ``uniform`` sym:  codes in ``[-(2^(b-1)-1), 2^(b-1)-1]``, ``w ~ scale * code``, scale = max|w| / top
  code, zero point 0. The range is symmetric, so ``-w`` gives exactly the negated codes.
* ``uniform`` asym: codes in ``[0, 2^b-1]``, ``w ~ scale * (code - zero_point)``; the range is
  ``[min(w, 0), max(w, 0)]`` so that zero is exactly representable (padding, ReLU zeros).
* ``log``: a sign bit and ``b-1`` bits of exponent: levels ``0`` and ``+-scale * 2^(m - L)`` for
  ``m = 1..L``, ``L = 2^(b-1)-1`` (scale = max|w|). Each weight goes to the nearer of the two
  powers of two around it, so the relative error is at most 1/3 above the smallest level.
  asym first subtracts the unit's mid-range (kept as ``offset``).
* ``lut``: a k-means codebook of ``2^b`` values per unit and the index of the nearest entry.
  sym clusters the magnitudes into ``2^(b-1)`` values and mirrors them (a sign bit + index).

Codes are kept unpacked in memory (one byte each) and packed on disk (:func:`pack_codes`: two
4-bit or four 2-bit codes per byte).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ._kmeans import kmeans_1d
from ._spec import QuantSpec

_TINY = 1e-12


# ---------------------------------------------------------------------------------------------
# Units: the weight as a matrix with one row per set of parameters
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """How a weight of ``shape`` maps to ``units`` rows and back."""

    shape: tuple
    rows: int        # output channels (1 for a 1-D tensor)
    cols: int        # weights per channel
    pad: int         # copies appended to each channel to fill the last group

    @classmethod
    def of(cls, shape, spec: QuantSpec) -> "Layout":
        shape = tuple(int(s) for s in shape)
        rows = shape[0] if len(shape) > 1 else 1
        cols = math.prod(shape) // rows if rows else 0
        pad = (-cols) % spec.group_size if spec.granularity == "group" else 0
        return cls(shape, rows, cols, pad)

    def to_units(self, w: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
        flat = w.reshape(self.rows, self.cols)
        if spec.granularity == "tensor":
            return flat.reshape(1, -1)
        if spec.granularity == "channel":
            return flat
        if self.pad:
            flat = torch.cat([flat, flat[:, -1:].expand(self.rows, self.pad)], dim=1)
        return flat.reshape(-1, spec.group_size)

    def from_units(self, units: torch.Tensor) -> torch.Tensor:
        flat = units.reshape(self.rows, self.cols + self.pad)
        if self.pad:
            flat = flat[:, :self.cols]
        return flat.reshape(self.shape)

    def unit_count(self, spec: QuantSpec) -> int:
        if spec.granularity == "tensor":
            return 1
        if spec.granularity == "channel":
            return self.rows
        return self.rows * (self.cols + self.pad) // spec.group_size


# ---------------------------------------------------------------------------------------------
# The quantized tensor
# ---------------------------------------------------------------------------------------------

@dataclass
class QTensor:
    """Integer codes plus what turns them back into numbers.

    ``codes`` is (units, unit length): int8 for symmetric uniform codes, uint8 otherwise.
    ``scale`` (units, 1) float32 for uniform and log; ``zero_point`` (units, 1) uint8 for
    asymmetric uniform; ``offset`` (units, 1) float32 for asymmetric log (the mid-range that
    was subtracted); ``codebook`` (units, 2^bits) float32 for lut.
    """

    spec: QuantSpec
    shape: tuple
    codes: torch.Tensor
    scale: torch.Tensor | None = None
    zero_point: torch.Tensor | None = None
    offset: torch.Tensor | None = None
    codebook: torch.Tensor | None = None
    layout: Layout = field(init=False)

    def __post_init__(self):
        self.shape = tuple(int(s) for s in self.shape)
        self.layout = Layout.of(self.shape, self.spec)

    def dequantize(self) -> torch.Tensor:
        return dequantize(self)

    def parameters(self) -> dict[str, torch.Tensor]:
        """The tensors besides the codes (only those this method uses)."""
        named = {"scale": self.scale, "zero_point": self.zero_point, "offset": self.offset,
                 "codebook": self.codebook}
        return {k: v for k, v in named.items() if v is not None}

    def tensors(self) -> dict[str, torch.Tensor]:
        """Everything to store: the packed codes and the parameters."""
        return {"codes": pack_codes(stored_codes(self.codes, self.spec), self.spec.bits), **self.parameters()}

    @classmethod
    def from_tensors(cls, spec: QuantSpec, shape, tensors: dict) -> "QTensor":
        layout = Layout.of(shape, spec)
        n = layout.rows * (layout.cols + layout.pad)
        if n == 0:
            return cls(spec, shape, torch.zeros(0, 0, dtype=torch.uint8))
        codes = unpack_codes(tensors["codes"], spec.bits, n).reshape(layout.unit_count(spec), -1)
        return cls(spec, shape, memory_codes(codes, spec), tensors.get("scale"), tensors.get("zero_point"),
                   tensors.get("offset"), tensors.get("codebook"))

    @classmethod
    def empty(cls, spec: QuantSpec, shape) -> "QTensor":
        """Zeros of the right shapes and dtypes: a shell that a state dict then fills."""
        layout = Layout.of(shape, spec)
        units = layout.unit_count(spec)
        length = layout.rows * (layout.cols + layout.pad) // max(units, 1)
        sym_uniform = spec.method == "uniform" and spec.scheme == "sym"
        codes = torch.zeros(units, length, dtype=torch.int8 if sym_uniform else torch.uint8)
        column = torch.zeros(units, 1)
        return cls(spec, shape, codes,
                   scale=column.clone() if spec.method in ("uniform", "log") else None,
                   zero_point=column.to(torch.uint8) if spec.method == "uniform" and spec.scheme == "asym" else None,
                   offset=column.clone() if spec.method == "log" and spec.scheme == "asym" else None,
                   codebook=torch.zeros(units, spec.levels) if spec.method == "lut" else None)

    def nbytes(self) -> int:
        """Bytes on disk (packed codes and parameters)."""
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    def to(self, device) -> "QTensor":
        moved = {k: v.to(device) for k, v in self.parameters().items()}
        return QTensor(self.spec, self.shape, self.codes.to(device), **moved)


# ---------------------------------------------------------------------------------------------
# quantize / dequantize
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def quantize(w: torch.Tensor, spec: QuantSpec) -> QTensor:
    """Quantize ``w`` (any shape; dim 0 is the output channel) as ``spec`` says."""
    layout = Layout.of(w.shape, spec)
    units = layout.to_units(w.detach().float(), spec)
    if units.numel() == 0:
        return QTensor(spec, w.shape, torch.zeros(0, 0, dtype=torch.uint8))
    if spec.method == "uniform":
        return QTensor(spec, w.shape, *_uniform(units, spec))
    if spec.method == "log":
        codes, scale, offset = _log(units, spec)
        return QTensor(spec, w.shape, codes, scale, offset=offset)
    codes, codebook = _lut(units, spec)
    return QTensor(spec, w.shape, codes, codebook=codebook)


def dequantize(q: QTensor) -> torch.Tensor:
    """The float32 tensor the codes stand for, in the original shape."""
    if q.codes.numel() == 0:
        return torch.zeros(q.shape, device=q.codes.device)
    return q.layout.from_units(_unit_values(q))


def _unit_values(q: QTensor) -> torch.Tensor:
    spec, codes = q.spec, q.codes
    if spec.method == "uniform":
        shifted = codes.float() if q.zero_point is None else codes.float() - q.zero_point.float()
        return shifted * q.scale
    if spec.method == "log":
        top = _log_top(spec.bits)
        sign_bit = 1 << (spec.bits - 1)
        c = codes.long()
        magnitude = c & (sign_bit - 1)
        values = torch.where(magnitude > 0, torch.exp2((magnitude - top).float()), torch.zeros((), device=c.device))
        values = torch.where((c & sign_bit) > 0, -values, values) * q.scale
        return values if q.offset is None else values + q.offset
    return q.codebook.gather(1, codes.long())


def _uniform(units: torch.Tensor, spec: QuantSpec):
    if spec.scheme == "sym":
        top = 2 ** (spec.bits - 1) - 1
        amax = units.abs().amax(dim=1, keepdim=True)
        scale = torch.where(amax > _TINY, amax / top, torch.ones_like(amax))  # an all-zero unit: codes 0
        codes = torch.round(units / scale).clamp_(-top, top).to(torch.int8)
        return codes, scale, None
    top = 2 ** spec.bits - 1
    lo = units.amin(dim=1, keepdim=True).clamp(max=0)
    hi = units.amax(dim=1, keepdim=True).clamp(min=0)
    scale = torch.where(hi - lo > _TINY, (hi - lo) / top, torch.ones_like(hi))
    zero_point = torch.round(-lo / scale).clamp_(0, top)
    codes = (torch.round(units / scale) + zero_point).clamp_(0, top).to(torch.uint8)
    return codes, scale, zero_point.to(torch.uint8)


def _log_top(bits: int) -> int:
    """Number of non-zero magnitude levels of a b-bit log code."""
    return 2 ** (bits - 1) - 1


def _log(units: torch.Tensor, spec: QuantSpec):
    offset = None
    if spec.scheme == "asym":
        offset = (units.amax(dim=1, keepdim=True) + units.amin(dim=1, keepdim=True)) / 2
        units = units - offset
    top = _log_top(spec.bits)
    amax = units.abs().amax(dim=1, keepdim=True)
    scale = torch.where(amax > _TINY, amax, torch.ones_like(amax))
    r = units.abs() / scale                                   # in [0, 1]
    e = torch.floor(torch.log2(r.clamp_min(1e-30)))           # r lies in [2^e, 2^(e+1))
    low = torch.where(e + top >= 1, torch.exp2(e), torch.zeros_like(e))   # below level 1 the floor is 0
    nearer_high = (r - low) > (torch.exp2(e + 1) - r)
    magnitude = (e + top + nearer_high.float()).clamp_(0, top)
    magnitude = torch.where(r > 0, magnitude, torch.zeros_like(magnitude))
    codes = magnitude.to(torch.uint8) | ((units < 0) & (magnitude > 0)).to(torch.uint8) << (spec.bits - 1)
    return codes, scale, offset


def _lut(units: torch.Tensor, spec: QuantSpec):
    if spec.scheme == "asym":
        codebook, codes = kmeans_1d(units, spec.levels)
        return codes.to(torch.uint8), codebook
    half = spec.levels // 2
    magnitudes, index = kmeans_1d(units.abs(), half)
    negative = (units < 0).to(torch.int64)
    codes = index + negative * half
    return codes.to(torch.uint8), torch.cat([magnitudes, -magnitudes], dim=1)


# ---------------------------------------------------------------------------------------------
# Codes on disk: unsigned, packed
# ---------------------------------------------------------------------------------------------

def stored_codes(codes: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """Codes as unsigned ``[0, 2^bits)`` (symmetric uniform codes are shifted by 2^(bits-1))."""
    if codes.dtype == torch.int8:
        return (codes.to(torch.int16) + 2 ** (spec.bits - 1)).to(torch.uint8)
    return codes.to(torch.uint8)


def memory_codes(stored: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """Inverse of :func:`stored_codes`."""
    if spec.method == "uniform" and spec.scheme == "sym":
        return (stored.to(torch.int16) - 2 ** (spec.bits - 1)).to(torch.int8)
    return stored.to(torch.uint8)


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """``8 // bits`` unsigned codes per byte, the first in the lowest bits; 1-D uint8."""
    flat = codes.reshape(-1).to(torch.uint8)
    per = 8 // bits
    if per == 1:
        return flat.clone()
    pad = (-flat.numel()) % per
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    slots = flat.reshape(-1, per)
    packed = torch.zeros(slots.shape[0], dtype=torch.uint8, device=flat.device)
    for i in range(per):
        packed |= slots[:, i] << (bits * i)
    return packed


def unpack_codes(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """The first ``n`` codes of :func:`pack_codes` output."""
    packed = packed.reshape(-1).to(torch.uint8)
    per = 8 // bits
    if per == 1:
        return packed[:n].clone()
    mask = (1 << bits) - 1
    slots = torch.stack([(packed >> (bits * i)) & mask for i in range(per)], dim=1)
    return slots.reshape(-1)[:n]
