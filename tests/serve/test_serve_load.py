"""A real HTTP server on loopback: a bounded concurrent load test, answers checked against danlu.predict."""
import pytest
from serve_testkit import assert_same, predict_rows

pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from danlu.serve import Predictor, ServerThread, create_app, is_loopback, load_test  # noqa: E402


def test_concurrent_clients_get_correct_answers(iris_run, tmp_path):
    from sklearn.datasets import load_iris

    predictor = Predictor(iris_run, device="cpu")
    data = load_iris().data
    rows = [data[i].tolist() for i in range(0, 150, 6)]          # 25 different rows
    bodies = [{"row": r} for r in rows[:20]] + [{"rows": rows[i:i + 5]} for i in range(0, 25, 5)]
    expected = predict_rows(iris_run, tmp_path, predictor.describe()["features"], rows)
    want = [expected[i:i + 1] for i in range(20)] + [expected[i:i + 5] for i in range(0, 25, 5)]
    with ServerThread(create_app(predictor)) as url:
        assert url.startswith("http://127.0.0.1:")
        result = load_test(url, bodies, clients=4, requests=100, time_limit=50)
    assert result["failed"] == 0, result["failures"]
    assert result["requests"] == 100 and len(result["answers"]) == 100
    for i, answer in result["answers"].items():
        assert_same(answer["predictions"], want[i % len(bodies)], predictor.pipeline.info.classes)
    assert result["throughput"] > 0 and result["p50_ms"] <= result["p99_ms"]


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10") and not is_loopback("example.org")


def test_serve_cli_user_errors(tmp_path, capsys):
    from danlu.cli import main

    assert main(["serve", str(tmp_path / "no_run"), "--port", "0"]) == 2
    assert "--port" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "no_run")]) == 2
    assert "not a danlu run directory" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--max-batch", "0"]) == 2
    assert "--max-batch" in capsys.readouterr().err


def test_non_loopback_bind_warns(iris_run, monkeypatch, capsys):
    import uvicorn

    from danlu.serve import serve
    from danlu.serve._server import free_port

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))   # never serve for real
    port = free_port("0.0.0.0")   # serve tries the port before its banner, so it must be free
    serve(iris_run, "0.0.0.0", port, device="cpu")
    assert seen["host"] == "0.0.0.0" and seen["port"] == port
    assert "warning" in capsys.readouterr().err
    serve(iris_run, "127.0.0.1", port, device="cpu")
    assert "warning" not in capsys.readouterr().err
