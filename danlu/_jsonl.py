"""Reading a run's .jsonl files (metrics, events, gradient norms) the tolerant way: a missing
file is empty and a line cut short by a kill is skipped. Torch-free, for `danlu diagnose`."""
from __future__ import annotations

import json
from pathlib import Path


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a .jsonl file; lines that do not parse (cut by a kill, or bytes that are
    not UTF-8) are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows
