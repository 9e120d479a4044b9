"""``danlu serve RUN``: an HTTP JSON API (POST /predict, GET /info, GET /health) for a finished run."""
from __future__ import annotations

HELP = "serve a finished run's predictions over HTTP (推理): POST /predict, GET /info, GET /health, /docs"

EPILOG = """examples:
  danlu serve runs/iris_mlp                          # http://127.0.0.1:8000, loopback only
  curl -s localhost:8000/predict -H 'content-type: application/json' -d '{"row": [5.1, 3.5, 1.4, 0.2]}'
  curl -s localhost:8000/predict -H 'content-type: application/json' -d '{"rows": [[5.1, 3.5, 1.4, 0.2]]}'
  danlu serve runs/churn --port 9000 --max-batch 256
"""


def add_arguments(parser) -> None:
    import argparse

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("run_dir", help="a finished run directory")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; others print a warning)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument("--max-batch", type=int, default=1024, help="most rows in one request (default 1024)")
    parser.add_argument("--max-body-mb", type=float, default=16.0, help="largest request body in MB (default 16)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where inference runs (default auto: a GPU when present)")


def run(args) -> int:
    from ..errors import UserError

    if not 1 <= args.port <= 65535:
        raise UserError(f"--port must be between 1 and 65535, got {args.port}")
    if args.max_batch < 1:
        raise UserError(f"--max-batch must be at least 1, got {args.max_batch}")
    if not 0 < args.max_body_mb < 1024 * 1024:   # also refuses nan and inf
        raise UserError(f"--max-body-mb must be a number of MB > 0 (and below a terabyte), got {args.max_body_mb}")
    try:
        from ..serve import serve
        serve_fn = serve
    except ImportError as err:
        raise UserError(f"danlu serve needs {err.name}: pip install 'danlu[serve]'") from None
    serve_fn(args.run_dir, args.host, args.port, max_batch=args.max_batch,
             max_body=int(args.max_body_mb * 1024 * 1024), device=args.device)
    return 0
