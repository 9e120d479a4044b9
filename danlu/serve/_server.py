"""Running the API: ``serve`` (blocking, for ``danlu serve``) and ``ServerThread`` (in-process, for tests)."""
from __future__ import annotations

import errno
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
    # the port is tried before anything is printed: a busy port is one line, not a banner and a crash
    bind_port(host, port).close()
    if not is_loopback(host):
        print(f"danlu serve: warning: listening on {host}, reachable from other machines; the API has no "
              f"authentication — bind 127.0.0.1 unless you mean it", file=sys.stderr)
    print(f"danlu serve: {predictor.run_dir} ({predictor.pipeline.info.task}) on http://{host}:{port} — "
          f"POST /predict, GET /info, GET /health, docs at /docs; Ctrl-C stops", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level=log_level, workers=1)


def bind_port(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (with SO_REUSEADDR, as uvicorn binds, so closing it frees
    the port at once); a port in use, or an address this machine does not have, is a UserError
    naming --port / --host."""
    from ..errors import UserError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise UserError(f"--host {host}: not an address of this machine ({err.strerror}); use e.g. 127.0.0.1") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as uvicorn does: restart over TIME_WAIT
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is already in use (another server?); stop it or pass "
                            f"another --port, e.g. --port {port + 1 if port < 65535 else 8001}") from None
        if err.errno == errno.EACCES:
            raise UserError(f"port {port} on {host}: permission denied (ports below 1024 need administrator "
                            f"rights); pass --port 1024 or higher, e.g. --port 8000") from None
        raise UserError(f"cannot listen on {host}:{port} ({err.strerror}); pass another --host or --port") from None
    sock.set_inheritable(True)
    return sock


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
