"""Compression: quantization in every scheme (神经网络量化).

>>> from danlu.compress import QuantSpec, quantize, dequantize
>>> q = quantize(layer.weight, QuantSpec(bits=4, scheme="asym", granularity="group", group_size=64))
>>> w = dequantize(q)                                   # float32, the shape of the weight

Weights: 8, 4 or 2 bits; symmetric or asymmetric; per tensor, per output channel or per group;
uniform, logarithmic (power-of-two) or lookup-table (k-means) levels. Activations: dynamic
(per batch) or static (calibrated, min-max or percentile). Mixed precision by layer under a size
budget. Quantization-aware training through the recipe's ``quant:`` section. A finished run
becomes a quantized model folder with ``quantize_run`` (``danlu quantize RUN``), which
``load_quantized`` and ``evaluate_quantized`` read back.

Names are loaded on first use, so that ``QuantSpec`` (and the command line's checks) come
without importing torch.
"""
_LAZY = {  # public name -> private module
    "check_quantizer": "_check",
    "QuantResult": "_export", "evaluate_quantized": "_export", "export_qat": "_export", "quantize_run": "_export",
    "load_quantized_for_run": "_export",
    "fbgemm_available": "_kernels", "int8_matmul": "_kernels",
    "LayerSensitivity": "_mixed", "choose_bits": "_mixed", "format_plan": "_mixed", "measure_sensitivity": "_mixed",
    "OBSERVERS": "_observe", "MinMaxObserver": "_observe", "PercentileObserver": "_observe", "calibrate": "_observe",
    "FakeQuant": "_qat", "QATSchedule": "_qat", "prepare_qat": "_qat", "qat_callbacks": "_qat",
    "set_qat_enabled": "_qat", "strip_qat": "_qat",
    "QuantConv": "_qmodel", "QuantLinear": "_qmodel", "load_quantized": "_qmodel", "model_nbytes": "_qmodel",
    "quantizable_layers": "_qmodel", "quantize_model": "_qmodel", "quantized_layers": "_qmodel",
    "save_quantized": "_qmodel", "set_kernel": "_qmodel",
    "QTensor": "_quantize", "dequantize": "_quantize", "pack_codes": "_quantize", "quantize": "_quantize",
    "unpack_codes": "_quantize",
    "format_report": "_report", "latency_ms": "_report",
    "BITS": "_spec", "GRANULARITIES": "_spec", "METHODS": "_spec", "SCHEMES": "_spec", "QuantSpec": "_spec",
    "all_specs": "_spec",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
