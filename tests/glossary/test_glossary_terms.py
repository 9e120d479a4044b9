"""The glossary data: every TERMS.md name resolves, links are sound, knobs are real recipe keys."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from danlu import _plugins
import yaml

import danlu.glossary as glossary
from danlu import recipe
from danlu.glossary import _terms

# Every name of every row of TERMS.md, both columns, split at commas and slashes (parenthesised
# lists split too). Kept here rather than parsed from ../shared/TERMS.md, which CI may not have.
TERMS_MD_NAMES = [
    # 炼丹 / 炸炉 / learning kinds / framework
    "炼丹", "model training", "alchemy",
    "炸炉", "training blow-up",
    "机器学习", "深度学习", "machine learning", "deep learning",
    "机器学习框架", "ML framework",
    "监督学习", "无监督学习", "强化学习", "监督", "无监督",
    "supervised learning", "unsupervised learning", "reinforcement learning",
    "classification", "regression", "clustering", "dimensionality reduction",
    # models
    "线性回归", "逻辑回归", "感知器", "linear regression", "logistic regression", "perceptron",
    "决策树", "随机森林", "支持向量机", "K-均值", "decision tree", "random forest", "SVM", "k-means",
    "神经网络", "全连接", "输入层", "隐藏层", "输出层",
    "neural network", "fully connected (MLP)", "fully connected", "MLP",
    "input layer", "hidden layer", "output layer",
    "卷积神经网络", "卷积核", "池化", "CNN", "convolution kernel", "pooling",
    "循环神经网络", "RNN (LSTM/GRU)", "RNN", "LSTM", "GRU",
    "激活函数", "ReLU", "Sigmoid", "activation function",
    "模型", "y = F(x; w)", "model",
    "权重", "偏置", "weight", "bias", "parameters",
    "模型偏差", "model bias", "systematic error",
    "推理", "inference", "张量", "tensor",
    # data
    "数据集", "特征", "标签", "dataset", "feature", "label",
    "训练集", "验证集", "测试集", "training set", "validation set", "test set",
    "交叉验证", "K折", "cross-validation (k-fold)", "cross-validation", "k-fold",
    "管道", "pipeline",
    "噪声", "数据清洗", "预处理", "noise", "data cleaning", "preprocessing",
    "归一化", "标准化", "normalization", "standardization",
    "数据增强", "data augmentation",
    "嵌入", "嵌入模型", "词嵌入", "图嵌入", "embedding", "embedding model", "word embedding", "graph embedding",
    "潜在空间", "latent space", "超网络", "hypernetwork",
    # losses
    "损失", "损失函数", "MSE", "MAE", "对数损失", "指数损失", "交叉熵", "loss", "loss function",
    "目标函数", "代价函数", "objective function", "cost function", "objective",
    # optimization
    "梯度下降", "随机梯度下降", "小批量", "gradient descent", "SGD", "mini-batch",
    "优化器", "optimizer", "Momentum", "AdaGrad", "RMSProp", "Adam", "AdamW",
    "学习率", "learning rate",
    "学习率计划", "衰减", "退火", "线性", "指数", "阶段", "动态",
    "LR schedule", "decay", "annealing", "linear", "exponential", "step", "dynamic",
    "学习率预热", "LR warmup",
    "找最优学习率", "默认值", "网格搜索", "贝叶斯优化", "模拟退火",
    "finding the LR", "defaults", "grid search", "Bayesian optimization", "simulated annealing",
    "超参数", "hyperparameter",
    "批尺寸", "迭代", "轮次", "epoch", "步数", "batch size", "iteration", "steps",
    "权重衰减", "正则化", "Dropout", "weight decay", "regularization", "dropout",
    "批量标准化", "batch normalization",
    "梯度消失", "梯度爆炸", "vanishing gradient", "exploding gradient",
    "梯度裁剪", "gradient clipping", "早停法", "early stopping",
    "过拟合", "欠拟合", "泛化能力", "拟合度",
    "overfitting", "underfitting", "generalization", "goodness of fit",
    "收敛", "假收敛", "convergence", "false convergence", "plateau",
    "检查点", "断点续训", "checkpoint", "resume after interruption",
    "随机种子", "SEED", "random seed", "reproducibility",
    "GAMMA", "decay factor of a schedule",
    # metrics and comparisons
    "准确率", "精确率", "召回率", "F1", "accuracy", "precision", "recall",
    "ROC 曲线", "AUC", "ROC curve", "area under curve",
    "基线", "baseline", "基准", "benchmark", "SOTA", "state of the art",
    "模型融合", "投票", "加权平均", "贝叶斯平均",
    "model fusion", "ensembles", "voting", "weighted average", "Bayesian averaging",
    "模型蒸馏", "教师", "学生", "knowledge distillation", "teacher", "student",
    # compression
    "神经网络量化", "大模型量化", "quantization", "large-model quantization",
    "均匀", "非均匀", "查找表", "对数量化", "均匀量化", "非均匀量化",
    "uniform quantization", "non-uniform quantization", "lookup table", "logarithmic quantization",
    "对称量化", "非对称量化", "symmetric quantization", "asymmetric quantization",
    "混合精度", "分层量化", "动态量化", "mixed precision", "layer-wise quantization", "dynamic quantization",
    "训练感知量化", "QAT", "quantization-aware training",
    # transfer and generation
    "预训练", "微调", "轻量化微调", "PEFT", "LoRA",
    "pre-training", "fine-tuning", "parameter-efficient fine-tuning",
    "VAE", "variational autoencoder",
    "CFG", "无分类器引导", "classifier-free guidance scale",
    "ENSD", "eta noise seed delta",
    "CLIP", "text encoder", "CUDA", "GPU execution",
    # the later rows: CLIP skip, textual inversion, and what danlu does not do yet
    "CLIP 跳层", "ignore-last-layers-of-clip-model", "CLIP skip", "文本反演", "textual inversion",
    "半监督学习", "semi-supervised learning", "pseudo-labels", "独热编码", "one-hot encoding", "embedding",
    "显存", "GPU memory", "混合精度训练", "mixed-precision training",
    "反量化", "校准", "激活值量化", "dequantization", "calibration", "activation quantization",
    "流式数据", "streaming data", "类别权重", "多标签", "class weights", "multi-label", "multi-label task",
    "指数移动平均", "EMA", "exponential moving average of weights",
]

SECTIONS = ("data", "model", "loss", "optimizer", "schedule", "train", "checkpoint", "output", "monitors")
# Recipe key paths in running text: a known section, then dotted words (an optional =value is read too).
KEY_IN_TEXT = re.compile(r"(?<![A-Za-z0-9_.])((?:%s)(?:\.[a-z_]+)+(?:\.\*)?)(?:=([A-Za-z0-9_]+))?" % "|".join(SECTIONS))
# Model kinds TERMS.md names that the registry does not hold yet (classical and generative models).
PLANNED_MODEL_KINDS: set = set()   # kinds named in texts before they exist (none now)


def _recipe_fields() -> dict:
    """Key path -> recipe Field, walked from the schema itself (the oracle for keys and choices)."""
    out = {}

    def walk(section, prefix):
        for key, spec in section.fields.items():
            if isinstance(spec, recipe.Section):
                walk(spec, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = spec

    _plugins.load_builtin()   # the capabilities' sections (monitors, quant, lora, base, env, rl) register themselves
    walk(recipe.RECIPE, "")
    return out


FIELDS = _recipe_fields()
PREFIXES = {path.rsplit(".", n)[0] for path in FIELDS for n in range(1, path.count(".") + 1)}


def _key_problem(path: str, value: str | None) -> str | None:
    """Why ``path[=value]`` is not a real recipe setting, or None when it is."""
    path = path.removesuffix(".*")
    if path.startswith("model."):
        return None  # model keys come from the registry; checked separately below
    if path not in FIELDS and path not in PREFIXES:
        return f"{path} is not a recipe key"
    field = FIELDS.get(path)
    if value is not None and field is not None and field.choices and recipe.parse_value(value) not in field.choices:
        return f"{path}={value}: not one of {field.choices}"
    return None


def test_describe_oracle_agrees_with_walk():
    assert {p for p, _, _ in recipe.describe()} == set(FIELDS)


def test_every_terms_md_name_resolves():
    missing = [name for name in TERMS_MD_NAMES if glossary.lookup(name) is None]
    assert missing == []


@pytest.mark.parametrize("query, term_id", [
    ("lr", "learning_rate"), ("bs", "batch_size"), ("epoch", "epoch"), ("炸炉", "training_blowup"),
    ("SEED", "random_seed"), ("GAMMA", "gamma"), ("CFG", "cfg"), ("ENSD", "ensd"), ("AUC", "auc"),
    ("LoRA", "lora"), ("training blow-up", "training_blowup"), ("梯度消失", "vanishing_gradient"),
    ("y = F(x; w)", "model"), ("Dropout", "dropout"), ("ROC 曲线", "roc_curve"),
    ("fully connected (MLP)", "mlp"), ("RNN (LSTM/GRU)", "rnn"), ("K-均值", "kmeans"),
])
def test_known_names_and_aliases(query, term_id):
    assert glossary.lookup(query).id == term_id


@pytest.mark.parametrize("query", [
    "learning rate", "Learning Rate", "LEARNING-RATE", "learning_rate", "  learning   rate ",
    "ｌｅａｒｎｉｎｇ ｒａｔｅ", "ＬＲ", "Lr", "学习率", "学习率（lr）", "学 习 率",
])
def test_lookup_ignores_case_space_hyphen_underscore_and_width(query):
    assert glossary.lookup(query).id == "learning_rate"


def test_lookup_width_and_spacing_for_chinese_names():
    assert glossary.lookup("ROC曲线").id == glossary.lookup("ROC 曲线").id == "roc_curve"
    assert glossary.lookup("Ｋ折").id == "cross_validation"          # full-width K
    assert glossary.lookup("R²").id == glossary.lookup("r2").id == "r2"  # NFKC folds the superscript
    assert glossary.lookup("epochs").id == "epoch"                   # plural of an English name


@pytest.mark.parametrize("key, term_id", [
    ("optimizer.lr", "learning_rate"), ("train.batch_size", "batch_size"), ("optimizer.kind", "optimizer"),
    ("schedule.kind=cosine", "cosine_schedule"), ("model.kind=linear", "linear_regression"),
    ("loss.kind=mse", "mse"), ("model.dropout", "dropout"), ("loss.delta", "huber_loss"),
    ("schedule.warmup_epochs", "lr_warmup"), ("train.early_stopping.min_delta", "early_stopping"),
    ("data.augment.shift", "data_augmentation"), ("data.augment.*", "data_augmentation"),
    ("monitors.divergence.max_rescues", "rescue_exhausted"), ("monitors.gradients.every", "gradient"),
])
def test_recipe_keys_lead_to_their_entry(key, term_id):
    assert glossary.lookup(key).id == term_id


def test_every_listed_recipe_key_leads_to_an_entry_that_lists_it():
    listed = {_terms._knob_key(item) for t in glossary.load_terms() for item in t.knobs if not item.startswith("`")}
    for path in listed & set(FIELDS):
        assert path in map(_terms._knob_key, glossary.lookup(path).knobs), path


def test_lookup_misses_return_none():
    for query in ("xyzzy", "", "   ", "quantum teleportation", "output.progress", "no.such.key"):
        assert glossary.lookup(query) is None


def test_enough_entries_with_unique_snake_case_ids():
    terms = glossary.load_terms()
    assert len(terms) >= 120
    ids = [t.id for t in terms]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", i) for i in ids)


def test_every_name_leads_to_exactly_one_entry():
    owners = {}
    for term in glossary.load_terms():
        for name in (term.id, term.name_en, term.name_zh, *term.aliases):
            owners.setdefault(glossary.normalize(name), set()).add(term.id)
            assert glossary.lookup(name).id == term.id, name
    assert {k: v for k, v in owners.items() if len(v) > 1} == {}


def test_see_links_exist_and_are_not_self_links():
    by_id = {t.id: t for t in glossary.load_terms()}
    for term in by_id.values():
        assert term.see, f"{term.id} links to nothing"
        for ref in term.see:
            assert ref in by_id and ref != term.id, (term.id, ref)


def test_diagnoses_fields_are_known_and_each_diagnosis_has_an_entry():
    for term in glossary.load_terms():
        assert set(term.diagnoses) <= set(glossary.DIAGNOSIS_IDS), term.id
    for diag in glossary.DIAGNOSIS_IDS:
        term = glossary.lookup(diag)
        assert term is not None and term.id == diag
        assert diag in glossary.get_term(diag).diagnoses  # a diagnosis entry names itself


def test_every_diagnosis_is_mentioned_by_some_other_entry():
    mentioned = {d for t in glossary.load_terms() if t.id not in glossary.DIAGNOSIS_IDS for d in t.diagnoses}
    assert set(glossary.DIAGNOSIS_IDS) - mentioned == set()


def _has_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def test_both_languages_have_names_and_texts():
    for term in glossary.load_terms():
        for lang in glossary.LANGS:
            assert term.name(lang).strip() and len(term.text(lang)) >= 40, (term.id, lang)
        assert _has_cjk(term.text_zh), term.id
        assert not _has_cjk(term.name_en), term.id
        # Each English definition is 1-3 sentences (a ';' or ':' joins clauses, not sentences).
        sentences = [s for s in re.split(r"(?<=[a-z0-9)\]'`])\.\s+(?=[A-Z`(])", term.text_en) if s]
        assert 1 <= len(sentences) <= 3, (term.id, sentences)


def test_knobs_are_recipe_keys_or_danlu_commands():
    problems = []
    for term in glossary.load_terms():
        for item in term.knobs:
            if item.startswith("`"):
                if not re.fullmatch(r"`danlu [a-z-]+[^`]*`( \([^()]+\))?", item):
                    problems.append(f"{term.id}: malformed command {item!r}")
                continue
            if not re.fullmatch(r"[a-z_]+(\.[a-z_]+)*(\.\*)?(=[A-Za-z0-9_]+)?", item):
                problems.append(f"{term.id}: {item!r} is neither a recipe key nor a `danlu` command")
                continue
            path, _, value = item.partition("=")
            problem = _key_problem(path, value or None)
            if problem:
                problems.append(f"{term.id}: {problem}")
    assert problems == []


def test_only_a_few_concepts_have_no_knob():
    bare = {t.id for t in glossary.load_terms() if not t.knobs}
    assert bare == set()


def _texts():
    for term in glossary.load_terms():
        for lang in glossary.LANGS:
            yield term.id, term.text(lang)
    for diag in glossary.DIAGNOSIS_IDS:
        for lang in glossary.LANGS:
            yield diag, glossary.diagnosis_text(diag, lang)[1]


def test_recipe_keys_named_in_texts_exist():
    problems = []
    for where, text in _texts():
        for path, value in KEY_IN_TEXT.findall(text):
            problem = _key_problem(path, value or None)
            if problem:
                problems.append(f"{where}: {problem}")
    assert problems == []


def test_model_options_and_kinds_match_the_registry():
    pytest.importorskip("torch")
    from danlu.models import registered_params

    registry = registered_params()
    options = {name for params in registry.values() if params for name in params}
    problems = []
    for where, text in [*_texts(), *((t.id, t.knob or "") for t in glossary.load_terms())]:
        for path, value in re.findall(r"(?<![A-Za-z0-9_.])model\.([a-z_]+)(?:=([A-Za-z_]+))?", text):
            if path == "kind":
                if value and value not in registry and value not in PLANNED_MODEL_KINDS:
                    problems.append(f"{where}: model.kind={value} is not a registered model")
            elif path not in options:
                problems.append(f"{where}: model.{path} is no registered model's option")
    assert problems == []


def test_yaml_is_plain_data_and_matches_safe_load():
    path = Path(_terms.__file__).with_name("terms.yaml")
    text = path.read_text(encoding="utf-8")
    assert "!!" not in text and "!<" not in text  # no YAML tags: nothing but plain data
    data = yaml.safe_load(text)                   # the oracle for the faster loader the module uses
    assert data == _terms._read_yaml()
    assert len(data["terms"]) == len(glossary.load_terms())
    assert set(data["diagnoses"]) == set(glossary.DIAGNOSIS_IDS)


def test_import_and_use_do_not_pull_torch_or_numpy():
    code = ("import sys, danlu.glossary as g\n"
            "g.explain('lr'); g.list_terms('zh'); g.diagnosis_text('plateau', 'en')\n"
            "print(sorted({'torch', 'numpy'} & set(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_load_terms_is_cached_and_returns_a_fresh_list():
    first = glossary.load_terms()
    first.clear()
    again = glossary.load_terms()
    assert again and again[0] is glossary.load_terms()[0]


def test_terms_are_frozen():
    term = glossary.lookup("lr")
    with pytest.raises(AttributeError):
        term.id = "other"


# -- validation of the data file (a broken file is a bug in danlu: ValueError naming the entry) ----

def _entry(term_id, **extra):
    entry = {"id": term_id, "en": {"name": term_id.replace("_", " "), "text": "t"},
             "zh": {"name": f"术语{term_id}", "text": "释"}, "aliases": [], "see": [], "diagnoses": []}
    entry.update(extra)
    return entry


def _minimal(terms):
    diag_entries = [_entry(d) for d in glossary.DIAGNOSIS_IDS]
    advice = {d: {lang: {"title": d, "text": "x"} for lang in ("en", "zh")} for d in glossary.DIAGNOSIS_IDS}
    return {"terms": diag_entries + terms, "diagnoses": advice}


@pytest.fixture
def fake_yaml(monkeypatch):
    """Make the loader read given data instead of terms.yaml (and forget the cache around it)."""
    def use(data):
        monkeypatch.setattr(_terms, "_read_yaml", lambda: data)
        _terms._glossary.cache_clear()
        return _terms._glossary

    yield use
    monkeypatch.undo()
    _terms._glossary.cache_clear()


def test_minimal_file_loads(fake_yaml):
    load = fake_yaml(_minimal([_entry("alpha", aliases=["a1"], see=["divergence"], diagnoses=["divergence"])]))
    assert load().by_id["alpha"].see == ("divergence",)
    assert glossary.lookup("a1").id == "alpha"


@pytest.mark.parametrize("bad, words", [
    ([_entry("alpha", see=["nowhere"])], "unknown id 'nowhere'"),
    ([_entry("alpha", diagnoses=["bogus"])], "unknown diagnosis 'bogus'"),
    ([_entry("alpha", aliases=["x"]), _entry("beta", aliases=["X"])], "names both 'alpha' and 'beta'"),
    ([_entry("alpha"), _entry("alpha")], "duplicate id 'alpha'"),
    ([_entry("alpha", en={"name": "alpha"})], "en needs non-empty name and text"),
    ([_entry("alpha", aliases="x")], "aliases must be a list"),
])
def test_broken_files_are_refused(fake_yaml, bad, words):
    load = fake_yaml(_minimal(bad))
    with pytest.raises(ValueError, match=re.escape(words)):
        load()


def test_missing_diagnosis_advice_is_refused(fake_yaml):
    data = _minimal([])
    del data["diagnoses"]["plateau"]
    load = fake_yaml(data)
    with pytest.raises(ValueError, match="missing \\['plateau'\\]"):
        load()
