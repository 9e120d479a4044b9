"""Batching by indexing, and training-time augmentation."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from danlu.data import iterate_batches, prepare

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("n, batch_size", [(10, 3), (12, 4), (5, 8), (1, 1)])
def test_every_row_exactly_once_in_perm_order(n, batch_size):
    X = torch.arange(n * 2, dtype=torch.float32).view(n, 2)
    y = torch.arange(n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    batches = list(iterate_batches(X, y, batch_size, perm))
    assert [i for i, _, _ in batches] == list(range(math.ceil(n / batch_size)))
    seen = torch.cat([yb for _, _, yb in batches])
    assert torch.equal(seen, perm)
    assert all(torch.equal(xb, X[yb]) for _, xb, yb in batches)
    assert len(batches[-1][2]) == n - batch_size * (len(batches) - 1)  # partial last batch kept


def test_start_skips_done_batches():
    X, y = torch.randn(10, 3), torch.arange(10)
    perm = torch.randperm(10)
    full = list(iterate_batches(X, y, 3, perm))
    resumed = list(iterate_batches(X, y, 3, perm, start=2))
    assert [i for i, _, _ in resumed] == [2, 3]
    for (i, xa, ya), (j, xb, yb) in zip(full[2:], resumed):
        assert i == j and torch.equal(xa, xb) and torch.equal(ya, yb)
    assert list(iterate_batches(X, y, 3, perm, start=4)) == []


def _digits(augment):
    return prepare({"source": "sklearn", "name": "digits", "scale": "none", "augment": augment,
                    "split": {"validation": 0.0, "test": 0.0}}, seed=0)


def test_augment_identity_when_unset():
    p = _digits({})
    X = p.splits["train"][0][:16]
    assert not p.pipeline.augments
    assert p.pipeline.augment(X) is X


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("augment", [{"noise": 0.1}, {"hflip": True}, {"vflip": True},
                                     {"shift": 2}, {"rotate": 20.0}, {"shift": 1, "rotate": 10.0, "noise": 0.05}])
def test_augment_keeps_shape_changes_batch_and_is_seeded(augment, device):
    p = _digits(augment)
    X = p.splits["train"][0][:64].to(device)
    torch.manual_seed(0)
    a = p.pipeline.augment(X)
    torch.manual_seed(0)
    b = p.pipeline.augment(X)
    assert a.shape == X.shape and a.device == X.device and a.dtype == X.dtype
    assert not torch.equal(a, X)
    assert torch.equal(a, b)  # all randomness from the global generator
    assert torch.equal(X, p.splits["train"][0][:64].to(device))  # input untouched


def test_flips_flip_whole_images():
    p = _digits({"hflip": True})
    X = p.splits["train"][0][:64]
    torch.manual_seed(1)
    out = p.pipeline.augment(X)
    same = (out == X).flatten(1).all(1)
    flipped = (out == X.flip(3)).flatten(1).all(1)
    assert torch.all(same | flipped) and flipped.any() and same.any()


def test_shift_moves_images_by_whole_pixels():
    p = _digits({"shift": 2})
    X = p.splits["train"][0][:32]
    torch.manual_seed(2)
    out = p.pipeline.augment(X)
    padded = F.pad(X, (2, 2, 2, 2), mode="replicate")  # 'border' padding repeats edge pixels
    for k in range(len(X)):
        candidates = [padded[k, :, 2 + dy:10 + dy, 2 + dx:10 + dx] for dy in range(-2, 3) for dx in range(-2, 3)]
        assert any(torch.allclose(out[k], c, atol=1e-5) for c in candidates), k


def test_noise_spares_categorical_codes(mixed_csv):
    p = prepare({"source": "csv", "path": str(mixed_csv), "augment": {"noise": 0.5}}, seed=0)
    X = p.splits["train"][0]
    out = p.pipeline.augment(X)
    assert torch.equal(out[:, 2], X[:, 2])
    assert not torch.equal(out[:, :2], X[:, :2])
    assert abs((out[:, :2] - X[:, :2]).std().item() - 0.5) < 0.1


def test_noise_on_sequences():
    p = prepare({"source": "sequence", "name": "sum", "length": 6, "samples": 50, "augment": {"noise": 0.2}}, seed=0)
    X = p.splits["train"][0]
    out = p.pipeline.augment(X)
    assert out.shape == X.shape and not torch.equal(out, X)
