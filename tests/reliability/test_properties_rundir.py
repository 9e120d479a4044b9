"""Damaged run directories: a copy of one finished (or interrupted) run, truncated, bit-flipped,
swapped, deleted, joined by foreign files, a file replaced by a folder or by a link to a file of
the user's, then `danlu eval / predict / resume / diagnose / report` on it.

Exit 0 must come with the undamaged run's answer (eval figures, predictions, the resumed run's
figures), or exit 2 with one line; nothing outside the run directory changes — a link out of
the run included. A batch of damaged weight files also goes through a separate process, so that
a native crash (SIGSEGV, abort) would be seen as one.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from properties_kit import budget, run_cli

import danlu

ROWS_CSV = ("sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n"
            "5.1,3.5,1.4,0.2\n6.2,2.9,4.3,1.3\n7.7,3.0,6.1,2.3\n5.9,3.0,5.1,1.8\n")


class _Interrupt:
    """Stops training after the first epoch (and its checkpoint), as Ctrl-C would."""

    def on_epoch_end(self, state):
        if state.epoch >= 1:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def runs(attack_runs, tmp_path_factory):
    """The finished iris run, the same recipe interrupted after epoch 1, and the undamaged answers."""
    from properties_kit import tiny_recipe

    base = tmp_path_factory.mktemp("rundir_ref")
    finished = attack_runs["iris"]
    interrupted = base / "runs" / "cut"
    try:
        danlu.train(tiny_recipe({"source": "sklearn", "name": "iris"}), interrupted, callbacks=[_Interrupt()])
    except KeyboardInterrupt:
        pass
    assert not (interrupted / "summary.json").exists()
    rows = base / "rows.csv"
    rows.write_text(ROWS_CSV)
    ref = {"finished": finished, "interrupted": interrupted, "rows": rows}
    ref["eval"] = json.loads(run_cli("eval", finished, "--split", "all", "--json").out)
    ref["predict"] = run_cli("predict", finished, rows).out
    ref["summary"] = _figures(json.loads((finished / "summary.json").read_text()))
    resumed = base / "runs" / "resumed"
    shutil.copytree(interrupted, resumed)
    assert run_cli("resume", resumed).code == 0
    assert _figures(json.loads((resumed / "summary.json").read_text())) == ref["summary"], \
        "an undamaged resume does not reproduce the uninterrupted run"
    return ref


def _figures(summary: dict) -> dict:
    return {k: summary.get(k) for k in ("train", "validation", "test")}


# --- damage -------------------------------------------------------------------------------------

OPS = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 4096)),
    st.tuples(st.just("flip"), st.integers(0, 10 ** 6), st.integers(0, 7)),
    st.tuples(st.just("swap"), st.integers(0, 10 ** 3)),
    st.tuples(st.just("delete")),
    st.tuples(st.just("directory")),
    st.tuples(st.just("not_utf8"), st.integers(0, 10 ** 6), st.sampled_from([b"\xff", b"\xc3(", b"\x80\x80", b"\x00"])),
    st.tuples(st.just("link_out"), st.sampled_from(["outside/notes.txt", "outside/missing.txt", "work"])),
    st.tuples(st.just("empty_json"), st.sampled_from([b"", b"{}", b"[]", b"null", b"{\"format\": 99}", b"NaN"])),
)
FOREIGN = st.tuples(
    st.just("foreign"),
    st.sampled_from(["extra.txt", "model.pt", "checkpoints/step-99999999/model.safetensors",
                     "checkpoints/step-00000010/", "checkpoints/junk", "checkpoints/step-00000004/extra.bin",
                     "plots/", "report.html/", "summary.json.tmp", ".danlu-lock", "runs.sqlite", "index.sqlite"]),
    st.binary(max_size=64),
)
DAMAGE = st.lists(st.tuples(st.integers(0, 10 ** 3), OPS) | FOREIGN, min_size=1, max_size=2)


def run_files(run_dir) -> list:
    return sorted(p for p in run_dir.rglob("*") if p.is_file() and not p.is_symlink())


def apply_damage(run_dir, root, damage) -> list[str]:
    """Damage a run directory; returns what was done, for the report of a failure."""
    done = []
    for item in damage:
        if item[0] == "foreign":
            _, rel, data = item
            path = run_dir / rel
            if rel.endswith("/"):
                path.mkdir(parents=True, exist_ok=True)
            elif not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            done.append(f"foreign {rel} {data[:16]!r}")
            continue
        index, op = item
        files = run_files(run_dir)
        if not files:
            continue
        path = files[index % len(files)]
        rel = path.relative_to(run_dir)
        data = path.read_bytes()
        kind = op[0]
        if kind == "truncate":
            path.write_bytes(data[:op[1] % (len(data) + 1)])
        elif kind == "flip" and data:
            at = op[1] % len(data)
            path.write_bytes(data[:at] + bytes([data[at] ^ (1 << op[2])]) + data[at + 1:])
        elif kind == "swap":
            other = files[op[1] % len(files)]
            other_data = other.read_bytes()
            path.write_bytes(other_data)
            other.write_bytes(data)
            rel = f"{rel} <-> {other.relative_to(run_dir)}"
        elif kind == "delete":
            path.unlink()
        elif kind == "directory":
            path.unlink()
            path.mkdir()
        elif kind == "not_utf8":
            at = op[1] % (len(data) + 1)
            path.write_bytes(data[:at] + op[2] + data[at:])
        elif kind == "link_out":
            path.unlink()
            path.symlink_to(root / op[1])
        elif kind == "empty_json":
            path.write_bytes(op[1])
        done.append(f"{kind} {rel} {op[1:]}")
    return done


# --- the verbs and their oracles ----------------------------------------------------------------

def verb_case(attack, ref, verb, source, damage):
    with attack.case(f"rundir-{verb}", note=repr(damage)) as case:
        run = case.run_dir
        run.parent.mkdir(exist_ok=True)
        shutil.copytree(ref[source], run, symlinks=True)
        case.note = f"{verb} on {source} after {apply_damage(run, case.root, damage)}"
        out = case.root / "out" / "pred.csv"
        case.outputs.append(case.root / "out")
        argv = {"eval": ["eval", run, "--split", "all", "--json"],
                "predict": ["predict", run, ref["rows"], "-o", out],
                "resume": ["resume", run],
                "resume-from": ["resume", run, "--checkpoint", "step-00000004"],
                "diagnose": ["diagnose", run],
                "report": ["report", run]}[verb]
        result = case.cli(*argv)

        def oracle():
            if verb == "eval":
                return None if json.loads(result.out) == ref["eval"] else f"figures {result.out[:600]}"
            if verb == "predict":
                got = out.read_bytes().decode("utf-8")
                return None if got == ref["predict"] else f"predictions {got[:600]}"
            if verb in ("resume", "resume-from"):
                figures = _figures(json.loads((run / "summary.json").read_text(encoding="utf-8")))
                return None if figures == ref["summary"] else f"resumed figures {figures}"
            if verb == "diagnose":
                return None if result.out.strip() else "no story"
            report = run / "report.html"
            return None if report.is_file() and report.stat().st_size > 1000 else "no report.html"

        attack.judge(case, result, oracle)


@given(st.sampled_from(["eval", "eval", "predict", "predict", "resume", "diagnose"]), DAMAGE)
def _finished_prop(attack, ref, verb, damage):
    verb_case(attack, ref, verb, "finished", damage)


def test_damaged_finished_runs_answer_right_or_refuse(attack, runs):
    budget(80)(_finished_prop)(attack, runs)


@given(st.sampled_from(["resume", "resume", "resume-from", "eval", "diagnose"]), DAMAGE)
def _interrupted_prop(attack, ref, verb, damage):
    verb_case(attack, ref, verb, "interrupted", damage)


def test_damaged_interrupted_runs_resume_right_or_refuse(attack, runs):
    budget(30)(_interrupted_prop)(attack, runs)


@given(DAMAGE)
def _report_prop(attack, ref, damage):
    verb_case(attack, ref, "report", "finished", damage)


def test_damaged_runs_report_or_refuse(attack, runs):
    budget(2)(_report_prop)(attack, runs)


# --- native crashes: damaged weights in a separate process ---------------------------------------

WORKER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from properties_kit import run_cli
for argv in json.loads(sys.argv[2]):
    r = run_cli(*argv)
    print(json.dumps({"code": r.code, "out": r.out, "err": r.err[-500:]}), flush=True)
"""

