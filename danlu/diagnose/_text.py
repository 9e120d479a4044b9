"""The words of the diagnoses, in English and Chinese.

An event keeps its facts (numbers, layer names, epochs), never only a sentence, so that
``danlu diagnose RUN --lang zh`` can tell an English run's story in Chinese. Titles and the
general advice come from the glossary (``danlu explain``) when it knows the diagnosis; the
texts here are the fallback and the fact sentences, which only the monitors can write.

Position facts follow one rule: an event's ``epoch`` is the 0-based index of the epoch in
progress (as ``State.epoch``), shown 1-based; every other epoch fact (``began_epoch`` ...) is
already 1-based, like the ``epoch`` of a metrics.jsonl row.
"""
from __future__ import annotations

import math

LANGS = ("en", "zh")

# Every diagnosis id a monitor can record, roughly from most to least urgent.
DIAGNOSES = ("rescue_exhausted", "divergence", "collapse", "rescue", "nan_loss", "loss_spike",
             "exploding_gradient", "vanishing_gradient", "unscaled_features", "lr_too_high", "no_signal",
             "overfitting", "underfitting", "lr_too_low", "stopped_too_early", "still_improving", "plateau",
             "false_convergence", "converged")

# Diagnoses that are news, not problems: a run with only these is clean.
GOOD_NEWS = ("converged",)

_FALLBACK_TITLES = {
    "divergence": ("divergence (炸炉)", "炸炉"),
    "collapse": ("collapse without NaN (炸炉)", "无 NaN 的炸炉（塌缩）"),
    "nan_loss": ("non-finite loss", "损失出现 NaN/inf"),
    "unscaled_features": ("unscaled features", "特征未缩放"),
    "no_signal": ("no signal in the data", "数据中没有可学的信号"),
    "still_improving": ("stopped while still improving", "仍在进步时就停止了"),
    "stopped_too_early": ("stopped too early", "停止得太早"),
    "loss_spike": ("loss spike", "损失突增"),
    "rescue": ("rescue", "自动救援"),
    "rescue_exhausted": ("rescue exhausted", "救援失败"),
    "vanishing_gradient": ("vanishing gradient", "梯度消失"),
    "exploding_gradient": ("exploding gradient", "梯度爆炸"),
    "overfitting": ("overfitting", "过拟合"),
    "underfitting": ("underfitting", "欠拟合"),
    "converged": ("converged", "已收敛"),
    "plateau": ("plateau", "平台期"),
    "false_convergence": ("false convergence", "假收敛"),
    "lr_too_high": ("learning rate too high", "学习率过高"),
    "lr_too_low": ("learning rate too low", "学习率过低"),
}

