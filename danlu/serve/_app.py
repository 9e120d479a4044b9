"""The HTTP JSON API of ``danlu serve`` on FastAPI: /predict, /info, /health, /openapi.json.

Every bad request is answered ``4xx`` with ``{"error": "one line: what, where, how to fix"}``; no
input can stop the server. Size limits are checked before the body is parsed.
"""
from __future__ import annotations

import json
from typing import Any, Optional, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import UserError

MAX_BATCH = 1024
MAX_BODY_BYTES = 16 * 1024 * 1024

Row = Union[list[Any], dict[str, Any]]


class DataFrameSplit(BaseModel):
    """pandas' ``to_dict(orient="split")``, as MLflow clients send it."""

    model_config = ConfigDict(extra="forbid")

    columns: Optional[list[str]] = None
    data: list[list[Any]]
    index: Optional[list[Any]] = None


class PredictRequest(BaseModel):
    """Exactly one of ``row`` (one row) or ``rows`` (a batch) — danlu's own form, answered with
    probabilities — or one of the forms other serving tools send, answered in their shape
    (``{"predictions": [value, ...]}``): ``instances`` (KServe v1, TensorFlow Serving),
    ``inputs``, ``dataframe_split`` or ``dataframe_records`` (MLflow)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"row": [5.1, 3.5, 1.4, 0.2]}, {"rows": [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]]},
                     {"row": {"age": 42, "plan": "basic"}}, {"instances": [[5.1, 3.5, 1.4, 0.2]]},
                     {"dataframe_split": {"columns": ["age", "plan"], "data": [[42, "basic"]]}}]})

    row: Optional[Row] = Field(None, description="one row: a list of values in the training column order, "
                                                 "a {column: value} object, or nested lists for images")
    rows: Optional[list[Row]] = Field(None, description="a batch of rows, each as for `row`")
    instances: Optional[list[Row]] = Field(None, description="KServe v1 / TensorFlow Serving: rows as for `rows`; "
                                                             "answered {\"predictions\": [value, ...]}")
    inputs: Optional[Union[list[Row], dict[str, list[Any]]]] = Field(
        None, description="MLflow: rows as for `rows`, or {column: [values]}; answered as `instances`")
    dataframe_split: Optional[DataFrameSplit] = Field(
        None, description="MLflow: {\"columns\": [...], \"data\": [[...], ...]}; answered as `instances`")
    dataframe_records: Optional[list[dict[str, Any]]] = Field(
        None, description="MLflow: [{column: value}, ...]; answered as `instances`")


class Prediction(BaseModel):
    prediction: Union[int, float, str, list[float]] = Field(
        description="class label (classifiers), value or values (regression), or cluster id")
    probabilities: Optional[dict[str, float]] = Field(None, description="class label -> probability (classifiers)")


class PredictResponse(BaseModel):
    predictions: list[Prediction]


class ValuesResponse(BaseModel):
    """The answer to ``instances`` / ``inputs`` / ``dataframe_*``: one value per row, as KServe v1
    and MLflow's scoring server answer (class label, value(s), cluster id, or a list of components)."""

    predictions: list[Union[int, float, str, list[float]]]


class ErrorResponse(BaseModel):
    error: str


class Health(BaseModel):
    status: str
    run: str


ERRORS = {code: {"model": ErrorResponse} for code in (400, 413, 422, 500)}


def create_app(predictor, *, max_batch: int = MAX_BATCH, max_body: int = MAX_BODY_BYTES) -> FastAPI:
    """The FastAPI application serving one loaded :class:`~danlu.serve.Predictor`."""
    app = FastAPI(title="danlu serve", version="1", description=f"Predictions of the danlu run "
                  f"'{predictor.run_dir.name}' ({predictor.pipeline.info.task}).")
    _add_error_handlers(app)
    app.add_middleware(BodyLimit, max_body=max_body)

    @app.post("/predict", response_model=Union[PredictResponse, ValuesResponse], responses=ERRORS,
              response_model_exclude_none=True)
    async def predict(request: PredictRequest):
        rows, plain = _request_rows(request, max_batch)
        # inference is blocking work: off the event loop, so /health keeps answering meanwhile
        answers = await run_in_threadpool(predictor.predict, rows)
        if plain:   # the shape KServe v1 and MLflow clients read: one value per row
            return ValuesResponse(predictions=[a["prediction"] if "prediction" in a else list(a.values())
                                               for a in answers])
        return {"predictions": answers}

    @app.get("/info")
    async def info() -> dict:
        return {**predictor.describe(), "max_batch": max_batch, "max_body_bytes": max_body}

    @app.get("/health", response_model=Health)
    async def health():
        return {"status": "ok", "run": predictor.run_dir.name}

    return app


