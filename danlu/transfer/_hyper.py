"""Hypernetworks: a small network that writes the weights of the main network.

Each row carries a task id in a categorical column (``model.task_column``). The task id picks a
learned task embedding; the hypernetwork (the *generator*) maps that embedding to every weight
and bias of the main network, which then reads the row's other features. The main network owns
no parameters at all — gradients of the loss flow through the generated weights into the
generator and the task embeddings. Tasks that want opposite answers for the same features get
different weights, which one shared network cannot give them.

Registered as model kind ``hypernetwork``::

    model: {kind: hypernetwork, task_column: task, hidden: [32], embed_dim: 8, hyper_hidden: 64}
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ..errors import RecipeError

from ..models._inputs import FeatureInput


_ACTIVATIONS = {"relu": nn.functional.relu, "tanh": torch.tanh, "gelu": nn.functional.gelu}

from ._plugin import HYPER_PARAMS  # noqa: E402,F401  (the keys live with the registration)


class GeneratedMLP(nn.Module):
    """A dense network whose weights are passed in, one set per row. It has no parameters."""

    def __init__(self, sizes: Sequence[int], activation: str = "relu"):
        super().__init__()
        self.shapes = [(o, i) for i, o in zip(sizes[:-1], sizes[1:])]   # (out, in) per layer
        self.activation = activation
        self.n_params = sum(o * i + o for o, i in self.shapes)

    def forward(self, h: torch.Tensor, params: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
        """``h``: (N, in) rows; ``params``: (T, n_params), the flat weights and biases of each of
        T tasks; ``select``: (N, T) one-hot task of each row.

        Every row runs through all T weight sets and the one-hot picks its own task's output.
        With a handful of tasks this is a few dense matmuls, far cheaper on the backward pass
        than gathering a weight copy per row (an index backward that scatters N copies).
        """
        act = _ACTIVATIONS[self.activation]
        h = h.unsqueeze(1).expand(-1, params.shape[0], -1)            # (N, T, in)
        offset = 0
        for k, (o, i) in enumerate(self.shapes):
            w = params[:, offset:offset + o * i].view(-1, o, i)          # (T, out, in)
            b = params[:, offset + o * i:offset + o * i + o]              # (T, out)
            offset += o * i + o
            h = torch.einsum("nti,toi->nto", h, w) + b
            if k < len(self.shapes) - 1:
                h = act(h)
        return (h * select.unsqueeze(2)).sum(1)


class HyperNetwork(nn.Module):
    """Task embedding -> generator MLP -> the flat weights of :class:`GeneratedMLP`."""

    def __init__(self, input_shape: Sequence[int], out_dim: int, task_index: int, n_tasks: int,
                 categorical: Sequence[tuple[int, int]] = (), hidden: Sequence[int] = (32,),
                 embed_dim: int = 8, hyper_hidden: int = 64, activation: str = "relu",
                 embedding_dim: int | None = None):
        super().__init__()
        n_features = math.prod(input_shape)
        self.task_index, self.n_tasks = int(task_index), int(n_tasks)
        keep = [j for j in range(n_features) if j != self.task_index]
        self.register_buffer("feature_index", torch.tensor(keep, dtype=torch.long), persistent=False)
        # The other categorical columns keep their embeddings; their indices shift past the task column.
        others = [(c - (c > self.task_index), card) for c, card in categorical if c != self.task_index]
        self.input = FeatureInput((len(keep),), others, embedding_dim)
        self.main = GeneratedMLP([self.input.out_features, *hidden, out_dim], activation)
        # One extra row for a task id never seen in training, as FeatureInput does.
        self.task_embedding = nn.Embedding(self.n_tasks + 1, embed_dim)
        self.generator = nn.Sequential(nn.Linear(embed_dim, hyper_hidden), nn.ReLU(),
                                       nn.Linear(hyper_hidden, self.main.n_params))
        self.register_buffer("fan_in_scale", self._fan_in_scale(), persistent=False)
        # Raw generator outputs come out near unit scale; fan_in_scale then gives each generated
        # layer the spread of a default-initialised nn.Linear, so training starts sensibly.
        nn.init.normal_(self.generator[2].weight, std=1.0 / math.sqrt(hyper_hidden))

    def _fan_in_scale(self) -> torch.Tensor:
        parts = [torch.full((o * i + o,), 1.0 / math.sqrt(i)) for o, i in self.main.shapes]
        return torch.cat(parts)

    def task_codes(self, x: torch.Tensor) -> torch.Tensor:
        codes = x.flatten(1)[:, self.task_index].round().long()
        unknown = (codes < 0) | (codes >= self.n_tasks)
        return codes.masked_fill(unknown, self.n_tasks)

    def task_weights(self, codes: torch.Tensor | None = None) -> torch.Tensor:
        """The generated flat main-network weights: one row per task (or per code given)."""
        table = self.generator(self.task_embedding.weight) * self.fan_in_scale
        return table if codes is None else table[codes]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        # Generate once per task (not once per row), then let each row pick its task's output.
        params = self.task_weights()
        select = nn.functional.one_hot(self.task_codes(x), self.n_tasks + 1).to(params.dtype)
        return self.main(self.input(x.index_select(1, self.feature_index)), params, select)


def build_hypernetwork(cfg, info, out_dim: int) -> HyperNetwork:
    shape = tuple(info.input_shape)
    if len(shape) != 1:
        raise RecipeError(f"model.kind hypernetwork needs table rows (one feature vector per row), but each "
                          f"sample has shape {shape}; use a csv source with a task column")
    index, cards = _task_index(cfg["task_column"], info), dict(info.categorical or [])
    return HyperNetwork(shape, out_dim, index, cards[index], categorical=list(info.categorical),
                        hidden=cfg["hidden"], embed_dim=cfg["embed_dim"], hyper_hidden=cfg["hyper_hidden"],
                        activation=cfg["activation"], embedding_dim=cfg["embedding_dim"])


def _task_index(column: str | None, info) -> int:
    """The feature position of the task column; it must be categorical (integer codes)."""
    cards = dict(info.categorical or [])
    if column is None:
        if not cards:
            raise RecipeError("model.kind hypernetwork needs a categorical task column, but the data has none; "
                              "list it in data.categorical and set model.task_column")
        return min(cards)
    names = list(info.feature_names)
    if column not in names:
        raise RecipeError(f"model.task_column {column!r} is not a feature column; columns: {', '.join(names)}; "
                          f"set model.task_column to the column that holds the task id")
    if names.index(column) not in cards:
        raise RecipeError(f"model.task_column {column!r} must be categorical; add it to data.categorical")
    return names.index(column)

