"""Per-step cost of danlu's loop against a hand-written PyTorch loop, side by side in one run.

    python benchmarks/bench_loop.py            # digits MLP and CNN, plus the DataLoader comparison
    python benchmarks/bench_loop.py --quick    # fewer repeats

For each model the same architecture (built by danlu's registry), the same data, optimizer and
batch size are trained by (a) danlu.train with its default callbacks and monitors and (b) a plain
loop that indexes tensors. Only training steps are timed (validation and checkpoints happen once
per epoch, not per step). Repeats are interleaved and the median is reported.

The third comparison feeds the same hand-written loop from a per-sample torch DataLoader (the
usual Dataset + default collate) on small tabular data, against danlu's tensor batching.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import danlu
from danlu.data import prepare
from danlu.models import build_model
from danlu.recipe import Recipe
from danlu.training import Event
from danlu.training._factory import build_loss, build_optimizer, output_dim, resolve_loss_kind
from danlu.training._loop import epoch_permutation

MLP = {"data": {"source": "sklearn", "name": "digits", "shape": [64]},
       "model": {"kind": "mlp", "hidden": [256, 128], "dropout": 0.2, "batch_norm": True},
       "optimizer": {"kind": "adam", "lr": 0.002}, "train": {"epochs": 3, "batch_size": 64},
       "checkpoint": {"every_epochs": 0}, "output": {"progress": "none"}}
CNN = {"data": {"source": "sklearn", "name": "digits"},
       "model": {"kind": "cnn", "channels": [32, 64], "hidden": [128]},
       "optimizer": {"kind": "adamw", "lr": 0.003}, "train": {"epochs": 3, "batch_size": 64},
       "checkpoint": {"every_epochs": 0}, "output": {"progress": "none"}}
# Small tabular data: the 64 pixel columns of the digits as a table, a logistic regression, large
# batches — the setting where per-sample collation, not the model, decides the speed.
TABULAR = {"data": {"source": "sklearn", "name": "digits", "shape": [64], "split": {"validation": 0.1, "test": 0.1}},
           "model": {"kind": "logistic"}, "optimizer": {"kind": "sgd", "lr": 0.1},
           "train": {"epochs": 6, "batch_size": 512},
           "checkpoint": {"every_epochs": 0}, "output": {"progress": "none"}}


class RowDataset(torch.utils.data.Dataset):
    """The per-sample Dataset most tutorials write: one NumPy row and label per __getitem__."""

    def __init__(self, X, y):
        self.X, self.y = X.numpy(), y.numpy()

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i], self.y[i]


class StepTimer:
    """Times the training batches of each epoch (from epoch start to its last batch)."""

    def __init__(self):
        self.per_step = []

    def on_epoch_start(self, state):
        self.t0 = time.perf_counter()

    def on_batch_end(self, state):
        if state.batch == state.batches_per_epoch:
            self.per_step.append((time.perf_counter() - self.t0) / state.batches_per_epoch)


def time_danlu(recipe: Recipe) -> float:
    timer = StepTimer()
    danlu.train(recipe, run_dir=_tmpdir(), progress="none", callbacks=[timer])
    return statistics.median(timer.per_step[1:])  # the first epoch warms up


def _tmpdir():
    import tempfile

    return tempfile.mkdtemp(prefix="danlu-bench-") + "/run"


def time_hand_written(recipe: Recipe, dataloader: str | None = None) -> float:
    prepared = prepare(recipe.data, recipe.seed)
    info = prepared.info
    torch.manual_seed(recipe.seed)
    loss_kind = resolve_loss_kind(recipe.loss, info)
    model = build_model(recipe.model, info, output_dim(loss_kind, info))
    opt = build_optimizer(recipe.optimizer, model.parameters())
    loss_fn = build_loss(recipe.loss, info)
    X, y = prepared.splits["train"]
    bs = recipe.train.batch_size
    if dataloader:
        ds = torch.utils.data.TensorDataset(X, y) if dataloader == "tensor" else RowDataset(X, y)
    per_step = []
    for epoch in range(recipe.train.epochs):
        model.train()
        t0 = time.perf_counter()
        if dataloader:
            batches = torch.utils.data.DataLoader(ds, batch_size=bs, shuffle=True)
        else:
            perm = epoch_permutation(recipe.seed, epoch, len(X), X.device)
            batches = ((X[perm[i:i + bs]], y[perm[i:i + bs]]) for i in range(0, len(X), bs))
        n = 0
        for xb, yb in batches:
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            n += 1
        per_step.append((time.perf_counter() - t0) / n)
    return statistics.median(per_step[1:])


def compare(name: str, spec: dict, repeats: int) -> None:
    recipe = Recipe.from_dict(spec, source=name)
    ours, theirs = [], []
    for _ in range(repeats):
        theirs.append(time_hand_written(recipe))
        ours.append(time_danlu(recipe))
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"{name:12s} danlu {a * 1e3:7.3f} ms/step   hand-written {b * 1e3:7.3f} ms/step   "
          f"ratio {a / b:.3f}  ({(a / b - 1) * 100:+.1f}%)")


def compare_dataloader(repeats: int) -> None:
    recipe = Recipe.from_dict(TABULAR, source="tabular")
    ours, tensor_rows, numpy_rows = [], [], []
    for _ in range(repeats):
        tensor_rows.append(time_hand_written(recipe, dataloader="tensor"))
        numpy_rows.append(time_hand_written(recipe, dataloader="numpy"))
        ours.append(time_danlu(recipe))
    a = statistics.median(ours)
    for name, times in (("TensorDataset", tensor_rows), ("NumPy-row Dataset", numpy_rows)):
        b = statistics.median(times)
        print(f"{'tabular':12s} danlu {a * 1e3:7.3f} ms/step   DataLoader over {name} {b * 1e3:7.3f} ms/step   "
              f"speed-up {b / a:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {repeats} interleaved repeats")
    compare("digits MLP", MLP, repeats)
    compare("digits CNN", CNN, repeats)
    compare_dataloader(repeats)


if __name__ == "__main__":
    main()
