"""Conformance of a run kind (as scikit-learn's ``check_estimator``): the same protocol for every
kind, checked from the command line a user types.

:func:`check_run_kind` trains a recipe twice — once through, once killed with SIGKILL in the middle
of its second checkpoint write — resumes the killed one in a new process, and then checks:

* a resumable kind resumes (in a new process) to the bit-identical model and the same figures as
  the run that was never stopped; a kind that cannot resume refuses in one line (exit 2), and a
  finished run of it is left as it is (or refused in one line);
* ``danlu eval RUN --json`` exits 0 and its test figures are the summary's;
* ``danlu predict RUN INPUT`` answers one row per input row — or, for a kind that makes no
  predictions for rows, refuses in one line (exit 2).

A failed check raises :class:`ConformanceError` naming the kind and the check.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

from .errors import UserError


class ConformanceError(UserError):
    """A run kind does not follow the run protocol."""


def _cli(args, cwd, env=None, timeout=600) -> subprocess.CompletedProcess:
    """``python -m danlu ARGS`` in a new process (what a user's shell does)."""
    full = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "danlu", *map(str, args)], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=timeout)


def _main(args, cwd) -> subprocess.CompletedProcess:
    """``danlu ARGS`` through the command line's own entry point, in this process (quicker; the same
    parsing, errors and exit codes)."""
    import contextlib
    import io

    from .cli import main

    out, err = io.StringIO(), io.StringIO()
    here = Path.cwd()
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def _one_line_refusal(res, kind: str, what: str) -> None:
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    if res.returncode != 2 or len(lines) != 1 or "Traceback" in res.stderr:
        raise ConformanceError(f"run kind {kind}: {what} should be refused in one line with exit 2; got exit "
                               f"{res.returncode} and {len(lines)} lines: {res.stderr.strip()[:300]}")


def _close(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))
    return a == b


def check_run_kind(kind: str, train_args: list, workdir: str | Path, *, predict_input: str | Path | None = None,
                   resumable: bool | None = None, predicts_rows: bool | None = None,
                   train_command: list | None = None, writes_checkpoints: bool = False) -> dict:
    """Run the protocol checks for one kind. ``train_args``: what follows ``danlu train`` (a recipe
    path and options; ``--run-dir`` is added); ``train_command`` replaces ``python -m danlu train``
    for kinds made otherwise (a Python script, ``danlu ensemble``): it gets the run directory as its
    last argument. ``resumable`` / ``predicts_rows`` default to the registered kind's;
    ``writes_checkpoints``: a kind that cannot resume but checkpoints (its killed run must be refused).
    Returns what was checked."""
    from .training import run_kinds

    entry = run_kinds().get(kind)
    if entry is None:
        raise ConformanceError(f"run kind {kind!r} is not registered; registered: {', '.join(run_kinds())}")
    impl = entry.kind()
    resumable = impl.resumable if resumable is None else resumable
    predicts_rows = impl.predicts_rows if predicts_rows is None else predicts_rows
    work = Path(workdir)
    ref, killed = work / f"{kind}-ref", work / f"{kind}-killed"

    def train(run_dir, env=None):
        if train_command is not None:
            return subprocess.run([*map(str, train_command), str(run_dir)], cwd=work, capture_output=True, text=True,
                                  env={**os.environ, **(env or {})}, timeout=600)
        if env is None:
            return _main(["train", *train_args, "--run-dir", run_dir], work)
        return _cli(["train", *train_args, "--run-dir", run_dir], work, env)

    done = train(ref)
    if done.returncode != 0:
        raise ConformanceError(f"run kind {kind}: training failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    checked = {"kind": kind, "trained": True}

    if resumable or writes_checkpoints:
        # killed in the middle of its second checkpoint write (danlu.training._checkpoint's fault hook)
        cut = train(killed, {"DANLU_KILL_AT": "before_rename:2"})
        was_killed = cut.returncode == -signal.SIGKILL
        resumed = _main(["resume", killed], work)
    else:   # fitted or made in one go: no checkpoint to die in; resuming the finished run leaves it
        was_killed, resumed = False, _main(["resume", ref], work)
    if resumable:
        if not was_killed:
            raise ConformanceError(f"run kind {kind}: expected the run to be killed in its second checkpoint write "
                                   f"(exit {cut.returncode}); does it write checkpoints every epoch?")
        if resumed.returncode != 0:
            raise ConformanceError(f"run kind {kind}: resume after SIGKILL failed: {resumed.stderr.strip()[-500:]}")
        if (ref / "model.safetensors").read_bytes() != (killed / "model.safetensors").read_bytes():
            raise ConformanceError(f"run kind {kind}: the resumed model is not bit-identical to the uninterrupted one")
        a = json.loads((ref / "summary.json").read_text())
        b = json.loads((killed / "summary.json").read_text())
        for split in ("train", "validation", "test"):
            for key, value in (a.get(split) or {}).items():
                if not _close(value, (b.get(split) or {}).get(key)):
                    raise ConformanceError(f"run kind {kind}: {split} {key} is {value} uninterrupted but "
                                           f"{(b.get(split) or {}).get(key)} after resume")
        checked["resume"] = "bit-identical"
    elif was_killed:
        _one_line_refusal(resumed, kind, "resuming a killed run it cannot continue")
        checked["resume"] = "refused in one line"
    elif resumed.returncode == 0:
        checked["resume"] = "finished run left as it is"
    else:
        _one_line_refusal(resumed, kind, "resume")
        checked["resume"] = "refused in one line"

    res = _main(["eval", ref, "--json"], work)
    if res.returncode != 0:
        raise ConformanceError(f"run kind {kind}: danlu eval failed: {res.stderr.strip()[-500:]}")
    figures = json.loads(res.stdout)
    summary = json.loads((ref / "summary.json").read_text()) if (ref / "summary.json").is_file() else {}
    for key, value in (summary.get("test") or {}).items():
        if key in figures.get("test", {}) and not _close(value, figures["test"][key]):
            raise ConformanceError(f"run kind {kind}: danlu eval's test {key} {figures['test'][key]} is not the "
                                   f"summary's {value}")
    checked["eval"] = sorted(figures)

    out = work / f"{kind}-pred.csv"
    res = _main(["predict", ref, predict_input or work / "no-input.csv", "-o", out], work)
    if predicts_rows:
        if res.returncode != 0:
            raise ConformanceError(f"run kind {kind}: danlu predict failed: {res.stderr.strip()[-500:]}")
        checked["predict_rows"] = len(out.read_text().strip().splitlines()) - 1
    else:
        _one_line_refusal(res, kind, "predict")
        checked["predict"] = "refused in one line"
    return checked
