"""What a quantizer does to one weight tensor, as a small immutable value.

A :class:`QuantSpec` names the bits per weight, the scheme (symmetric around zero or
asymmetric with a zero point), the granularity (one set of parameters per tensor, per output
channel, or per group of ``group_size`` consecutive input weights of a channel) and the method
(uniform levels, power-of-two levels, or a k-means lookup table). The same five keys appear in
the recipe's ``quant:`` section and as flags of ``danlu quantize``.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping

from ..errors import UserError, did_you_mean

BITS = (8, 4, 2)
SCHEMES = ("sym", "asym")
GRANULARITIES = ("tensor", "channel", "group")
METHODS = ("uniform", "log", "lut")


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise UserError(f"quantization {name} must be one of {', '.join(map(str, choices))}; "
                        f"got {value!r}{did_you_mean(value, choices)}")


@dataclass(frozen=True)
class QuantSpec:
    """How to quantize a weight tensor; invalid values raise a one-line :class:`UserError`."""

    bits: int = 8
    scheme: str = "sym"
    granularity: str = "channel"
    group_size: int = 64
    method: str = "uniform"

    def __post_init__(self):
        _check_choice("bits", self.bits, BITS)
        _check_choice("scheme", self.scheme, SCHEMES)
        _check_choice("granularity", self.granularity, GRANULARITIES)
        _check_choice("method", self.method, METHODS)
        if not isinstance(self.group_size, int) or self.group_size < 2:
            raise UserError(f"quantization group_size must be an integer >= 2, got {self.group_size!r}")

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any] | None) -> "QuantSpec":
        """From a recipe ``quant`` section or a JSON dict (other keys are ignored)."""
        cfg = dict(cfg or {})
        keys = ("bits", "scheme", "granularity", "group_size", "method")
        return cls(**{k: cfg[k] for k in keys if cfg.get(k) is not None})

    def to_json(self) -> dict:
        return asdict(self)

    def with_bits(self, bits: int) -> "QuantSpec":
        return replace(self, bits=bits)

    @property
    def levels(self) -> int:
        return 2 ** self.bits

    @property
    def integer_kernel_ok(self) -> bool:
        """Weights an int8 x int8 -> int32 matrix product can use: 8-bit uniform codes whose scale
        is constant along the input dimension (so it factors out of the integer sum)."""
        return self.bits == 8 and self.method == "uniform" and self.granularity in ("tensor", "channel")

    @property
    def tag(self) -> str:
        """A short name for folders and tables, e.g. ``int4-sym-group64-uniform``."""
        gran = f"group{self.group_size}" if self.granularity == "group" else self.granularity
        return f"int{self.bits}-{self.scheme}-{gran}-{self.method}"

    def __str__(self) -> str:
        return self.tag


def all_specs(group_size: int = 8) -> list[QuantSpec]:
    """Every combination of bits, scheme, granularity and method (the conformance tests run them all)."""
    return [QuantSpec(b, s, g, group_size, m) for b, s, g, m in itertools.product(BITS, SCHEMES, GRANULARITIES,
                                                                                 METHODS)]
