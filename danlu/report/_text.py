"""The report's fixed words, in English and Chinese.

Headings are bilingual in a Chinese report (中文 · English), so a reader can match them with
the English documentation and the plots, whose labels are English.
"""
from __future__ import annotations

HEADINGS = {
    "facts": ("Run facts", "运行概况"),
    "metrics": ("Metrics against the baseline", "指标与基线对比"),
    "curves": ("Training and validation curves", "训练与验证曲线"),
    "lr": ("Learning-rate schedule", "学习率计划"),
    "gradients": ("Gradient norms", "梯度范数"),
    "evaluation": ("Evaluation on the {split} split", "{split_zh}评估"),
    "diagnosis": ("Diagnosis", "诊断"),
    "recipe": ("Recipe", "配方"),
}

SPLITS_ZH = {"train": "训练集", "validation": "验证集", "test": "测试集"}

PHRASES = {
    "title": ("danlu report: {name}", "danlu 报告：{name}"),
    "generated": ("run directory {path} · generated {when}", "运行目录 {path} · 生成于 {when}"),
    "contents": ("Contents", "目录"),
    # facts
    "name": ("name", "名称"),
    "status": ("status", "状态"),
    "finished": ("finished", "已完成"),
    "unfinished": ("not finished (no summary.json or model.safetensors); continue it with `danlu resume {path}`",
                   "尚未完成（缺少 summary.json 或 model.safetensors）；可用 `danlu resume {path}` 继续"),
    "data": ("data", "数据"),
    "task": ("task", "任务"),
    "model": ("model", "模型"),
    "parameters": ("parameters (weights and biases)", "参数量（权重与偏置）"),
    "device": ("device", "设备"),
    "epochs": ("epochs", "轮次"),
    "epochs_value": ("{done} of {planned} planned", "{done} / 计划 {planned}"),
    "steps": ("optimizer steps", "优化步数"),
    "stop_reason": ("stop reason", "停止原因"),
    "no_stop": ("none: every planned epoch ran", "无：计划的轮次全部完成"),
    "restored": ("weights restored from epoch", "权重恢复自第几轮"),
    "seed": ("seed", "随机种子"),
    "optimizer": ("optimizer", "优化器"),
    "schedule": ("schedule", "学习率计划"),
    "events": ("events (diagnoses and rescues)", "事件（诊断与抢救）"),
    # metrics
    "metric": ("metric", "指标"),
    "run_col": ("model", "模型"),
    "baseline_col": ("baseline", "基线"),
    "baseline_note": ("Baseline: the trivial predictor fitted on the training split — {what}. Green: the model "
                      "beats it; red: it does not.",
                      "基线：在训练集上拟合的平凡预测器——{what}。绿色：模型优于基线；红色：不如基线。"),
    "baseline_cls": ("it predicts the class frequencies, so always the majority class",
                     "按各类别频率给出概率，因此总是预测多数类"),
    "baseline_reg": ("it always predicts the mean", "总是预测均值"),
    "verdict": ("On the {split} split the model is {verdict}.", "{split_zh}上的显著性检验：{verdict}"),
    "no_baseline": ("No baseline: it needs the run's final model and data (see the evaluation section).",
                    "没有基线：需要运行的最终模型与数据（见评估一节）。"),
    "no_summary": ("No final metrics: the run has not finished.", "没有最终指标：这次运行尚未完成。"),
    # plots
    "no_epochs": ("No epoch has been logged yet (metrics.jsonl is empty).", "还没有记录任何一轮（metrics.jsonl 为空）。"),
    "curves_caption": ("Loss per epoch: the training loss is the running mean over each epoch's batches, the "
                       "validation loss is measured after the epoch. Right: the validation {metric}.",
                       "每轮的损失：训练损失是该轮各批次的滑动平均，验证损失在该轮结束后测量。右图：验证集 {metric}。"),
    "lr_caption": ("The learning rate the schedule ({kind}) plans for every optimizer step, and the rate logged at "
                   "the end of each epoch (they differ after a divergence rescue lowered it).",
                   "学习率计划（{kind}）为每个优化步给出的学习率，以及每轮结束时记录的学习率"
                   "（炸炉抢救降低学习率后两者会不同）。"),
    "lr_caption_logged": ("The learning rate logged at the end of each epoch ({kind}: the rate depends on the "
                          "validation figures, so no per-step plan can be drawn).",
                          "每轮结束时记录的学习率（{kind}：学习率取决于验证结果，无法画出逐步计划）。"),
    "lr_caption_only_logged": ("The learning rate logged at the end of each epoch (schedule {kind}).",
                               "每轮结束时记录的学习率（学习率计划 {kind}）。"),
    "grad_caption": ("Gradient norm of each layer and in total, sampled every {every} optimizer steps "
                     "(log scale). Vanishing: the first layers' norms far below the last ones'; exploding: "
                     "norms growing by orders of magnitude.",
                     "每层及总体的梯度范数，每 {every} 个优化步采样一次（对数坐标）。梯度消失：前面层的范数远小于"
                     "后面层；梯度爆炸：范数成数量级增长。"),
    "not_recorded": ("Not recorded: the run has no grad_norms.jsonl (the gradient monitor was off, or the run "
                     "was shorter than its sampling interval, monitors.gradients.every).",
                     "未记录：运行目录中没有 grad_norms.jsonl（梯度监控未开启，或训练步数少于采样间隔 "
                     "monitors.gradients.every）。"),
    "roc_caption": ("ROC curve{s} on the {split} split: true against false positive rate as the decision "
                    "threshold moves; AUC {auc}.",
                    "{split_zh}上的 ROC 曲线：随判定阈值变化的真正例率与假正例率；AUC {auc}。"),
    "pr_caption": ("Precision-recall curve{s} on the {split} split; average precision {ap}.",
                   "{split_zh}上的精确率-召回率曲线；平均精确率 {ap}。"),
    "macro_mean": ("{mean} (mean of {each})", "{mean}（各类平均：{each}）"),
    "confusion_caption": ("Confusion matrix on the {split} split: rows are the true class, columns the "
                          "predicted one.", "{split_zh}上的混淆矩阵：行是真实类别，列是预测类别。"),
    "residual_caption": ("Residuals on the {split} split: true minus predicted value, against the prediction. "
                         "A good fit scatters evenly around zero.",
                         "{split_zh}上的残差：真实值减预测值，横轴为预测值。拟合良好时残差均匀分布在零附近。"),
    "scatter_caption": ("Predicted against true values on the {split} split; points on the diagonal are exact.",
                        "{split_zh}上预测值与真实值的对比；落在对角线上的点完全准确。"),
    "no_evaluation": ("Not available: {why}", "无法生成：{why}"),
    "no_curve": ("No loss curve over epochs: the model was fitted in one go, or it is an agent whose return "
                 "curve is shown further down.",
                 "没有按轮次的损失曲线：模型是一次拟合完成的，或者这是一个智能体，其回报曲线见下文。"),
    "no_pictures": ("The run drew no pictures in {path}.", "运行没有在 {path} 中画图。"),
    "picture_samples": ("Samples drawn from the model (fixed seed).", "从模型中采样得到的图像（固定种子）。"),
    "picture_latent_map": ("The latent space: each test image's code, coloured by its label.",
                           "潜在空间：每张测试图像的编码，按标签着色。"),
    "picture_codes": ("The autoencoder's codes of the test images, coloured by label.", "自编码器对测试图像的编码，按标签着色。"),
    "picture_reconstructions": ("Test images (top) over their reconstructions (bottom).",
                                "测试图像（上）与其重构（下）。"),
    "picture_clusters": ("Clusters on the first two principal components, beside the true labels.",
                         "前两个主成分上的聚类结果，旁边是真实标签。"),
    "picture_silhouette": ("Silhouette of each row: how much closer it is to its own cluster than to the next.",
                           "每一行的轮廓系数：它离自己的簇比离最近的其他簇近多少。"),
    "picture_components": ("The rows on the first two principal components, coloured by label.",
                           "各行在前两个主成分上的位置，按标签着色。"),
    "picture_scree": ("Share of the variance kept by the first k components.", "前 k 个主成分保留的方差比例。"),
    "picture_returns": ("Episode returns while training, with their moving average.", "训练中每回合的回报及其滑动平均。"),
    "picture_interpolation": ("Decoded points on the line between two inputs' codes.", "两个输入编码之间连线上各点的解码结果。"),
    "no_model": ("the run has not finished, so there is no final model yet; continue it with `danlu resume {path}`",
                 "运行尚未完成，还没有最终模型；可用 `danlu resume {path}` 继续"),
    "events_only": ("The diagnosis module is not available; the events as logged:", "诊断模块不可用；记录的事件如下："),
    "no_events": ("No events were logged.", "没有记录任何事件。"),
    "recipe_note": ("The resolved recipe (recipe.yaml); `danlu train` on it reproduces the run.",
                    "解析后的完整配方（recipe.yaml）；用 `danlu train` 运行它即可复现这次训练。"),
}


def has_phrase(key: str) -> bool:
    return key in PHRASES


def phrase(key: str, lang: str, **values) -> str:
    text = PHRASES[key][1 if lang == "zh" else 0]
    return text.format(**values) if values else text


def heading(key: str, lang: str, **values) -> str:
    en, zh = HEADINGS[key]
    en = en.format(**values)
    return f"{zh.format(**values)} · {en}" if lang == "zh" else en


def split_name(split: str, lang: str) -> str:
    return SPLITS_ZH.get(split, split) if lang == "zh" else split
