"""What `danlu explain` prints, suggestions for misses, the locale, the listing and diagnosis advice."""
import difflib
import re
import unicodedata

import pytest

import danlu.glossary as glossary
from danlu.errors import UserError

LOCALE_VARS = ("LC_ALL", "LC_MESSAGES", "LANG")


@pytest.fixture
def locale(monkeypatch):
    """Set the locale variables (None: unset)."""
    def set_vars(**values):
        for var in LOCALE_VARS:
            value = values.get(var)
            if value is None:
                monkeypatch.delenv(var, raising=False)
            else:
                monkeypatch.setenv(var, value)
    return set_vars


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_explain_english_layout():
    out = glossary.explain("lr", "en")
    lines = out.splitlines()
    assert lines[0] == "learning rate [学习率]"
    term = glossary.get_term("learning_rate")
    assert _flat(term.text_en) in _flat(out)
    assert "knob: optimizer.lr" in lines
    see = _flat(out).split("see also: ")[1]
    for ref in term.see:
        assert glossary.get_term(ref).name_en in see
    diagnoses = _flat(out).split("diagnoses: ")[1]
    for diag in term.diagnoses:
        title = glossary.diagnosis_text(diag, "en")[0]
        # The id (as events.jsonl writes it) follows the title unless the title already is the id.
        assert f"{title} ({diag})" in diagnoses or glossary.normalize(title) == diag.replace("_", "")
    assert glossary.diagnosis_text("lr_too_high", "en")[0] in diagnoses


def test_explain_chinese_layout():
    out = glossary.explain("学习率", "zh")
    lines = out.splitlines()
    assert lines[0] == "学习率 [learning rate]"
    assert glossary.get_term("learning_rate").text_zh in out
    assert "设置 knob: optimizer.lr" in lines
    assert any(line.startswith("另见 see also: 学习率计划") for line in lines)
    assert "学习率过大 (lr_too_high)" in out


def test_every_term_renders_in_both_languages():
    for term in glossary.load_terms():
        for lang in glossary.LANGS:
            out = glossary.explain(term.id, lang)
            assert out.splitlines()[0].startswith(term.name(lang)), (term.id, lang)
            assert _flat(term.text(lang)) in _flat(out), (term.id, lang)
            knob_label = "knob:" if lang == "en" else "设置 knob:"
            assert any(line.startswith(knob_label) for line in out.splitlines()), (term.id, lang)
            if term.knob:
                assert _flat(term.knob) in _flat(out)
            assert "-\n" not in out, (term.id, lang)  # never wrapped at a hyphen


def test_diagnosis_entries_also_say_what_to_try():
    out = glossary.explain("overfitting", "en")
    assert "what to try:" in out
    assert _flat(glossary.diagnosis_text("overfitting", "en")[1]) in _flat(out)
    assert "怎么办 what to try:" in glossary.explain("过拟合", "zh")
    assert "what to try" not in glossary.explain("batch size", "en")


def test_every_way_of_naming_a_term_gives_the_same_text():
    assert glossary.explain("bs", "en") == glossary.explain("Batch_Size", "en") == glossary.explain("批尺寸", "en")


def test_unknown_term_is_one_line_user_error_with_suggestions():
    with pytest.raises(UserError) as caught:
        glossary.explain("lerning rate", "en")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("unknown term 'lerning rate' (did you mean: learning rate")
    assert message.endswith("?); `danlu explain --list` shows all terms")


def test_unknown_term_without_anything_close():
    with pytest.raises(UserError) as caught:
        glossary.explain("qqqqqqqq", "en")
    assert str(caught.value) == "unknown term 'qqqqqqqq'; `danlu explain --list` shows all terms"


def test_unknown_term_in_chinese_is_bilingual():
    with pytest.raises(UserError) as caught:
        glossary.explain("学习律", "zh")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("unknown term '学习律' (did you mean: learning rate")
    assert "未知术语 '学习律'（是否要找：学习率" in message


@pytest.mark.parametrize("query", ["", "   "])
def test_empty_query_is_a_user_error(query):
    with pytest.raises(UserError, match="give a term"):
        glossary.explain(query, "en")


def test_unknown_language_is_a_user_error():
    with pytest.raises(UserError, match="unknown language 'fr'; use one of en, zh"):
        glossary.explain("lr", "fr")
    with pytest.raises(UserError):
        glossary.list_terms("de")


