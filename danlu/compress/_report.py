"""The table every quantization ends with: size on disk, the primary metric and latency at
batch 1 and 64, each for the float model and the quantized one."""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn

LATENCY_BATCHES = (1, 64)
ROUND_SECONDS = 0.02      # each timing round runs a model about this long


@torch.no_grad()
def latency_ms(models: dict[str, nn.Module], X: torch.Tensor, batch: int, rounds: int = 7,
               threads: int | None = 1) -> dict[str, float]:
    """Median milliseconds per call of each model on a batch of ``batch`` rows.

    The models take turns within every round, so a machine that gets busier or quieter during
    the measurement affects all of them alike (the median then drops the rounds that were hit).
    ``threads``: torch CPU threads while timing (default 1: small models gain nothing from more,
    and on a shared machine extra threads make the figures swing wildly); None keeps torch's.
    """
    before = torch.get_num_threads()
    if threads is not None and X.device.type == "cpu":
        torch.set_num_threads(threads)
    try:
        return _timed(models, _batch_of(X, batch), rounds)
    finally:
        torch.set_num_threads(before)


def _timed(models: dict[str, nn.Module], xb: torch.Tensor, rounds: int) -> dict[str, float]:
    for model in models.values():
        model.eval()
        for _ in range(3):
            model(xb)
    calls = {name: _calls_per_round(model, xb) for name, model in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            _sync(xb)
            start = time.perf_counter()
            for _ in range(calls[name]):
                model(xb)
            _sync(xb)
            times[name].append((time.perf_counter() - start) / calls[name] * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def _batch_of(X: torch.Tensor, batch: int) -> torch.Tensor:
    if len(X) >= batch:
        return X[:batch]
    repeats = -(-batch // max(len(X), 1))
    return X.repeat(repeats, *([1] * (X.dim() - 1)))[:batch]


def _calls_per_round(model: nn.Module, xb: torch.Tensor) -> int:
    _sync(xb)
    start = time.perf_counter()
    model(xb)
    _sync(xb)
    once = max(time.perf_counter() - start, 1e-6)
    return max(1, min(1000, int(ROUND_SECONDS / once)))


def _sync(x: torch.Tensor) -> None:
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)


def build_report(*, spec_tag: str, act: str, split: str, metric: str, float_side: dict, quant_side: dict,
                 extra: dict | None = None) -> dict:
    """Both sides hold ``bytes``, ``metric``, ``loss`` and ``latency_ms`` {batch: ms}."""
    speedup = {b: float_side["latency_ms"][b] / quant_side["latency_ms"][b]
               for b in quant_side["latency_ms"] if quant_side["latency_ms"][b] > 0}
    return {
        "spec": spec_tag, "activations": act, "split": split, "metric": metric,
        "float": float_side, "quantized": quant_side,
        "change": {"size_ratio": float_side["bytes"] / max(quant_side["bytes"], 1),
                   "metric_delta": quant_side["metric"] - float_side["metric"],
                   "speedup": speedup},
        **(extra or {}),
    }


def format_report(report: dict) -> str:
    """The report as an aligned ASCII table."""
    f, q, change = report["float"], report["quantized"], report["change"]
    ratio = change["size_ratio"]
    smaller = f"{ratio:.2f}x smaller" if ratio >= 1 else f"{1 / ratio:.2f}x larger"
    rows = [("size on disk", _size(f["bytes"]), _size(q["bytes"]), smaller),
            (f"{report['split']} {report['metric']}", f"{f['metric']:.4f}", f"{q['metric']:.4f}",
             f"{change['metric_delta']:+.4f}"),
            (f"{report['split']} loss", f"{f['loss']:.4f}", f"{q['loss']:.4f}", f"{q['loss'] - f['loss']:+.4f}")]
    for batch, ms in q["latency_ms"].items():
        ratio = change["speedup"].get(batch)
        rows.append((f"latency batch {batch}", f"{f['latency_ms'][batch]:.3f} ms", f"{ms:.3f} ms",
                     "-" if ratio is None else (f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower")))
    header = ("", "float", report["spec"], "change")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(header, widths))).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
              for r in rows]
    lines.append(f"(activations: {report['activations']}; latency on {report.get('device', 'cpu')} with "
                 f"{report.get('threads') or 'default'} thread(s), median of interleaved rounds)")
    return "\n".join(lines)


def _size(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.2f} MB"
    return f"{n / 1000:.1f} kB"
