"""``danlu diagnose RUN``: the story of a run, told from the files it left.

It reads events.jsonl (what the monitors saw and did), metrics.jsonl (the epochs),
summary.json (the final figures, when the run finished) and recipe.yaml (the knobs), and
tells: what happened and when, what danlu did about it, and what to try next, each remedy
tied to the recipe key that controls it with its current value and a value to try.
"""
from __future__ import annotations

import json
from pathlib import Path

from .._jsonl import read_jsonl
from ..errors import UserError
from ._text import DIAGNOSES, GOOD_NEWS, advice, check_lang, facts_text, fmt, title

_SHOWN_EVENTS = 30   # events listed one by one; the rest are counted
_BAD_STEPS = ("nan_loss", "loss_spike")
# One blow-up shows as several events; the remedies are told once, for the most telling of them.
_DIVERGENCE = ("rescue_exhausted", "rescue", "divergence", "nan_loss", "loss_spike")

# Fixed phrases: (English, Chinese).
_T = {
    "run": ("Run {name}: {model} on {data}, seed {seed}", "运行 {name}：{model} 模型，数据 {data}，随机种子 {seed}"),
    "trained": ("Trained {epochs} of {planned} epochs ({steps} optimizer steps).",
                "训练了 {epochs}/{planned} 轮（{steps} 个优化步）。"),
    "stopped": ("Stopped early: {reason}.", "提前停止：{reason}。"),
    "unfinished": ("The run has not finished (no summary.json); {epochs} epochs are logged. Continue it with "
                   "`danlu resume {run}`.",
                   "这次运行尚未结束（没有 summary.json）；已记录 {epochs} 轮。可用 `danlu resume {run}` 继续。"),
    "losses": ("Training loss {first} -> {last}; validation loss best {best} at epoch {best_epoch}, last {val_last}.",
               "训练损失 {first} -> {last}；验证损失最佳 {best}（第 {best_epoch} 轮），最后 {val_last}。"),
    "train_losses": ("Training loss {first} -> {last}.", "训练损失 {first} -> {last}。"),
    "final": ("Final {metric}: {figures}.", "最终 {metric}：{figures}。"),
    "split": ({"train": "train", "validation": "validation", "test": "test"},
              {"train": "训练集", "validation": "验证集", "test": "测试集"}),
    "happened": ("What happened", "经过"),
    "clean": ("A clean run: no blow-up, gradient, fit or convergence problem was seen.",
              "训练过程正常：没有发现炸炉、梯度、拟合或收敛方面的问题。"),
    "at": ("epoch {epoch}, step {step}", "第 {epoch} 轮，第 {step} 步"),
    "at_end": ("end of training", "训练结束时"),
    "more": ("... and {n} more events (all in {file})", "……另有 {n} 条事件（全部见 {file}）"),
    "did": ("What danlu did", "danlu 做了什么"),
    "did_nothing": ("Nothing: no step had to be skipped and no rescue was needed.",
                    "无需干预：没有需要跳过的步，也没有触发救援。"),
    "skipped": ("Skipped {n} bad steps without applying their gradients.", "跳过了 {n} 个坏步，未应用它们的梯度。"),
    "rescued": ("Rescue {n}: rolled back to the weights of step {to_step} and lowered the learning rate "
                "{lr_before} -> {lr_after}.",
                "第 {n} 次救援：回滚到第 {to_step} 步的权重，学习率 {lr_before} -> {lr_after}。"),
    "gave_up": ("Stopped the run after {n} rescues instead of looping, keeping the weights of step {to_step}.",
                "救援 {n} 次后停止训练而不是无限重试，保留第 {to_step} 步的权重。"),
    "try": ("What to try next", "下一步可以试试"),
    "try_nothing": ("Nothing needs fixing.", "没有需要修正的地方。"),
    "key": ("{key}: {current} -> try {proposal}  ({why})", "{key}：{current} -> 试试 {proposal}（{why}）"),
    "also": ("also: {text}", "另外：{text}"),
}


def _t(phrase: str, lang: str, **values) -> str:
    text = _T[phrase][0 if lang != "zh" else 1]
    return text.format(**values) if values else text


# ---------------------------------------------------------------------------------------------
# Remedies: for each diagnosis, the recipe keys that control it and a value to try.
# A proposer gets the key's current value and the run's context; it returns
# (proposal, why_en, why_zh), or None when the key has nothing to offer here.
# ---------------------------------------------------------------------------------------------

def _num(x: float) -> float:
    return float(f"{x:.2g}")


def _lr_base(cur, ctx):
    """The rate the run ended with: the recipe's, times what the rescues did to it."""
    return cur * ctx["lr_scale"] if isinstance(cur, (int, float)) else None


def _lower_lr(cur, ctx):
    base = _lr_base(cur, ctx)
    return (_num(base / 10), "smaller steps", "更小的步长") if base else None


