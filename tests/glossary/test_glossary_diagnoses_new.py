"""Every diagnosis the monitors can record is answered by `danlu explain`, in both languages."""
import re

import pytest

import danlu.glossary as glossary
from danlu.cli import main
from danlu.diagnose._text import DIAGNOSES

_CJK = re.compile(r"[\u4e00-\u9fff]")


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("diag", DIAGNOSES)
def test_every_monitor_diagnosis_is_explained(diag, lang, capsys):
    assert diag in glossary.DIAGNOSIS_IDS
    assert main(["explain", diag, "--lang", lang]) == 0
    out = capsys.readouterr().out
    term = glossary.get_term(diag)
    assert glossary.lookup(diag).id == diag and diag in term.diagnoses
    assert out.splitlines()[0].startswith(term.name(lang))
    assert _flat(term.text(lang)) in _flat(out)
    title, advice = glossary.diagnosis_text(diag, lang)
    assert _flat(advice) in _flat(out)
    assert ("怎么办 what to try:" if lang == "zh" else "what to try:") in out
    if lang == "zh":
        assert _CJK.search(title) and _CJK.search(advice)
    else:
        assert not _CJK.search(term.name_en)
