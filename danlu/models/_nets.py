"""The built-in networks. Plain ``nn.Module``s with torch's default initialisation, so the
initial weights depend only on the torch seed."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ._inputs import FeatureInput

ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
}

# The CNN head sees at most this many positions per side; larger feature maps are average-pooled
# down first. (AvgPool2d rather than AdaptiveAvgPool2d: the latter has no deterministic CUDA
# backward, and train.deterministic is on by default.)
HEAD_GRID = 4


def dense_stack(width: int, hidden: Sequence[int], activation: str, dropout: float,
                batch_norm: bool) -> tuple[nn.Sequential, int]:
    """Linear -> (BatchNorm) -> activation -> (Dropout) per hidden size; returns the stack and its width."""
    layers: list[nn.Module] = []
    for size in hidden:
        # A bias right before batch norm is cancelled by the mean subtraction: leave it out.
        layers.append(nn.Linear(width, size, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(size))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    return nn.Sequential(*layers), width


class MLP(nn.Module):
    """Input stage, hidden dense layers, linear output. With no hidden layers it is the linear
    model used by ``linear``, ``logistic`` and ``perceptron`` (they differ only in the loss)."""

    def __init__(self, input_shape: Sequence[int], out_dim: int, hidden: Sequence[int] = (),
                 activation: str = "relu", dropout: float = 0.0, batch_norm: bool = False,
                 categorical: Sequence[tuple[int, int]] = (), embedding_dim: int | None = None):
        super().__init__()
        self.input = FeatureInput(input_shape, categorical, embedding_dim)
        self.body, width = dense_stack(self.input.out_features, hidden, activation, dropout, batch_norm)
        self.head = nn.Linear(width, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.input(x)))


class CNN(nn.Module):
    """Conv blocks (conv -> batch norm -> activation -> pool), then flatten and a dense head.

    Convolutions are padded to keep the size; a block skips pooling once the map is a single
    row or column. Maps larger than ``HEAD_GRID`` per side are average-pooled down to it before
    flattening, so the head stays small for big images while small images (8x8 digits) keep
    their spatial layout — global average pooling would throw that away.
    """

    def __init__(self, input_shape: Sequence[int], out_dim: int, channels: Sequence[int] = (32, 64),
                 kernel_size: int = 3, pool: str = "max", batch_norm: bool = True, dropout: float = 0.25,
                 hidden: Sequence[int] = (128,), activation: str = "relu"):
        super().__init__()
        in_channels, height, width = input_shape
        blocks: list[nn.Module] = []
        for out_channels in channels:
            blocks.append(nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                                    bias=not batch_norm))
            if batch_norm:
                blocks.append(nn.BatchNorm2d(out_channels))
            blocks.append(ACTIVATIONS[activation]())
            if pool != "none" and height >= 2 and width >= 2:
                blocks.append(nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2))
                height, width = height // 2, width // 2
            in_channels = out_channels
        if height > HEAD_GRID or width > HEAD_GRID:
            window = (math.ceil(height / HEAD_GRID), math.ceil(width / HEAD_GRID))
            blocks.append(nn.AvgPool2d(window, ceil_mode=True))
            height, width = math.ceil(height / window[0]), math.ceil(width / window[1])
        self.features = nn.Sequential(*blocks)
        stack, size = dense_stack(in_channels * height * width, hidden, activation, dropout, batch_norm=False)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), stack, nn.Linear(size, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


RNN_CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentNet(nn.Module):
    """A recurrent layer over ``(N, T, F)`` and a linear head on its final hidden state.

    The head reads the top layer's last hidden state of each direction (for a bidirectional
    net: the forward pass after step T and the backward pass after step 1), i.e. a summary of
    the whole sequence. ``dropout`` acts between stacked layers and before the head.
    """

    def __init__(self, input_shape: Sequence[int], out_dim: int, cell: str = "lstm", hidden_size: int = 64,
                 layers: int = 1, bidirectional: bool = False, dropout: float = 0.0):
        super().__init__()
        _, n_features = input_shape
        # torch warns when inter-layer dropout is asked of a single layer, so pass it only if it acts.
        self.rnn = RNN_CELLS[cell](n_features, hidden_size, num_layers=layers, batch_first=True,
                                   bidirectional=bidirectional, dropout=dropout if layers > 1 else 0.0)
        self.directions = 2 if bidirectional else 1
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size * self.directions, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, state = self.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state  # an LSTM also returns its cell state
        # h_n is (layers * directions, N, H), layer-major: the last entries are the top layer.
        last = h_n[-self.directions:].transpose(0, 1).flatten(1)
        return self.head(self.dropout(last))
