"""What ``danlu explain`` prints: one term, the list of all terms, and diagnosis advice."""
from __future__ import annotations

import os
import textwrap
import unicodedata

from ..errors import UserError, did_you_mean
from ._terms import DIAGNOSIS_IDS, LANGS, Term, advice, load_terms, lookup, normalize, suggest

# POSIX precedence: the first of these that is set decides the language of messages.
_LOCALE_VARS = ("LC_ALL", "LC_MESSAGES", "LANG")
_WIDTH = 88

# Chinese labels keep the English word too, so output can be grepped the same way in both languages.
_LABELS = {
    "en": {"also": "also called", "knob": "knob", "no_knob": "none (a concept; nothing to set)",
           "see": "see also", "diagnoses": "diagnoses", "advice": "what to try"},
    "zh": {"also": "又称", "knob": "设置 knob", "no_knob": "无（概念，没有对应设置）",
           "see": "另见 see also", "diagnoses": "相关诊断 diagnoses", "advice": "怎么办 what to try"},
}


def default_lang() -> str:
    """'zh' when the locale (LC_ALL, LC_MESSAGES, LANG, in that order) starts with zh, else 'en'."""
    for var in _LOCALE_VARS:
        value = os.environ.get(var, "").strip()
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    return "en"


def _check_lang(lang: str | None) -> str:
    lang = default_lang() if lang is None else lang
    if lang not in LANGS:
        raise UserError(f"unknown language {lang!r}; use one of {', '.join(LANGS)}")
    return lang


def _other(lang: str) -> str:
    return "en" if lang == "zh" else "zh"


def _unknown_term(query: str, lang: str) -> UserError:
    close = suggest(query, n=3)
    hint_en = f" (did you mean: {', '.join(t.name_en for t in close)}?)" if close else ""
    message = f"unknown term '{query}'{hint_en}; `danlu explain --list` shows all terms"
    if lang == "zh":
        hint_zh = f"（是否要找：{'、'.join(t.name_zh for t in close)}？）" if close else ""
        message += f" / 未知术语 '{query}'{hint_zh}"
    return UserError(message)


def _paragraph(text: str, lang: str) -> str:
    # textwrap counts characters, not display columns, and would split Chinese at odd places;
    # terminals wrap Chinese well on their own.
    # Never break at hyphens: 'cross-entropy' or `danlu lr-find` must survive copy and paste.
    return textwrap.fill(text, width=_WIDTH, break_on_hyphens=False) if lang == "en" else text


def _field(label: str, value: str, lang: str) -> str:
    line = f"{label}: {value}"
    if lang != "en":
        return line
    return textwrap.fill(line, width=_WIDTH, subsequent_indent="  ", break_on_hyphens=False)


def _diagnosis_label(diag_id: str, lang: str) -> str:
    """The title, with the id that events.jsonl uses when the title does not already say it."""
    title = advice(diag_id)[lang]["title"]
    return title if normalize(title) == normalize(diag_id) else f"{title} ({diag_id})"


def _render(term: Term, lang: str) -> str:
    labels = _LABELS[lang]
    other = term.name(_other(lang))
    title = term.name(lang) if other == term.name(lang) else f"{term.name(lang)} [{other}]"
    lines = [title]
    if term.aliases:
        lines.append(_field(labels["also"], ", ".join(term.aliases), lang))
    lines += ["", _paragraph(term.text(lang), lang), ""]
    advice_for = advice(term.id)
    if advice_for is not None:  # a diagnosis: say what to do about it, too
        lines += [f"{labels['advice']}:", _paragraph(advice_for[lang]["text"], lang), ""]
    lines.append(_field(labels["knob"], term.knob or labels["no_knob"], lang))
    if term.see:
        see = ", ".join(lookup(ref).name(lang) for ref in term.see)
        lines.append(_field(labels["see"], see, lang))
    if term.diagnoses:
        diags = ", ".join(_diagnosis_label(d, lang) for d in term.diagnoses)
        lines.append(_field(labels["diagnoses"], diags, lang))
    return "\n".join(lines)


def explain(query: str, lang: str | None = None) -> str:
    """The text ``danlu explain QUERY`` prints; UserError for an unknown term."""
    lang = _check_lang(lang)
    if not str(query).strip():
        raise UserError("give a term to explain, e.g. `danlu explain lr`; "
                        "`danlu explain --list` shows all terms")
    term = lookup(query)
    if term is None:
        raise _unknown_term(str(query).strip(), lang)
    return _render(term, lang)


def _display_width(text: str) -> int:
    """Terminal columns: wide (CJK) characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def list_terms(lang: str | None = None) -> str:
    """Two columns, name in ``lang`` then the other language's name, in topic order."""
    lang = _check_lang(lang)
    other = _other(lang)
    rows = [(t.name(lang), t.name(other)) for t in load_terms()]
    width = min(max(_display_width(first) for first, _ in rows), 44)
    lines = [first + " " * max(2, width + 2 - _display_width(first)) + second for first, second in rows]
    if lang == "zh":
        lines.append(f"\n共 {len(rows)} 个术语；`danlu explain 术语` 查看其中一个")
    else:
        lines.append(f"\n{len(rows)} terms; `danlu explain TERM` explains one")
    return "\n".join(lines)


def diagnosis_text(diag_id: str, lang: str | None = None) -> tuple[str, str]:
    """(title, advice) for a diagnosis id: what it means and which recipe keys to try."""
    lang = _check_lang(lang)
    entry = advice(diag_id)
    if entry is None:
        raise UserError(f"unknown diagnosis {diag_id!r}{did_you_mean(diag_id, DIAGNOSIS_IDS)}; "
                        f"known: {', '.join(DIAGNOSIS_IDS)}")
    return entry[lang]["title"], entry[lang]["text"]
