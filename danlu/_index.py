"""The runs index: ``<runs_dir>/index.sqlite``, a table of the run folders below ``runs_dir``.

The folders stay the source of truth. The index is a cache of what their recipe.yaml and
summary.json say, refreshed by a scan (a folder whose files changed is read again, one that
vanished is dropped) and rebuilt from scratch when asked. A run folder is any folder holding a
recipe.yaml; cross-validation folds (``cv-x/fold-1``) are found like any other run. Paths are
stored relative to ``runs_dir``, so the folder can move.

danlu only writes an index it created: each carries danlu's SQLite application id. A file named
index.sqlite that is anything else (the user's notes, another program's database, a link) is
left byte for byte as it is — a finished run then skips the index with a one-line warning, and
``danlu runs`` lists from the folders. A damaged index of danlu's is moved aside and rebuilt.
A run's index is the one of the runs folder it was created in, never one further up.

Filters: ``KEY=VALUE``, ``KEY!=VALUE``, ``KEY>V``, ``KEY>=V``, ``KEY<V``, ``KEY<=V`` where KEY is a
recipe key (``model.kind``, ``optimizer.lr``), a figure of the summary (``test.accuracy``,
``validation.loss``, ``run.epochs``) or a column (``name``, ``path``, ``status``, ``epochs``).
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
import sys
import time
import uuid
from pathlib import Path

from .errors import UserError, did_you_mean

INDEX_FILE = "index.sqlite"
SCHEMA_VERSION = 1
COLUMNS = ("path", "name", "created", "status", "task", "model_kind", "data_source", "data_name", "epochs",
           "primary_metric", "primary_value", "stamp", "recipe_json", "summary_json")
SUMMARY_SECTIONS = ("train", "validation", "test", "run")
PLAIN_KEYS = ("name", "path", "status", "created", "epochs", "task")
OPERATORS = (">=", "<=", "!=", ">", "<", "=")
APPLICATION_ID = 0x646E6C75   # "dnlu": PRAGMA application_id of every index danlu creates
SQLITE_HEADER = b"SQLite format 3\x00"
SQLITE_CORRUPT, SQLITE_NOTADB = 11, 26
MULTI_RUN_KINDS = ("cv", "tune")   # marker kinds of the folders danlu makes to hold several runs


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
# The SQLite file: only danlu's own is ever written
# ---------------------------------------------------------------------------------------------

class ForeignIndex(UserError):
    """A file named index.sqlite that danlu did not create: it is never opened for writing,
    rebuilt, moved or deleted."""


def _create_sql() -> str:
    cols = ", ".join(f"{c} TEXT PRIMARY KEY" if c == "path" else c for c in COLUMNS)
    return f"CREATE TABLE runs ({cols})"


def owner_of(path: Path) -> str | None:
    """``None`` when there is no file at ``path``; ``"danlu"`` when it is an index danlu created
    (SQLite whose header carries danlu's application id — read from the bytes, so a damaged one
    is still known — or an index from before the id: format 1 with exactly danlu's ``runs``
    table); else ``"foreign"``: a link, a folder, not SQLite, or another program's database."""
    if not os.path.lexists(path):
        return None
    if path.is_symlink() or not path.is_file():
        return "foreign"
    try:
        with open(path, "rb") as fh:
            head = fh.read(100)
    except OSError:
        return "foreign"
    if len(head) < 100 or not head.startswith(SQLITE_HEADER):
        return "foreign"
    app_id = int.from_bytes(head[68:72], "big")
    if app_id == APPLICATION_ID:
        return "danlu"
    return "danlu" if app_id == 0 and _is_unmarked_danlu_index(path) else "foreign"


def _is_unmarked_danlu_index(path: Path) -> bool:
    """An index danlu wrote before it set an application id: user_version 1 and the ``runs``
    table with danlu's columns, in that order. Read-only: the file is not changed."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return False
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        cols = tuple(r[1] for r in conn.execute("PRAGMA table_info(runs)"))
    except sqlite3.Error:
        return False
    finally:
        conn.close()
    return version == SCHEMA_VERSION and cols == COLUMNS


def _foreign(path: Path) -> ForeignIndex:
    return ForeignIndex(f"{path}: is not danlu's runs index (danlu did not create this file), so danlu leaves it "
                        f"as it is; rename it if danlu should keep an index of the runs in {path.parent}")


def _create(path: Path) -> None:
    """A new, empty index at ``path``, built beside it and linked into place: a file that
    appeared there meanwhile is never replaced."""
    tmp = path.with_name(f"{path.name}.new-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        conn = sqlite3.connect(tmp)
        try:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute(_create_sql())
            conn.commit()
        finally:
            conn.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass   # another process created one meanwhile; the caller looks at it again
        except OSError:   # a file system without hard links
            if not os.path.lexists(path):
                os.rename(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class _Damaged(sqlite3.DatabaseError):
    """danlu's index holds another format or another table than this danlu writes."""


def _is_damage(err: sqlite3.Error) -> bool:
    """Corrupt or not a database — not a lock held by another process ("database is locked")."""
    if isinstance(err, _Damaged):
        return True
    code = getattr(err, "sqlite_errorcode", None)
    if code is None:
        return type(err) is sqlite3.DatabaseError
    return code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)


