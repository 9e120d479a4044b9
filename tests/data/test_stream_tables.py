"""data.stream for tables: CSV and Parquet files read in chunks of rows.

The oracle is the in-memory path on the same file: the same split rows, the same categories and fill
values, bit for bit the same encoded rows, the same scaling (to float32 rounding), the same errors
and the same metrics; a streamed run killed in a checkpoint write resumes byte-identical.
"""
import builtins
import gc
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import danlu
import danlu.data._stream_table as st
from danlu.data._prepare import prepare
from danlu.data._stream import StreamedArray, wants_stream
from danlu.errors import DataError, RecipeError
from danlu.recipe import DATA, check_section
from danlu.training import _checkpoint as ck

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "danlu", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=ROOT, timeout=300)


def _rows(n=160, seed=0):
    """Columns: two numeric with missing cells, one categorical with missing cells, a label."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a, b = rng.normal(), rng.normal(5, 30)
        color = rng.choice(["red", "green", "blue", "teal"], p=[0.4, 0.3, 0.2, 0.1])
        label = "yes" if a + (color == "red") + 0.3 * rng.normal() > 0.5 else "no"
        cells = [f"{a:.9g}", f"{b:.7g}", str(color), f"{rng.integers(0, 5)}", label]
        if i % 11 == 3:
            cells[1] = ""
        if i % 13 == 5:
            cells[2] = "NA"
        if i % 17 == 2:
            cells[0] = "nan"
        out.append(cells)
    return out


def _write_csv(path, rows, header=("a", "b", "color", "count", "y")):
    path.write_text("\n".join([",".join(header)] + [",".join(r) for r in rows]) + "\n")
    return path


@pytest.fixture
def csv_file(tmp_path):
    return _write_csv(tmp_path / "t.csv", _rows())


@pytest.fixture
def tiny_chunks(monkeypatch):
    monkeypatch.setattr(st, "CHUNK_ROWS", 7)   # many chunks, and a chunk boundary inside every split


def _data(path, stream, **extra):
    source = "parquet" if str(path).endswith(".parquet") else "csv"
    return {"source": source, "path": str(path), "stream": stream, "impute": "mean", **extra}


def _same_prepared(mem, streamed):
    assert mem.splits.keys() == streamed.splits.keys()
    for name in mem.splits:
        (Xa, ya), (Xb, yb) = mem.splits[name], streamed.splits[name]
        assert isinstance(Xa, torch.Tensor) and isinstance(Xb, StreamedArray)
        assert torch.equal(ya, yb), name   # the same rows, in the same order
        assert torch.equal(Xa, Xb[:]), name   # encoded and scaled the same (scaled from equal statistics)
    assert mem.info.to_json() == streamed.info.to_json()
    assert mem.pipeline.reader == streamed.pipeline.reader
    assert mem.pipeline.encoder.to_json() == streamed.pipeline.encoder.to_json()   # categories, exact fills
    torch.testing.assert_close(mem.pipeline.scaler.shift, streamed.pipeline.scaler.shift, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(mem.pipeline.scaler.div, streamed.pipeline.scaler.div, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("extra", [{}, {"impute": "median"}, {"impute": "most_frequent"}, {"impute": "drop"},
                                   {"categorical": ["color", "count"], "scale": "normalize"},
                                   {"features": ["count", "a", "color"], "impute": "most_frequent"},
                                   {"split": {"stratify": False}, "scale": "none"}])
def test_streamed_csv_prepares_as_in_memory(csv_file, tiny_chunks, extra):
    mem, streamed = prepare(_data(csv_file, False, **extra), 3), prepare(_data(csv_file, True, **extra), 3)
    _same_prepared(mem, streamed)
    encoder = streamed.pipeline.encoder
    if "color" in streamed.pipeline.reader["categorical"]:
        assert encoder.categories[streamed.info.feature_names.index("color")] == ["blue", "green", "red", "teal"]
    if extra.get("impute") == "drop":
        assert sum(len(y) for _, y in streamed.splits.values()) < 160   # rows with missing cells left out


def test_the_chunk_size_changes_nothing(csv_file, monkeypatch):
    got = []
    for rows in (3, 64, 100_000):
        monkeypatch.setattr(st, "CHUNK_ROWS", rows)
        p = prepare(_data(csv_file, True, impute="median"), 5)
        got.append((p.pipeline.encoder.to_json(), {k: (X[:], y) for k, (X, y) in p.splits.items()},
                    p.pipeline.scaler.shift, p.pipeline.scaler.div))
    for other in got[1:]:
        assert other[0] == got[0][0]
        for name, (X, y) in got[0][1].items():
            assert torch.equal(other[1][name][0], X) and torch.equal(other[1][name][1], y)
        torch.testing.assert_close(other[2], got[0][2], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(other[3], got[0][3], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("impute", ["mean", "median", "most_frequent"])
def test_fill_values_are_the_in_memory_numbers_exactly(tmp_path, tiny_chunks, impute):
    # many wide-ranging numeric columns and over 600 training rows (numpy's median takes another path)
    rng = np.random.default_rng(2)
    X = rng.normal(size=(900, 9)) * 10.0 ** rng.uniform(-4, 9, size=(1, 9))
    X[:, 3] = np.round(X[:, 3])   # repeated values for most_frequent
    cells = [[repr(v) for v in row] + [str(i % 3)] for i, row in enumerate(X)]
    for i in range(0, 900, 7):
        cells[i][i % 9] = ["", "NA", "null", " n/a "][i % 4]   # every missing text (and the fast path's '')
    path = _write_csv(tmp_path / "w.csv", cells, [f"x{j}" for j in range(9)] + ["y"])
    mem, streamed = prepare(_data(path, False, impute=impute), 0), prepare(_data(path, True, impute=impute), 0)
    assert mem.pipeline.encoder.fills == streamed.pipeline.encoder.fills
    _same_prepared(mem, streamed)


def test_a_bad_cell_in_a_late_chunk_is_named_as_in_memory(tmp_path, tiny_chunks):
    good = [r[:4] + [r[4]] for r in _rows(60)]
    cases = {
        "bad": good[:50] + [["1", "x7", "red", "1", "no"]] + good[50:] + [["2", "zz", "red", "1", "yes"]],
        "inf": good[:45] + [["inf", "1", "red", "1", "no"], ["1e308", "1", "red", "1", "yes"]] + good[45:],
        "label": good[:52] + [["1", "2", "red", "1", ""]] + good[52:],
        "cells": good[:40] + [["1", "2", "red", "no"]] + good[40:],
    }
    expected = {"bad": "column 'b' line 52: 'x7' is not a number (2 such cells)",
                "inf": "column 'a' has 1 infinite value(s) and 1 value(s) beyond the float32 range ±3.4e+38 such "
                       "as 1e+308 (first on line 47)",
                "label": "label 'y' is missing on 1 row(s) (first on line 54)",
                "cells": "line 42 has 4 cells but the header has 5"}
    for name, rows in cases.items():
        path = _write_csv(tmp_path / f"{name}.csv", rows)
        messages = []
        for stream in (False, True):
            with pytest.raises(DataError) as info:
                prepare(_data(path, stream), 0)
            messages.append(str(info.value))
        assert messages[0] == messages[1], name
        assert expected[name] in messages[1] and f"{name}.csv" in messages[1] and "\n" not in messages[1]
    # missing features without data.impute: the same summary as in memory
    path = tmp_path / "t.csv"
    _write_csv(path, _rows(60))
    with pytest.raises(DataError) as mem:
        prepare(_data(path, False, impute="none"), 0)
    with pytest.raises(DataError) as streamed:
        prepare(_data(path, True, impute="none"), 0)
    assert str(mem.value) == str(streamed.value) and "missing values in 'a'" in str(streamed.value)


def test_not_utf8_is_named_as_in_memory(tmp_path):
    path = tmp_path / "u.csv"
    path.write_bytes(b"a,y\n1,0\n2,1\n" + b"3,\xff\n" * 3)
    messages = []
    for stream in (False, True):
        with pytest.raises(DataError) as info:
            prepare(_data(path, stream), 0)
        messages.append(str(info.value))
    assert messages[0] == messages[1] and "line 4" in messages[1]


def _recipe(path, stream, epochs=3):
    return {"seed": 4, "data": _data(path, stream),
            "model": {"kind": "mlp", "hidden": [16], "dropout": 0.2},
            "optimizer": {"kind": "adam", "lr": 0.01},
            "train": {"epochs": epochs, "batch_size": 16},
            "output": {"progress": "none"}}


def test_streamed_csv_run_gives_the_in_memory_metrics_and_predicts(csv_file, tmp_path):
    mem = danlu.train(_recipe(csv_file, False), tmp_path / "mem")
    streamed = danlu.train(_recipe(csv_file, True), tmp_path / "streamed")
    for split in ("train", "validation", "test"):
        for key, value in mem.summary[split].items():
            assert streamed.summary[split][key] == pytest.approx(value, rel=1e-5, abs=1e-5), (split, key)
    # the pipeline reads new CSV rows as the in-memory run's does (categories, fills)
    new = _write_csv(tmp_path / "new.csv", _rows(25, seed=7) + [["0.1", "", "purple", "2", "no"]])
    got_mem, got_streamed = mem.predict(str(new)), streamed.predict(str(new))
    assert [r["prediction"] for r in got_streamed] == [r["prediction"] for r in got_mem]


def test_streamed_csv_run_killed_in_a_checkpoint_write_resumes_byte_identical(csv_file, tmp_path):
    import yaml

    recipe = _recipe(csv_file, True, epochs=2)
    recipe["checkpoint"] = {"every_epochs": 1, "every_steps": 2, "keep_last": 2}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    danlu.train(str(path), tmp_path / "ref")   # the uninterrupted run
    killed = _cli("train", str(path), "--run-dir", str(tmp_path / "killed"), env={"DANLU_KILL_AT": "before_rename:3"})
    assert killed.returncode == -signal.SIGKILL
    newest = ck.list_checkpoints(tmp_path / "killed" / "checkpoints")[-1]
    assert ck.read_checkpoint(newest)[1]["position"]["batch"] > 0, "killed after a mid-epoch checkpoint"
    danlu.resume(tmp_path / "killed", progress="none")   # in this process: the killed run's checkpoint is all it has
    assert ((tmp_path / "ref" / "model.safetensors").read_bytes()
            == (tmp_path / "killed" / "model.safetensors").read_bytes())


def _parquet(tmp_path, rows):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    def num(j):
        return pa.array([None if r[j] in ("", "nan") else float(r[j]) for r in rows], pa.float64())

    table = pa.table({"a": num(0), "b": num(1),
                      "color": pa.array([None if r[2] == "NA" else r[2] for r in rows]).dictionary_encode(),
                      "count": pa.array([int(r[3]) for r in rows], pa.int64()),
                      "y": pa.array([r[4] for r in rows], pa.string())})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=50)
    return path


def test_parquet_reads_as_the_same_csv_in_memory_and_streamed(tmp_path, tiny_chunks):
    rows = _rows()
    parquet, csv_path = _parquet(tmp_path, rows), _write_csv(tmp_path / "t.csv", rows)
    for extra in ({}, {"impute": "most_frequent", "categorical": ["color", "count"]}):
        mem = prepare(_data(parquet, False, **extra), 1)
        _same_prepared(mem, prepare(_data(parquet, True, **extra), 1))
        as_csv = prepare(_data(csv_path, False, **extra), 1)   # the same values written as text
        assert mem.pipeline.encoder.to_json() == as_csv.pipeline.encoder.to_json()
        assert mem.pipeline.reader == as_csv.pipeline.reader
        for name in mem.splits:
            assert torch.equal(mem.splits[name][0], as_csv.splits[name][0])


def test_parquet_run_predicts_csv_input(tmp_path):
    parquet = _parquet(tmp_path, _rows())
    run = danlu.train(_recipe(parquet, True, epochs=1), tmp_path / "run")
    new = _write_csv(tmp_path / "new.csv", _rows(10, seed=3))
    assert len(run.predict(str(new))) == 10


def test_missing_pyarrow_is_one_line(tmp_path, monkeypatch):
    real = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError(f"No module named '{name}'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1")
    for stream in (False, True):
        with pytest.raises(DataError, match=r"needs pyarrow.*pip install 'danlu\[parquet\]'") as info:
            prepare(_data(path, stream), 0)
        assert "\n" not in str(info.value)


def test_auto_streams_a_table_too_large_for_a_share_of_free_memory(csv_file, monkeypatch):
    import danlu.models._budget as budget

    cfg = check_section(DATA, _data(csv_file, "auto"), "data", "recipe")
    size = st.CsvFile(csv_file).size(4)   # what reading it whole would take
    assert size > 160 * 4 * 4   # at least the float32 features
    assert wants_stream(cfg, "recipe", available=10 * size) is False
    assert wants_stream(cfg, "recipe", available=3 * size) is True
    monkeypatch.setattr(budget, "available_memory", lambda: 3 * size)
    assert isinstance(prepare(_data(csv_file, "auto"), 0).splits["train"][0], StreamedArray)


def test_the_cache_is_removed_once_the_data_are_dropped(csv_file):
    prepared = prepare(_data(csv_file, True), 0)
    folder = prepared.splits["train"][0].source.cache.folder
    assert (folder / "encoded.f32").is_file() and not (folder / "raw.f64").exists()
    del prepared
    gc.collect()
    assert not folder.exists()


def test_a_killed_process_cache_is_removed_by_the_next_stream(csv_file, tmp_path, monkeypatch):
    import tempfile

    from danlu.data import _stream

    base = tmp_path / "tmp"
    base.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    dead, alive, other = base / f"{_stream.CACHE_PREFIX}dead", base / f"{_stream.CACHE_PREFIX}alive", base / "danlu-stream-x"
    for folder in (dead, alive, other):
        folder.mkdir()
        (folder / "encoded.f32").write_bytes(b"1234")
    (dead / "owner").write_text("999999999 1")   # no such process
    (alive / "owner").write_text(_stream._process_tag(os.getpid()) or "")
    prepared = prepare(_data(csv_file, True), 0)
    assert not dead.exists() and alive.exists() and other.exists()   # only a dead owner's folder goes
    assert prepared.splits["train"][0].source.cache.folder.parent == base


def test_what_streamed_tables_refuse(csv_file, tmp_path):
    with pytest.raises(RecipeError, match="multi-label"):
        prepare({"source": "csv", "path": str(csv_file), "stream": True, "task": "multilabel",
                 "label": ["a", "b"]}, 0)
    with pytest.raises(DataError, match="no column 'colour'"):
        prepare(_data(csv_file, True, categorical=["colour"]), 0)
    with pytest.raises(DataError, match="data.shape cannot reshape rows with categorical columns"):
        prepare(_data(csv_file, True, shape=[2, 2]), 0)
