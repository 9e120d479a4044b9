"""The harness of the property-based attack suite (tests/reliability/test_properties_*.py).

conftest.py holds its fixtures and prints its figures.

Every generated input is one *case*: a fresh folder with a few bystander files, the command run
in this process (``danlu.cli.main``, stdout and stderr captured), and a verdict:

- clean:   exit 0 with a result that passes the case's oracle, or exit 2 with exactly one
           ``danlu: error: ...`` line, the last on stderr (after any progress lines) and no traceback;
           `danlu train` / `resume` may also exit 3 with one line: the divergence monitor stopped a
           run that kept blowing up (documented; the run keeps its last good weights);
- crash:   any other exit code, an exception out of ``main`` (a bug: exit 1), or a traceback;
- messy:   exit 2 with more (or other) than one error line;
- wrong:   exit 0 with a result the oracle refuses;
- outside: any file of the case folder outside the run directory (and the outputs the command
           was asked to write) was created, changed or deleted.

The session prints the four figures the issue asks for (inputs tried, answered cleanly, files
outside run directories changed, crashes) in the terminal summary, and writes them as JSON to
``$DANLU_ATTACK_FIGURES`` when that is set (benchmarks/attack_figures.py does). The example
budget is multiplied by ``$DANLU_ATTACK_SCALE`` (default 1); with ``$DANLU_ATTACK_KEEP_GOING=1``
a bad verdict is recorded (and its input written to ``$DANLU_ATTACK_FAILURES``) instead of
failing the test, so that a survey counts every failure rather than stopping at the first.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sqlite3
import tempfile
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings

EXIT_DIVERGED = 3   # danlu train/resume: the divergence monitor's rescues ran out (README, monitors)
TALLY: dict[str, Counter] = {}
FAILURES: list[dict] = []


def keep_going() -> bool:
    return os.environ.get("DANLU_ATTACK_KEEP_GOING") == "1"


def budget(n: int) -> settings:
    """Hypothesis settings for a property: ``n`` examples (times $DANLU_ATTACK_SCALE), no deadline,
    a fixed sequence of examples, no example database written into the working directory, no
    shrinking."""
    scale = float(os.environ.get("DANLU_ATTACK_SCALE", "1"))
    # no shrinking: a failure is reported with the input that found it (the message shows it), and a
    # failing property stays as fast as a passing one instead of re-running danlu hundreds of times
    return settings(max_examples=max(1, int(n * scale)), deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=False,
                    phases=[Phase.explicit, Phase.reuse, Phase.generate])


# ---------------------------------------------------------------------------------------------
# Running the command line in this process
# ---------------------------------------------------------------------------------------------

@dataclass
class CliResult:
    argv: list
    code: int
    out: str
    err: str

    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def one_line_error(self) -> bool:
        """The error is one line: the last line on stderr, the only one that says ``danlu: error:``
        (a progress line a command printed before it failed may come first)."""
        lines = self.error_lines()
        errors = [line for line in lines if line.startswith("danlu: error")]
        return bool(lines) and lines[-1].startswith("danlu: error: ") and errors == lines[-1:]

    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.err or "Traceback (most recent call last)" in self.out


def run_cli(*argv) -> CliResult:
    """``danlu ARGV`` in this process: exit code, stdout and stderr. An exception out of ``main``
    is a bug of danlu's (exit 1 with its traceback), as it would be on the command line."""
    from danlu.cli import main

    argv = [str(a) for a in argv]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:   # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception:   # noqa: BLE001 — what the command line would print as a traceback
            traceback.print_exc()
            code = 1
    return CliResult(argv, 0 if code is None else code, out.getvalue(), err.getvalue())


# ---------------------------------------------------------------------------------------------
# Snapshots of the files around a run directory
# ---------------------------------------------------------------------------------------------

