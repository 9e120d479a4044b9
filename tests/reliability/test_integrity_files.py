"""Every file a run writes and later loads is checked against the run's manifest.json: one flipped
bit in any of them is refused with one line naming the file; a manifest that is missing or empty
switches nothing off; a file that matches its (rewritten) checksum but holds the wrong shape, the
wrong tensors or another model's inputs is one line too, never a traceback."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import danlu
from danlu import _integrity as integrity
from danlu import training
from danlu.cli import main
from danlu.errors import CheckpointError, UserError
from danlu.recipe import Recipe
from danlu.training import _checkpoint as ck

IRIS_ROWS = {"train": list(range(0, 150, 2)), "validation": list(range(1, 150, 4)), "test": list(range(3, 150, 4))}


def _recipe(hidden=(16,), epochs=2):
    return Recipe.from_dict({"seed": 1, "data": {"source": "sklearn", "name": "iris"},
                             "model": {"kind": "mlp", "hidden": list(hidden)},
                             "train": {"epochs": epochs, "batch_size": 32}, "output": {"progress": "none"}})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("integrity")
    neural = danlu.train(_recipe(), base / "mlp", rows=IRIS_ROWS).path
    wide = danlu.train(_recipe(hidden=(24,)), base / "wide").path
    tree = danlu.train(Recipe.from_dict({"data": {"source": "sklearn", "name": "iris"},
                                         "model": {"kind": "decision_tree", "max_depth": 3},
                                         "output": {"progress": "none"}}), base / "tree").path
    return {"mlp": neural, "wide": wide, "tree": tree}


@pytest.fixture
def copy(runs, tmp_path):
    def make(name="mlp"):
        return shutil.copytree(runs[name], tmp_path / name)
    return make


def _flip(path, bit=6):
    data = bytearray(path.read_bytes())
    data[len(data) * 2 // 3] ^= 1 << bit   # inside the tensor data of a safetensors file
    path.write_bytes(bytes(data))


def _one_line_exit_2(argv, capsys):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("danlu: error: ") and len(err.splitlines()) == 1, err
    return err


def test_a_finished_run_lists_every_file_it_loads(runs):
    doc = json.loads((runs["mlp"] / integrity.MANIFEST).read_text())
    for name in ("recipe.yaml", "rows.json", "pipeline.json", "pipeline.safetensors", "model.json",
                 "model.safetensors", "summary.json"):
        entry = doc["files"][name]
        assert entry == {"sha256": integrity.file_digest(runs["mlp"] / name)[0],
                         "size": (runs["mlp"] / name).stat().st_size}, name
    assert doc["run_id"] and doc["run_id"] == integrity.run_id(runs["mlp"])
    assert "model.skops" in json.loads((runs["tree"] / integrity.MANIFEST).read_text())["files"]


@pytest.mark.parametrize("name", ["recipe.yaml", "rows.json", "pipeline.json", "pipeline.safetensors",
                                  "model.json", "model.safetensors", "summary.json"])
def test_one_flipped_bit_in_any_file_is_refused_naming_it(copy, name):
    run = copy()
    _flip(run / name)
    with pytest.raises(CheckpointError, match=rf"{name}: does not match its checksum"):
        if name == "summary.json":
            danlu.resume(run)          # a finished run: reads its summary
        else:
            danlu.evaluate(run, "test")


def test_a_flipped_exponent_bit_in_the_final_weights_is_exit_2_not_a_wrong_answer(copy, capsys):
    run = copy()
    weights = {k: v.clone() for k, v in load_file(str(run / "model.safetensors")).items()}
    key = next(k for k in weights if k.endswith("weight"))
    # the 30th bit of the first float32 of that tensor: its exponent, so the value changes by ~2**64
    header = int.from_bytes((run / "model.safetensors").read_bytes()[:8], "little")
    meta = json.loads((run / "model.safetensors").read_bytes()[8:8 + header])
    offset = 8 + header + meta[key]["data_offsets"][0] + 3
    data = bytearray((run / "model.safetensors").read_bytes())
    data[offset] ^= 0x40
    (run / "model.safetensors").write_bytes(bytes(data))
    assert not torch.equal(load_file(str(run / "model.safetensors"))[key], weights[key])
    err = _one_line_exit_2(["eval", run], capsys)
    assert "model.safetensors: does not match its checksum" in err


def test_a_classical_model_file_is_checked_by_the_manifest_too(copy):
    run = copy("tree")
    _flip(run / "model.skops")
    with pytest.raises(CheckpointError, match="model.skops"):
        training.load_model(run)


def test_a_quantized_folder_is_checked(copy):
    from danlu.compress import evaluate_quantized, quantize_run

    run = copy()
    result = quantize_run(run, progress=False)
    qdir = result.path
    assert json.loads((qdir / integrity.MANIFEST).read_text())["files"].keys() >= {"quant.json", "quantized.safetensors"}
    before = evaluate_quantized(run, qdir)["test"]
    for name in ("quantized.safetensors", "quant.json"):
        saved = (qdir / name).read_bytes()
        _flip(qdir / name)
        with pytest.raises(CheckpointError, match=rf"{name}: does not match its checksum"):
            evaluate_quantized(run, qdir)
        (qdir / name).write_bytes(saved)
    assert evaluate_quantized(run, qdir)["test"] == before   # restored: loads again, same answers


def test_a_missing_manifest_is_refused_not_skipped(copy):
    run = copy()
    (run / integrity.MANIFEST).unlink()
    with pytest.raises(CheckpointError, match="has no manifest.json"):
        danlu.evaluate(run, "test")


@pytest.mark.parametrize("table", [{}, None, [], {"model.safetensors": "abc"}])
def test_an_empty_or_broken_checksum_table_is_refused(copy, table):
    run = copy()
    doc = json.loads((run / integrity.MANIFEST).read_text())
    doc["files"] = table
    (run / integrity.MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="checksum table"):
        danlu.evaluate(run, "test")


def test_a_file_the_manifest_does_not_list_is_refused(copy):
    run = copy()
    doc = json.loads((run / integrity.MANIFEST).read_text())
    del doc["files"]["model.safetensors"]
    (run / integrity.MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="model.safetensors: not listed in"):
        danlu.evaluate(run, "test")


@pytest.mark.parametrize("sums", [{}, "none", {"model.safetensors": "0" * 64}])
def test_a_checkpoint_manifest_with_an_empty_or_partial_table_is_refused(copy, sums):
    run = copy()
    ckpt = ck.list_checkpoints(run / "checkpoints")[-1]
    doc = json.loads((ckpt / "manifest.json").read_text())
    doc["sha256"] = sums
    (ckpt / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="manifest.json"):
        ck.read_checkpoint(ckpt)


# ---------------------------------------------------------------------------------------------
# Files that match their checksum (rewritten) but not what the run needs: one line, exit 2
# ---------------------------------------------------------------------------------------------

def _rewrite(path, content):
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    integrity.record(path)   # as someone who edits the file and its checksum would


@pytest.mark.parametrize("name,content,message", [
    ("model.json", "[1, 2]", "expected a JSON object, got list"),
    ("model.json", b"\xff\xfe{}", "not UTF-8"),
    ("model.json", '{"loss_kind": 3, "info": {}, "model": {}}', "'loss_kind' must be str"),
    ("model.json", "{not json", "not valid JSON"),
    ("summary.json", '"done"', "expected a JSON object, got str"),
    ("pipeline.json", "[]", "expected a JSON object"),
    ("pipeline.json", '{"format": 1, "version": 1}', "pipeline.json"),
    ("rows.json", '{"train": "all"}', "must be a list of row numbers"),
    ("rows.json", '{"train": [1.5, 2]}', "must be a list of row numbers"),
])
def test_a_checksummed_file_of_the_wrong_shape_is_one_line(copy, capsys, name, content, message):
    run = copy()
    _rewrite(run / name, content)
    err = _one_line_exit_2(["resume" if name == "summary.json" else "eval", run], capsys)
    assert name in err and message in err


def test_a_renamed_tensor_key_is_one_line(copy, capsys):
    run = copy()
    weights = load_file(str(run / "model.safetensors"))
    key = sorted(weights)[0]
    weights[key + "_renamed"] = weights.pop(key)
    save_file(weights, str(run / "model.safetensors"))
    integrity.record(run / "model.safetensors")
    err = _one_line_exit_2(["eval", run], capsys)
    assert "model.safetensors" in err and f"missing tensor {key!r}" in err and "_renamed" in err


def test_another_architectures_weights_are_one_line(copy, runs, capsys):
    run = copy()
    shutil.copyfile(runs["wide"] / "model.safetensors", run / "model.safetensors")
    integrity.record(run / "model.safetensors")
    err = _one_line_exit_2(["eval", run], capsys)
    assert "model.safetensors" in err and "the model needs" in err


def test_an_edited_input_shape_in_model_json_is_one_line(copy, capsys):
    run = copy()
    meta = json.loads((run / "model.json").read_text())
    meta["info"]["input_shape"] = [7]
    _rewrite(run / "model.json", json.dumps(meta))
    err = _one_line_exit_2(["eval", run], capsys)
    assert "model.json: info.input_shape is [7]" in err


def test_a_checksummed_state_json_of_the_wrong_shape_is_one_line(copy, capsys):
    run = copy()
    (run / "summary.json").unlink()     # not finished: resume reads the newest checkpoint
    ckpt = ck.list_checkpoints(run / "checkpoints")[-1]
    doc = json.loads((ckpt / "state.json").read_text())
    del doc["state"]["optimizer"]
    (ckpt / "state.json").write_text(json.dumps(doc))
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["sha256"]["state.json"] = ck.sha256(ckpt / "state.json")
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    err = _one_line_exit_2(["resume", run], capsys)
    assert ckpt.name in err and "does not fit this run's model and training state" in err
    (ckpt / "state.json").write_text("[]")
    manifest["sha256"]["state.json"] = ck.sha256(ckpt / "state.json")
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    err = _one_line_exit_2(["resume", run], capsys)
    assert "state.json: expected an object" in err


def test_errors_are_user_errors():
    assert issubclass(CheckpointError, UserError) and issubclass(integrity.StorageError, OSError)


def test_logs_with_bytes_that_are_not_utf8_are_read_tolerantly(copy, capsys):
    """metrics.jsonl and events.jsonl are appended to while a run trains (so not checksummed):
    a line that is not UTF-8 or not JSON is skipped, the rest still tells the story."""
    run = copy()
    good = (run / "metrics.jsonl").read_bytes()
    (run / "metrics.jsonl").write_bytes(b"\xff\xfe\x00garbage\n" + good + b"[1, 2]\n")
    (run / "events.jsonl").write_bytes(b"\x80\x81\n{\"kind\": \n")
    assert main(["diagnose", str(run)]) == 0
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "epoch" in out.out.lower()


def _write_many(folder, tag, count):
    for j in range(count):
        integrity.atomic_write(folder / f"{tag}-{j}.txt", lambda tmp, j=j: tmp.write_text(f"{tag} {j}"))


def test_processes_writing_one_folder_lose_no_checksum(tmp_path):
    """Two processes (say `danlu report` on a run still training) update one manifest: every file
    either wrote stays listed with its own checksum."""
    import multiprocessing

    integrity.begin(tmp_path)
    workers = [multiprocessing.get_context("fork").Process(target=_write_many, args=(tmp_path, tag, 25))
               for tag in ("a", "b", "c")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    files = integrity.read_manifest(tmp_path)["files"]
    assert len(files) == 75
    for name in files:
        assert integrity.read_text(tmp_path / name) == name.replace("-", " ").removesuffix(".txt")
