"""LoRA versus full fine-tuning of the packaged MiniLM encoder on recipes/data/texts.csv.

    python benchmarks/bench_lora.py [--epochs 6] [--rank 8] [--seed 0] [--device auto]

Both runs start from the same pretrained encoder and the same new linear head and see the same
batches. Full fine-tuning trains all ~22.7M weights; LoRA freezes them and trains rank-r
adapters on the attention query/value projections plus the head (well under 1% of the
weights). Prints test accuracy, trainable share, adapter file size and time per run.
Needs the text extra: pip install "danlu[text]".
"""
from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from danlu.transfer import add_lora, merge_lora, save_adapters, trainable_parameters
from danlu.transfer._backbone import SentenceEncoder, TextClassifier, load_bert, tokenize

DATA = Path(__file__).resolve().parents[1] / "recipes" / "data" / "texts.csv"


def load_split(seed: int, max_length: int):
    from sklearn.model_selection import train_test_split

    with open(DATA, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    classes = sorted({r["label"] for r in rows})
    y = torch.tensor([classes.index(r["label"]) for r in rows])
    X = tokenize([r["text"] for r in rows], max_length)
    train_idx, test_idx = train_test_split(range(len(rows)), test_size=0.3, stratify=y.numpy(), random_state=seed)
    return (X[train_idx], y[train_idx]), (X[test_idx], y[test_idx]), len(classes)


def build(n_classes: int, seed: int) -> TextClassifier:
    torch.manual_seed(seed)
    return TextClassifier(SentenceEncoder(load_bert()), nn.Linear(384, n_classes))


def optimizer_for(model: TextClassifier, mode: str) -> torch.optim.Optimizer:
    head = list(model.head.parameters())
    if mode == "full":   # the usual recipe: a small rate for pretrained weights, a larger one for the new head
        encoder = list(model.encoder.parameters())
        return torch.optim.AdamW([{"params": encoder, "lr": 5e-5}, {"params": head, "lr": 3e-3}], weight_decay=0.01)
    adapters = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")]
    return torch.optim.AdamW([{"params": adapters, "lr": 1e-3}, {"params": head, "lr": 3e-3}], weight_decay=0.01)


def train_eval(mode: str, data, n_classes: int, args, device) -> dict:
    (X, y), (Xt, yt), = data
    model = build(n_classes, args.seed)
    if mode == "lora":
        add_lora(model, rank=args.rank, alpha=2 * args.rank, target_modules=["query", "value"], train_head=True)
    model.to(device)
    opt = optimizer_for(model, mode)
    gen = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(X), generator=gen)
        total = 0.0
        for i in range(0, len(X), args.batch_size):
            idx = order[i:i + args.batch_size]
            loss = nn.functional.cross_entropy(model(X[idx].to(device)), y[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        print(f"  {mode} epoch {epoch + 1}/{args.epochs}: train loss {total / len(X):.4f}", flush=True)
    seconds = time.perf_counter() - start
    n_train, n_total = trainable_parameters(model)
    result = {"mode": mode, "accuracy": accuracy(model, Xt, yt, device), "trainable": n_train, "total": n_total,
              "seconds": seconds}
    if mode == "lora":
        with tempfile.TemporaryDirectory() as tmp:
            result["adapter_bytes"] = save_adapters(model, Path(tmp) / "a.safetensors").stat().st_size
        merged = accuracy(merge_lora(model), Xt, yt, device)
        result["merged_accuracy"] = merged
    return result


@torch.no_grad()
def accuracy(model, X, y, device) -> float:
    model.eval()
    pred = torch.cat([model(X[i:i + 64].to(device)).argmax(1).cpu() for i in range(0, len(X), 64)])
    return float((pred == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    train_split, test_split, n_classes = load_split(args.seed, args.max_length)
    print(f"texts.csv: {len(train_split[0])} train, {len(test_split[0])} test rows, {n_classes} classes; "
          f"device {device}")
    results = [train_eval(mode, (train_split, test_split), n_classes, args, device) for mode in ("full", "lora")]
    print(f"\n{'mode':6} {'test acc':>9} {'trainable':>12} {'share':>7} {'seconds':>8}")
    for r in results:
        print(f"{r['mode']:6} {r['accuracy']:9.4f} {r['trainable']:12,} {100 * r['trainable'] / r['total']:6.2f}% "
              f"{r['seconds']:8.1f}")
    lora = results[1]
    print(f"LoRA adapter file: {lora['adapter_bytes'] / 1024:.1f} KiB; merged-model accuracy "
          f"{lora['merged_accuracy']:.4f}; gap to full fine-tuning "
          f"{100 * (results[0]['accuracy'] - lora['accuracy']):+.1f} points")


if __name__ == "__main__":
    main()
