"""A bounded load test of a running server: N client threads, a fixed number of requests, a time cap."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor


def load_test(url: str, bodies: list[dict], *, clients: int = 4, requests: int = 100,
              time_limit: float = 50.0, timeout: float = 10.0) -> dict:
    """POST ``bodies`` (cycled) to ``url``/predict from ``clients`` threads, ``requests`` in all.

    Stops early when ``time_limit`` seconds have passed. Returns counts, throughput, latency
    percentiles (ms) and the answers by request index, so callers can check them.
    """
    import httpx

    counter = iter(range(requests))
    lock = threading.Lock()
    latencies, failures, answers = [], [], {}
    stop_at = time.monotonic() + time_limit

    def next_index():
        with lock:
            return next(counter, None)

    def client():
        with httpx.Client(base_url=url, timeout=timeout) as http:
            while time.monotonic() < stop_at:
                i = next_index()
                if i is None:
                    return
                t0 = time.perf_counter()
                try:
                    r = http.post("/predict", json=bodies[i % len(bodies)])
                    ok = r.status_code == 200
                    payload = r.json() if ok else r.text
                except httpx.HTTPError as err:
                    ok, payload = False, repr(err)
                elapsed = time.perf_counter() - t0
                with lock:
                    latencies.append(elapsed)
                    (answers.__setitem__(i, payload) if ok else failures.append((i, payload)))

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(client) for _ in range(clients)]:
            f.result()
    wall = time.perf_counter() - start
    return {"requests": len(latencies), "failed": len(failures), "failures": failures[:5],
            "seconds": wall, "throughput": len(latencies) / wall if wall > 0 else 0.0,
            "p50_ms": _percentile(latencies, 50), "p99_ms": _percentile(latencies, 99), "answers": answers}


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k] * 1000.0
