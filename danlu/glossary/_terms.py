"""The glossary data: loading ``terms.yaml``, and finding an entry by any of its names.

Loading is lazy and cached, so ``import danlu.glossary`` stays cheap (no yaml, torch or numpy
until a term is looked up). The file is checked once on load; a broken entry is a bug in danlu,
so it raises ``ValueError`` naming the entry rather than a ``UserError``.
"""
from __future__ import annotations

import difflib
import functools
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

LANGS = ("en", "zh")

# The diagnoses that danlu's monitors emit; each has advice in the YAML `diagnoses:` mapping
# and a glossary entry with the same id.
DIAGNOSIS_IDS = (
    "divergence", "nan_loss", "loss_spike", "rescue", "rescue_exhausted", "vanishing_gradient",
    "exploding_gradient", "overfitting", "underfitting", "converged", "plateau",
    "false_convergence", "lr_too_high", "lr_too_low", "collapse", "unscaled_features", "no_signal",
    "still_improving", "stopped_too_early",
)


@dataclass(frozen=True)
class Term:
    """One glossary entry, in both languages."""

    id: str
    name_en: str
    name_zh: str
    text_en: str
    text_zh: str
    aliases: tuple[str, ...] = ()
    knob: str | None = None  # recipe key paths and/or `danlu ...` commands, ", "-separated
    see: tuple[str, ...] = ()
    diagnoses: tuple[str, ...] = ()

    def name(self, lang: str) -> str:
        return self.name_zh if lang == "zh" else self.name_en

    def text(self, lang: str) -> str:
        return self.text_zh if lang == "zh" else self.text_en

    @property
    def knobs(self) -> tuple[str, ...]:
        """The knob split into items: recipe keys (``optimizer.lr``, ``model.kind=cnn``) and commands."""
        if not self.knob:
            return ()
        return tuple(item.strip() for item in self.knob.split(", ") if item.strip())


@dataclass(frozen=True)
class _Glossary:
    terms: tuple[Term, ...]
    by_id: Mapping[str, Term]
    index: Mapping[str, str]  # normalized name/alias -> term id (exact names)
    loose: Mapping[str, str]  # normalized derived forms (parenthesised parts of names) -> term id
    advice: Mapping[str, Mapping[str, Mapping[str, str]]]  # diag id -> lang -> {title, text}


# ---------------------------------------------------------------------------------------------
# Normalization: what a user types should match however it is cased, spaced or hyphenated,
# and in either full-width or half-width characters.
# ---------------------------------------------------------------------------------------------

_IGNORED = re.compile(r"[\s\-_‐‑–—·・'\"`“”‘’「」]+")
_PARENS = re.compile(r"\(([^()]*)\)")


def normalize(text: str) -> str:
    """Case-, space-, hyphen-, underscore- and width-insensitive form of a name."""
    # NFKC folds full-width ASCII (ＬＲ), full-width parentheses and superscripts (R²) to plain forms.
    text = unicodedata.normalize("NFKC", str(text)).casefold()
    return _IGNORED.sub("", text)


def _variants(name: str) -> list[str]:
    """Looser forms of a name with a parenthesis: 'fully connected (MLP)' -> 'fully connected', 'MLP'."""
    text = unicodedata.normalize("NFKC", name)
    if "(" not in text:
        return []
    outside = _PARENS.sub(" ", text)
    inside = _PARENS.findall(text)
    return [v for v in [outside, *inside] if normalize(v)]


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

def _read_yaml() -> dict:
    import yaml  # imported here so that importing danlu.glossary stays fast

    # A plain file beside this module (package data); os.path keeps pathlib out of the import.
    with open(os.path.join(os.path.dirname(__file__), "terms.yaml"), encoding="utf-8") as f:
        text = f.read()
    # libyaml's safe loader builds the same plain data as yaml.safe_load, ~15x faster on this file.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader: plain data only


def _str_tuple(entry: dict, key: str, where: str) -> tuple[str, ...]:
    value = entry.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"terms.yaml: {where}: {key} must be a list of non-empty strings, got {value!r}")
    return tuple(value)


def _lang_block(entry: dict, lang: str, fields: tuple[str, ...], where: str) -> dict:
    block = entry.get(lang)
    if not isinstance(block, dict) or not all(isinstance(block.get(f), str) and block[f].strip() for f in fields):
        raise ValueError(f"terms.yaml: {where}: {lang} needs non-empty {' and '.join(fields)}")
    return block