def _bit_lower_lr(cur, ctx):
    base = _lr_base(cur, ctx)
    return (_num(base / 3), "smaller steps stop the overshooting", "更小的步长不再迈过头") if base else None


def _higher_lr(cur, ctx):
    base = _lr_base(cur, ctx)
    if not base or ctx["diverged"]:  # never suggest more of what blew up
        return None
    return (_num(base * 10), "larger steps", "更大的步长")


def _bit_higher_lr(cur, ctx):
    base = _lr_base(cur, ctx)
    if not base or ctx["diverged"]:
        return None
    return (_num(base * 3), "larger steps", "更大的步长")


def _rescued_lr(cur, ctx):
    base = _lr_base(cur, ctx)
    if not base:
        return None
    return (_num(base), "the rate the rescues settled on", "救援后稳定下来的学习率")


def _clip(cur, ctx):
    if cur is None:
        return (1.0, "caps the gradient norm of each step", "限制每一步的梯度范数")
    return (_num(cur / 2), "a tighter cap on each step", "更紧的梯度上限")


def _scale(cur, ctx):
    return ("standardize", "inputs on one scale", "让输入处于同一尺度") if cur == "none" else None


def _bigger_batch(cur, ctx):
    return (cur * 2, "less noisy gradients", "噪声更小的梯度") if isinstance(cur, int) else None


def _activation(cur, ctx):
    return ("relu", "does not saturate", "不会饱和") if cur in ("sigmoid", "tanh") else None


def _batch_norm(cur, ctx):
    return (True, "keeps each layer's activations in range", "让每层的激活保持在合适范围") if cur is False else None