def snapshot(root: Path, skip: list[Path]) -> dict[str, tuple]:
    """(size, mtime_ns, sha256) of every file and symlink under ``root``, except under ``skip``."""
    skip = [Path(s) for s in skip]
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        out[str(here.relative_to(root)) + "/"] = ("dir",)
        for name in filenames:
            path = here / name
            if path in skip:
                continue
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
                continue
            st = path.stat()
            out[rel] = (st.st_size, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def _is_danlu_index(path: Path) -> bool:
    """A runs index danlu made: a SQLite file with its ``runs`` table."""
    if not path.is_file() or path.is_symlink():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            return conn.execute("SELECT name FROM sqlite_master WHERE name='runs'").fetchone() is not None
    except sqlite3.Error:
        return False


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------

BYSTANDERS = {"outside/notes.txt": b"the user's own notes\n", "outside/data.csv": b"a,b\n1,2\n",
              "runs/README": b"a file of the user's beside the runs\n", "work/keep.yaml": b"name: keep\n",
              "index.sqlite": b"the user's own file, which happens to have this name\n"}


@dataclass
class Case:
    """One generated input in a fresh folder ``root``: root/work is the working directory,
    root/runs/run the run directory, root/in holds the inputs the case writes."""

    surface: str
    root: Path
    run_dirs: list[Path] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    before: dict | None = None
    results: list[CliResult] = field(default_factory=list)
    note: str = ""
    index_was_danlu: bool = False

    @property
    def run_dir(self) -> Path:
        return self.root / "runs" / "run"

    @property
    def inputs(self) -> Path:
        return self.root / "in"

    @property
    def scratch(self) -> Path:
        """A folder of the test's own (oracle files): not watched."""
        path = self.root / "scratch"
        path.mkdir(exist_ok=True)
        return path

    def write(self, name: str, data: bytes | str) -> Path:
        path = self.inputs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        return path

    def _skip(self) -> list[Path]:
        return [*self.run_dirs, *self.outputs, self.root / "scratch"]

    def arm(self) -> None:
        """Take the 'before' snapshot: from here on only the run directory and outputs may change."""
        if self.run_dir not in self.run_dirs:
            self.run_dirs.append(self.run_dir)
        self.before = snapshot(self.root, self._skip())
        self.index_was_danlu = _is_danlu_index(self.run_dir.parent / "index.sqlite")

    def cli(self, *argv) -> CliResult:
        if self.before is None:
            self.arm()
        result = run_cli(*argv)
        self.results.append(result)
        return result

    def outside_changes(self) -> list[str]:
        after = snapshot(self.root, self._skip())
        changed = []
        for rel in sorted(set(self.before) | set(after)):
            if self.before.get(rel) == after.get(rel):
                continue
            path = self.root / rel
            # the runs index beside the run directories is danlu's cache: it may be created or
            # updated, but a foreign file of that name is not danlu's to replace
            if path.parent == self.run_dir.parent and path.name.startswith("index.sqlite") \
                    and (rel not in self.before or self.index_was_danlu) \
                    and (_is_danlu_index(path.parent / "index.sqlite") or not path.exists()):
                continue
            changed.append(f"{rel}: {self.before.get(rel)} -> {after.get(rel)}")
        return changed


class Harness:
    def __init__(self, base: Path):
        self.base = base

    @contextlib.contextmanager
    def case(self, surface: str, *, note: str = ""):
        """A fresh case folder with bystander files; the working directory is root/work while the
        case runs. On exit the verdict is taken (see ``verdict``) unless the case already has one."""
        root = Path(tempfile.mkdtemp(dir=self.base, prefix=f"{surface}-"))
        for rel, data in BYSTANDERS.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        (root / "in").mkdir()
        case = Case(surface, root, note=note)
        old = os.getcwd()
        os.chdir(root / "work")
        try:
            yield case
        finally:
            os.chdir(old)
            shutil.rmtree(root, ignore_errors=True)

    def judge(self, case: Case, result: CliResult, oracle=None) -> str:
        """The verdict of one command: see the module docstring. ``oracle()`` checks a result of
        exit 0 (it returns a reason string, or None when the result is correct)."""
        problems = []
        if result.code == EXIT_DIVERGED and not result.traceback() and result.argv[:1] in (["train"], ["resume"]):
            # training kept blowing up and danlu stopped it, as documented: one line, and the run
            # keeps its last good weights
            verdict = "clean" if result.one_line_error() else "messy"
            if verdict == "messy":
                problems.append(f"exit 3 without exactly one error line: {result.err[:2000]!r}")
        elif result.traceback() or result.code not in (0, 2):
            verdict = "crash"
            problems.append(f"exit {result.code}; stderr: {result.err[-2000:]}")
        elif result.code == 2:
            verdict = "clean" if result.one_line_error() else "messy"
            if verdict == "messy":
                problems.append(f"exit 2 without exactly one error line: {result.err[:2000]!r}")
        else:
            try:
                reason = oracle() if oracle is not None else None
            except Exception as exc:   # noqa: BLE001 — a result the oracle cannot even read is wrong
                reason = f"the result cannot be read ({type(exc).__name__}: {exc})"
            verdict = "wrong" if reason else "clean"
            if reason:
                problems.append(f"exit 0 but {reason}")
        changed = case.outside_changes()
        if changed:
            problems.append("files outside the run directory changed: " + "; ".join(changed[:5]))
        tally = TALLY.setdefault(case.surface, Counter())
        tally["tried"] += 1
        tally[verdict] += 1
        tally[f"exit {result.code}"] += 1
        tally["outside_changed"] += len(changed)
        tally["cases_changing_outside"] += bool(changed)
        log = os.environ.get("DANLU_ATTACK_LOG")
        if log:
            with open(log, "a") as f:
                f.write(json.dumps({"surface": case.surface, "code": result.code, "verdict": verdict,
                                    "err": result.err[:300], "note": case.note[:300]}) + "\n")
        if problems:
            record = {"surface": case.surface, "argv": result.argv, "verdict": verdict, "note": case.note,
                      "problems": problems}
            FAILURES.append(record)
            if not keep_going():
                pytest.fail(f"[{case.surface}] danlu {' '.join(result.argv)}\n  input: {case.note}\n  "
                            + "\n  ".join(problems), pytrace=False)
        return verdict

    def judge_value(self, case: Case, fn, oracle=None) -> str:
        """The verdict of a Python call, read as the command line would answer it: a return is
        exit 0, a UserError exit 2 with its message as the one line, anything else a crash."""
        from danlu.errors import UserError

        if case.before is None:
            case.arm()
        err = io.StringIO()
        code = 0
        try:
            fn()
        except UserError as exc:
            code = 2
            err.write(f"danlu: error: {exc}\n")
        except Exception:   # noqa: BLE001 — a bug: what the command line would show as a traceback
            code = 1
            traceback.print_exc(file=err)
        return self.judge(case, CliResult(["(python)", case.surface], code, "", err.getvalue()), oracle)


# ---------------------------------------------------------------------------------------------
# Small finished runs, trained once per session
# ---------------------------------------------------------------------------------------------

def tiny_recipe(data: dict, model: dict | None = None, **extra) -> dict:
    r = {"name": "attack", "seed": 0, "data": data, "model": model or {"kind": "mlp", "hidden": [8]},
         "optimizer": {"kind": "adam", "lr": 0.01},
         "train": {"epochs": 2, "batch_size": 32, "early_stopping": {"enabled": False}},
         "checkpoint": {"every_epochs": 1, "keep_last": 2}, "output": {"progress": "none"},
         "monitors": {"gradients": {"enabled": False}}}
    for key, value in extra.items():
        r[key] = {**r.get(key, {}), **value} if isinstance(value, dict) else value
    return r


TABLE_HEADER = ["size", "colour", "weight", "kind"]


def table_rows(n: int = 90) -> list[list[str]]:
    """A small table: two numeric columns (one with gaps), one text column, a text label."""
    colours = ["red", "green", "blue"]
    rows = []
    for i in range(n):
        size = f"{(i * 7) % 23 / 3:.3f}"
        weight = "" if i % 11 == 4 else f"{(i * 13) % 17 + 0.5}"
        kind = ("small", "large", "odd")[(i * 7 % 23 > 11) + (i % 5 == 0)]
        rows.append([size, colours[i % 3], weight, kind])
    return rows


# figures that are undefined on a degenerate split (R² of one row, ROC AUC of one class): danlu
# writes NaN for them, as scikit-learn would; every other figure must be a finite number
UNDEFINED_ALLOWED = ("r2", "roc_auc")


def finite_summary(run_dir: Path) -> str | None:
    """The oracle of a finished training run: a summary.json whose figures are all finite (NaN
    only for a figure that is undefined on its split)."""
    import math

    path = run_dir / "summary.json"
    if not path.is_file():
        return "the run has no summary.json"
    summary = json.loads(path.read_text(encoding="utf-8"))
    for split in ("train", "validation", "test"):
        for key, value in (summary.get(split) or {}).items():
            if isinstance(value, float) and not math.isfinite(value) \
                    and not (key in UNDEFINED_ALLOWED and math.isnan(value)):
                return f"summary {split}.{key} is {value}"
    return None


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

def figures() -> dict:
    total = Counter()
    for counts in TALLY.values():
        total.update(counts)
    return {"inputs_tried": total["tried"], "answered_cleanly": total["clean"],
            "outside_files_changed": total["outside_changed"], "crashes": total["crash"],
            "messy_errors": total["messy"], "wrong_results": total["wrong"],
            "by_surface": {k: dict(v) for k, v in sorted(TALLY.items())}}


