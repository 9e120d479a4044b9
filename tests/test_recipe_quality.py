"""The default job as shipped: the digits CNN recipe reaches at least 98% test accuracy."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_digits_cnn_recipe_reaches_98_percent(tmp_path):
    res = subprocess.run([sys.executable, "-m", "danlu", "train", "recipes/digits_cnn.yaml", "--run-dir",
                          tmp_path / "run", "--progress", "none"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test"]["accuracy"] >= 0.98
    assert summary["baseline"]["significance"]["verdict"].startswith("significantly better")
