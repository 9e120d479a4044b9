"""Reports of runs that draw their own pictures: generative (VAE) and unsupervised (k-means)."""
from __future__ import annotations

import re

import danlu
from danlu.report import write_report

DIGITS = {"source": "sklearn", "name": "digits", "scale": "none"}


def _alts(page) -> list[str]:
    return re.findall(r'alt="([^"]+)"', page.read_text(encoding="utf-8"))


def test_vae_report_shows_its_samples_and_latent_map_not_a_confusion_matrix(tmp_path):
    run = danlu.train({"name": "vae", "seed": 0, "data": DIGITS, "model": {"kind": "vae", "hidden": [32]},
                       "train": {"epochs": 1, "batch_size": 256}}, tmp_path / "vae", progress="none")
    alts = _alts(write_report(run.path, lang="en"))
    assert {"latent_map", "samples", "training curves"} <= set(alts)
    assert "confusion matrix" not in alts and "ROC curve" not in alts


def test_kmeans_report_shows_clusters_and_says_there_is_no_curve(tmp_path):
    run = danlu.train({"name": "km", "seed": 0, "data": DIGITS, "model": {"kind": "kmeans", "n_clusters": 10}},
                      tmp_path / "km", progress="none")
    page = write_report(run.path, lang="zh")
    assert "clusters" in _alts(page) and "training curves" not in _alts(page)
    assert "没有按轮次的损失曲线" in page.read_text(encoding="utf-8")
