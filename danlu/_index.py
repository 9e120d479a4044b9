"""The runs index: ``<runs_dir>/index.sqlite``, a table of the run folders below ``runs_dir``.

The folders stay the source of truth. The index is a cache of what their recipe.yaml and
summary.json say, refreshed by a scan (a folder whose files changed is read again, one that
vanished is dropped) and rebuilt from scratch when asked or when the file is unreadable. A
run folder is any folder holding a recipe.yaml; cross-validation folds (``cv-x/fold-1``) are
found like any other run. Paths are stored relative to ``runs_dir``, so the folder can move.

Filters: ``KEY=VALUE``, ``KEY!=VALUE``, ``KEY>V``, ``KEY>=V``, ``KEY<V``, ``KEY<=V`` where KEY is a
recipe key (``model.kind``, ``optimizer.lr``), a figure of the summary (``test.accuracy``,
``validation.loss``, ``run.epochs``) or a column (``name``, ``path``, ``status``, ``epochs``).
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from pathlib import Path

from .errors import UserError, did_you_mean

INDEX_FILE = "index.sqlite"
SCHEMA_VERSION = 1
COLUMNS = ("path", "name", "created", "status", "task", "model_kind", "data_source", "data_name", "epochs",
           "primary_metric", "primary_value", "stamp", "recipe_json", "summary_json")
SUMMARY_SECTIONS = ("train", "validation", "test", "run")
PLAIN_KEYS = ("name", "path", "status", "created", "epochs", "task")
OPERATORS = (">=", "<=", "!=", ">", "<", "=")


# ---------------------------------------------------------------------------------------------
# Reading one run folder
# ---------------------------------------------------------------------------------------------

def _stamp(run_dir: Path) -> str:
    """What changes when a run changes: the size and time of its recipe, summary and metrics."""
    parts = []
    for name in ("recipe.yaml", "summary.json", "metrics.jsonl"):
        try:
            st = (run_dir / name).stat()
            parts.append(f"{st.st_mtime_ns}:{st.st_size}")
        except FileNotFoundError:
            parts.append("-")
    return "|".join(parts)


def read_run(run_dir: Path, root: Path) -> dict | None:
    """The index row of one run folder, or None if its recipe cannot be read."""
    import yaml

    from .evaluation import PRIMARY_METRIC

    try:
        recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(recipe, dict):
        return None
    summary = _read_json(run_dir / "summary.json")
    data, model = recipe.get("data") or {}, recipe.get("model") or {}
    task = _task_of(summary) if summary else None
    epochs = (summary or {}).get("run", {}).get("epochs") if summary else _count_lines(run_dir / "metrics.jsonl")
    primary = PRIMARY_METRIC.get(task) if task else None
    value = _figure(summary, primary) if primary else None
    return {
        "path": run_dir.relative_to(root).as_posix(),
        "name": recipe.get("name") or run_dir.name,
        "created": (run_dir / "recipe.yaml").stat().st_mtime,
        "status": "finished" if summary is not None else "unfinished",
        "task": task,
        "model_kind": model.get("kind"),
        "data_source": data.get("source"),
        "data_name": data.get("name") or (Path(data["path"]).name if data.get("path") else None),
        "epochs": epochs,
        "primary_metric": primary,
        "primary_value": value,
        "stamp": _stamp(run_dir),
        "recipe_json": json.dumps(recipe, ensure_ascii=False),
        "summary_json": json.dumps(summary) if summary is not None else None,
    }


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _count_lines(path: Path) -> int | None:
    try:
        with path.open("rb") as fh:
            return sum(1 for _ in fh)
    except OSError:
        return None


def _task_of(summary: dict) -> str | None:
    test = summary.get("test") or summary.get("validation") or summary.get("train") or {}
    if "accuracy" in test:
        return "classification"
    if "r2" in test or "mse" in test:
        return "regression"
    return None


def _figure(summary, metric):
    """The test figure, else validation (a run without a test split), else None."""
    for split in ("test", "validation"):
        value = ((summary or {}).get(split) or {}).get(metric)
        if value is not None:
            return value
    return None


# ---------------------------------------------------------------------------------------------
# The SQLite file
# ---------------------------------------------------------------------------------------------

def _connect(root: Path) -> sqlite3.Connection:
    """Open (creating if need be) the index; an unreadable or old-format file is started afresh,
    which loses nothing: the folders hold the truth."""
    path = root / INDEX_FILE
    for attempt in (1, 2):
        conn = sqlite3.connect(path, timeout=30)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"index format {version}")
            cols = ", ".join(f"{c} {'TEXT PRIMARY KEY' if c == 'path' else ''}" for c in COLUMNS)
            conn.execute(f"CREATE TABLE IF NOT EXISTS runs ({cols})")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.commit()
            return conn
        except sqlite3.DatabaseError:
            conn.close()
            if attempt == 2:
                raise
            path.unlink(missing_ok=True)
    raise AssertionError("unreachable")


def _upsert(conn: sqlite3.Connection, row: dict) -> None:
    marks = ", ".join("?" for _ in COLUMNS)
    conn.execute(f"INSERT OR REPLACE INTO runs ({', '.join(COLUMNS)}) VALUES ({marks})",
                 [row[c] for c in COLUMNS])


def find_run_dirs(root: Path):
    """Every folder under ``root`` holding a recipe.yaml (not looking inside a run's own folders)."""
    for dirpath, dirnames, filenames in os.walk(root):
        if "recipe.yaml" in filenames:
            dirnames[:] = []  # checkpoints and the like are parts of this run, not runs
            yield Path(dirpath)
        else:
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))


