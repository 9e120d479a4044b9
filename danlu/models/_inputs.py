"""The input stage shared by the built-in models: flatten, and embed categorical codes.

Tabular data arrives as one float vector per row. Columns named in ``info.categorical`` hold
integer codes ``0 .. card-1`` (stored as floats); feeding such codes to a linear layer would
pretend that category 3 lies between categories 2 and 4. Instead each code column gets its own
``nn.Embedding`` and the learned vectors are concatenated after the numeric columns.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


def auto_embedding_dim(cardinality: int) -> int:
    """The usual rule of thumb: half the number of categories, at most 50."""
    return max(1, min(50, (cardinality + 1) // 2))


class FeatureInput(nn.Module):
    """Map ``(N, *input_shape)`` to ``(N, out_features)``.

    Output layout: the numeric columns in their original order, then one embedding per
    categorical column in the order of ``categorical``. Each embedding has one extra row that
    catches codes outside ``0 .. card-1`` (a category never seen in training), so unknown
    categories give a learned "unknown" vector instead of an index error.
    """

    def __init__(self, input_shape: Sequence[int], categorical: Sequence[tuple[int, int]] = (),
                 embedding_dim: int | None = None):
        super().__init__()
        n_features = math.prod(input_shape)
        # Embeddings only make sense for flat tabular rows; images and sequences pass through.
        categorical = [(int(c), int(card)) for c, card in categorical] if len(input_shape) == 1 else []
        _check_categorical(categorical, n_features)
        columns = [c for c, _ in categorical]
        numeric = [i for i in range(n_features) if i not in set(columns)]
        self.columns = columns
        self.cardinalities = [card for _, card in categorical]
        # Buffers follow .to(device); persistent=False keeps them out of the state dict.
        self.register_buffer("numeric_index", torch.tensor(numeric, dtype=torch.long), persistent=False)
        self.embeddings = nn.ModuleList(
            nn.Embedding(card + 1, embedding_dim or auto_embedding_dim(card)) for card in self.cardinalities)
        self.out_features = len(numeric) + sum(e.embedding_dim for e in self.embeddings)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if not self.columns:
            return x
        parts = [x.index_select(1, self.numeric_index)]
        for column, card, embedding in zip(self.columns, self.cardinalities, self.embeddings):
            codes = x[:, column].round().long()
            unknown = (codes < 0) | (codes >= card)
            parts.append(embedding(codes.masked_fill(unknown, card)))
        return torch.cat(parts, dim=1)


def _check_categorical(categorical: list[tuple[int, int]], n_features: int) -> None:
    seen = set()
    for column, card in categorical:
        if not 0 <= column < n_features:
            raise ValueError(f"categorical column index {column} is outside the {n_features} features")
        if card < 1:
            raise ValueError(f"categorical column {column} has cardinality {card}; it must be >= 1")
        if column in seen:
            raise ValueError(f"categorical column {column} is listed twice")
        seen.add(column)
