"""``danlu report RUN``: one self-contained HTML page about a run, and its plots as PNG files.

The page reads the run directory (recipe, metrics.jsonl, grad_norms.jsonl, events.jsonl,
summary.json) and, for a finished run, the saved model's predictions on the test split. A run
that has not finished still gets a page: the sections that need the final model say why they
are empty instead.
"""
from __future__ import annotations

import datetime as _dt
import math
import sys
from pathlib import Path

from ..errors import UserError
from . import _html as h
from . import _plots
from ._runfiles import RunFiles, read_run
from ._text import has_phrase, heading, phrase, split_name

SPLITS = ("train", "validation", "test")


def write_report(run_dir: str | Path, out: str | Path | None = None, lang: str | None = None) -> Path:
    """Write the report of ``run_dir`` and return the HTML file's path.

    ``out`` is a folder (default: the run directory) that receives ``report.html`` and
    ``plots/*.png``; a path ending in ``.html`` names the page itself, with ``plots/`` beside it.
    ``lang`` is ``"en"`` or ``"zh"`` (default: from the locale); a Chinese report has bilingual
    headings.
    """
    lang = _check_lang(lang)
    run = read_run(run_dir)
    page_path, plots = _destination(run.path, out)
    evidence, missing = _evidence(run, lang)
    sections = [
        _facts(run, lang),
        _metrics(run, evidence, lang),
        _curves(run, plots, lang),
        _lr(run, evidence, plots, lang),
        _gradients(run, plots, lang),
        _evaluation(run, evidence, missing, plots, lang),
        _diagnosis(run, lang),
        _recipe(run, lang),
    ]
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    page = h.page(phrase("title", lang, name=run.name), phrase("generated", lang, path=run.path, when=when),
                  sections, lang, phrase("contents", lang))
    _write(page_path, page)
    return page_path


def _write(path: Path, text: str) -> None:
    """Whole or not at all: a report being rewritten is never left half written."""
    from ..training._checkpoint import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def _check_lang(lang: str | None) -> str:
    if lang is None:
        from ..glossary import default_lang

        return default_lang()
    if lang not in ("en", "zh"):
        raise UserError(f"--lang must be en or zh, got {lang!r}")
    return lang


def _destination(run_path: Path, out) -> tuple[Path, Path]:
    if out is None:
        return run_path / "report.html", run_path / "plots"
    out = Path(out)
    if out.suffix.lower() in (".html", ".htm"):
        return out, out.parent / "plots"
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; give -o a folder, or a path ending in .html")
    return out / "report.html", out / "plots"


def _evidence(run: RunFiles, lang: str):
    """(Evidence, None), or (None, why) when the final model or the data cannot be had."""
    if not run.finished:
        return None, phrase("no_model", lang, path=run.path)
    if run.own_pictures:
        return None, None
    from ._evidence import gather

    print(f"report: {run.path}: evaluating the saved model on its data", file=sys.stderr)
    try:
        return gather(run.path, run.recipe), None
    except UserError as err:  # e.g. the recipe's CSV file has moved: the rest of the page still helps
        return None, str(err)


def _fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------

def _facts(run: RunFiles, lang: str) -> h.Section:
    r, s = run.recipe, run.summary.get("run", {})
    data = r.data.name or r.data.path or r.data.source
    status = phrase("finished", lang) if run.finished else phrase("unfinished", lang, path=run.path)
    rows = [
        (phrase("name", lang), run.name),
        (phrase("status", lang), status),
        (phrase("data", lang), f"{r.data.source}: {data}"),
        (phrase("model", lang), r.model.kind),
        (phrase("parameters", lang), _count(s.get("parameters"))),
        (phrase("device", lang), s.get("device", r.device)),
        (phrase("epochs", lang), phrase("epochs_value", lang, done=s.get("epochs", len(run.history)),
                                        planned=r.train.epochs)),
        (phrase("steps", lang), s.get("steps", run.history[-1].get("step") if run.history else None)),
        (phrase("stop_reason", lang), s.get("stop_reason") or (phrase("no_stop", lang) if s else None)),
        (phrase("restored", lang), s.get("restored_best_epoch")),
        (phrase("seed", lang), r.seed),
        (phrase("optimizer", lang), f"{r.optimizer.kind}, lr {r.optimizer.lr}"),
        (phrase("schedule", lang), r.schedule.kind),
        (phrase("events", lang), len(run.events)),
    ]
    return h.Section("facts", heading("facts", lang), h.table(None, [[k, _fmt(v)] for k, v in rows]))


def _count(n) -> str | None:
    return None if n is None else f"{int(n):,}"