def _check_root(runs_dir) -> Path:
    root = Path(runs_dir)
    if not root.is_dir():
        raise UserError(f"{root}: no such runs folder; train a run first (danlu train RECIPE) or give "
                        f"--runs-dir")
    return root


def refresh_index(runs_dir="runs", *, rebuild: bool = False) -> int:
    """Bring the index up to date with the folders; ``rebuild`` reads every run again.
    Returns the number of runs indexed."""
    root = _check_root(runs_dir)
    if rebuild:
        (root / INDEX_FILE).unlink(missing_ok=True)
    conn = _connect(root)
    try:
        known = dict(conn.execute("SELECT path, stamp FROM runs").fetchall())
        seen = set()
        with conn:
            for run_dir in find_run_dirs(root):
                rel = run_dir.relative_to(root).as_posix()
                seen.add(rel)
                if known.get(rel) == _stamp(run_dir):
                    continue
                row = read_run(run_dir, root)
                if row is not None:
                    _upsert(conn, row)
            for rel in set(known) - seen:
                conn.execute("DELETE FROM runs WHERE path = ?", (rel,))
        return conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    finally:
        conn.close()


def index_root_for(run_dir) -> Path:
    """Where a run's index lives: the nearest folder above it that already has an index, else
    its recipe's ``output.runs_dir`` if that holds it, else the folder above it."""
    run_dir = Path(run_dir).resolve()
    for parent in run_dir.parents:
        if (parent / INDEX_FILE).is_file():
            return parent
    try:
        import yaml

        recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8")) or {}
        runs_dir = Path((recipe.get("output") or {}).get("runs_dir") or "runs").resolve()
        if runs_dir in run_dir.parents:
            return runs_dir
    except (OSError, ValueError, AttributeError):
        pass
    return run_dir.parent


def index_run(run_dir, runs_dir=None) -> Path:
    """Add (or update) one run in its index — what ``train`` calls when a run finishes.
    Returns the index file's path."""
    run_dir = Path(run_dir).resolve()
    root = Path(runs_dir).resolve() if runs_dir is not None else index_root_for(run_dir)
    row = read_run(run_dir, root)
    if row is None:
        raise UserError(f"{run_dir}: not a danlu run directory (no readable recipe.yaml)")
    conn = _connect(root)
    try:
        with conn:
            _upsert(conn, row)
    finally:
        conn.close()
    return root / INDEX_FILE


# ---------------------------------------------------------------------------------------------
# Listing, filtering, sorting
# ---------------------------------------------------------------------------------------------

