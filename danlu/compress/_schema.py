"""The ``quant:`` section of a recipe (quantization-aware training), registered by danlu.compress."""
from __future__ import annotations

from ..recipe import NUM, Field, Rule, Section, _f, register_section, sizes, union  # noqa: F401

# danlu/compress — quantization-aware training (QAT); `danlu quantize RUN` reads the same keys
QUANT = Section({
    "enabled": _f(bool, False, nullable=False,
                  doc="quantization-aware training: train with fake-quantized weights and a straight-through "
                      "estimator, so the model learns to live on the quantization grid"),
    "bits": _f(int, 8, choices=(8, 4, 2), nullable=False, doc="bits per weight"),
    "scheme": _f(str, "sym", choices=("sym", "asym"), nullable=False,
                 doc="sym: range centred on zero; asym: [min, max] with a zero point"),
    "granularity": _f(str, "channel", choices=("tensor", "channel", "group"), nullable=False,
                      doc="one scale per tensor, per output channel, or per group of group_size inputs"),
    "group_size": _f(int, 64, min=2, nullable=False, doc="consecutive input weights sharing a scale (group)"),
    "method": _f(str, "uniform", choices=("uniform", "log", "lut"), nullable=False,
                 doc="uniform levels, power-of-two levels (log), or a k-means codebook (lut)"),
    "start_epoch": _f(int, 0, min=0, nullable=False,
                      doc="epochs of plain float training before fake quantization starts"),
    "export": _f(bool, True, nullable=False,
                 doc="write the quantized model to RUN/quantized-qat/ when training ends"),
}, doc="quantization-aware training (训练感知量化); danlu quantize RUN exports the result")


register_section("quant", QUANT)
