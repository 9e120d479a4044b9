"""``danlu quantize`` on the command line: in a fresh process as a user runs it, and through
``danlu.cli.main`` in this process for the cases that only need the exit code and message."""
import json

import pytest

from danlu.cli import main

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_quantize_command_writes_folder_report_and_plan(run_cli, mlp_run, tmp_path):
    out = tmp_path / "q"
    done = run_cli("quantize", mlp_run, "--bits", "4", "--scheme", "asym", "--granularity", "group",
                   "--group-size", "16", "--avg-bits", "6", "-o", out, "--progress", "none", env=ONE_THREAD)
    assert done.returncode == 0, done.stderr
    for name in ("quantized.safetensors", "quant.json", "quant_report.json"):
        assert (out / name).is_file()
    assert "size on disk" in done.stdout and "latency batch 64" in done.stdout
    assert "sensitivity" in done.stdout                        # the mixed-precision plan table
    report = json.loads((out / "quant_report.json").read_text())
    assert report["avg_bits"] == 6
    assert {row["layer"] for row in report["plan"]} == {"body.0", "head"}
    meta = json.loads((out / "quant.json").read_text())
    assert meta["spec"]["granularity"] == "group" and meta["spec"]["group_size"] == 16


def test_quantize_command_user_error_exits_2(run_cli, tmp_path):
    done = run_cli("quantize", tmp_path, "--progress", "none", env=ONE_THREAD)
    assert done.returncode == 2
    assert "not a danlu run directory" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_default_folder_is_never_overwritten(mlp_run, capsys):
    folders = []
    for _ in range(2):
        assert main(["quantize", str(mlp_run), "--dynamic", "--json", "--progress", "none"]) == 0
        folders.append(json.loads(capsys.readouterr().out)["folder"])
    assert folders[0].endswith("quantized-int8-sym-channel-uniform-dynamic")
    assert folders[1] == folders[0] + "-2"


@pytest.mark.parametrize("args, message", [
    (["--dynamic", "--calibrate", "2"], "exclude each other"),
    (["--budget-mb", "0.00001"], "raise --budget-mb"),
    (["--granularity", "group", "--group-size", "1"], "group_size"),
    (["--calibrate", "2", "--observer", "percentile", "--percentile", "20"], "--percentile must be in"),
])
def test_user_errors_are_one_line(mlp_run, capsys, args, message):
    assert main(["quantize", str(mlp_run), *args, "--progress", "none"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_help_mentions_the_schemes(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["quantize", "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for word in ("--bits", "--scheme", "--granularity", "--method", "--dynamic", "--calibrate", "--budget-mb",
                 "--avg-bits", "--observer"):
        assert word in out
