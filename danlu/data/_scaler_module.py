"""A fitted :class:`~danlu.data._pipeline.Scaler` as a small torch module, for graphs that must
scale raw inputs themselves (an exported ONNX model, an ensemble's members).

The statistics are buffers shaped to broadcast over a batch ``(N, *shape)`` along the scaler's
axis (features of a table, channels of an image), so the module exports and moves with ``.to``.
"""
from __future__ import annotations

from torch import nn


class ScalerModule(nn.Module):
    """``(x - shift) / div``, or ``x`` as it is when the scaler's mode is ``none``."""

    def __init__(self, scaler, shape: tuple[int, ...]):
        super().__init__()
        self.scale = scaler.mode != "none"
        view = [1] * (len(shape) + 1)
        view[scaler.axis] = -1
        self.register_buffer("shift", scaler.shift.float().reshape(view))
        self.register_buffer("div", scaler.div.float().reshape(view))

    def forward(self, x):
        return (x - self.shift) / self.div if self.scale else x
