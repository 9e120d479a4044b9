"""Words that are real: the terms the source glossaries use answer in both languages, commands and
flags that entries name exist, and entries say plainly what danlu does not do yet."""
import argparse
import re

import pytest

import danlu.glossary as glossary
from danlu import recipe
from danlu.cli import _parser

# (what a user types, the entry it must lead to): the terms added for the source glossaries'
# wordings, and the aliases for their other spellings.
NEW_NAMES = [
    ("CLIP skip", "clip_skip"), ("ignore-last-layers-of-clip-model", "clip_skip"), ("CLIP 跳层", "clip_skip"),
    ("textual inversion", "textual_inversion"), ("文本反演", "textual_inversion"),
    ("semi-supervised learning", "semi_supervised_learning"), ("半监督学习", "semi_supervised_learning"),
    ("pseudo-labelling", "semi_supervised_learning"),
    ("one-hot encoding", "one_hot_encoding"), ("独热编码", "one_hot_encoding"),
    ("显存", "gpu_memory"), ("GPU memory", "gpu_memory"), ("CUDA out of memory", "gpu_memory"),
    ("反量化", "dequantization"), ("dequantization", "dequantization"),
    ("校准", "calibration"), ("calibration", "calibration"),
    ("激活值量化", "activation_quantization"), ("activation quantization", "activation_quantization"),
    ("插值", "interpolation"), ("interpolation", "interpolation"),
    ("奖励", "reward"), ("reward", "reward"), ("回报", "reward"),
    ("退火算法", "simulated_annealing"), ("阶段性衰减", "step_schedule"), ("动态调整", "plateau_schedule"),
    ("迭代步数", "steps"), ("神经元", "hidden_layer"), ("neuron", "hidden_layer"),
    ("卷积层", "cnn"), ("convolutional layer", "cnn"), ("池化层", "pooling"), ("pooling layer", "pooling"),
    ("混合精度训练", "mixed_precision"), ("AMP", "mixed_precision"),
    ("流式数据", "streaming_data"), ("streaming data", "streaming_data"),
    ("类别权重", "class_weights"), ("class weights", "class_weights"), ("类别不平衡", "class_weights"),
    ("多标签", "multi_label"), ("multi-label", "multi_label"),
    ("EMA", "ema"), ("指数移动平均", "ema"), ("exponential moving average", "ema"),
]


@pytest.mark.parametrize("query, term_id", NEW_NAMES)
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_new_names_answer_in_both_languages(query, term_id, lang):
    term = glossary.lookup(query)
    assert term is not None and term.id == term_id, query
    text = glossary.explain(query, lang)
    assert text.splitlines()[0].startswith(term.name(lang))
    assert term.text(lang) in text.replace("\n", " ") or lang == "zh" and term.text(lang) in text
    assert ("knob: " if lang == "en" else "设置 knob: ") + term.knob in text


def _subcommands() -> dict:
    """Command name -> its parser; "" -> the top-level parser (for `danlu --help`)."""
    parser = _parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {"": parser, **actions[0].choices}


def _split(quoted: str) -> tuple[str, list[str]]:
    """'danlu quantize RUN --dynamic' -> ('quantize', ['RUN', '--dynamic']); 'danlu --help' -> ('', ['--help'])."""
    words = quoted.split()[1:]
    if words and words[0].startswith("-"):
        return "", words
    return words[0], words[1:]


def test_commands_and_flags_named_by_entries_exist():
    """Every `danlu CMD --flag ...` in a knob is a real sub-command, and each flag is one of its options."""
    commands = _subcommands()
    problems = []
    for term in glossary.load_terms():
        for item in term.knobs:
            if not item.startswith("`"):
                continue
            name, words = _split(item.strip("`").split("`")[0])
            if name not in commands:
                problems.append(f"{term.id}: `danlu {name}` is not a command")
                continue
            options = set(commands[name]._option_string_actions)
            for flag in (w for w in words if w.startswith("-")):
                if flag.split("=")[0] not in options:
                    problems.append(f"{term.id}: `danlu {name}` has no option {flag}")
    assert problems == []