def _set_aside(path: Path) -> None:
    """Move a damaged index of danlu's aside (``index.sqlite.damaged``, ``-2`` ...), so that a new
    one can be built from the run folders."""
    from ._rundir import numbered

    aside = numbered(path.with_name(f"{path.name}.damaged"))
    try:
        os.rename(path, aside)
    except FileNotFoundError:   # another danlu process set it aside first
        return
    print(f"danlu: warning: {path}: danlu's runs index was damaged; moved it to {aside.name} and "
          f"rebuilding it from the run folders", file=sys.stderr)


def _connect(root: Path) -> tuple[sqlite3.Connection, bool]:
    """Open the index of ``root``, creating it if there is none; returns it and whether it was
    made new. A file of that name that is not danlu's raises :class:`ForeignIndex`; a damaged
    one of danlu's is set aside and started afresh, which loses nothing: the folders hold the
    truth."""
    path = root / INDEX_FILE
    made = False
    for _ in range(4):
        owner = owner_of(path)
        if owner == "foreign":
            raise _foreign(path)
        if owner is None:
            _create(path)
            made = True
            continue
        conn = sqlite3.connect(path, timeout=30)
        try:
            _check_format(conn)
            return conn, made
        except sqlite3.DatabaseError as err:
            conn.close()
            if not _is_damage(err):
                raise
            _set_aside(path)
    raise UserError(f"{path}: cannot keep danlu's runs index there (it keeps being replaced); "
                    f"list the runs again")


def _check_format(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    cols = tuple(r[1] for r in conn.execute("PRAGMA table_info(runs)"))
    if version != SCHEMA_VERSION or cols != COLUMNS:
        raise _Damaged(f"index format {version}, columns {cols}")
    if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:   # made before the id
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.commit()
    conn.execute("SELECT COUNT(*) FROM runs").fetchone()   # reads the table's pages


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


def _scan(conn: sqlite3.Connection, root: Path, rebuild: bool = False) -> int:
    """Bring the table up to date with the folders below ``root``; the number of runs it holds."""
    with conn:
        if rebuild:
            conn.execute("DELETE FROM runs")
        known = dict(conn.execute("SELECT path, stamp FROM runs").fetchall())
        seen = set()
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


def _with_index(root: Path, work):
    """``work(conn, made)`` on the index of ``root``; if the index turns out damaged part way
    (a page that only a full read reaches), it is set aside and the work done once more."""
    for attempt in (1, 2):
        conn, made = _connect(root)
        try:
            return work(conn, made)
        except sqlite3.DatabaseError as err:
            if attempt == 2 or not _is_damage(err):
                raise
            conn.close()
            if owner_of(root / INDEX_FILE) != "danlu":
                raise
            _set_aside(root / INDEX_FILE)
        finally:
            conn.close()
    raise AssertionError("unreachable")


def refresh_index(runs_dir="runs", *, rebuild: bool = False) -> int:
    """Bring the index up to date with the folders; ``rebuild`` reads every run again.
    Returns the number of runs indexed. A file named index.sqlite that danlu did not create
    raises :class:`ForeignIndex` and is left as it is."""
    root = _check_root(runs_dir)
    return _with_index(root, lambda conn, made: _scan(conn, root, rebuild))


def index_root_for(run_dir) -> Path:
    """Where a run's index lives: the runs folder it was created in — the folder holding it, or,
    for a run inside a folder danlu made to hold several runs (``cv-<name>``, ``tune-<name>``,
    marked as such), the folder holding that one. Never a folder further up: an index.sqlite
    higher up is not this run's."""
    from ._rundir import read_marker

    root = Path(run_dir).resolve().parent
    while root.parent != root and (read_marker(root) or {}).get("kind") in MULTI_RUN_KINDS:
        root = root.parent
    return root


def index_run(run_dir, runs_dir=None) -> Path:
    """Add (or update) one run in its index — what ``train`` calls when a run finishes.
    Returns the index file's path. Raises :class:`ForeignIndex` (a UserError; the index is
    not updated, nothing is changed) when a file of the index's name there is not danlu's."""
    run_dir = Path(run_dir).resolve()
    root = Path(runs_dir).resolve() if runs_dir is not None else index_root_for(run_dir)
    row = read_run(run_dir, root)
    if row is None:
        raise UserError(f"{run_dir}: not a danlu run directory (no readable recipe.yaml)")

    def add(conn, made):
        with conn:
            _upsert(conn, row)

    _with_index(root, add)
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

    def read(conn, made):
        if refresh or rebuild or made:
            _scan(conn, root, rebuild)
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM runs")]

    try:
        rows = _with_index(root, read)
    except (ForeignIndex, OSError, sqlite3.Error) as err:   # the runs are listed all the same, from the folders
        why = err if isinstance(err, ForeignIndex) else f"{root / INDEX_FILE}: cannot keep the runs index ({err})"
        print(f"danlu: warning: {why}; listing the runs from their folders", file=sys.stderr)
        conn = sqlite3.connect(":memory:")
        try:
            conn.execute(_create_sql())
            rows = read(conn, True)
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
    from .recipe import parse_value, schema

    for op in OPERATORS:
        key, sep, value = text.partition(op)
        if sep and key.strip():
            key = key.strip()
            break
    else:
        raise UserError(f"--filter {text!r}: expected KEY=VALUE or KEY>VALUE (also >=, <, <=, !=), "
                        f"e.g. model.kind=mlp or test.accuracy>0.9")
    head = key.split(".", 1)[0]
    known = set(schema().fields) | set(SUMMARY_SECTIONS) | set(PLAIN_KEYS)
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
