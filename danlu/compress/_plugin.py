"""The compression capability's registrations (no torch): quantization-aware training as callbacks
of the run (the fake-quantized model, the start epoch, the integer export at the end) and the
loader of `danlu quantize` folders for --quantized. danlu._plugins imports this module."""
from __future__ import annotations

from . import _schema  # noqa: F401  (registers this capability's recipe sections)

from ..training._extend import register_callbacks, register_quantized_loader


def _qat_enabled(recipe) -> bool:
    quant = recipe.get("quant")
    return bool(quant and quant.get("enabled"))


register_callbacks("quant", "danlu.compress._qat:qat_run_callbacks", when=_qat_enabled, order=20)
register_quantized_loader("danlu.compress._export:load_quantized_for_run")
