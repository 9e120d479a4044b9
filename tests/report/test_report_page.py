"""The page of a tiny finished run: every section, valid embedded PNGs, no external URL,
escaped values, and figures that agree with scikit-learn and with the run's own logs."""
import json
import math
import re

import numpy as np
import pytest
from report_testkit import PNG_SIGNATURE, decode_png, image_sources, open_png, parse, section_ids

SECTIONS = ["facts", "metrics", "curves", "lr", "gradients", "evaluation", "diagnosis", "recipe"]


def test_classification_page_has_every_section_and_plot(iris_run, iris_report):
    page = iris_report.read_text(encoding="utf-8")
    assert iris_report == iris_run.path / "report.html"
    assert section_ids(page) == SECTIONS
    plots = sorted(p.name for p in (iris_run.path / "plots").iterdir())
    assert plots == ["confusion.png", "curves.png", "grad_norms.png", "lr.png", "pr.png", "roc.png"]
    assert len(image_sources(page)) == len(plots)
    text = " ".join(parse(page).text)
    for fact in (f"{iris_run.summary['run']['parameters']:,}", "3 of 3 planned", "cosine", "adam, lr 0.02"):
        assert fact in text
    assert "Not recorded" not in text          # gradient norms were sampled every step
    assert "What happened" in text             # the diagnosis story
    assert "schedule:\n  kind: cosine" in page  # the recipe as YAML


def test_regression_page_has_residual_plots(diabetes_run, diabetes_report):
    page = diabetes_report.read_text(encoding="utf-8")
    assert section_ids(page) == SECTIONS
    plots = sorted(p.name for p in (diabetes_run.path / "plots").iterdir())
    assert "residuals.png" in plots and "predicted_vs_true.png" in plots
    assert "roc.png" not in plots and "confusion.png" not in plots
    assert len(image_sources(page)) == len(plots)


def test_every_image_is_an_embedded_png_equal_to_its_file(iris_run, iris_report, diabetes_run, diabetes_report):
    for run, report in ((iris_run, iris_report), (diabetes_run, diabetes_report)):
        page = report.read_text(encoding="utf-8")
        files = {p.read_bytes() for p in (run.path / "plots").glob("*.png")}
        for src in image_sources(page):
            data = decode_png(src)
            assert data.startswith(PNG_SIGNATURE)
            image = open_png(data)
            assert image.width > 200 and image.height > 200
            assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 2  # not a blank picture
            assert data in files


def test_page_has_no_external_address(iris_report, diabetes_report):
    for report in (iris_report, diabetes_report):
        page = report.read_text(encoding="utf-8")
        assert "http://" not in page and "https://" not in page
        for tag, attrs in parse(page).tags:
            for name in ("src", "href"):
                value = attrs.get(name)
                if value is not None:
                    assert value.startswith(("data:image/png;base64,", "#")), (tag, value[:80])
        assert "@import" not in page and "url(" not in page  # nothing fetched from CSS either


def test_values_from_files_are_escaped(iris_report):
    page = iris_report.read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "iris &lt;script&gt;alert(1)&lt;script&gt;" in page
    assert [t for t, _ in parse(page).tags].count("script") == 0


