"""Integer matrix products that PyTorch really runs in integer arithmetic.

* ``torch._int_mm``: int8 x int8 -> int32, on CPU (any shape; a plain, unblocked kernel, slow
  for large matrices) and on CUDA (tensor cores; needs more than 16 rows and sizes that are
  multiples of 8 — other shapes fall back to an exact float64 product of the codes).
* fbgemm / x86 ``quantized::linear_dynamic``: PyTorch's own dynamic int8 linear on CPU (the
  activation is quantized per batch inside the kernel, then a blocked, vectorised int8 x int8
  -> int32 product). It takes weights as a packed object made from a "quantized tensor", a
  tensor type that PyTorch has deprecated: we build it from our own int8 codes and scales at
  load time (nothing about it is stored) and fall back to ``_int_mm`` wherever it is missing.
  We do not use ``torch.ao.quantization``.
"""
from __future__ import annotations

import warnings

import torch

FBGEMM_ENGINES = ("x86", "fbgemm")


def int8_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a`` (M, K) int8 times ``b`` (K, N) int8, exactly, as int32."""
    if a.device.type == "cpu" or _cuda_int_mm_ok(a, b):
        return torch._int_mm(a, b)
    # float64 holds every int8 x int8 sum of fewer than 2^38 terms exactly
    return (a.double() @ b.double()).to(torch.int32)


def _cuda_int_mm_ok(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.device.type == "cuda" and a.shape[0] > 16 and a.shape[1] % 8 == 0 and b.shape[1] % 8 == 0


def fbgemm_available() -> bool:
    """Whether this torch build has the CPU dynamic int8 linear (x86 / fbgemm engine)."""
    try:
        return (torch.backends.quantized.engine in FBGEMM_ENGINES
                and hasattr(torch.ops.quantized, "linear_dynamic")
                and hasattr(torch.ops.quantized, "linear_prepack"))
    except (AttributeError, RuntimeError):
        return False


def fbgemm_pack(codes: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None,
                bias: torch.Tensor | None):
    """Pack int8 weight codes (out, in) with one scale (and zero point) per output channel,
    in the int8 domain (codes in [-128, 127]); returns the object ``linear_dynamic`` takes."""
    zp = torch.zeros(codes.shape[0], dtype=torch.long) if zero_point is None else zero_point.long().reshape(-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the quantized-tensor constructors warn of their deprecation
        qweight = torch._make_per_channel_quantized_tensor(codes.cpu().contiguous(), scale.reshape(-1).double().cpu(),
                                                           zp.cpu(), 0)
        return torch.ops.quantized.linear_prepack(qweight, None if bias is None else bias.float().cpu())


def fbgemm_linear(x: torch.Tensor, packed) -> torch.Tensor:
    # reduce_range: 7-bit activations, as PyTorch itself uses on x86, so that the int16
    # intermediate sums of the AVX2 kernel cannot saturate
    return torch.ops.quantized.linear_dynamic(x, packed, True)
