"""The built-in model kinds: conformance for every registered kind, and what each one computes."""
import types

import pytest
import torch
from torch import nn

from danlu.errors import RecipeError
from danlu.models import MODELS, FeatureInput, build_model, check_model_builder
from danlu.recipe import Recipe


def make_info(input_shape, categorical=(), task="classification", n_classes=3, kind="tabular"):
    return types.SimpleNamespace(task=task, kind=kind, input_shape=tuple(input_shape), n_classes=n_classes,
                                 classes=list(range(n_classes or 0)), feature_names=[],
                                 categorical=list(categorical), n_targets=1)


def info_for(kind):
    """Data each kind is meant for; other kinds (plugins) get tabular rows with categories."""
    if kind in ("cnn", "vae", "autoencoder", "diffusion"):
        return make_info((1, 8, 8), kind="image")
    if kind == "rnn":
        return make_info((12, 3), kind="sequence")
    return make_info((7,), categorical=[(1, 4), (5, 9)])


# Classical kinds (danlu.classical) are fitted scikit-learn estimators, not torch builders; their
# own conformance tests live in tests/classical.
from danlu import _plugins  # noqa: E402
from danlu.classical import CLASSICAL_KINDS  # noqa: E402

_plugins.load_builtin()   # every shipped kind registers itself (generative, transfer, ...)
# "python" stands for a model given as a Python object: it refuses to be built from a folder (tested
# in tests/ecosystem).
TORCH_KINDS = sorted(k for k in MODELS if k not in CLASSICAL_KINDS and k != "python")
assert {"vae", "diffusion", "autoencoder", "hypernetwork", "mlp"} <= set(TORCH_KINDS)


@pytest.mark.parametrize("kind", TORCH_KINDS)
@pytest.mark.parametrize("out_dim", [1, 3])
def test_every_registered_kind_conforms(kind, out_dim):
    check_model_builder(kind, info_for(kind), out_dim)


@pytest.mark.parametrize("kind, cfg, shape", [
    ("mlp", {"hidden": [16, 8], "batch_norm": True, "dropout": 0.3, "activation": "gelu"}, (5,)),
    ("mlp", {"hidden": [], "activation": "elu"}, (2, 3)),
    ("mlp", {"hidden": [4], "activation": "leaky_relu"}, (5,)),
    ("cnn", {"pool": "avg", "batch_norm": False, "activation": "tanh"}, (3, 9, 7)),
    ("cnn", {"pool": "none", "channels": [4], "hidden": [], "dropout": 0.0}, (2, 5, 5)),
    ("cnn", {"channels": [4, 4, 4, 4], "kernel_size": 5}, (1, 3, 3)),
    ("cnn", {"channels": [4, 8], "activation": "sigmoid"}, (3, 40, 24)),
    ("rnn", {"cell": "gru", "bidirectional": True, "layers": 2, "dropout": 0.2}, (6, 2)),
    ("rnn", {"cell": "rnn", "hidden_size": 5}, (4, 1)),
])
def test_variants_conform(kind, cfg, shape):
    check_model_builder(kind, make_info(shape), 4, cfg)


def test_linear_is_one_affine_map_on_flattened_input():
    torch.manual_seed(0)
    model = build_model({"kind": "linear"}, make_info((2, 3)), 2)
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(layers) == 1
    x = torch.randn(5, 2, 3)
    expected = x.reshape(5, 6) @ layers[0].weight.T + layers[0].bias
    torch.testing.assert_close(model(x), expected)


def test_mlp_layers_follow_the_recipe():
    model = build_model({"kind": "mlp", "hidden": [16, 8], "batch_norm": True, "activation": "tanh"},
                        make_info((5,)), 3)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 16), (16, 8), (8, 3)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model.modules()) == 2
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 2


def test_same_seed_same_weights_different_seed_different_weights():
    def weights(seed):
        torch.manual_seed(seed)
        return build_model({"kind": "mlp"}, make_info((5,)), 3).head.weight.detach().clone()

    assert torch.equal(weights(1), weights(1))
    assert not torch.equal(weights(1), weights(2))


# --- categorical embeddings ----------------------------------------------------------------

def test_feature_input_layout_matches_a_hand_written_oracle():
    layer = FeatureInput((4,), categorical=[(2, 3), (0, 5)], embedding_dim=2)
    assert layer.out_features == 2 + 2 + 2
    x = torch.tensor([[4.0, 0.5, 1.0, -2.0],
                      [0.0, 1.5, 2.0, 3.0]])
    emb_col2, emb_col0 = layer.embeddings
    expected = torch.cat([x[:, [1, 3]], emb_col2.weight[[1, 2]], emb_col0.weight[[4, 0]]], dim=1)
    torch.testing.assert_close(layer(x), expected)


def test_unknown_codes_use_the_extra_row():
    layer = FeatureInput((2,), categorical=[(0, 3)], embedding_dim=2)
    x = torch.tensor([[3.0, 0.0], [-1.0, 0.0], [7.0, 0.0], [1.0, 0.0]])
    out = layer(x)
    unknown = layer.embeddings[0].weight[3]
    for row in range(3):
        torch.testing.assert_close(out[row, 1:], unknown)
    torch.testing.assert_close(out[3, 1:], layer.embeddings[0].weight[1])


@pytest.mark.parametrize("card, dim_cfg, expected", [(7, None, 4), (2, None, 1), (500, None, 50), (7, 3, 3)])
def test_embedding_sizes(card, dim_cfg, expected):
    model = build_model({"kind": "logistic", "embedding_dim": dim_cfg}, make_info((2,), [(0, card)]), 2)
    (embedding,) = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    assert (embedding.num_embeddings, embedding.embedding_dim) == (card + 1, expected)