def _shallower(cur, ctx):
    if not isinstance(cur, list) or len(cur) < 3:
        return None
    return (cur[:max(2, len(cur) // 2)], "a shallower network", "更浅的网络")


def _wider(cur, ctx):
    if not isinstance(cur, list):
        return None
    return ([2 * h for h in cur] or [64], "more capacity", "更大的模型容量")


def _to_mlp(cur, ctx):
    if cur in ("linear", "logistic", "perceptron"):
        return ("mlp", "a non-linear model", "非线性模型")
    return None


def _weight_decay(cur, ctx):
    if not isinstance(cur, (int, float)):
        return None
    return (1e-4 if cur == 0 else _num(cur * 10), "penalises large weights", "惩罚过大的权重")


def _dropout(cur, ctx):
    if not isinstance(cur, (int, float)) or cur >= 0.5:
        return None
    return (0.2 if cur == 0 else round(min(cur + 0.2, 0.5), 2), "drops units while training", "训练时随机丢弃神经元")


def _noise(cur, ctx):
    return (0.1, "noise injection on the inputs", "在输入上注入噪声") if cur == 0 else None


def _early_stop(cur, ctx):
    return (True, "stop at the best validation loss", "在验证损失最佳时停止") if cur is False else None


def _more_epochs(cur, ctx):
    return (cur * 2, "train longer", "训练更久") if isinstance(cur, int) else None


def _fewer_epochs(cur, ctx):
    flat = [e for e in ctx["events"] if e["kind"] == "converged"]
    if not flat or not isinstance(cur, int):
        return None
    enough = flat[0].get("epoch", cur) + 1
    return (enough, "it had converged by then: saves time", "那时已经收敛：节省时间") if enough < cur else None


def _more_patience(cur, ctx):
    return (cur * 2, "do not stop on a plateau", "不要在平台期就停止") if isinstance(cur, int) else None


def _cosine(cur, ctx):
    return ("cosine", "lowers the rate as training goes on", "随训练逐渐降低学习率") if cur == "constant" else None


def _adam(cur, ctx):
    return ("adam", "adapts the step per weight", "为每个权重自适应步长") if cur in ("sgd", "adagrad") else None


def _more_rescues(cur, ctx):
    return (cur + 2, "more attempts", "更多次尝试") if isinstance(cur, int) else None


_REMEDIES = {
    "divergence": [("optimizer.lr", _lower_lr), ("train.grad_clip", _clip), ("data.scale", _scale)],
    "nan_loss": [("optimizer.lr", _lower_lr), ("train.grad_clip", _clip), ("data.scale", _scale)],
    "loss_spike": [("optimizer.lr", _lower_lr), ("train.grad_clip", _clip), ("train.batch_size", _bigger_batch)],
    "rescue": [("optimizer.lr", _rescued_lr), ("train.grad_clip", _clip)],
    "rescue_exhausted": [("optimizer.lr", _lower_lr), ("train.grad_clip", _clip), ("data.scale", _scale),
                         ("monitors.divergence.max_rescues", _more_rescues)],
    "vanishing_gradient": [("model.activation", _activation), ("model.batch_norm", _batch_norm),
                           ("model.hidden", _shallower), ("optimizer.lr", _bit_higher_lr)],
    "exploding_gradient": [("train.grad_clip", _clip), ("optimizer.lr", _lower_lr), ("model.batch_norm", _batch_norm)],
    "overfitting": [("optimizer.weight_decay", _weight_decay), ("model.dropout", _dropout),
                    ("data.augment.noise", _noise), ("train.early_stopping.enabled", _early_stop)],
    "underfitting": [("model.kind", _to_mlp), ("model.hidden", _wider), ("optimizer.lr", _bit_higher_lr),
                     ("train.epochs", _more_epochs)],
    "converged": [("train.epochs", _fewer_epochs)],
    "plateau": [("optimizer.lr", _bit_higher_lr), ("optimizer.kind", _adam), ("model.batch_norm", _batch_norm)],
    "false_convergence": [("train.early_stopping.patience", _more_patience), ("train.epochs", _more_epochs)],
    "lr_too_high": [("optimizer.lr", _bit_lower_lr), ("schedule.kind", _cosine), ("train.batch_size", _bigger_batch)],
    "lr_too_low": [("optimizer.lr", _higher_lr), ("optimizer.kind", _adam)],
}

_ALSO = {
    "overfitting": ("more training data", "更多训练数据"),
    "vanishing_gradient": ("residual (skip) connections, in a model of your own (danlu.register_model)",
                           "残差（跳跃）连接：用 danlu.register_model 注册自己的模型"),
    "underfitting": ("features that carry more of the signal", "包含更多有效信息的特征"),
}


# ---------------------------------------------------------------------------------------------
# Reading the run
# ---------------------------------------------------------------------------------------------

def _read_recipe(path: Path) -> dict:
    """The raw resolved recipe (not re-validated: a custom model kind may not be registered here)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _get(recipe: dict, path: str):
    node = recipe
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _shown_value(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return fmt(value)
    return json.dumps(value)


# ---------------------------------------------------------------------------------------------
# Telling it
# ---------------------------------------------------------------------------------------------

def story(run_dir, lang: str | None = None) -> str:
    """The story of a run in English (``lang="en"``) or Chinese (``"zh"``); default: the locale's."""
    lang = check_lang(lang)
    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"{run}: no such run directory; give the folder `danlu train` created, e.g. runs/<name>")
    if (_read_recipe(run / "recipe.yaml").get("env") or {}).get("name"):   # an agent's run: its reward curve
        from ..rl import story_rl

        return story_rl(run, lang)
    if not (run / "events.jsonl").is_file():
        raise UserError(f"{run}: no events.jsonl, so there is nothing to diagnose; give a run directory made by "
                        f"`danlu train` (training writes events.jsonl as it starts)")
    events = read_jsonl(run / "events.jsonl")
    metrics = read_jsonl(run / "metrics.jsonl")
    recipe = _read_recipe(run / "recipe.yaml")
    summary_path = run / "summary.json"
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else None
    except ValueError:
        summary = None
    ctx = {"events": events, "recipe": recipe, "lang": lang, "lr_scale": _lr_scale(events),
           "diverged": any(e.get("kind") in _DIVERGENCE[:3] for e in events)}  # blew up, not one bad batch
    parts = [_overview(run, recipe, metrics, summary, lang), _happened(events, lang),
             _did(events, lang), _next(events, recipe, ctx, lang)]
    return "\n\n".join(p for p in parts if p)


def _overview(run: Path, recipe: dict, metrics: list, summary: dict | None, lang: str) -> str:
    data = recipe.get("data") or {}
    lines = [_t("run", lang, name=recipe.get("name") or run.name, model=(recipe.get("model") or {}).get("kind", "?"),
                data=data.get("name") or data.get("path") or data.get("source", "?"), seed=recipe.get("seed", "?"))]
    planned = (recipe.get("train") or {}).get("epochs", "?")
    if summary is not None:
        info = summary.get("run") or {}
        lines.append(_t("trained", lang, epochs=info.get("epochs", len(metrics)), planned=planned,
                        steps=info.get("steps", "?")))
        if info.get("stop_reason"):
            lines.append(_t("stopped", lang, reason=info["stop_reason"]))
    else:
        lines.append(_t("unfinished", lang, epochs=len(metrics), run=run))
    trend = _loss_trend(metrics, lang)
    if trend:
        lines.append(trend)
    final = _final_figures(summary, lang)
    if final:
        lines.append(final)
    return "\n".join(lines)


def _loss_trend(metrics: list, lang: str) -> str:
    train = [m.get("train_loss_running_mean") for m in metrics if m.get("train_loss_running_mean") is not None]
    if not train:
        return ""
    val = [(m["val_loss"], m.get("epoch")) for m in metrics if isinstance(m.get("val_loss"), (int, float))]
    if not val:
        return _t("train_losses", lang, first=fmt(train[0]), last=fmt(train[-1]))
    best, best_epoch = min(val, key=lambda x: (x[0] != x[0], x[0]))  # NaN sorts last
    return _t("losses", lang, first=fmt(train[0]), last=fmt(train[-1]), best=fmt(best), best_epoch=best_epoch,
              val_last=fmt(val[-1][0]))


def _final_figures(summary: dict | None, lang: str) -> str:
    if not summary:
        return ""
    splits = [s for s in ("train", "validation", "test") if isinstance(summary.get(s), dict)]
    if not splits:
        return ""
    metric = "accuracy" if "accuracy" in summary[splits[0]] else "r2" if "r2" in summary[splits[0]] else "loss"
    names = _T["split"][0 if lang != "zh" else 1]
    sep = "，" if lang == "zh" else ", "
    figures = sep.join(f"{names[s]} {fmt(summary[s].get(metric))}" for s in splits)
    return _t("final", lang, metric=metric, figures=figures)


def _when(event: dict, lang: str) -> str:
    if event.get("kind") in ("underfitting",):
        return _t("at_end", lang)
    epoch = event.get("epoch")
    return _t("at", lang, epoch=epoch + 1 if isinstance(epoch, int) else "?", step=event.get("step", "?"))


def _happened(events: list, lang: str) -> str:
    head = _t("happened", lang)
    problems = [e for e in events if e.get("kind") not in GOOD_NEWS]
    lines = [head] if problems else [head, "  " + _t("clean", lang)]
    sep = "：" if lang == "zh" else ": "
    for event in events[:_SHOWN_EVENTS]:
        kind = event.get("kind", "?")
        text = facts_text(kind, lang, event)
        lines.append(f"  {_when(event, lang)}  {title(kind, lang)}{sep + text if text else ''}")
    if len(events) > _SHOWN_EVENTS:
        lines.append("  " + _t("more", lang, n=len(events) - _SHOWN_EVENTS, file="events.jsonl"))
    return "\n".join(lines)


def _did(events: list, lang: str) -> str:
    lines = [_t("did", lang)]
    skipped = sum(1 for e in events if e.get("kind") in _BAD_STEPS)
    if skipped:
        lines.append("  " + _t("skipped", lang, n=skipped))
    for e in events:
        if e.get("kind") == "rescue":
            lines.append("  " + _t("rescued", lang, n=e.get("n", "?"), to_step=e.get("to_step", "?"),
                                   lr_before=fmt(e.get("lr_before")), lr_after=fmt(e.get("lr_after"))))
        elif e.get("kind") == "rescue_exhausted":
            lines.append("  " + _t("gave_up", lang, n=e.get("n", "?"), to_step=e.get("to_step", "?")))
    if len(lines) == 1:
        lines.append("  " + _t("did_nothing", lang))
    return "\n".join(lines)


def _next(events: list, recipe: dict, ctx: dict, lang: str) -> str:
    seen = {e.get("kind") for e in events}
    kinds = [k for k in DIAGNOSES if k in seen and k not in _DIVERGENCE]
    blow_up = next((k for k in _DIVERGENCE if k in seen), None)
    if blow_up:
        kinds.insert(0, blow_up)
    lines = [_t("try", lang)]
    for kind in kinds:
        remedies = _remedy_lines(kind, recipe, ctx, lang)
        if kind in GOOD_NEWS and not remedies:
            continue
        lines.append(f"  - {title(kind, lang)}{'：' if lang == 'zh' else ': '}{advice(kind, lang)}")
        lines.extend(f"      {r}" for r in remedies)
        if kind in _ALSO:
            lines.append("      " + _t("also", lang, text=_ALSO[kind][0 if lang != "zh" else 1]))
    if len(lines) == 1:
        lines.append("  " + _t("try_nothing", lang))
    return "\n".join(lines)


def _lr_scale(events: list) -> float:
    scale = 1.0
    for e in events:
        before, after = e.get("lr_before"), e.get("lr_after")
        if e.get("kind") == "rescue" and isinstance(before, (int, float)) and isinstance(after, (int, float)) \
                and before > 0:
            scale *= after / before
    return scale


def _remedy_lines(kind: str, recipe: dict, ctx: dict, lang: str) -> list[str]:
    lines = []
    for path, proposer in _REMEDIES.get(kind, ()):
        found, current = _get(recipe, path)
        if not found:
            continue  # e.g. model.activation for a linear model
        offer = proposer(current, ctx)
        if offer is None:
            continue
        proposal, why_en, why_zh = offer
        lines.append(_t("key", lang, key=path, current=_shown_value(current), proposal=_shown_value(proposal),
                        why=why_zh if lang == "zh" else why_en))
    return lines