def _metrics(run: RunFiles, evidence, lang: str) -> h.Section:
    from ..evaluation import metric_direction

    if not run.summary:
        return h.Section("metrics", heading("metrics", lang), h.para(phrase("no_summary", lang)))
    splits = [s for s in SPLITS if s in run.summary]
    baseline = evidence.baseline if evidence is not None else {}
    names = list(dict.fromkeys(k for s in splits for k in run.summary[s]))
    header = [phrase("metric", lang)]
    for s in splits:
        header += [f"{split_name(s, lang)} · {phrase('run_col', lang)}", f"{split_name(s, lang)} · "
                   f"{phrase('baseline_col', lang)}"]
    rows, classes = [], []
    for name in names:
        row, cls = [name], [""]
        for s in splits:
            value, base = run.summary[s].get(name), baseline.get(s, {}).get(name)
            row += [_fmt(value), _fmt(base)]
            cls += [_beats(value, base, metric_direction(name)) if base is not None else "", "num"]
        rows.append(row)
        classes.append(cls)
    parts = [h.table(header, rows, classes)]
    if evidence is not None:
        what = phrase("baseline_cls" if evidence.info.task == "classification" else "baseline_reg", lang)
        parts.append(h.para(phrase("baseline_note", lang, what=what), "note"))
        parts.append(h.para(phrase("verdict", lang, split=evidence.split, split_zh=split_name(evidence.split, "zh"),
                                   verdict=evidence.verdict)))
    else:
        parts.append(h.para(phrase("no_baseline", lang), "note"))
    body = h.join(*parts)
    return h.Section("metrics", heading("metrics", lang), body)


def _beats(value, base, direction: str) -> str:
    """CSS class of a model cell: good when it beats the baseline, bad when it does not."""
    if not isinstance(value, (int, float)) or not isinstance(base, (int, float)):
        return "num"
    if not (math.isfinite(value) and math.isfinite(base)):
        return "num"
    better = value > base if direction == "max" else value < base
    return "num good" if better else "num bad"


def _curves(run: RunFiles, plots: Path, lang: str) -> h.Section:
    from ..evaluation import PRIMARY_METRIC

    if not run.history:
        return h.Section("curves", heading("curves", lang), h.para(phrase("no_epochs", lang)))
    if not any("val_loss" in row or "train_loss_running_mean" in row for row in run.history):
        return h.Section("curves", heading("curves", lang), h.para(phrase("no_curve", lang)))
    primary = PRIMARY_METRIC["classification" if "val_accuracy" in run.history[-1] else "regression"]
    png = _plots.plot_training_curves(run.history, plots / "curves.png", primary=primary)
    body = h.figure(png, phrase("curves_caption", lang, metric=primary), "training curves")
    return h.Section("curves", heading("curves", lang), body)


def _lr(run: RunFiles, evidence, plots: Path, lang: str) -> h.Section:
    from ._evidence import planned_lr

    kind = run.recipe.schedule.kind
    planned = planned_lr(run.recipe, evidence.n_train) if evidence is not None else None
    if planned is None and not any("lr" in row for row in run.history):
        return h.Section("lr", heading("lr", lang), h.para(phrase("no_epochs", lang)))
    png = _plots.plot_lr(run.history, plots / "lr.png", planned=planned)
    if planned is not None:
        caption = phrase("lr_caption", lang, kind=kind)
    else:  # plateau has no plan; without the data (see the evaluation section) it cannot be recomputed
        caption = phrase("lr_caption_logged" if kind == "plateau" else "lr_caption_only_logged", lang, kind=kind)
    return h.Section("lr", heading("lr", lang), h.figure(png, caption, "learning rate"))


def _gradients(run: RunFiles, plots: Path, lang: str) -> h.Section:
    if not run.grad_norms:
        return h.Section("gradients", heading("gradients", lang), h.para(phrase("not_recorded", lang)))
    every = run.recipe.get("monitors", {}).get("gradients", {}).get("every", "?")
    png = _plots.plot_grad_norms(run.grad_norms, plots / "grad_norms.png")
    return h.Section("gradients", heading("gradients", lang),
                     h.figure(png, phrase("grad_caption", lang, every=every), "gradient norms"))


def _evaluation(run: RunFiles, evidence, missing: str | None, plots: Path, lang: str) -> h.Section:
    split = evidence.split if evidence is not None else "test"
    title = heading("evaluation", lang, split=split, split_zh=split_name(split, "zh"))
    if evidence is None and missing is None and run.own_pictures:
        return h.Section("evaluation", title, _own_pictures(run, plots, lang))
    if evidence is None:
        return h.Section("evaluation", title, h.para(phrase("no_evaluation", lang, why=missing)))
    where = {"split": split, "split_zh": split_name(split, "zh")}
    if evidence.info.task == "classification":
        body = _classification_figures(evidence, plots, lang, where)
    elif evidence.info.task == "multilabel":   # one sigmoid per label: its figures, not regression plots
        body = _multilabel_figures(evidence)
    else:
        body = _regression_figures(evidence, plots, lang, where)
    return h.Section("evaluation", title, body)