def test_suggest_finds_typos_and_substrings():
    assert glossary.suggest("learnig rate")[0].id == "learning_rate"
    assert glossary.suggest("学习律")[0].id == "learning_rate"
    assert "lr_warmup" in [t.id for t in glossary.suggest("warm")]  # inside 'warmup'
    assert "batch_size" in [t.id for t in glossary.suggest("what batch size should i use")]  # name inside query
    assert len(glossary.suggest("rate", n=2)) == 2
    assert glossary.suggest("") == [] and glossary.suggest("lr", n=0) == []
    assert glossary.suggest("qqqqqqqq") == []


def test_suggest_includes_difflibs_closest_name():
    """Oracle: difflib's own best match over all names must be among the suggestions."""
    names = {}
    for term in glossary.load_terms():
        for name in (term.id, term.name_en, term.name_zh, *term.aliases):
            names[glossary.normalize(name)] = term.id
    for query in ("optimzer", "dropuot", "overfiting", "checkpont", "quantisation aware", "批量大校", "交叉验正"):
        best = difflib.get_close_matches(glossary.normalize(query), list(names), n=1, cutoff=0.6)
        assert best, query
        assert names[best[0]] in [t.id for t in glossary.suggest(query)], query


def test_default_lang_follows_locale_variables_in_order(locale):
    locale()
    assert glossary.default_lang() == "en"
    locale(LANG="zh_CN.UTF-8")
    assert glossary.default_lang() == "zh"
    locale(LANG="en_US.UTF-8")
    assert glossary.default_lang() == "en"
    locale(LC_MESSAGES="zh_TW.UTF-8", LANG="en_US.UTF-8")
    assert glossary.default_lang() == "zh"
    locale(LC_ALL="C.UTF-8", LC_MESSAGES="zh_CN.UTF-8", LANG="zh_CN.UTF-8")
    assert glossary.default_lang() == "en"      # LC_ALL wins
    locale(LC_ALL="", LANG="ZH_cn")
    assert glossary.default_lang() == "zh"      # an empty variable does not count


def test_lang_none_uses_the_locale(locale):
    locale(LANG="zh_CN.UTF-8")
    assert glossary.explain("lr").startswith("学习率 [learning rate]")
    assert glossary.diagnosis_text("plateau") == glossary.diagnosis_text("plateau", "zh")
    locale(LANG="en_GB.UTF-8")
    assert glossary.explain("lr").startswith("learning rate [学习率]")


def _columns(width_of, line, second):
    """Display column at which ``second`` starts in ``line``."""
    assert line.endswith(second), (line, second)
    return width_of(line[: len(line) - len(second)])


def _display_width(text):
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


@pytest.mark.parametrize("lang, other", [("en", "zh"), ("zh", "en")])
def test_list_terms_two_aligned_columns(lang, other):
    terms = glossary.load_terms()
    lines = glossary.list_terms(lang).splitlines()
    rows = lines[: len(terms)]
    assert re.search(rf"\b{len(terms)}\b", lines[-1])  # the footer counts the terms
    starts = set()
    for term, row in zip(terms, rows):
        assert row.startswith(term.name(lang))
        start = _columns(_display_width, row, term.name(other))
        assert start >= _display_width(term.name(lang)) + 2  # at least two spaces between columns
        if _display_width(term.name(lang)) <= 44:           # longer names may push their own row out
            starts.add(start)
    assert len(starts) == 1  # every second column starts at the same display column


def test_diagnosis_text_for_every_id_in_both_languages():
    for diag in glossary.DIAGNOSIS_IDS:
        en_title, en_text = glossary.diagnosis_text(diag, "en")
        zh_title, zh_text = glossary.diagnosis_text(diag, "zh")
        assert en_title and zh_title and en_text and zh_text
        assert not re.search(r"[\u4e00-\u9fff]", en_title + en_text)
        assert re.search(r"[\u4e00-\u9fff]", zh_title) and re.search(r"[\u4e00-\u9fff]", zh_text)
        # The advice names the recipe keys (or command) that cure it, in both languages.
        for text in (en_text, zh_text):
            assert re.search(r"\b(optimizer|model|train|schedule|data|loss|monitors)\.[a-z_]+", text), (diag, text)


def test_diagnosis_text_unknown_id():
    with pytest.raises(UserError, match="unknown diagnosis 'overfit'.*did you mean 'overfitting'"):
        glossary.diagnosis_text("overfit", "en")