_FALLBACK_ADVICE = {
    "divergence": ("The loss or the gradients became NaN/inf or jumped far above their recent level; the "
                   "steps are too large for this model and data.",
                   "损失或梯度变成 NaN/inf，或远高于近期水平：对这个模型和数据来说步子太大了。"),
    "collapse": ("The loss jumped to (or stayed at) the level of a constant guess after the model had done "
                 "better, or the predictions fell onto one class: the steps threw the weights away without any "
                 "NaN. The learning rate is far too high for this optimizer.",
                 "损失在模型学到东西之后又跳回（或停在）常数猜测的水平，或者预测全部落到同一类：步子太大把权重甩飞了，"
                 "只是没有出现 NaN。对这个优化器来说学习率高得太多。"),
    "unscaled_features": ("The input features live on very different scales; one learning rate cannot suit "
                          "them all, which slows training or blows it up.",
                          "输入特征的尺度相差很大；同一个学习率无法同时适合它们，训练会变慢或炸炉。"),
    "no_signal": ("The model learns the training rows but does no better than a constant guess on new rows: "
                  "the features carry no information about the label, or the labels are noise.",
                  "模型记住了训练数据，但在新数据上并不比常数猜测好：特征里没有关于标签的信息，或者标签本身是噪声。"),
    "still_improving": ("The loss was still falling clearly when the epochs ran out: the model is not "
                        "finished.", "训练轮数用完时损失仍在明显下降：模型还没训练完。"),
    "stopped_too_early": ("Early stopping ended the run while the training loss was still falling fast.",
                          "训练损失仍在快速下降时，早停就结束了训练。"),
    "nan_loss": ("A non-finite loss or gradient poisons the weights if applied; danlu skips such steps.",
                 "非有限的损失或梯度一旦应用就会毁掉权重；danlu 会跳过这样的步。"),
    "loss_spike": ("A single batch's loss far above the recent median usually announces a blow-up.",
                   "单个批次的损失远高于近期中位数，通常是炸炉的前兆。"),
    "rescue": ("danlu rolled the weights back to the last good snapshot and lowered the learning rate.",
               "danlu 把权重回滚到最后一个正常快照，并降低了学习率。"),
    "rescue_exhausted": ("Training kept blowing up after every rescue, so danlu stopped instead of looping.",
                         "每次救援后训练仍然炸炉，danlu 因此停止，而不是无限重试。"),
    "vanishing_gradient": ("The first layers get almost no gradient, so they hardly learn; saturating "
                           "activations in deep stacks are the usual cause.",
                           "前面几层几乎得不到梯度，几乎学不到东西；深层网络里饱和的激活函数是常见原因。"),
    "exploding_gradient": ("The gradient norm is huge or growing fast; the next steps may blow up.",
                           "梯度范数极大或增长很快，接下来的步可能炸炉。"),
    "overfitting": ("The model learns the training rows by heart: it does clearly better on them than on "
                    "validation rows (a generalisation gap), or training loss falls while validation loss rises.",
                    "模型在死记训练数据：在训练集上明显好于验证集（泛化差距），或训练损失下降而验证损失上升。"),
    "underfitting": ("The model does no better than a trivial guess: it is too simple or trained too little.",
                     "模型并不比平凡的猜测好：模型太简单，或训练得太少。"),
    "converged": ("The training loss stopped changing: more epochs will not help much.",
                  "训练损失不再变化：再多训练几轮帮助不大。"),
    "plateau": ("The training loss stalled while still high: training is stuck, not finished.",
                "训练损失停滞但仍然很高：训练卡住了，而不是完成了。"),
    "false_convergence": ("A flat stretch looked like convergence, but the loss fell again later; stopping "
                          "there would have been too early.",
                          "一段平坦期看似收敛，但之后损失又下降了；在那里停止就太早了。"),
    "lr_too_high": ("The epoch losses swing up and down without net progress: the steps overshoot.",
                    "每轮损失上下摆动却没有净进展：步子迈过头了。"),
    "lr_too_low": ("The loss falls steadily but very slowly: the steps are too small.",
                   "损失稳定但非常缓慢地下降：步子太小了。"),
}

