"""Serving: the HTTP JSON API of ``danlu serve`` and the ONNX export of ``danlu export``.

``Predictor``, ``rows_to_features`` and ``export_onnx`` need only torch (and onnx for the export);
the server pieces (``create_app``, ``serve``, ``ServerThread``) need the ``serve`` extra
(fastapi, uvicorn) and are imported on first use.
"""
from ._load import load_test
from ._onnx import export_onnx
from ._predictor import Predictor
from ._rows import rows_to_features

_SERVER_NAMES = {"create_app": "._app", "serve": "._server", "ServerThread": "._server", "is_loopback": "._server"}

__all__ = ["Predictor", "rows_to_features", "export_onnx", "load_test", *_SERVER_NAMES]


def __getattr__(name):
    if name in _SERVER_NAMES:
        import importlib

        return getattr(importlib.import_module(_SERVER_NAMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
