"""The glossary behind ``danlu explain``: every term of danlu's vocabulary, in English and Chinese.

Each entry says what a term means and which knob (recipe key or command) controls it; the
diagnoses the monitors raise have entries and advice here too. A term is found by its id, its
English or Chinese name, an alias (``lr``, ``bs``, ``炸炉``) or a recipe key (``optimizer.lr``). The data lives in
``terms.yaml`` beside this file and is loaded lazily, so importing this package is cheap.

>>> from danlu.glossary import explain, lookup
>>> lookup("bs").id
'batch_size'
"""
from ._explain import default_lang, diagnosis_text, explain, list_terms
from ._terms import DIAGNOSIS_IDS, LANGS, Term, get_term, load_terms, lookup, normalize, suggest

__all__ = [
    "DIAGNOSIS_IDS", "LANGS", "Term", "default_lang", "diagnosis_text", "explain", "get_term",
    "list_terms", "load_terms", "lookup", "normalize", "suggest",
]
