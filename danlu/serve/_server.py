"""Running the API: ``serve`` (blocking, for ``danlu serve``) and ``ServerThread`` (in-process, for tests)."""
from __future__ import annotations

import ipaddress
import socket
import sys
import threading
import time

from ._app import MAX_BATCH, MAX_BODY_BYTES, create_app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(run_dir, host: str = "127.0.0.1", port: int = 8000, *, max_batch: int = MAX_BATCH,
          max_body: int = MAX_BODY_BYTES, device: str = "auto", log_level: str = "warning") -> None:
    """Serve a finished run over HTTP until interrupted (one process; inference under a lock)."""
    import uvicorn

    from ._predictor import Predictor

    predictor = Predictor(run_dir, device)
    app = create_app(predictor, max_batch=max_batch, max_body=max_body)
    if not is_loopback(host):
        print(f"danlu serve: warning: listening on {host}, reachable from other machines; the API has no "
              f"authentication — bind 127.0.0.1 unless you mean it", file=sys.stderr)
    print(f"danlu serve: {predictor.run_dir} ({predictor.pipeline.info.task}) on http://{host}:{port} — "
          f"POST /predict, GET /info, GET /health, docs at /docs; Ctrl-C stops", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level=log_level, workers=1)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServerThread:
    """A uvicorn server on loopback in a background thread: ``with ServerThread(app) as url: ...``."""

    def __init__(self, app, host: str = "127.0.0.1", port: int | None = None, start_timeout: float = 30.0):
        import uvicorn

        self.host, self.port = host, port or free_port(host)
        config = uvicorn.Config(app, host=self.host, port=self.port, log_level="error", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.start_timeout = start_timeout

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the test server on {self.url} did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