REPORT_PICTURES = {"curves.png", "lr.png", "grad_norms.png", "roc.png", "pr.png", "confusion.png",
                   "residuals.png", "predicted_vs_true.png"}


def _own_pictures(run: RunFiles, plots: Path, lang: str) -> h.Markup:
    """The pictures the model drew when training ended (RUN/plots/): samples, latent maps,
    clusters, components. Nothing to judge against labels, so they are shown as they are."""
    found = sorted(p for p in (run.path / "plots").glob("*.png") if p.name not in REPORT_PICTURES)
    if not found:
        return h.para(phrase("no_pictures", lang, path=run.path / "plots"))
    items = [h.figure(p, phrase(f"picture_{p.stem}", lang) if has_phrase(f"picture_{p.stem}") else p.stem, p.stem)
             for p in found]
    return h.figures(*items)


def _classification_figures(ev, plots: Path, lang: str, where: dict) -> h.Markup:
    from ..evaluation import pr_curve_points, roc_curve_points

    classes = list(ev.info.classes)
    n = ev.info.n_classes
    items = []
    roc = roc_curve_points(ev.y_true, ev.scores, n)
    if roc["per_class"]:  # a split holding a single class has no curve
        plural = "" if roc["average"] == "binary" else "s (one class vs rest)"
        pr = pr_curve_points(ev.y_true, ev.scores, n)
        png = _plots.plot_roc(ev.y_true, ev.scores, classes, plots / "roc.png")
        auc = _areas(roc, "auc", classes, lang)
        items.append(h.figure(png, phrase("roc_caption", lang, s=plural, auc=auc, **where), "ROC curve"))
        png = _plots.plot_pr(ev.y_true, ev.scores, classes, plots / "pr.png")
        ap = _areas(pr, "average_precision", classes, lang)
        items.append(h.figure(png, phrase("pr_caption", lang, s=plural, ap=ap, **where), "precision-recall curve"))
    png = _plots.plot_confusion(ev.y_true, ev.predicted_class, classes, plots / "confusion.png")
    items.append(h.figure(png, phrase("confusion_caption", lang, **where), "confusion matrix"))
    return h.figures(*items)


def _areas(points: dict, key: str, classes: list, lang: str) -> str:
    """One area, or their macro mean (the figure danlu's metrics report) and each class's."""
    if points["average"] == "binary":
        return f"{points[key]:.3f}"
    each = ", ".join(f"{classes[c] if c < len(classes) else c} {p[key]:.3f}" for c, p in points["per_class"].items())
    return phrase("macro_mean", lang, mean=f"{points[key]:.3f}", each=each)


def _multilabel_figures(ev) -> h.Markup:
    """Per label of a multilabel run: precision, recall and F1 (a label is on at probability >= 0.5)."""
    from sklearn.metrics import precision_recall_fscore_support

    truth, predicted = ev.y_true.astype(int), (ev.scores >= 0.5).astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(truth, predicted, average=None, zero_division=0)
    rows = [[str(name), f"{p:.3f}", f"{r:.3f}", f"{f:.3f}"]
            for name, p, r, f in zip(ev.info.classes, precision, recall, f1)]
    return h.table(["label", "precision", "recall", "F1"], rows)


def _regression_figures(ev, plots: Path, lang: str, where: dict) -> h.Markup:
    residuals = _plots.plot_residuals(ev.y_true, ev.scores, plots / "residuals.png")
    scatter = _plots.plot_predicted_vs_true(ev.y_true, ev.scores, plots / "predicted_vs_true.png")
    return h.figures(h.figure(residuals, phrase("residual_caption", lang, **where), "residual plot"),
                     h.figure(scatter, phrase("scatter_caption", lang, **where), "predicted against true"))


def _diagnosis(run: RunFiles, lang: str) -> h.Section:
    try:
        from ..diagnose import story
    except ImportError:
        story = None
    if story is not None:
        return h.Section("diagnosis", heading("diagnosis", lang), h.pre(story(run.path, lang)))
    if not run.events:
        return h.Section("diagnosis", heading("diagnosis", lang), h.para(phrase("no_events", lang)))
    lines = "\n".join(str(e.get("message", e)) for e in run.events)
    return h.Section("diagnosis", heading("diagnosis", lang),
                     h.join(h.para(phrase("events_only", lang)), h.pre(lines)))


def _recipe(run: RunFiles, lang: str) -> h.Section:
    body = h.join(h.para(phrase("recipe_note", lang), "note"), h.pre(run.recipe_text))
    return h.Section("recipe", heading("recipe", lang), body)
