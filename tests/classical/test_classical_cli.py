"""The classical kinds from a fresh process: known to recipe validation without importing
danlu.classical by hand (danlu.models registers them), and without loading torch."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import sys
from danlu.recipe import Recipe
r = Recipe.from_dict({"data": {"source": "sklearn", "name": "iris"}, "model": {"kind": "gradient_boosting"}})
print(r.model.learning_rate, r.model.n_estimators, "torch" in sys.modules)
"""


def test_a_fresh_process_validates_classical_recipes_without_torch():
    res = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["0.1", "100", "False"]