def _parse_term(entry, position: int) -> Term:
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
        raise ValueError(f"terms.yaml: entry #{position} needs an id")
    where = f"entry {entry['id']!r}"
    en = _lang_block(entry, "en", ("name", "text"), where)
    zh = _lang_block(entry, "zh", ("name", "text"), where)
    knob = entry.get("knob")
    if knob is not None and not (isinstance(knob, str) and knob.strip()):
        raise ValueError(f"terms.yaml: {where}: knob must be a non-empty string or null")
    return Term(
        id=entry["id"], name_en=en["name"].strip(), name_zh=zh["name"].strip(),
        text_en=en["text"].strip(), text_zh=zh["text"].strip(),
        aliases=_str_tuple(entry, "aliases", where), knob=knob,
        see=_str_tuple(entry, "see", where), diagnoses=_str_tuple(entry, "diagnoses", where),
    )


def _check_links(terms: tuple[Term, ...], by_id: Mapping[str, Term]):
    for term in terms:
        for ref in term.see:
            if ref not in by_id or ref == term.id:
                raise ValueError(f"terms.yaml: entry {term.id!r}: see lists unknown id {ref!r}")
        for diag in term.diagnoses:
            if diag not in DIAGNOSIS_IDS:
                raise ValueError(f"terms.yaml: entry {term.id!r}: unknown diagnosis {diag!r}")


def _build_index(terms: tuple[Term, ...]) -> tuple[dict, dict]:
    index: dict[str, str] = {}
    loose: dict[str, str] = {}
    for term in terms:
        for name in (term.id, term.name_en, term.name_zh, *term.aliases):
            key = normalize(name)
            owner = index.setdefault(key, term.id)
            if owner != term.id:  # one name must lead to one entry
                raise ValueError(f"terms.yaml: {name!r} names both {owner!r} and {term.id!r}")
    for term in terms:
        for name in (term.name_en, term.name_zh, *term.aliases):
            for variant in _variants(name):
                key = normalize(variant)
                if key not in index:
                    loose.setdefault(key, term.id)
    return index, loose


def _parse_advice(data) -> dict:
    if not isinstance(data, dict) or set(data) != set(DIAGNOSIS_IDS):
        missing = sorted(set(DIAGNOSIS_IDS) - set(data or {}))
        extra = sorted(set(data or {}) - set(DIAGNOSIS_IDS))
        raise ValueError(f"terms.yaml: diagnoses must cover exactly the diagnosis ids; "
                         f"missing {missing}, unknown {extra}")
    advice = {}
    for diag, entry in data.items():
        where = f"diagnosis {diag!r}"
        if not isinstance(entry, dict):
            raise ValueError(f"terms.yaml: {where} must be a mapping with en and zh")
        advice[diag] = {lang: {f: _lang_block(entry, lang, ("title", "text"), where)[f].strip()
                               for f in ("title", "text")}
                        for lang in LANGS}
    return advice


@functools.lru_cache(maxsize=1)
def _glossary() -> _Glossary:
    data = _read_yaml()
    if not isinstance(data, dict) or not isinstance(data.get("terms"), list):
        raise ValueError("terms.yaml: expected a mapping with a 'terms' list and a 'diagnoses' mapping")
    terms = tuple(_parse_term(e, i) for i, e in enumerate(data["terms"], 1))
    by_id = {}
    for term in terms:
        if term.id in by_id:
            raise ValueError(f"terms.yaml: duplicate id {term.id!r}")
        by_id[term.id] = term
    _check_links(terms, by_id)
    for diag in DIAGNOSIS_IDS:  # so that every diagnosis can link to its explanation
        if diag not in by_id:
            raise ValueError(f"terms.yaml: no entry for diagnosis {diag!r}")
    index, loose = _build_index(terms)
    return _Glossary(terms, by_id, index, loose, _parse_advice(data.get("diagnoses")))


# ---------------------------------------------------------------------------------------------
# Public look-ups
# ---------------------------------------------------------------------------------------------

def load_terms() -> list[Term]:
    """All entries, in file order (grouped by topic as in TERMS.md)."""
    return list(_glossary().terms)


def get_term(term_id: str) -> Term:
    """The entry with this exact id (KeyError if none)."""
    return _glossary().by_id[term_id]