FORMS = ("row", "rows", "instances", "inputs", "dataframe_split", "dataframe_records")


def _request_rows(request: PredictRequest, max_batch: int) -> tuple[list, bool]:
    """The rows of a request, and whether to answer plain values (the other tools' forms)."""
    given = [name for name in FORMS if getattr(request, name) is not None]
    if len(given) != 1:
        raise RequestProblem(422, "send exactly one of 'row' (one row) or 'rows' (a list of rows) — or "
                                  "'instances', 'inputs', 'dataframe_split' or 'dataframe_records'")
    form = given[0]
    rows = [request.row] if form == "row" else _rows_of(form, getattr(request, form))
    if not rows:
        raise RequestProblem(422, f"'{form}' holds no rows; send at least one row")
    if len(rows) > max_batch:
        raise RequestProblem(413, f"{len(rows)} rows in one request; at most {max_batch} are accepted "
                                  f"(split the batch, or start the server with a larger --max-batch)")
    return rows, form not in ("row", "rows")


def _rows_of(form: str, value) -> list:
    """Rows (lists or {column: value} objects) out of a batch form."""
    if form == "dataframe_split":
        if value.columns is None:
            return value.data
        for i, row in enumerate(value.data):
            if len(row) != len(value.columns):
                raise RequestProblem(422, f"dataframe_split.data[{i}] has {len(row)} values for "
                                          f"{len(value.columns)} columns")
        return [dict(zip(value.columns, row)) for row in value.data]
    if form == "inputs" and isinstance(value, dict):   # columnar: {column: [values]}
        lengths = {len(v) for v in value.values()}
        if len(lengths) > 1:
            raise RequestProblem(422, "inputs: every column must hold the same number of values")
        n = lengths.pop() if lengths else 0
        return [{col: values[i] for col, values in value.items()} for i in range(n)]
    return value


class RequestProblem(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestProblem)
    async def problem(_request: Request, err: RequestProblem):
        return _error(err.status, str(err))

    @app.exception_handler(UserError)
    async def user_error(_request: Request, err: UserError):
        return _error(422, str(err))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        ctype = request.headers.get("content-type", "")
        if request.method == "POST" and "json" not in ctype:
            return _error(415 if ctype else 422, f"the body must be JSON sent with content-type: application/json "
                                                 f"(got {ctype or 'no content-type'})")
        return _error(422, _validation_message(err.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, err: StarletteHTTPException):
        return _error(err.status_code, str(err.detail))

    @app.exception_handler(Exception)
    async def crash(_request: Request, err: Exception):   # a bug of ours: answer, log, keep serving
        return _error(500, f"internal error ({type(err).__name__}); the server keeps running — please report it")


def _validation_message(errors) -> str:
    """FastAPI's list of validation errors -> one line naming the first problem."""
    errors = list(errors)
    if not errors:
        return "invalid request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx") or {}
        return (f"the body is not valid JSON ({ctx.get('error', 'parse error')}); "
                f"send a JSON object such as {{\"row\": [...]}}")
    # union members show up in the location as 'list[any]' / 'dict[str,any]': not the user's words
    loc = [str(p) for p in first.get("loc", ()) if p != "body" and "[" not in str(p)]
    where = "".join(f"[{p}]" if p.isdigit() else (f".{p}" if i else p) for i, p in enumerate(loc)) or "body"
    if first.get("type") in ("list_type", "dict_type") and loc and loc[0] in ("row", "rows"):
        what = "a list of rows" if loc == ["rows"] else "a list of values or a {column: value} object"
        return f"{where} must be {what}"
    if first.get("type") == "missing" and not loc:
        message = "the body is empty; send a JSON object such as {\"row\": [...]}"
    elif first.get("type") == "model_attributes_type" or (where == "body" and first.get("type", "").endswith("type")):
        message = "the body must be a JSON object such as {\"row\": [...]} or {\"rows\": [[...], ...]}"
    elif first.get("type") == "extra_forbidden":
        message = f"unknown field {loc[-1]!r}; send 'row' or 'rows' (or 'instances', 'inputs', " \
                  f"'dataframe_split', 'dataframe_records')"
    else:
        message = f"{where}: {first.get('msg', 'invalid')}"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return message + more


class BodyLimit:
    """ASGI middleware: refuse bodies larger than ``max_body`` bytes with 413 before parsing them.

    The declared Content-Length is checked first; a chunked body is counted as it arrives.
    """

    def __init__(self, app, max_body: int):
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await self._too_large(send)
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                await self._too_large(send)
                return
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _too_large(self, send) -> None:
        payload = json.dumps({"error": f"request body too large: at most {self.max_body} bytes are accepted; "
                                       f"send fewer rows per request"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


def _replay(body: bytes, receive):
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