def test_commands_and_flags_in_texts_exist():
    """A `danlu CMD ... --flag` quoted in a definition names a real command and real flags."""
    commands = _subcommands()
    problems = []
    for term in glossary.load_terms():
        for lang in glossary.LANGS:
            for quoted in re.findall(r"`(danlu [^`]+)`", term.text(lang)):
                name, words = _split(quoted)
                if name not in commands:
                    problems.append(f"{term.id} ({lang}): `{quoted}`: no command {name}")
                    continue
                options = set(commands[name]._option_string_actions)
                problems += [f"{term.id} ({lang}): `{quoted}`: no option {w}"
                             for w in words if w.startswith("--") and w not in options]
            # a bare `--flag` right after a quoted command belongs to that command
            for command, flag in re.findall(r"`danlu ([a-z-]+)[^`]*`(?: or | 或 |, )`(--[a-z-]+)", term.text(lang)):
                if flag not in commands[command]._option_string_actions:
                    problems.append(f"{term.id} ({lang}): `danlu {command}` has no option {flag}")
    assert problems == []


def _keys() -> set:
    return {path for path, _, _ in recipe.describe()}


def test_mixed_precision_training_is_called_unavailable_only_while_it_is():
    term = glossary.get_term("mixed_precision")
    has_precision_key = any(k.endswith("precision") for k in _keys())
    says_missing = "not available in danlu yet" in term.text_en and "还不支持" in term.text_zh
    assert says_missing != has_precision_key, "update the mixed precision entry: danlu's training precision changed"


def test_textual_inversion_is_called_unavailable_only_while_it_is():
    term = glossary.get_term("textual_inversion")
    has_command = any("inversion" in name for name in _subcommands())
    says_missing = "does not do textual inversion yet" in term.text_en or "还不支持" in term.text_zh
    assert says_missing != has_command, "update the textual inversion entry: danlu now has a command for it"


# TERMS.md's last rows name keys that danlu does not have yet; their entries say so, and this test
# fails as soon as the key appears, so that the entry is rewritten with the feature.
NOT_YET = [("streaming_data", "data.stream"), ("class_weights", "loss.class_weights"), ("ema", "train.ema")]


@pytest.mark.parametrize("term_id, key", NOT_YET)
def test_entries_say_not_yet_only_while_the_key_is_missing(term_id, key):
    term = glossary.get_term(term_id)
    says_missing = " yet" in term.text_en and "还不支持" in term.text_zh
    assert says_missing == (key not in _keys()), f"{key} now exists: rewrite the {term_id} entry around it"


def test_multi_label_is_called_single_label_only_while_it_is():
    tasks = next(field.choices for path, field in _fields() if path == "data.task")
    term = glossary.get_term("multi_label")
    says_single = "single-label yet" in term.text_en and "还只支持单标签" in term.text_zh
    assert says_single == (not any("label" in str(t) for t in tasks)), "rewrite the multi-label entry"


def _fields():
    def walk(section, prefix):
        for key, spec in section.fields.items():
            if isinstance(spec, recipe.Section):
                yield from walk(spec, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", spec

    return list(walk(recipe.RECIPE, ""))


def test_qat_entry_says_weights_only_as_the_code_does():
    """QAT puts fake quantization on layer weights only (danlu.compress.prepare_qat); the entry says so."""
    torch = pytest.importorskip("torch")
    from danlu.compress import prepare_qat

    model = prepare_qat(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)),
                        {"bits": 8, "scheme": "sym", "granularity": "channel", "group_size": 64,
                         "method": "uniform"})
    parametrized = {name for name, _ in model.named_parameters() if "parametrizations" in name}
    assert parametrized and all(".parametrizations.weight." in name for name in parametrized)
    term = glossary.get_term("qat")
    assert "activations stay in float" in term.text_en and "激活值仍是浮点" in term.text_zh


def test_clip_entry_names_the_encoder_danlu_uses():
    term = glossary.get_term("clip")
    assert "does not ship CLIP" in term.text_en and "MiniLM" in term.text_en and "MiniLM" in term.text_zh


def test_sota_reference_figures_match_their_source():
    """The wine figures the SOTA entry quotes are the ones in scikit-learn's description of the data set."""
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_wine

    descr = load_wine().DESCR
    term = glossary.get_term("sota")
    quoted = re.findall(r"(RDA|QDA|LDA) (\d+(?:\.\d)?)%", term.text_en)
    assert len(quoted) == 3
    for method, figure in quoted:
        assert f"{method} : {figure}%" in descr or f"{method} {figure}%" in descr, (method, figure)
    assert "1NN 96.1%" in descr and "96.1%" in term.text_en and "96.1%" in term.text_zh
    assert "leave-one-out" in descr and "leave-one-out" in term.text_en


def test_model_bias_points_at_the_diagnosis():
    term = glossary.get_term("model_bias")
    assert "`danlu diagnose`" in term.knobs
    assert {"underfitting", "overfitting"} <= set(term.diagnoses)
