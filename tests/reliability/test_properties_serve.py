"""Generated request bodies for `danlu serve`'s /predict (FastAPI's TestClient, in process).

Every request is answered 200 with one finite answer per row (probabilities that sum to 1, and
for rows of plain numbers the answers `danlu predict` gives) or 4xx with a one-line JSON
``error``; never 500, never NaN or null in place of a probability. The run folder never changes.
"""
from __future__ import annotations

import csv
import json
import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from properties_kit import CliResult, budget, snapshot

import danlu

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from danlu.serve import Predictor, create_app  # noqa: E402

IRIS_COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
TABLE_COLUMNS = ["size", "colour", "weight"]
MAX_BATCH = 16


@pytest.fixture(scope="module")
def served(attack_runs):
    apps = {}
    for name in ("iris", "table"):
        predictor = Predictor(attack_runs[name], device="cpu")
        client = TestClient(create_app(predictor, max_batch=MAX_BATCH, max_body=200_000),
                            raise_server_exceptions=False)
        apps[name] = (predictor, client, attack_runs[name])
    return apps


NUMBER = st.one_of(st.floats(-10, 10, allow_nan=False).map(lambda v: round(v, 3)), st.integers(-5, 10))
CELL = st.one_of(
    NUMBER, NUMBER, NUMBER,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 3.5e38, 5e-324, 10 ** 30, 10 ** 400, -(2 ** 64), True, False, None]),
    st.sampled_from(["1", "1.5", "3e-4", "nan", "inf", "", " ", "red", "green", "purple", "１２", "a\nb"]),
    st.text(max_size=8),
    st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


GOOD_CELL = {"colour": st.sampled_from(["red", "green", "blue"])}


@st.composite
def batch(draw, columns, n):
    """``n`` rows, all lists or all {column: value} objects, of plain values with a few cells spoiled."""
    named = draw(st.booleans())
    rows = []
    for _ in range(n):
        values = {c: draw(GOOD_CELL.get(c, NUMBER)) for c in columns}
        for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
            values[draw(st.sampled_from(columns))] = draw(CELL)
        rows.append(values if named else [values[c] for c in columns])
    return rows


def hostile_row(columns):
    return st.one_of(st.lists(CELL, max_size=len(columns) + 2),
                     st.dictionaries(st.sampled_from(columns + ["extra", "", "Size", "a\nb"]), CELL, max_size=len(columns) + 1))


def bodies(columns):
    row = hostile_row(columns)
    structured = st.one_of(
        batch(columns, 1).map(lambda rs: {"row": rs[0]}),
        st.integers(1, MAX_BATCH + 2).flatmap(lambda n: batch(columns, n)).map(lambda rs: {"rows": rs}),
        batch(columns, 1).map(lambda rs: {"row": rs[0]}),
        st.integers(1, 4).flatmap(lambda n: batch(columns, n)).map(lambda rs: {"rows": rs}),
        st.builds(lambda r: {"row": r}, row),
        st.builds(lambda rs: {"rows": rs}, st.lists(row, max_size=3)),
        st.builds(lambda r, rs: {"row": r, "rows": rs}, row, st.lists(row, max_size=2)),
        st.dictionaries(st.sampled_from(["row", "rows", "Row", "data", "", "a\nb"]), CELL | row, max_size=2),
        st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=4),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
                     max_leaves=6),
    )
    raw = st.one_of(
        st.binary(max_size=40),
        st.sampled_from([b"", b"{", b'{"row": [1, 2, 3, 4]', b'{"row": [NaN, 1, 2, 3]}', b'{"row": [Infinity, 1, 2, 3]}',
                         b'{"row": [1e999, 1, 2, 3]}', b'{"rows": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                         b'{"row": [1, 2, 3, 4]}' + b" " * 300_000, b'\xff\xfe{"row": []}', b'{"row": "\xff"}',
                         b'{"row": [1, 2, 3, 4], "row": [5, 6, 7, 8]}', b"null", b"[]", b'"row"',
                         b'{"row": [' + b"1," * 100_000 + b"1]}"]),
    )
    return st.one_of(structured.map(lambda b: ("json", b)), structured.map(lambda b: ("json", b)),
                     structured.map(lambda b: ("json", b)), raw.map(lambda b: ("raw", b)))


HEADERS = st.sampled_from([{"content-type": "application/json"}] * 12 + [{"content-type": "text/plain"}, {},
                                                                          {"content-type": "application/json; charset=latin-1"},
                                                                          {"content-type": "multipart/form-data"}])