WEIGHT_FILES = ["model.safetensors", "pipeline.safetensors", "checkpoints/step-00000008/model.safetensors",
                "checkpoints/step-00000008/state.safetensors"]
HEADERS = [b"\xff" * 8, b"\x00" * 8, (2 ** 40).to_bytes(8, "little"), (7).to_bytes(8, "little"),
           b'\x10\x00\x00\x00\x00\x00\x00\x00{"a":{"dtype":"F32"']


def weight_damages(seed: int, n: int = 8) -> list:
    """``n`` damaged weight files: truncated, a bit flipped, or a header size that lies; half of
    them with the checksums rewritten to match, so that the bytes reach safetensors and torch."""
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n):
        name = WEIGHT_FILES[(seed + i) % len(WEIGHT_FILES)]
        op = rng.choice([("truncate", rng.randrange(600)), ("flip", rng.randrange(600), rng.randrange(8)),
                         ("header", rng.choice(HEADERS))])
        out.append((name, op, i % 2 == 1))
    return out


def resign(run, rel: str) -> None:
    """Rewrite the checksum of ``rel`` in its manifest: the file looks as danlu wrote it."""
    import hashlib

    path = run / rel
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if rel.startswith("checkpoints/"):
        manifest_path = path.parent / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["sha256"][path.name] = digest
    else:
        manifest_path = run / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["files"][rel] = {**manifest["files"][rel], "sha256": digest, "size": path.stat().st_size}
    manifest_path.write_text(json.dumps(manifest, indent=1))


def _damage_weights(path, op) -> None:
    data = path.read_bytes()
    if op[0] == "truncate":
        data = data[:op[1] % (len(data) + 1)]
    elif op[0] == "flip":
        at = op[1] % len(data)
        data = data[:at] + bytes([data[at] ^ (1 << op[2])]) + data[at + 1:]
    else:
        data = op[1] + data[8:]
    path.write_bytes(data)


@given(st.integers(0, 2 ** 16))
def _native_prop(attack, ref, seed):
    from properties_kit import CliResult

    damages = weight_damages(seed)
    with attack.case("rundir-native", note=repr(damages)) as case:
        commands = []
        for i, (rel, op, signed) in enumerate(damages):
            run = case.root / "runs" / f"run{i}"
            run.parent.mkdir(exist_ok=True)
            shutil.copytree(ref["finished"], run)
            case.run_dirs.append(run)
            _damage_weights(run / rel, op)
            if signed:
                resign(run, rel)
            commands.append(["resume", str(run), "--checkpoint", "step-00000008"] if rel.startswith("checkpoints/")
                            else ["eval", str(run), "--split", "all", "--json"])
        case.arm()
        kit = os.path.dirname(os.path.abspath(__file__))
        proc = subprocess.run([sys.executable, "-c", WORKER, kit, json.dumps(commands)], capture_output=True,
                              text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
        answers = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        for i, argv in enumerate(commands):
            signed = damages[i][2]
            if i < len(answers):
                a = answers[i]
                result = CliResult(argv, a["code"], a["out"], a["err"])
                oracle = _native_oracle(argv, a["out"], ref, signed)
            else:   # the process died on an earlier command (a signal) or never got here
                result = CliResult(argv, proc.returncode if i == len(answers) else 1, "",
                                   f"worker ended with {proc.returncode}: {proc.stderr[-1500:]}")
                oracle = None
            case.note = f"{damages[i]}"
            attack.judge(case, result, oracle)


def _native_oracle(argv, out, ref, signed):
    """Unsigned damage must give the undamaged answer; re-signed damage is undetectable by design,
    so any answer with finite figures is right."""
    import math

    def check():
        if argv[0] == "eval":
            figures = json.loads(out)
        else:
            figures = _figures(json.loads((Path(argv[1]) / "summary.json").read_text()))
        if not signed:
            want = ref["eval"] if argv[0] == "eval" else ref["summary"]
            return None if figures == want else f"figures {str(figures)[:600]}"
        values = [v for split in figures.values() for v in (split or {}).values() if isinstance(v, float)]
        return None if all(math.isfinite(v) for v in values) else f"figures {str(figures)[:600]}"

    return check


def test_damaged_weights_never_crash_the_process(attack, runs):
    budget(1)(_native_prop)(attack, runs)