# Fact sentences; a dict of variants where one diagnosis can arise in more than one way.
_FACTS = {
    "nan_loss": (
        "{what} not finite ({value}) at epoch {epoch}, batch {batch}; step skipped "
        "(bad step {bad} of {patience} allowed within {window} steps)",
        "第 {epoch} 轮第 {batch} 批的{what}不是有限数（{value}），已跳过这一步（{window} 步内第 {bad} 个坏步，"
        "满 {patience} 个将回滚）"),
    "loss_spike": (
        "batch loss {loss} is {ratio}x the recent median {median} at epoch {epoch}, batch {batch}; step "
        "skipped (bad step {bad} of {patience} allowed within {window} steps)",
        "第 {epoch} 轮第 {batch} 批的损失 {loss} 是近期中位数 {median} 的 {ratio} 倍，已跳过这一步"
        "（{window} 步内第 {bad} 个坏步，满 {patience} 个将回滚）"),
    "divergence": {
        "recurring": ("{bad} bad steps within {window} steps at epoch {epoch}, step {step}: training is "
                      "blowing up",
                      "第 {epoch} 轮第 {step} 步：{window} 步内出现 {bad} 个坏步，训练正在炸炉"),
        "weights": ("the weights are no longer finite at epoch {epoch}, step {step}: skipping steps "
                    "cannot help", "第 {epoch} 轮第 {step} 步：权重已不是有限数，跳过步也无济于事"),
    },
    "rescue": (
        "rescue {n} of {max}: rolled back to the weights of step {to_step}, learning rate {lr_before} -> "
        "{lr_after}; batches (epoch:batch) {batches} are skipped if they come again",
        "第 {n} 次救援（最多 {max} 次）：回滚到第 {to_step} 步的权重，学习率 {lr_before} -> {lr_after}；"
        "批次（轮:批）{batches} 再出现时会被跳过"),
    "rescue_exhausted": (
        "training kept blowing up after {n} rescues; stopped at epoch {epoch}, step {step}, keeping the "
        "weights of step {to_step} (the last good ones)",
        "救援 {n} 次后训练仍然炸炉；已在第 {epoch} 轮第 {step} 步停止，保留第 {to_step} 步（最后一次正常）的权重"),
    "vanishing_gradient": (
        "for {samples} samples up to step {step} the first layer {first} had gradient norm {first_norm}, "
        "only {ratio} times that of the last layer {last} ({last_norm})",
        "截至第 {step} 步的连续 {samples} 次采样中，第一层 {first} 的梯度范数 {first_norm} 只有最后一层 "
        "{last}（{last_norm}）的 {ratio} 倍"),
    "exploding_gradient": {
        "norm": ("total gradient norm {total} exceeds {limit} at step {step}; largest in layer {layer} "
                 "({layer_norm})",
                 "第 {step} 步的总梯度范数 {total} 超过 {limit}；最大的是层 {layer}（{layer_norm}）"),
        "growth": ("total gradient norm grew {growth}x over the last {samples} samples to {total} at step "
                   "{step}; largest in layer {layer} ({layer_norm})",
                   "最近 {samples} 次采样中总梯度范数增长了 {growth} 倍，第 {step} 步达到 {total}；最大的是层 "
                   "{layer}（{layer_norm}）"),
    },
    "collapse": {
        "worse_than_trivial": ("after epoch {epoch} the training loss {train_loss} (validation {val_loss}) is worse "
                               "than a constant guess ({trivial}) and than the untrained model ({initial})",
                               "第 {epoch} 轮结束时训练损失 {train_loss}（验证 {val_loss}）比常数猜测（{trivial}）"
                               "和未训练的模型（{initial}）还差"),
        "back_to_trivial": ("after epoch {epoch} the losses (training {train_loss}, validation {val_loss}) are back "
                            "at a constant guess's {trivial}, after having reached {best_loss}",
                            "第 {epoch} 轮结束时损失（训练 {train_loss}，验证 {val_loss}）在达到过 {best_loss} 之后"
                            "又回到了常数猜测的 {trivial}"),
        "one_class": ("after epoch {epoch} {top_share} of the validation predictions fall on one class "
                      "(training loss {train_loss}, constant guess {trivial})",
                      "第 {epoch} 轮结束时 {top_share} 的验证集预测落在同一类上（训练损失 {train_loss}，常数猜测 {trivial}）"),
        "dead_units": ("after epoch {epoch} {dead_share} of the units of layer {layer} output zero for every "
                       "probe row (dead ReLUs; {dead_before} at the last good epoch): a step far too large "
                       "killed them",
                       "第 {epoch} 轮结束时层 {layer} 中 {dead_share} 的单元对所有探测样本都输出零（ReLU 死亡；"
                       "上一个好的轮次为 {dead_before}）：步长过大杀死了它们"),
        "unstable": ("after a rescue the training loss rose again by {rise} in epoch {epoch} ({previous} -> "
                     "{train_loss}): the lowered rate is still too high",
                     "救援之后第 {epoch} 轮训练损失又上升了 {rise}（{previous} -> {train_loss}）：降低后的学习率仍然太高"),
        "unstable_val": ("after a rescue the validation loss jumped {rise} above its best in epoch {epoch} "
                         "({previous} -> {val_loss}): the lowered rate is still too high",
                         "救援之后第 {epoch} 轮验证损失比最佳值高出 {rise}（{previous} -> {val_loss}）：降低后的学习率仍然太高"),
    },
    "unscaled_features": (
        "with data.scale: none the feature standard deviations range from {min_std} to {max_std}, {ratio}x the "
        "median one ({median_std})",
        "data.scale 为 none 时特征标准差从 {min_std} 到 {max_std}，是中位数（{median_std}）的 {ratio} 倍"),
    "no_signal": (
        "training {metric} {train_value} but validation {metric} {val_value}, no better than a constant guess "
        "({trivial})",
        "训练集 {metric} 为 {train_value}，验证集 {metric} 却只有 {val_value}，并不比常数猜测（{trivial}）好"),
    "still_improving": (
        "the best training loss fell by {gain} over the last {window} epochs (to {loss}) when the {epochs} "
        "epochs ran out",
        "训练在 {epochs} 轮结束时，最佳训练损失在最后 {window} 轮里仍下降了 {gain}（降到 {loss}）"),
    "stopped_too_early": (
        "early stopping ended the run at epoch {epoch} while the training loss fell by {gain} over the last "
        "{window} epochs",
        "早停在第 {epoch} 轮结束了训练，而训练损失在最后 {window} 轮里仍下降了 {gain}"),
    "overfitting": {
        "rising": (
            "validation loss rose for {epochs} epochs while training loss fell; it began after epoch "
            "{began_epoch} (best val_loss {best_val_loss}); at epoch {epoch} val_loss is {val_loss}, training "
            "loss {train_loss}, gap {gap}",
            "训练损失下降的同时验证损失连续 {epochs} 轮上升；从第 {began_epoch} 轮之后开始（最佳 val_loss "
            "{best_val_loss}）；第 {epoch} 轮 val_loss 为 {val_loss}，训练损失 {train_loss}，差距 {gap}"),
        "gap": (
            "from epoch {began_epoch} on the model is clearly better on its training rows than on validation: "
            "at epoch {epoch} training {metric} {train_value} vs validation {val_value} (gap {gap}); "
            "loss {train_loss} vs {val_loss}",
            "从第 {began_epoch} 轮起模型在训练集上明显好于验证集：第 {epoch} 轮训练集 {metric} {train_value}，"
            "验证集 {val_value}（差距 {gap}）；损失 {train_loss} 对 {val_loss}"),
    },
    "underfitting": {
        "metric": ("after epoch {epoch} the training {metric} is {value}, no better than a trivial predictor "
                   "({trivial})",
                   "第 {epoch} 轮结束时训练集 {metric} 为 {value}，并不比平凡预测器（{trivial}）好"),
        "loss": ("after epoch {epoch} the training loss {train_loss} and validation loss {val_loss} are still "
                 "near the trivial predictor's {trivial}",
                 "第 {epoch} 轮结束时训练损失 {train_loss} 和验证损失 {val_loss} 仍接近平凡预测器的 {trivial}"),
    },
    "converged": (
        "the best training loss improved by only {change} over the {window} epochs up to epoch {epoch} "
        "(best {loss})",
        "截至第 {epoch} 轮，最佳训练损失在 {window} 轮内只改进了 {change}（最佳 {loss}）"),
    "plateau": (
        "the best training loss improved by only {change} over the {window} epochs up to epoch {epoch}, "
        "stuck at {loss}, still {level} of the first epoch's",
        "截至第 {epoch} 轮，最佳训练损失在 {window} 轮内只改进了 {change}，停在 {loss}，仍是第一轮的 {level}"),
    "false_convergence": (
        "the flat stretch of epoch {plateau_epoch} (loss {loss_before}) was not the end: by epoch {epoch} "
        "the loss fell to {loss_after}",
        "第 {plateau_epoch} 轮的平坦期（损失 {loss_before}）并不是终点：到第 {epoch} 轮损失降到了 {loss_after}"),
    "lr_too_high": (
        "training loss swung up and down {changes} times in the {epochs} epochs up to epoch {epoch} "
        "(by {swing} per epoch on average), for a net change of {net} over those epochs",
        "截至第 {epoch} 轮的 {epochs} 轮里，训练损失上下摆动 {changes} 次（平均每轮 {swing}），这几轮的净变化只有 {net}"),
    "lr_too_low": (
        "training loss fell steadily but slowly over the {epochs} epochs up to epoch {epoch}: {per_epoch} "
        "per epoch, without converging",
        "截至第 {epoch} 轮的 {epochs} 轮里，训练损失稳定但缓慢地下降：每轮 {per_epoch}，没有收敛"),
}

