"""Tiny finished runs (3 epochs) and their reports, shared by the report tests."""
import shutil

import pytest

# A name that must come out escaped, a warmup + cosine schedule for the per-step LR curve, and a
# gradient sample every step so that grad_norms.jsonl has a curve.
# (no "/" in it: names are plain folder names)
IRIS = {"name": "iris <script>alert(1)<script>", "data": {"source": "sklearn", "name": "iris"},
        "model": {"kind": "mlp", "hidden": [8]}, "optimizer": {"lr": 0.02},
        "schedule": {"kind": "cosine", "warmup_steps": 2}, "train": {"epochs": 3, "batch_size": 32},
        "monitors": {"gradients": {"every": 1}}}
DIABETES = {"name": "diabetes", "data": {"source": "sklearn", "name": "diabetes"},
            "model": {"kind": "mlp", "hidden": [8]}, "optimizer": {"lr": 0.01}, "train": {"epochs": 3}}


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory):
    return tmp_path_factory.mktemp("report_runs")


@pytest.fixture(scope="session")
def iris_run(runs_root):
    from danlu.training import train

    return train(IRIS, runs_root / "iris", progress="none")


@pytest.fixture(scope="session")
def diabetes_run(runs_root):
    from danlu.training import train

    return train(DIABETES, runs_root / "diabetes", progress="none")


@pytest.fixture(scope="session")
def iris_report(iris_run):
    from danlu.report import write_report

    return write_report(iris_run.path, lang="en")


@pytest.fixture(scope="session")
def diabetes_report(diabetes_run):
    from danlu.report import write_report

    return write_report(diabetes_run.path, lang="en")


@pytest.fixture
def run_copy(tmp_path):
    """A copy of a finished run, for tests that damage or add to its files."""
    def copy(run):
        target = tmp_path / run.path.name
        shutil.copytree(run.path, target)
        return target
    return copy