def test_no_embeddings_without_categorical_columns():
    for kind in ("linear", "logistic", "perceptron", "mlp"):
        model = build_model({"kind": kind}, make_info((4,)), 2)
        assert not any(isinstance(m, nn.Embedding) for m in model.modules())


def fit(model, x, y, epochs=150, lr=0.1):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_embeddings_let_a_linear_model_learn_a_non_ordinal_category():
    # The label depends on the category in a pattern no single threshold on the code can fit.
    torch.manual_seed(0)
    codes = torch.randint(0, 6, (120,))
    y = torch.tensor([1, 0, 0, 1, 1, 0])[codes]
    x = torch.stack([codes.float(), torch.randn(120)], dim=1)

    torch.manual_seed(0)
    with_embedding = build_model({"kind": "logistic"}, make_info((2,), [(0, 6)], n_classes=2), 2)
    assert any(isinstance(m, nn.Embedding) for m in with_embedding.modules())
    assert fit(with_embedding, x, y) == 1.0

    torch.manual_seed(0)
    raw_codes = build_model({"kind": "logistic"}, make_info((2,), n_classes=2), 2)
    assert fit(raw_codes, x, y) < 0.9


# --- cnn -----------------------------------------------------------------------------------

def test_cnn_pools_until_the_map_is_one_pixel():
    model = build_model({"kind": "cnn", "channels": [4, 4, 4, 4]}, make_info((1, 4, 4)), 2)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 2  # 4 -> 2 -> 1, then no more
    assert model(torch.randn(3, 1, 4, 4)).shape == (3, 2)


def test_cnn_head_size_for_small_and_large_images():
    small = build_model({"kind": "cnn"}, make_info((1, 8, 8)), 10)
    assert small.head[2][0].in_features == 64 * 2 * 2           # 8 -> 4 -> 2, flattened as is
    large = build_model({"kind": "cnn"}, make_info((3, 40, 20)), 10)
    assert large.head[2][0].in_features == 64 * 4 * 3           # 10x5 pooled by 3x2 windows to 4x3
    assert large(torch.randn(2, 3, 40, 20)).shape == (2, 10)


def test_cnn_kernel_keeps_size():
    model = build_model({"kind": "cnn", "kernel_size": 5, "pool": "none", "channels": [3]}, make_info((1, 6, 6)), 2)
    conv = model.features[0]
    assert conv(torch.randn(1, 1, 6, 6)).shape == (1, 3, 6, 6)
    assert conv.bias is None  # batch norm follows, a bias would be redundant


# --- rnn -----------------------------------------------------------------------------------

def test_rnn_reads_the_last_step():
    torch.manual_seed(0)
    model = build_model({"kind": "rnn", "cell": "gru", "hidden_size": 6}, make_info((5, 3)), 2).eval()
    x = torch.randn(4, 5, 3)
    outputs, _ = model.rnn(x)
    torch.testing.assert_close(model(x), model.head(outputs[:, -1]))


def test_bidirectional_rnn_reads_both_ends():
    torch.manual_seed(0)
    model = build_model({"kind": "rnn", "cell": "lstm", "hidden_size": 6, "bidirectional": True, "layers": 2},
                        make_info((5, 3)), 2).eval()
    x = torch.randn(4, 5, 3)
    outputs, _ = model.rnn(x)
    summary = torch.cat([outputs[:, -1, :6], outputs[:, 0, 6:]], dim=1)
    torch.testing.assert_close(model(x), model.head(summary))


# --- impossible combinations ---------------------------------------------------------------

@pytest.mark.parametrize("cfg, shape, message", [
    ({"kind": "cnn"}, (64,), r"model.kind cnn needs images .* data.shape: \[1, 8, 8\]"),
    ({"kind": "cnn"}, (10,), r"model.kind cnn needs images .* \[channels, height, width\]"),
    ({"kind": "cnn"}, (5, 4), r"model.kind cnn needs images"),
    ({"kind": "rnn"}, (64,), r"model.kind rnn needs sequences .* data.shape: \[8, 8\]"),
    ({"kind": "rnn"}, (1, 8, 8), r"model.kind rnn needs sequences"),
    ({"kind": "cnn", "kernel_size": 4}, (1, 8, 8), r"model.kernel_size must be odd"),
    ({"kind": "cnn", "channels": [8, 0]}, (1, 8, 8), r"model.channels\[1\] must be >= 1"),
    ({"kind": "mlp", "hidden": [0]}, (4,), r"model.hidden\[0\] must be >= 1"),
])
def test_impossible_combinations_raise_recipe_errors(cfg, shape, message):
    with pytest.raises(RecipeError, match=message) as err:
        build_model(cfg, make_info(shape), 3)
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("recipe: ")


@pytest.mark.parametrize("model, message", [
    ({"kind": "mlp", "dropout": 1.0}, "model.dropout must be <= 0.95"),
    ({"kind": "mlp", "activation": "rellu"}, "did you mean 'relu'"),
    ({"kind": "cnn", "pool": "maximum"}, "model.pool must be one of max, avg, none"),
    ({"kind": "rnn", "cell": "transformer"}, "model.cell must be one of rnn, lstm, gru"),
    ({"kind": "rnn", "hidden": [3]}, "unknown key model.hidden"),
    ({"kind": "linear", "embedding_dim": 0}, "model.embedding_dim must be >= 1"),
])
def test_recipe_validation_uses_the_declared_keys(model, message):
    with pytest.raises(RecipeError, match=message):
        Recipe.from_dict({"data": {"name": "digits"}, "model": model})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_kind_conforms_on_cuda(kind):
    model = check_model_builder(kind, info_for(kind), 3, device="cuda")
    assert next(model.parameters()).is_cuda
