"""`danlu keys` lists each model kind's keys: built-in, classical and kinds registered in-process."""
import json
import subprocess
import sys

from danlu import cli
from danlu.models import register_model, registered_params, unregister_model
from danlu.recipe import Field


def _sections(text: str) -> dict[str, dict[str, str]]:
    """model.kind header -> {key: default} of the rows under it."""
    out, current = {}, None
    for line in text.splitlines():
        if line.startswith("model.kind: "):
            current = out.setdefault(line.split(": ", 1)[1], {})
        elif current is not None and line.startswith("  model.") and not line.startswith("  model.*"):
            key, rest = line.split(None, 1)
            default, _ = json.JSONDecoder().raw_decode(rest)   # the default is written as JSON
            current[key] = default
    return out


def test_keys_lists_every_kind_with_its_keys_and_defaults(capsys):
    register_model("tiny_test_net", lambda cfg, info, out: None,
                   params={"width": Field(int, 7, min=1, doc="units of the one layer")})
    try:
        assert cli.main(["keys"]) == 0
        text = capsys.readouterr().out
        shown = _sections(text)
        for kind, params in registered_params().items():
            assert kind in shown, kind
            if params is not None:
                assert shown[kind] == {f"model.{k}": f.default for k, f in params.items()}, kind
    finally:
        unregister_model("tiny_test_net")
    assert shown["tiny_test_net"] == {"model.width": 7}
    assert shown["cnn"]["model.channels"] == [32, 64]
    assert "model.dropout" in shown["mlp"] and "model.hidden" in shown["mlp"]
    assert {"model.n_clusters", "model.n_init"} <= set(shown["kmeans"])       # classical kinds too
    assert "optimizer.lr" in text                            # the general keys are still there


def test_keys_stays_torch_free():
    code = "import sys; from danlu.cli import main; main(['keys']); print('torch' in sys.modules, file=sys.stderr)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stderr.strip() == "False", res.stderr
