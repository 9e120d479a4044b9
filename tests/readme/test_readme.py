"""The README is a test: its shell commands and Python blocks run, as written, in a fresh directory.

How README.md is read (keep these rules in mind when editing it):

- Every block fenced as ```bash or ```python runs, in the order the blocks appear in the file, in
  one fresh temporary directory that holds a copy of the repository's ``recipes/`` (what a user has
  after cloning). Later blocks may use what earlier ones made (``runs/digits_cnn``).
- Other fences (```yaml, plain ```) do not run. A block right after the HTML comment
  ``<!-- readme-test: file NAME -->`` is written to ``NAME`` in that directory before anything runs
  (the tuning section's ``space.yaml``).
- A block right after ``<!-- readme-test: skip REASON -->`` does not run; the reason is required
  and shows in the test's output. The set-up block at the top is marked so: it creates the virtual
  environment and installs danlu, which is what CI itself does (``.ci/run``) before running this test.
- ``DANLU_MAX_EPOCHS=1`` is set: the user-facing smoke-test knob that caps every recipe's
  ``train.epochs`` (read in one place, ``Recipe.from_dict`` in ``danlu/recipe.py``), so each command
  runs exactly as written, only with one epoch.
- A bash block runs one command at a time (a line ending in ``\\`` continues the command; ``#``
  starts a comment). Each must exit 0. A command that starts with ``danlu `` is split like a shell
  would (``shlex``) and run through ``danlu.cli.main`` -- the entry point of the ``danlu`` console
  script -- in this process, which saves the interpreter and torch start-up of some forty commands;
  any other command runs in ``bash``.
- ``danlu serve ...`` runs the real console script in the background with ``--port`` set to a free
  port (8000 may be taken on a CI machine); the test waits for ``GET /health``, posts one row to
  ``/predict``, checks the answer and stops the server.
- A python block runs as a script in a fresh interpreter in the same directory.

``DANLU_README_TIMINGS=1 python -m pytest -s tests/readme`` prints the time each command took.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*$")
_MARKER = re.compile(r"^\s*<!--\s*readme-test:\s*(?P<verb>skip|file)\b\s*(?P<arg>.*?)\s*-->\s*$")


@dataclass
class Block:
    lang: str
    line: int          # 1-based line of the opening fence in README.md
    text: str
    marker: str | None = None   # "skip" or "file"
    arg: str = ""      # the skip reason or the file name


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text, with the readme-test marker just before each."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent = opening["indent"]
        body, j = [], i + 1
        while j < len(lines) and lines[j].strip() != "```":
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        block = Block(opening["lang"], i + 1, "\n".join(body) + "\n")
        before = i - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        marker = _MARKER.match(lines[before]) if before >= 0 else None
        if marker:
            block.marker, block.arg = marker["verb"], marker["arg"]
        blocks.append(block)
        i = j + 1
    return blocks


def shell_commands(script: str) -> list[str]:
    """One string per command: continuation lines joined, blank lines dropped."""
    commands, pieces = [], []
    for line in script.splitlines():
        line = line.strip()
        if line.endswith("\\"):
            pieces.append(line[:-1].strip())
            continue
        command = " ".join([*pieces, line]).strip()
        if command and not command.startswith("#"):
            commands.append(command)
        pieces = []
    return commands


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = dict(os.environ, DANLU_MAX_EPOCHS="1")
    env.pop("DANLU_KILL_AT", None)
    # the console scripts of the interpreter running the tests come first, as in an activated venv
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def _run_in_process(argv: list[str]) -> int:
    """The exit code `danlu ARGV...` would end with (the console script calls this same main)."""
    from danlu.cli import main

    try:
        code = main(argv)
    except SystemExit as stop:   # argparse errors and commands that exit
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    return code or 0


def _serve(argv: list[str], cwd: Path, env: dict) -> None:
    """Start `danlu serve ...` on a free port, ask /health and /predict, stop it."""
    port = _free_port()
    danlu = shutil.which("danlu", path=env["PATH"])
    assert danlu, "the danlu console script is not installed"
    log_path = cwd / f".serve-{port}.log"   # a file, not a pipe: a chatty server never blocks on it
    log = open(log_path, "w", encoding="utf-8")
    server = subprocess.Popen([danlu, *argv[1:], "--port", str(port)], cwd=cwd, env=env,
                              stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"`danlu {' '.join(argv[1:])}` did not come up:\n"
                                         f"{log_path.read_text(encoding='utf-8')}")
                time.sleep(0.2)
        with urllib.request.urlopen(url + "/info", timeout=10) as answer:
            info = json.load(answer)
        width = len(info.get("features") or info.get("columns") or [])
        assert width, f"/info names no input columns: {info}"
        body = json.dumps({"row": [1.0] * width}).encode()
        request = urllib.request.Request(url + "/predict", body, {"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            reply = json.load(answer)
        assert answer.status == 200 and reply, reply
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def _fail(block: Block, command: str, detail: str) -> None:
    pytest.fail(f"README.md line {block.line}: `{command}` failed\n{detail[-3000:]}", pytrace=False)


def _run_bash_block(block: Block, cwd: Path, env: dict, timings: list) -> None:
    for command in shell_commands(block.text):
        started = time.perf_counter()
        argv = shlex.split(command, comments=True)
        if argv[:2] == ["danlu", "serve"]:
            _serve(argv, cwd, env)
        elif argv and argv[0] == "danlu":
            code = _run_in_process(argv[1:])
            if code != 0:
                _fail(block, command, f"exit code {code} (output above)")
        else:
            done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                                  timeout=300)
            if done.returncode != 0:
                _fail(block, command, f"exit code {done.returncode}\n{done.stdout}\n{done.stderr}")
        timings.append((time.perf_counter() - started, command))


def _run_python_block(block: Block, cwd: Path, env: dict, timings: list) -> None:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", block.text], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    if done.returncode != 0:
        _fail(block, "python block", f"exit code {done.returncode}\n{done.stdout}\n{done.stderr}")
    timings.append((time.perf_counter() - started, f"python block at line {block.line}"))


def test_readme_blocks_are_read():
    """The parser itself: fences (indented ones too), markers, continuation lines and comments."""
    text = ("intro\n<!-- readme-test: skip set-up -->\n```bash\necho a\n```\n- item:\n  ```python\n"
            "  x = 1\n  ```\n<!-- readme-test: file s.yaml -->\n```yaml\na: 1\n```\n```\nplain\n```\n")
    blocks = readme_blocks(text)
    assert [(b.lang, b.marker, b.arg) for b in blocks] == [
        ("bash", "skip", "set-up"), ("python", None, ""), ("yaml", "file", "s.yaml"), ("", None, "")]
    assert blocks[1].text == "x = 1\n"
    assert shell_commands("a \\\n  --b  # note\n\n# only a comment\nc\n") == ["a --b  # note", "c"]


def test_readme_runs_as_written(tmp_path, monkeypatch, capsys):
    import torch

    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    runnable = [b for b in blocks if b.lang in ("bash", "python")]
    assert runnable, "README.md has no bash or python blocks"
    assert runnable[0].marker == "skip", "the set-up block at the top must be marked <!-- readme-test: skip ... -->"
    for block in blocks:
        if block.marker == "skip":
            assert block.arg, f"README.md line {block.line}: a skipped block must say why"

    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    for block in blocks:
        if block.marker == "file":
            (tmp_path / block.arg).write_text(block.text, encoding="utf-8")
    env = _env()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DANLU_MAX_EPOCHS", "1")
    monkeypatch.delenv("DANLU_KILL_AT", raising=False)
    # commands run in this process: leave torch as the rest of the test session expects it
    deterministic, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    timings: list = []
    skipped = []
    try:
        for block in runnable:
            if block.marker == "skip":
                skipped.append(f"line {block.line}: {block.arg}")
                continue
            if block.lang == "bash":
                _run_bash_block(block, tmp_path, env, timings)
            else:
                _run_python_block(block, tmp_path, env, timings)
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)
        with capsys.disabled():
            if os.environ.get("DANLU_README_TIMINGS"):
                for seconds, command in sorted(timings, reverse=True):
                    print(f"{seconds:6.1f} s  {command}")
                print(f"{sum(t for t, _ in timings):6.1f} s  in all")
    print("skipped README blocks:", *skipped, sep="\n  ")
