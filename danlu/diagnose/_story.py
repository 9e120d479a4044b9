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
from ._text import GOOD_NEWS, advice, check_lang, facts_text, fmt, title
from ._verdict import decide

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
    "verdict": ("Verdict", "结论"),
    "sure": ({"certain": "certain", "likely": "likely", "possible": "possible"},
             {"certain": "确定", "likely": "很可能", "possible": "可能"}),
    "healthy": ("Healthy: no problem was seen, training has finished{skill}.",
                "正常：没有发现问题，训练已经完成{skill}。"),
    "skill": (", and the model closes {skill} of the way from a constant guess to perfect",
              "，模型从常数猜测到完美走完了 {skill}"),
    "inconclusive": ("No problem was seen, but the model closes only {skill} of the way from a constant guess to "
                     "perfect: it is not clearly better than its baseline.",
                     "没有发现问题，但模型从常数猜测到完美只走完了 {skill}：并不明显好于基线。"),
    "explains": ("This also explains: {kinds}.", "这也解释了：{kinds}。"),
    "besides": ("Besides: {kinds}.", "另外还有：{kinds}。"),
    "news": ("Along the way: {kinds}.", "过程中：{kinds}。"),
    "line": ("verdict: {title} ({sure}){facts}", "结论：{title}（{sure}）{facts}"),
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


# The direction each cure pushes in; the verdict rules out directions that contradict a finding
# or the run's history (see _verdict).
_DIRECTION = {
    _lower_lr: "lr_down", _bit_lower_lr: "lr_down", _rescued_lr: "lr_down", _higher_lr: "lr_up",
    _bit_higher_lr: "lr_up", _wider: "capacity_up", _to_mlp: "capacity_up", _shallower: "capacity_down",
    _weight_decay: "regularise", _dropout: "regularise", _noise: "regularise", _early_stop: "regularise",
    _more_epochs: "epochs_up", _more_patience: "epochs_up", _fewer_epochs: "epochs_down",
}

_REMEDIES = {
    "collapse": [("optimizer.lr", _lower_lr), ("train.grad_clip", _clip), ("data.scale", _scale)],
    "unscaled_features": [("data.scale", _scale), ("optimizer.lr", _lower_lr)],
    "still_improving": [("train.epochs", _more_epochs), ("schedule.kind", _cosine)],
    "stopped_too_early": [("train.early_stopping.patience", _more_patience), ("train.epochs", _more_epochs)],
    "no_signal": [],
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
    "no_signal": ("check that the labels belong to their rows and that the features can predict them; more "
                  "capacity or epochs will only memorise noise",
                  "检查标签是否对应各自的行、特征能否预测标签；更大的模型或更多轮数只会记住噪声"),
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

#: (applies(recipe dict), story(run_dir, lang) or "module:attr"): run kinds whose story is their own
STORIES: list[tuple] = []


def register_story(applies, tell) -> None:
    """A capability tells the story of its runs itself (danlu.rl: the reward curve)."""
    STORIES.append((applies, tell))


def _registered_story(recipe: dict):
    from .. import _plugins
    from ..training._extend import resolve

    _plugins.load_builtin()
    for applies, tell in STORIES:
        if applies(recipe):
            return resolve(tell)
    return None


def story(run_dir, lang: str | None = None) -> str:
    """The story of a run in English (``lang="en"``) or Chinese (``"zh"``); default: the locale's."""
    lang = check_lang(lang)
    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"{run}: no such run directory; give the folder `danlu train` created, e.g. runs/<name>")
    told = _registered_story(_read_recipe(run / "recipe.yaml"))
    if told is not None:   # a run kind that tells its own story (an agent's run: its reward curve)
        return told(run, lang)
    if not (run / "events.jsonl").is_file():
        raise UserError(f"{run}: no events.jsonl, so there is nothing to diagnose; give a run directory made by "
                        f"`danlu train` (training writes events.jsonl as it starts)")
    events = read_jsonl(run / "events.jsonl")
    metrics = read_jsonl(run / "metrics.jsonl")
    recipe = _read_recipe(run / "recipe.yaml")
    summary_path = run / "summary.json"
    from .._integrity import read_json

    summary = read_json(summary_path) if summary_path.is_file() else None   # refused unless it matches its checksum
    verdict = _recorded_verdict(events)
    parts = [_overview(run, recipe, metrics, summary, lang), _happened(events, lang), _did(events, lang),
             _verdict_text(verdict, events, lang), _next(verdict, events, recipe, lang)]
    return "\n\n".join(p for p in parts if p)


def _recorded_verdict(events: list) -> dict:
    """The verdict recorded at the end of training (the one shown live), else decided now."""
    recorded = [e for e in events if e.get("kind") == "verdict" and e.get("cause")]
    if not recorded:
        return decide(events)
    last = recorded[-1]
    evidence = next((e for e in events if e.get("kind") == last["cause"]), {})
    return {"cause": last["cause"], "sure": last.get("sure", "likely"), "evidence": evidence,
            "explains": last.get("explains") or [], "also": last.get("also") or [],
            "forbid": last.get("forbid") or [], "skill": last.get("skill"), "news": last.get("news") or []}


def _context(verdict: dict, events: list, recipe: dict, lang: str) -> dict:
    return {"events": events, "recipe": recipe, "lang": lang, "lr_scale": _lr_scale(events),
            "diverged": any(e.get("kind") in _DIVERGENCE[:3] + ("collapse",) for e in events),
            "forbid": set(verdict.get("forbid") or ())}


def _sure_word(sure: str, lang: str) -> str:
    return _T["sure"][0 if lang != "zh" else 1].get(sure, sure)


def _titles(kinds, lang: str) -> str:
    return ("、" if lang == "zh" else ", ").join(title(k, lang) for k in kinds)