def _plain(row, columns) -> list | None:
    """The row as a list of plain finite numbers in column order, or None."""
    if isinstance(row, dict):
        if set(row) != set(columns):
            return None
        row = [row[c] for c in columns]
    if not isinstance(row, list) or len(row) != len(columns):
        return None
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < 1e30 and math.isfinite(v)
             for v in row)
    return [float(v) for v in row] if ok else None


def _oracle(body, response, run, classes, columns, folder):
    payload = response.json()
    rows = [body["row"]] if body.get("row") is not None else body["rows"]
    answers = payload.get("predictions")
    if not isinstance(answers, list) or len(answers) != len(rows):
        return f"{len(answers or [])} answers for {len(rows)} rows"
    for answer in answers:
        probs = answer.get("probabilities") or {}
        if set(probs) != {str(c) for c in classes}:
            return f"probabilities {probs}"
        if not all(isinstance(p, float) and math.isfinite(p) and 0 <= p <= 1 for p in probs.values()) \
                or abs(sum(probs.values()) - 1) > 1e-4:
            return f"probabilities {probs}"
        if str(answer.get("prediction")) not in {str(c) for c in classes}:
            return f"prediction {answer.get('prediction')!r}"
    plain = [(i, _plain(r, columns)) for i, r in enumerate(rows)]
    plain = [(i, r) for i, r in plain if r is not None]
    if plain:
        path = folder / "rows.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(columns)
            w.writerows([[repr(v) for v in r] for _, r in plain])
        for (i, _), want in zip(plain, danlu.predict(run, path)):
            for c in classes:
                if abs(answers[i]["probabilities"][str(c)] - want[f"proba_{c}"]) > 1e-5:
                    return f"row {i} answers {answers[i]}, danlu predict answers {want}"
    return None


def _as_result(kind, body, response) -> CliResult:
    """A response read as the command line's answer: 200 is exit 0, 4xx with a JSON one-line
    ``error`` is exit 2, anything else (5xx, no JSON) a crash."""
    shown = repr(body)[:300]
    argv = ["POST /predict", kind, shown]
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.status_code == 200 and isinstance(payload, dict):
        return CliResult(argv, 0, response.text[:2000], "")
    if 400 <= response.status_code < 500:
        error = payload.get("error") if isinstance(payload, dict) else None
        line = f"danlu: error: {error}" if isinstance(error, str) and error else response.text[:2000]
        return CliResult(argv, 2, "", line + "\n")
    return CliResult(argv, 1, "", f"HTTP {response.status_code}: {response.text[:2000]}")


def request_case(attack, app, classes, columns, kind, body, headers):
    predictor, client, run = app
    with attack.case("serve", note=f"{kind} {body!r}"[:1500]) as case:
        case.arm()
        if kind == "json":
            content = json.dumps(body).encode()   # NaN and Infinity as Python's json writes them
        else:
            content = body
        response = client.post("/predict", content=content, headers=headers)
        result = _as_result(kind, body, response)
        case.results.append(result)
        oracle = (lambda: _oracle(body, response, run, classes, columns, case.scratch)) if kind == "json" else \
            (lambda: _raw_oracle(body, response, classes))
        attack.judge(case, result, oracle)


def _raw_oracle(body, response, classes):
    try:
        parsed = json.loads(body)
    except ValueError:
        return "a body that is not JSON was answered"
    answers = response.json().get("predictions")
    if not isinstance(parsed, dict) or not isinstance(answers, list) or not answers:
        return f"answer {response.text[:200]}"
    for answer in answers:
        probs = list((answer.get("probabilities") or {}).values())
        if len(probs) != len(classes) or not all(isinstance(p, float) and math.isfinite(p) for p in probs):
            return f"probabilities {probs}"
    return None


@given(bodies(IRIS_COLUMNS), HEADERS)
@example(("json", {"\x85*": True}), {"content-type": "application/json"})   # found at 10x: a field name that breaks the line
def _iris_prop(attack, app, generated, headers):
    kind, body = generated
    request_case(attack, app, ["setosa", "versicolor", "virginica"], IRIS_COLUMNS, kind, body, headers)


@given(bodies(TABLE_COLUMNS), HEADERS)
def _table_prop(attack, app, generated, headers):
    kind, body = generated
    request_case(attack, app, ["large", "odd", "small"], TABLE_COLUMNS, kind, body, headers)


@pytest.mark.parametrize("name", ["iris", "table"])
def test_generated_request_bodies_answer_or_refuse_with_4xx(attack, served, name):
    predictor, client, run = served[name]
    before = snapshot(run, [])
    prop = _iris_prop if name == "iris" else _table_prop
    budget(60)(prop)(attack, served[name])
    assert snapshot(run, []) == before, "serving changed the run folder"
    assert client.get("/health").status_code == 200