def list_runs(runs_dir="runs", filters=(), sort: str | None = None, *, refresh: bool = True,
              rebuild: bool = False) -> list[dict]:
    """The indexed runs as dicts (with ``recipe`` and ``summary`` parsed), filtered and sorted.

    ``filters``: strings such as ``model.kind=cnn`` or ``test.accuracy>0.9`` (all must hold).
    ``sort``: a metric (``accuracy`` means ``test.accuracy``; best first), any filter key, or
    ``created`` (the default, newest first).
    """
    root = _check_root(runs_dir)
    parsed = [parse_filter(f) for f in filters]
    if refresh or rebuild or not (root / INDEX_FILE).is_file():
        refresh_index(root, rebuild=rebuild)
    conn = _connect(root)
    try:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("SELECT * FROM runs")]
    finally:
        conn.close()
    for row in rows:
        row["recipe"] = json.loads(row.pop("recipe_json"))
        row["summary"] = json.loads(row.pop("summary_json")) if row["summary_json"] else None
        row["full_path"] = str(root / row["path"])
    rows = [r for r in rows if all(_matches(r, key, op, value) for key, op, value in parsed)]
    return _sort(rows, sort)


def parse_filter(text: str) -> tuple[str, str, object]:
    """``"test.accuracy>0.9"`` -> ``("test.accuracy", ">", 0.9)``; the value is read as YAML."""
    from .recipe import RECIPE, parse_value

    for op in OPERATORS:
        key, sep, value = text.partition(op)
        if sep and key.strip():
            key = key.strip()
            break
    else:
        raise UserError(f"--filter {text!r}: expected KEY=VALUE or KEY>VALUE (also >=, <, <=, !=), "
                        f"e.g. model.kind=mlp or test.accuracy>0.9")
    head = key.split(".", 1)[0]
    known = set(RECIPE.fields) | set(SUMMARY_SECTIONS) | set(PLAIN_KEYS)
    if head not in known:
        raise UserError(f"--filter {text!r}: unknown key {key!r}{did_you_mean(head, known)}; use a recipe key "
                        f"(model.kind), a summary figure (test.accuracy) or one of {', '.join(PLAIN_KEYS)}")
    return key, op, parse_value(value.strip())


def _lookup(row: dict, key: str):
    if key in PLAIN_KEYS:
        return row.get(key)
    head, _, rest = key.partition(".")
    node = row["summary"] if head in SUMMARY_SECTIONS else row["recipe"]
    for part in ([head] + rest.split(".")) if rest else [head]:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _matches(row: dict, key: str, op: str, wanted) -> bool:
    value = _lookup(row, key)
    if op in ("=", "!="):
        equal = value == wanted or (value is not None and str(value) == str(wanted))
        return equal if op == "=" else not equal
    try:
        a, b = float(value), float(wanted)
    except (TypeError, ValueError):
        return False  # a run without the figure does not pass a threshold
    return {">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[op]


def _sort(rows: list[dict], sort: str | None) -> list[dict]:
    from .evaluation import METRICS, metric_direction

    if sort in (None, "created"):
        return sorted(rows, key=lambda r: r["created"], reverse=True)
    metrics = set(METRICS["classification"]) | set(METRICS["regression"]) | {"loss"}
    key = f"test.{sort}" if sort in metrics else sort
    if key.split(".", 1)[0] not in set(SUMMARY_SECTIONS) | set(PLAIN_KEYS):
        parse_filter(f"{key}=0")  # the same check of the key, the same message
    base = key.rsplit(".", 1)[-1]
    try:
        best_first = metric_direction(base) == "max"
    except UserError:
        best_first = False  # not a metric: ascending

    def order(row):
        value = _lookup(row, key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return (0, -value if best_first else value, "")
        return (1, 0.0, "" if value is None else str(value))

    return sorted(rows, key=order)


def format_runs(rows: list[dict], sort: str | None = None) -> str:
    """A plain table: name, path, created, model, data, epochs, status, the main test figure."""
    header = ["name", "path", "created", "model", "data", "epochs", "status", "test figure"]
    extra = sort if sort not in (None, "created", "name", "path", "epochs", "status") else None
    if extra:
        header.append(extra)
    body = []
    for r in rows:
        figure = (f"{r['primary_metric']} {r['primary_value']:.4f}"
                  if isinstance(r["primary_value"], (int, float)) else "-")
        line = [r["name"], r["path"], time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"])),
                r["model_kind"] or "-", r["data_name"] or r["data_source"] or "-",
                "-" if r["epochs"] is None else str(r["epochs"]), r["status"], figure]
        if extra:
            key = f"test.{extra}" if "." not in extra else extra
            value = _lookup(r, key)
            line.append(f"{value:.4f}" if isinstance(value, float) else "-" if value is None else str(value))
        body.append([str(c) for c in line])
    if not body:
        return "no runs match"
    widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
