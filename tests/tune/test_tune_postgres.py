"""``danlu tune --storage postgresql://...``: several tuners on one study in a real PostgreSQL server.

The test starts its own server (Debian's ``postgresql`` package, which ``.ci/run`` installs) in a
temporary folder, on a free port of 127.0.0.1, and stops it at the end. Two ``danlu tune``
processes work on one study at the same time, each with its own output folder as two machines
would have; one SIGKILLs itself in the middle of a trial. The other carries the study to the
requested count, and the next tuner started marks the killed one's trial as failed.
"""
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from danlu.recipe import Recipe  # noqa: E402
from danlu.tune import tune  # noqa: E402
from danlu.tune._tune import with_postgres_driver  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TRIALS = 5
RECIPE = """name: shared
seed: 3
data: {source: sklearn, name: iris}
model: {kind: mlp, hidden: [8]}
train: {epochs: 2, batch_size: 32}
checkpoint: {every_epochs: 1}
"""
SPACE = "optimizer.lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}\n"


def _pg_bin(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, or where Debian's package puts it (not on PATH)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def new_database(request):
    """A fresh PostgreSQL server of our own; gives a function that creates an empty database in
    it and returns its URL."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL server programs (initdb, pg_ctl) are not installed; "
                    "apt-get install postgresql (CI's .ci/run does)")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        pytest.skip("no PostgreSQL driver: pip install psycopg2-binary (in danlu's test extras)")
    # PostgreSQL refuses to run as root: then the server runs as the package's postgres user,
    # in a folder of its own (pytest's tmp_path lies under a root-only folder). The folder is
    # short on purpose, since the server's unix socket path must stay under ~107 characters.
    as_root = os.geteuid() == 0
    if as_root:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run the server as "
                        "(Debian's postgresql package creates it)")
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    home = Path(tempfile.mkdtemp(prefix="danlu-pg-"))
    if as_root:
        shutil.chown(home, "postgres")
    data, log, port = home / "data", home / "server.log", _free_port()

    def stop():
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(home, ignore_errors=True)

    request.addfinalizer(stop)
    subprocess.run([*prefix, initdb, "-D", str(data), "-U", "danlu", "--auth=trust", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True, timeout=120)
    started = subprocess.run(
        [*prefix, pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60",
         "-o", f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -F", "start"],
        capture_output=True, text=True, timeout=90)
    assert started.returncode == 0, started.stdout + started.stderr + (log.read_text() if log.exists() else "")
    createdb = _pg_bin("createdb") or "createdb"

    def create(name: str) -> str:
        subprocess.run([createdb, "-h", "127.0.0.1", "-p", str(port), "-U", "danlu", name],
                       check=True, capture_output=True, timeout=60)
        # the URL as the README writes it: no driver named, danlu picks the installed one
        return f"postgresql://danlu@127.0.0.1:{port}/{name}"

    return create


def _tune_cmd(tmp_path: Path, url: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "danlu", "tune", str(tmp_path / "r.yaml"), "--space", str(tmp_path / "space.yaml"),
            "--trials", str(TRIALS), "--sampler", "random", "--no-prune", "--storage", url, "--study", "shared",
            "-o", str(out), "--progress", "none"]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DANLU_KILL_AT"}
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


# what danlu tune does before its first trial, in a process of its own
OPEN = """
import sys
from pathlib import Path
import optuna
from danlu.tune._tune import _note_sampler, _open_storage, _open_study, _retry_race, fail_interrupted
optuna.logging.set_verbosity(optuna.logging.ERROR)
storage, url = _open_storage(optuna, sys.argv[1], Path("."))
study = _retry_race(_open_study, optuna, storage, url, "together", "max", "val_accuracy",
                    optuna.samplers.RandomSampler(), optuna.pruners.NopPruner())
_retry_race(fail_interrupted, study, storage)
_retry_race(_note_sampler, study, "random", 3, url)
"""


def test_tuners_starting_together_on_a_new_database_all_open_the_study(new_database, tmp_path):
    # Each creates the tables and records the study's metric and sampler. Without danlu's retry
    # (measured once, with RACE_TRIES = 1), 9 of 32 such processes in 8 starts of 4 died on a
    # unique-key error or an "already exists" one.
    url = new_database("together")
    starts = [subprocess.Popen([sys.executable, "-c", OPEN, url], cwd=tmp_path, env=_env(), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(4)]
    for start in starts:
        out = start.communicate(timeout=120)[0]
        assert start.returncode == 0, out
    study = optuna.load_study(study_name="together", storage=with_postgres_driver(url))
    assert study.user_attrs == {"metric": "val_accuracy", "samplers": ["random"]}
    assert len(optuna.get_all_study_names(with_postgres_driver(url))) == 1


def test_two_tuners_share_a_study_and_a_killed_ones_trial_fails(new_database, tmp_path):
    postgres_url = new_database("shared")
    (tmp_path / "r.yaml").write_text(RECIPE)
    (tmp_path / "space.yaml").write_text(SPACE)
    out_a, out_b = tmp_path / "machine-a", tmp_path / "machine-b"
    # tuner A SIGKILLs itself while writing its 2nd checkpoint, inside its first trial, so it dies
    # whatever pace B keeps (a later kill point lets A finish when B completes the study first).
    # Tuner B runs beside it from the start.
    tuner_a = subprocess.Popen(_tune_cmd(tmp_path, postgres_url, out_a), cwd=ROOT,
                               env=_env(DANLU_KILL_AT="before_rename:2"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tuner_b = subprocess.Popen(_tune_cmd(tmp_path, postgres_url, out_b), cwd=ROOT, env=_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out_b_text = tuner_b.communicate(timeout=300)[0]
    out_a_text = tuner_a.communicate(timeout=300)[0]
    assert tuner_a.returncode == -signal.SIGKILL, out_a_text
    assert tuner_b.returncode == 0, out_b_text

    study = optuna.load_study(study_name="shared", storage=with_postgres_driver(postgres_url))
    by_state = {}
    for t in study.trials:
        by_state.setdefault(t.state.name, []).append(t)
    # B went on to the requested count (A never finished one, so nothing overshoots)
    finished = len(by_state.get("COMPLETE", []))
    assert finished == TRIALS
    assert len(by_state.get("RUNNING", [])) == 1             # A's trial: its process is gone
    killed_trial = by_state["RUNNING"][0]
    workers = {t.user_attrs["worker"] for t in study.trials}
    assert len(workers) == 2                                  # both tuners ran trials of the study
    assert killed_trial.user_attrs["run_dir"].startswith(str(out_a))

    # the next tuner on this host (A's search again, here in this process) marks the dead
    # worker's trial failed and, the study having its finished trials, runs none
    again = tune(Recipe.from_yaml(tmp_path / "r.yaml"), tmp_path / "space.yaml", trials=TRIALS, sampler="random",
                 prune=False, storage=postgres_url, study="shared", out_dir=out_a, progress=False)
    assert again.interrupted == [killed_trial.number]
    assert again.storage == postgres_url
    study = optuna.load_study(study_name="shared", storage=with_postgres_driver(postgres_url))
    trials = study.trials
    assert sorted(t.number for t in trials) == list(range(finished + 1))   # distinct, none lost
    states = {t.number: t.state.name for t in trials}
    assert states[killed_trial.number] == "FAIL"
    assert trials[killed_trial.number].user_attrs["interrupted"] is True
    assert sorted(states.values()) == ["COMPLETE"] * finished + ["FAIL"]

    # each trial ran once: one run folder per trial number over both machines' folders, the
    # finished ones with their summary, the killed one without
    folders = sorted(p.name for out in (out_a, out_b) for p in out.glob("trial-*"))
    assert folders == sorted(f"trial-{n}" for n in range(finished + 1))
    for t in trials:
        run_dir = Path(t.user_attrs["run_dir"])
        assert run_dir.name == f"trial-{t.number}"
        assert (run_dir / "summary.json").is_file() == (t.state.name == "COMPLETE")


def test_a_bare_postgresql_url_gets_the_installed_driver(monkeypatch):
    import importlib.util

    from danlu.errors import UserError

    assert with_postgres_driver("sqlite:///x/study.db") == "sqlite:///x/study.db"
    assert with_postgres_driver("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    installed = set()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name in installed else None)
    with pytest.raises(UserError, match="pip install psycopg2-binary"):
        with_postgres_driver("postgresql://u@h/db")
    installed.add("psycopg")        # psycopg 3 only: SQLAlchemy 2.0 would have asked for psycopg2
    assert with_postgres_driver("postgresql://u@h:5432/db") == "postgresql+psycopg://u@h:5432/db"
    installed.add("psycopg2")
    assert with_postgres_driver("postgresql://u@h/db") == "postgresql+psycopg2://u@h/db"