def _verdict_text(verdict: dict, events: list, lang: str) -> str:
    lines = [_t("verdict", lang)]
    cause, share = verdict["cause"], verdict.get("skill")
    if cause == "healthy":
        told = _t("skill", lang, skill=_pct(share)) if isinstance(share, (int, float)) else ""
        lines.append("  " + _t("healthy", lang, skill=told))
    elif cause == "inconclusive":
        lines.append("  " + _t("inconclusive", lang, skill=_pct(share)))
    else:
        sep = "：" if lang == "zh" else ": "
        facts = facts_text(cause, lang, verdict.get("evidence") or {})
        sure = _sure_word(verdict["sure"], lang)
        lines.append(f"  {title(cause, lang)}" + (f"（{sure}）" if lang == "zh" else f" ({sure})") +
                     (sep + facts if facts else ""))
    if verdict.get("explains"):
        lines.append("  " + _t("explains", lang, kinds=_titles(verdict["explains"], lang)))
    if verdict.get("also"):
        lines.append("  " + _t("besides", lang, kinds=_titles(verdict["also"], lang)))
    if verdict.get("news"):
        lines.append("  " + _t("news", lang, kinds=_titles(verdict["news"], lang)))
    return "\n".join(lines)


def _pct(x) -> str:
    return f"{100 * x:.0f}%" if isinstance(x, (int, float)) else "?"


def verdict_line(verdict: dict, recipe: dict, events: list, lang: str) -> str:
    """The verdict in one line, for the live display: what, how sure, on what evidence, and the
    first cure."""
    cause = verdict["cause"]
    if cause in ("healthy", "inconclusive"):
        text = _verdict_text({**verdict, "explains": [], "also": [], "news": []}, events, lang).splitlines()[1]
        return text.strip()
    facts = facts_text(cause, lang, verdict.get("evidence") or {})
    sep = "：" if lang == "zh" else ": "
    line = _t("line", lang, title=title(cause, lang), sure=_sure_word(verdict["sure"], lang),
              facts=sep + facts if facts else "")
    cures = _remedy_lines(_remedy_kind(verdict, events), recipe, _context(verdict, events, recipe, lang), lang)
    if cures:
        line += ("；" if lang == "zh" else "; ") + cures[0]
    return line


def _remedy_kind(verdict: dict, events: list) -> str:
    """Whose cures to offer for the verdict: after a blow-up, what the rescues did decides."""
    cause = verdict["cause"]
    if cause in _DIVERGENCE + ("collapse",):
        seen = {e.get("kind") for e in events}
        order = ("rescue_exhausted", "rescue", "collapse", "divergence", cause)
        return next(k for k in order if k in seen or k == cause)
    return cause


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
    events = [e for e in events if e.get("kind") != "verdict"]   # told in its own section
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


def _next(verdict: dict, events: list, recipe: dict, lang: str) -> str:
    """The cures of the verdict's cause, then of the findings that stand beside it; none that
    the verdict rules out."""
    ctx = _context(verdict, events, recipe, lang)
    cause = verdict["cause"]
    kinds = [] if cause == "healthy" else ["underfitting" if cause == "inconclusive" else cause]
    kinds += [k for k in verdict.get("also") or () if k not in kinds]
    lines = [_t("try", lang)]
    for kind in kinds:
        remedies = _remedy_lines(_remedy_kind({"cause": kind}, events) if kind == cause else kind, recipe, ctx, lang)
        if kind in GOOD_NEWS and not remedies:
            continue
        lines.append(f"  - {title(kind, lang)}{'：' if lang == 'zh' else ': '}{advice(kind, lang)}")
        lines.extend(f"      {r}" for r in remedies)
        if kind in _ALSO and (kind != "underfitting" or "capacity_up" not in ctx["forbid"]):
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
    return [_t("key", lang, key=c["key"], current=_shown_value(c["current"]), proposal=_shown_value(c["proposal"]),
               why=c["why"]) for c in _cures(kind, recipe, ctx, lang)]


def _cures(kind: str, recipe: dict, ctx: dict, lang: str) -> list[dict]:
    """The cures of one diagnosis: recipe key, its value, the value to try, why, and the
    direction it pushes in; none in a direction the verdict rules out."""
    cures = []
    for path, proposer in _REMEDIES.get(kind, ()):
        if _DIRECTION.get(proposer) in ctx.get("forbid", ()):
            continue   # it would contradict another finding or what the run went through
        found, current = _get(recipe, path)
        if not found:
            continue  # e.g. model.activation for a linear model
        offer = proposer(current, ctx)
        if offer is None:
            continue
        proposal, why_en, why_zh = offer
        cures.append({"kind": kind, "key": path, "current": current, "proposal": proposal,
                      "why": why_zh if lang == "zh" else why_en, "direction": _DIRECTION.get(proposer)})
    return cures


def proposals(run_dir) -> tuple[dict, list[dict]]:
    """The verdict ``danlu diagnose`` tells for a run and every cure it proposes (structured:
    key, current, proposal, direction), for tests and benchmarks to check."""
    run = Path(run_dir)
    events = read_jsonl(run / "events.jsonl")
    recipe = _read_recipe(run / "recipe.yaml")
    verdict = _recorded_verdict(events)
    ctx = _context(verdict, events, recipe, "en")
    cause = verdict["cause"]
    kinds = [] if cause == "healthy" else ["underfitting" if cause == "inconclusive" else cause]
    kinds += [k for k in verdict.get("also") or () if k not in kinds]
    cures = []
    for kind in kinds:
        cures += _cures(_remedy_kind({"cause": kind}, events) if kind == cause else kind, recipe, ctx, "en")
    return verdict, cures
