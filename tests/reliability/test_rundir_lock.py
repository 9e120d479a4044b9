"""One writer per run directory: an OS lock held for the whole train or resume, released by the OS
when the process dies (issue 12, item 9)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from danlu._rundir import LOCK_FILE, lock_run
from danlu.cli import main
from danlu.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ("data: {source: sklearn, name: iris}\nmodel: {kind: mlp, hidden: [8]}\n"
          "train: {epochs: 2, batch_size: 32}\noutput: {progress: none}\n")


def test_a_second_lock_is_refused_naming_the_first(tmp_path):
    with lock_run(tmp_path):
        info = json.loads((tmp_path / LOCK_FILE).read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        with pytest.raises(UserError, match=f"process {os.getpid()} on host {socket.gethostname()}"):
            lock_run(tmp_path)
    assert not (tmp_path / LOCK_FILE).exists()   # released and removed
    with lock_run(tmp_path):   # free again
        pass


def test_the_os_releases_the_lock_of_a_killed_process(tmp_path):
    code = ("import os, signal, sys\nfrom danlu._rundir import lock_run\nlock_run(sys.argv[1])\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True)
    assert res.returncode == -signal.SIGKILL
    assert (tmp_path / LOCK_FILE).is_file()          # left behind by the killed process ...
    with lock_run(tmp_path):                          # ... but no longer held
        info = json.loads((tmp_path / LOCK_FILE).read_text())
        assert info["pid"] == os.getpid()


def test_resume_is_refused_while_the_run_is_locked(tmp_path, capsys):
    (tmp_path / "r.yaml").write_text(RECIPE)
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "r.yaml"), "--run-dir", str(run)]) == 0
    (run / "summary.json").unlink()   # as if it had been stopped before the end
    capsys.readouterr()
    with lock_run(run):
        before = (run / "metrics.jsonl").read_bytes()
        assert main(["resume", str(run)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"process {os.getpid()}" in err
        assert (run / "metrics.jsonl").read_bytes() == before
    assert main(["resume", str(run)]) == 0   # the lock is gone: resume works


def _start(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("DANLU_KILL_AT", None)
    return subprocess.Popen([sys.executable, "-m", "danlu", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_writer(proc, run: Path, verb: str) -> None:
    """Until ``proc`` holds the run's lock (polled; the test fails if it never does)."""
    for _ in range(1200):
        assert proc.poll() is None, proc.stderr.read()
        try:
            info = json.loads((run / LOCK_FILE).read_text())
        except (OSError, ValueError):
            info = {}
        if info.get("pid") == proc.pid and verb in info.get("command", "") and (run / "recipe.yaml").is_file():
            return
        time.sleep(0.1)
    pytest.fail("the first process never took the run's lock")


def _epochs(run: Path) -> list[int]:
    complete = (run / "metrics.jsonl").read_text().split("\n")[:-1]   # a killed writer may leave half a line
    return [json.loads(line)["epoch"] for line in complete]


class Stopped(Exception):
    pass


class StopAfter:
    """Stops the run (as a kill would) once ``epochs`` epochs are checkpointed."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_epoch_end(self, state) -> None:
        if state.epoch >= self.epochs:
            raise Stopped


def test_two_resumes_of_one_run_at_once(tmp_path, capsys):
    """While one resume writes the run, a second is refused at once with the first one's pid and
    host; metrics.jsonl never gets an epoch twice."""
    import danlu

    (tmp_path / "r.yaml").write_text(RECIPE.replace("epochs: 2", "epochs: 100000"))
    run = tmp_path / "run"
    with pytest.raises(Stopped):   # a long run, stopped after its second checkpoint
        danlu.train(danlu.Recipe.from_yaml(tmp_path / "r.yaml"), run, callbacks=[StopAfter(2)])
    assert _epochs(run) == [1, 2]
    first = _start(["resume", run], tmp_path)
    try:
        _wait_for_writer(first, run, "resume")
        capsys.readouterr()
        assert main(["resume", str(run)]) == 2   # the second resume: this test's own process
        err = capsys.readouterr().err.strip()
        assert f"process {first.pid} on host {socket.gethostname()}" in err and len(err.splitlines()) == 1
        assert first.poll() is None   # the first one still runs
    finally:
        first.kill()
        first.wait()
    epochs = _epochs(run)
    assert len(epochs) == len(set(epochs)) and epochs == list(range(1, len(epochs) + 1))


def test_an_agent_run_follows_the_same_rules(tmp_path, capsys):
    pytest.importorskip("gymnasium")
    from danlu.rl import train_rl

    recipe = {"env": {"name": "CartPole-v1", "num_envs": 2, "eval_episodes": 1},
              "model": {"kind": "mlp", "hidden": [8]}, "output": {"progress": "none"},
              "rl": {"steps": 128, "rollout": 32, "epochs": 1, "minibatches": 1, "checkpoint_every": 1}}
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("keep")
    with pytest.raises(UserError, match="not created by danlu"):
        train_rl(recipe, mine, overwrite=True)
    assert [p.name for p in mine.iterdir()] == ["keep.txt"]
    run = tmp_path / "run"
    train_rl(recipe, run)
    (run / "summary.json").unlink()   # as if stopped before the end
    with lock_run(run):
        assert main(["resume", str(run)]) == 2
        assert f"process {os.getpid()}" in capsys.readouterr().err
        with pytest.raises(UserError, match="being written"):
            train_rl(recipe, run, overwrite=True)
    assert main(["resume", str(run)]) == 0 and (run / "summary.json").is_file()