# Short cures appended to the live message (the story lists them in full, with values to try).
_HINTS = {
    "collapse": ("danlu rolls back and lowers optimizer.lr", "danlu 会回滚并降低 optimizer.lr"),
    "still_improving": ("try more train.epochs", "可试更多 train.epochs"),
    "vanishing_gradient": ("try model.activation: relu, model.batch_norm: true or residual paths",
                           "可试 model.activation: relu、model.batch_norm: true 或残差连接"),
    "exploding_gradient": ("try train.grad_clip: 1.0 or a lower optimizer.lr", "可试 train.grad_clip: 1.0 或更低的 optimizer.lr"),
    "overfitting": ("try optimizer.weight_decay, model.dropout, data.augment.*, more data or train.early_stopping",
                    "可试 optimizer.weight_decay、model.dropout、data.augment.*、更多数据或 train.early_stopping"),
    "underfitting": ("try more capacity (model.hidden), a higher optimizer.lr or more train.epochs",
                     "可试更大的模型（model.hidden）、更高的 optimizer.lr 或更多 train.epochs"),
    "plateau": ("try a higher optimizer.lr or schedule.kind: plateau", "可试更高的 optimizer.lr 或 schedule.kind: plateau"),
    "lr_too_high": ("try a lower optimizer.lr or schedule.kind: cosine", "可试更低的 optimizer.lr 或 schedule.kind: cosine"),
    "lr_too_low": ("try optimizer.lr 3 to 10 times higher", "可试把 optimizer.lr 调高 3 到 10 倍"),
    "rescue_exhausted": ("set a lower optimizer.lr and train.grad_clip", "请设置更低的 optimizer.lr 和 train.grad_clip"),
}