def _candidates(query: str) -> list[str]:
    """Normalized forms to try, most literal first."""
    forms = [query, *_variants(query)]
    keys = [normalize(f) for f in forms]
    # A plural or singular English spelling: 'epochs' finds 'epoch', 'step' finds 'steps'.
    for key in list(keys):
        if key.isascii() and key.isalpha():
            keys.append(key[:-1] if key.endswith("s") else key + "s")
    return [k for k in dict.fromkeys(keys) if k]


def _by_name(query: str) -> Term | None:
    glossary = _glossary()
    for key in _candidates(query):
        term_id = glossary.index.get(key) or glossary.loose.get(key)
        if term_id:
            return glossary.by_id[term_id]
    return None


_KEY_PATH = re.compile(r"[a-z_]+(\.[a-z_]+)+(\.\*)?(=[A-Za-z0-9_.]+)?")


def _knob_key(item: str) -> str:
    return item.split("=", 1)[0].removesuffix(".*")


def _first_with(test, terms) -> Term | None:
    """The first entry whose main (first) knob passes ``test``, else the first with any knob that does."""
    for main_only in (True, False):
        for term in terms:
            items = term.knobs[:1] if main_only else term.knobs
            if any(test(item) for item in items if not item.startswith("`")):
                return term
    return None


def _by_recipe_key(query: str) -> Term | None:
    """The entry that explains a recipe setting such as ``optimizer.lr`` or ``schedule.kind=cosine``."""
    query = query.strip()
    if not _KEY_PATH.fullmatch(query):
        return None
    path, _, value = query.partition("=")
    path = path.removesuffix(".*")
    parts = path.split(".")
    parent = ".".join(parts[:-1])
    terms = _glossary().terms

    # 1. The entry the setting is named after, if it lists the setting: loss.kind=mse -> MSE,
    #    optimizer.weight_decay -> weight decay, optimizer.kind -> optimizer (named after its section).
    for name in ([value] if value else [parts[-1], parts[-2]]):
        named = _by_name(name)
        if named is not None and (query in named.knobs or path in map(_knob_key, named.knobs)):
            return named
    # 2. An entry that lists the knob itself, then one that lists the key with any value.
    found = (_first_with(lambda item: item == query, terms)
             or _first_with(lambda item: _knob_key(item) == path, terms))
    if found is not None:
        return found
    # 3. The entry named after the key's section, if it has knobs there: train.early_stopping.mode
    #    -> early stopping, data.image_size -> dataset.
    named = _by_name(parts[-2])
    if named is not None and any(_knob_key(i).startswith(parent + ".") or _knob_key(i) == parent
                                 for i in named.knobs):
        return named
    # 4. An entry whose knob is the key's section (data.augment.* for data.augment.shift), then one
    #    with a sibling key.
    return (_first_with(lambda item: _knob_key(item) == parent, terms)
            or _first_with(lambda item: _knob_key(item).rsplit(".", 1)[0] == parent, terms))


def lookup(query: str) -> Term | None:
    """The entry named by ``query`` (id, English or Chinese name, alias, or a recipe key), or None."""
    return _by_name(query) or _by_recipe_key(query)


def suggest(query: str, n: int = 5) -> list[Term]:
    """Up to ``n`` entries whose names are close to, or contain, ``query`` (best first)."""
    key = normalize(query)
    if not key or n <= 0:
        return []
    glossary = _glossary()
    names = {**glossary.loose, **glossary.index}
    scores: dict[str, float] = {}
    matcher = difflib.SequenceMatcher(autojunk=False)
    matcher.set_seq2(key)  # difflib caches what it learns about seq2, so the query goes there
    for name, term_id in names.items():
        matcher.set_seq1(name)
        score = matcher.ratio() if matcher.real_quick_ratio() >= 0.5 else 0.0
        # A name inside the query, or the query inside a name, is a good hint even when short.
        if (len(key) >= 2 and key in name) or (len(name) >= 3 and name in key):
            score = max(score, 0.7 + 0.3 * min(len(key), len(name)) / max(len(key), len(name)))
        if score >= 0.6 and score > scores.get(term_id, 0.0):
            scores[term_id] = score
    best = sorted(scores, key=lambda t: -scores[t])
    return [glossary.by_id[t] for t in best[:n]]


def advice(diag_id: str) -> Mapping[str, Mapping[str, str]] | None:
    """{lang: {title, text}} for a diagnosis id, or None."""
    return _glossary().advice.get(diag_id)