def test_event_text_with_markup_is_escaped(iris_run, run_copy):
    from danlu.report._report import _diagnosis
    from danlu.report._runfiles import read_run

    run = run_copy(iris_run)
    # an unknown kind is told by its name, so the story carries it onto the page
    event = {"kind": '<img src=x onerror="alert(1)"> & more', "epoch": 1, "batch": 0, "step": 3}
    with open(run / "events.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(event) + "\n")
    section = _diagnosis(read_run(run), "en").body.text
    assert "<img src=x" not in section
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; more" in section


def test_test_split_figures_agree_with_sklearn_and_summary(iris_run, diabetes_run):
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.metrics import accuracy_score, r2_score, roc_auc_score

    from danlu.training import prepare_run_data as _prepare_data
    from danlu.report._evidence import gather

    ev = gather(iris_run.path, iris_run_recipe(iris_run))
    test = iris_run.summary["test"]
    assert ev.split == "test"
    assert accuracy_score(ev.y_true, ev.predicted_class) == pytest.approx(test["accuracy"], abs=1e-9)
    assert roc_auc_score(ev.y_true, ev.scores, multi_class="ovr") == pytest.approx(test["roc_auc"], abs=1e-6)
    splits = _prepare_data(iris_run_recipe(iris_run)).splits
    (X_tr, y_tr), (X_te, y_te) = splits["train"], splits["test"]
    majority = DummyClassifier(strategy="most_frequent").fit(X_tr.numpy(), y_tr.numpy())
    assert ev.baseline_name == "majority"
    assert ev.baseline["test"]["accuracy"] == pytest.approx(majority.score(X_te.numpy(), y_te.numpy()))

    ev = gather(diabetes_run.path, iris_run_recipe(diabetes_run))
    assert r2_score(ev.y_true, ev.scores) == pytest.approx(diabetes_run.summary["test"]["r2"], abs=1e-6)
    splits = _prepare_data(iris_run_recipe(diabetes_run)).splits
    y_train, y_test = (splits[s][1].numpy().astype(np.float64) for s in ("train", "test"))
    mean = DummyRegressor().fit(np.zeros((len(y_train), 1)), y_train)
    expected = r2_score(y_test, mean.predict(np.zeros((len(y_test), 1))))
    assert ev.baseline["test"]["r2"] == pytest.approx(expected, abs=1e-9)


def iris_run_recipe(run):
    from danlu.training import read_run_recipe

    return read_run_recipe(run.path)


def test_planned_schedule_matches_the_logged_rates(iris_run):
    """The per-step curve is recomputed from the recipe; at each epoch's last step it must give
    the rate the training loop logged."""
    from danlu.training import prepare_run_data as _prepare_data
    from danlu.report import planned_lr

    recipe = iris_run_recipe(iris_run)
    n_train = len(_prepare_data(recipe).splits["train"][0])
    steps, rates = planned_lr(recipe, n_train)
    logged = [json.loads(line) for line in (iris_run.path / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == logged[-1]["step"] == iris_run.summary["run"]["steps"]
    for row in logged:
        assert rates[row["step"]] == pytest.approx(row["lr"], rel=1e-12)
    assert rates[0] < rates[2] and rates[2] > rates[-1]  # warmup, then the cosine decay
    assert planned_lr(recipe.with_overrides({"schedule.kind": "plateau"}), n_train) is None


def test_chinese_report_has_bilingual_headings(iris_run, tmp_path):
    from danlu.report import write_report

    out = write_report(iris_run.path, tmp_path / "zh", lang="zh")
    assert out == tmp_path / "zh" / "report.html"
    assert len(list((tmp_path / "zh" / "plots").glob("*.png"))) == 6
    page = out.read_text(encoding="utf-8")
    assert '<html lang="zh-CN">' in page
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert "训练与验证曲线 · Training and validation curves" in headings
    assert "测试集评估 · Evaluation on the test split" in headings
    assert all(" · " in h for h in headings)
    assert "下一步可以试试" in page  # the diagnosis told in Chinese


def test_unfinished_run_still_gets_a_page(iris_run, run_copy):
    from danlu.report import write_report

    run = run_copy(iris_run)
    for name in ("summary.json", "model.safetensors", "grad_norms.jsonl"):
        (run / name).unlink()
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"epoch": 4, "step"')  # a line cut by a kill
    page = write_report(run, lang="en").read_text(encoding="utf-8")
    text = " ".join(parse(page).text)
    assert section_ids(page) == SECTIONS
    assert "not finished" in text and f"danlu resume {run}" in text
    assert "Not recorded" in text
    assert "No final metrics" in text
    assert len(image_sources(page)) == 2  # the curves and the logged learning rate


def test_cli_writes_the_report_and_refuses_a_missing_run(iris_run, run_cli, tmp_path):
    done = run_cli("report", iris_run.path, "-o", tmp_path / "out", "--lang", "en")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "out" / "report.html")
    assert (tmp_path / "out" / "plots" / "roc.png").is_file()
    missing = run_cli("report", tmp_path / "nowhere")
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "no such run directory" in missing.stderr


def test_report_command_is_light_at_import():
    import subprocess
    import sys

    code = "import sys, danlu.commands.report; print(sorted(m for m in ('torch', 'numpy', 'sklearn', " \
           "'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_number_reads_what_the_monitors_write():
    from danlu.report._runfiles import number

    assert number("inf") == math.inf and math.isnan(number("nan")) and math.isnan(number(None))
    assert number(np.float32(2.5)) == 2.5


def test_missing_data_leaves_the_logged_sections(iris_run, run_copy, monkeypatch, tmp_path):
    """When the recipe's data cannot be read again (a CSV moved away), the page still shows what
    the run directory holds, and says why the evaluation is missing."""
    from danlu.errors import DataError
    from danlu.report import _evidence, write_report

    def gone(run_dir, recipe):
        raise DataError("data/rows.csv: no such file; give data.path <relative to the recipe>")

    monkeypatch.setattr(_evidence, "gather", gone)
    page = write_report(iris_run.path, tmp_path / "page.html", lang="en").read_text(encoding="utf-8")
    text = " ".join(parse(page).text)
    assert "Not available: data/rows.csv: no such file; give data.path <relative to the recipe>" in text
    assert "The learning rate logged at the end of each epoch (schedule cosine)." in text
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["curves.png", "grad_norms.png", "lr.png"]