_WORDS = {  # values of facts that are words
    "loss": ("the loss", "损失"),
    "gradients": ("the gradients", "梯度"),
    "weights": ("the weights", "权重"),
}

_PERCENT = {"change", "swing", "per_epoch", "level", "net", "rise", "top_share", "gain", "dead_share",
            "dead_before"}
_ONE_BASED = {"epoch"}  # position facts stored 0-based (see the module docstring)


def _i(lang: str) -> int:
    return 0 if lang != "zh" else 1


def user_lang() -> str:
    """The language of live messages: the glossary's choice from the locale, English without it."""
    try:
        from ..glossary import default_lang
    except ImportError:
        return "en"
    try:
        lang = default_lang()
    except Exception:  # a broken locale must never stop training
        return "en"
    return lang if lang in LANGS else "en"


def check_lang(lang: str | None) -> str:
    from ..errors import UserError

    if lang is None:
        return user_lang()
    if lang not in LANGS:
        raise UserError(f"--lang must be en or zh, got {lang!r}")
    return lang


def fmt(value) -> str:
    """Numbers as people read them: 4 significant digits, nan/inf spelled out."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.4g}"
    return str(value)


def _shown(facts: dict, lang: str) -> dict:
    out = {}
    for key, value in facts.items():
        if key in _ONE_BASED and isinstance(value, int):
            out[key] = str(value + 1)
        elif key in _PERCENT and isinstance(value, (int, float)):
            out[key] = _percent(value)
        elif key == "batches" and isinstance(value, list):
            out[key] = ", ".join(f"{e + 1}:{b}" for e, b in value) or "-"
        elif key == "what" and value in _WORDS:
            out[key] = _WORDS[value][_i(lang)]
        else:
            out[key] = fmt(value)
    return out


def _percent(x: float) -> str:
    pct = 100 * x
    return f"{pct:.0f}%" if abs(pct) >= 10 else f"{pct:.2g}%"


class _Blank(dict):
    def __missing__(self, key):  # an old event without some fact still reads
        return "?"


def _glossary(kind: str, lang: str) -> tuple[str, str] | None:
    try:
        from ..glossary import diagnosis_text
    except ImportError:
        return None
    try:
        title, advice = diagnosis_text(kind, lang)
    except Exception:  # an unknown id: fall back to the words here
        return None
    return (title, advice) if title else None


def title(kind: str, lang: str) -> str:
    found = _glossary(kind, lang)
    if found:
        return found[0]
    return _FALLBACK_TITLES.get(kind, (kind, kind))[_i(lang)]


def advice(kind: str, lang: str) -> str:
    found = _glossary(kind, lang)
    if found and found[1]:
        return found[1]
    return _FALLBACK_ADVICE.get(kind, ("", ""))[_i(lang)]


def facts_text(kind: str, lang: str, facts: dict) -> str:
    entry = _FACTS.get(kind)
    if entry is None:
        return ""
    if isinstance(entry, dict):
        entry = entry.get(facts.get("variant"), next(iter(entry.values())))
    return entry[_i(lang)].format_map(_Blank(_shown(facts, lang)))


def message(kind: str, lang: str, facts: dict) -> str:
    """One line for the progress display: title, what was seen, and a short cure."""
    text = facts_text(kind, lang, facts)
    if kind in _HINTS:
        text += ("；" if lang == "zh" else "; ") + _HINTS[kind][_i(lang)]
    sep = "：" if lang == "zh" else ": "
    return f"{title(kind, lang)}{sep}{text}" if text else title(kind, lang)
