"""Quantized models: layers, integer kernels, calibration, the saved folder, mixed precision."""
import json

import pytest
import torch
from torch import nn

from danlu import training as runs
from danlu.compress import (QuantLinear, QuantSpec, all_specs, calibrate, choose_bits, evaluate_quantized,
                            fbgemm_available, int8_matmul, load_quantized, model_nbytes, quantizable_layers,
                            quantize_model, quantize_run, quantized_layers, set_kernel)
from danlu.compress._fold import fold_batch_norms, foldable_pairs
from danlu.compress._mixed import LayerSensitivity, plan_avg_bits, plan_bytes
from danlu.errors import UserError
from danlu.training import model_outputs


def _tiny_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(24, 40), nn.ReLU(), nn.Linear(40, 8)).eval()


def _inputs(n=33, seed=1):
    return torch.randn(n, 24, generator=torch.Generator().manual_seed(seed))


def test_int8_matmul_is_exact():
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(-128, 128, (5, 24), dtype=torch.int8, generator=gen)
    b = torch.randint(-128, 128, (24, 7), dtype=torch.int8, generator=gen)
    out = int8_matmul(a, b)
    assert out.dtype == torch.int32
    assert torch.equal(out, a.int() @ b.int())


@pytest.mark.parametrize("scheme", ["sym", "asym"])
@pytest.mark.parametrize("act_scheme", ["sym", "asym"])
@pytest.mark.parametrize("act", ["dynamic", "static"])
def test_integer_path_equals_dequantized_float_path(scheme, act_scheme, act):
    net, x = _tiny_net(), _inputs()
    spec = QuantSpec(8, scheme, "channel")
    ranges = calibrate(net, ["0", "2"], [x[:16], x[16:]]) if act == "static" else None
    qnet = quantize_model(net, {"0": spec, "2": spec}, act=act, act_scheme=act_scheme, act_ranges=ranges)
    set_kernel(qnet, "int_mm")
    assert all(layer.pick_kernel(x) == "int_mm" for layer in quantized_layers(qnet).values())
    with torch.no_grad():
        integer = qnet(x)
        set_kernel(qnet, "dequant")   # the same codes, as floats: fake-quantized input x dequantized weight
        floating = qnet(x)
        exact = net(x)
    assert torch.allclose(integer, floating, atol=1e-4, rtol=1e-4)
    assert float((integer - exact).abs().max()) < 0.05 * float(exact.abs().max())


@pytest.mark.skipif(not fbgemm_available(), reason="this torch build has no x86/fbgemm quantized engine")
def test_fbgemm_dynamic_kernel_is_close_to_float():
    net, x = _tiny_net(), _inputs()
    qnet = quantize_model(net, {"0": QuantSpec(8), "2": QuantSpec(8)}, act="dynamic")
    assert qnet[0].pick_kernel(x) == "fbgemm"
    with torch.no_grad():
        fast, exact = qnet(x), net(x)
    assert float((fast - exact).abs().max()) < 0.05 * float(exact.abs().max())


def test_weight_only_layer_matches_float_layer_on_dequantized_weight():
    net, x = _tiny_net(), _inputs()
    spec = QuantSpec(4, "asym", "group", 8, "lut")
    layer = QuantLinear.from_float(net[0], spec)
    with torch.no_grad():
        expected = nn.functional.linear(x, layer.weight(), net[0].bias)
        assert torch.allclose(layer(x), expected)
        assert float((layer.weight() - net[0].weight).abs().max()) < 0.05
    assert not any(p.is_floating_point() and p.shape == net[0].weight.shape for p in layer.buffers())


@pytest.mark.parametrize("spec", all_specs(group_size=4), ids=str)
def test_batch_norm_folding_is_exact(spec):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(12, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3, bias=False), nn.BatchNorm1d(3))
    for bn in (net[1], net[4]):
        bn.weight.data = torch.randn(bn.num_features)          # negative factors included
        bn.bias.data = torch.randn(bn.num_features)
        bn.running_mean, bn.running_var = torch.randn(bn.num_features), torch.rand(bn.num_features) + 0.5
    x = _inputs(20)[:, :12]
    qnet = quantize_model(net.eval(), {"0": spec, "3": spec})
    with torch.no_grad():
        before = qnet(x)
        assert fold_batch_norms(qnet, foldable_pairs(qnet)) == [("0", "1"), ("3", "4")]
        after = qnet(x)
    assert isinstance(qnet[1], nn.Identity) and isinstance(qnet[4], nn.Identity)
    assert torch.allclose(before, after, atol=1e-4)
    if spec.method != "lut":
        assert float(qnet[0].scale.min()) > 0                    # negative factors went into the codes


def test_observers_minmax_and_percentile():
    net = _tiny_net()
    x = _inputs(200)
    x[0, 0] = 50.0                                   # one outlier
    lo_mm, hi_mm = calibrate(net, ["0"], [x[:100], x[100:]], "minmax")["0"]
    assert hi_mm == 50.0 and lo_mm == float(x.min())
    lo_p, hi_p = calibrate(net, ["0"], [x[:100], x[100:]], "percentile")["0"]
    assert lo_mm < lo_p < 0 < hi_p < 10                # the outlier no longer sets the range


def test_quantized_run_reloads_with_identical_outputs(mlp_run, tmp_path):
    for kwargs in ({"act": "none"}, {"act": "dynamic"}, {"calibrate_batches": 2, "observer": "percentile"}):
        out = tmp_path / kwargs.get("act", "static")
        result = quantize_run(mlp_run, QuantSpec(4, "asym", "group", 16), out=out, progress=False, latency_rounds=1,
                              **kwargs)
        model, _pipeline, _meta, recipe = runs.load_model(mlp_run)
        X = runs.prepare_run_data(recipe).splits["test"][0]
        qmodel = quantize_model(model, {n: QuantSpec(4, "asym", "group", 16) for n in quantizable_layers(model)},
                                act=kwargs.get("act", "static"),
                                act_ranges={n: (-1e3, 1e3) for n in quantizable_layers(model)})
        loaded = load_quantized(result.path)
        again = load_quantized(result.path)
        assert torch.equal(model_outputs(loaded, X), model_outputs(again, X))
        assert isinstance(loaded.body[0], QuantLinear) and isinstance(loaded.head, QuantLinear)
        assert isinstance(loaded.body[1], nn.Identity)                      # batch norm folded in
        if kwargs.get("act") == "none":   # the same as never saved (folding changes only float rounding)
            assert torch.allclose(model_outputs(loaded, X), model_outputs(qmodel, X), atol=1e-4)
        saved = json.loads((result.path / "quant_report.json").read_text())
        again_metric = evaluate_quantized(mlp_run, result.path)["test"]["accuracy"]
        assert saved["quantized"]["metric"] == pytest.approx(again_metric)
        assert set(saved["quantized"]["latency_ms"]) == {"1", "64"}


def test_static_ranges_survive_saving(mlp_run, tmp_path):
    result = quantize_run(mlp_run, QuantSpec(8), calibrate_batches=3, out=tmp_path / "s", progress=False,
                          latency_rounds=1)
    loaded = load_quantized(result.path)
    assert loaded.body[0].act == "static" and float(loaded.body[0].act_scale) > 0
    meta = json.loads((result.path / "quant.json").read_text())
    assert meta["activations"] == "static" and meta["calibrate_batches"] == 3


def test_int8_model_keeps_accuracy_and_is_smaller(mlp_run, tmp_path):
    result = quantize_run(mlp_run, QuantSpec(8), out=tmp_path / "q8", progress=False, latency_rounds=1)
    report = result.report
    assert report["change"]["metric_delta"] > -0.01
    assert report["float"]["bytes"] > 2.5 * report["quantized"]["bytes"]
    assert report["float"]["metric"] == pytest.approx(runs.evaluate(mlp_run)["test"]["accuracy"])


def test_fewer_bits_are_smaller_on_disk(mlp_run, tmp_path):
    sizes = {}
    for bits in (8, 4, 2):
        result = quantize_run(mlp_run, QuantSpec(bits, granularity="channel"), out=tmp_path / f"b{bits}",
                              progress=False, latency_rounds=1)
        sizes[bits] = (result.path / "quantized.safetensors").stat().st_size
    float_size = (mlp_run / "model.safetensors").stat().st_size
    assert float_size > sizes[8] > sizes[4] > sizes[2]
    # 64x32 + 32x10 weights: 4-bit packing saves half of the 8-bit codes, 2-bit three quarters
    n_weights = 64 * 32 + 32 * 10
    assert sizes[8] - sizes[4] >= n_weights // 2 - 16
    assert sizes[4] - sizes[2] >= n_weights // 4 - 16


def test_conv_layers_are_quantized_and_reload(cnn_run, tmp_path):
    result = quantize_run(cnn_run, QuantSpec(4, "sym", "channel"), act="dynamic", out=tmp_path / "c",
                          progress=False, latency_rounds=1)
    kinds = {row["layer"]: row["kernel"] for row in result.plan}
    assert any(name.startswith("features") for name in kinds)          # the convolution
    loaded = load_quantized(result.path)
    model, _p, _m, recipe = runs.load_model(cnn_run)
    X = runs.prepare_run_data(recipe).splits["test"][0]
    assert model_outputs(loaded, X).shape == model_outputs(model, X).shape
    assert result.report["change"]["metric_delta"] > -0.1


def _rows():
    # three layers: a sensitive small one, a robust big one, a middle one
    def row(name, params, sens):
        return LayerSensitivity(name, params, params * 4, {8: sens[0], 4: sens[1], 2: sens[2]},
                                {8: 0.0, 4: 0.0, 2: 0.0}, {b: params * b // 8 + 8 for b in (8, 4, 2)})
    return [row("first", 100, (0.0, 0.05, 1.0)), row("big", 10_000, (0.0, 0.001, 0.02)),
            row("last", 1_000, (0.0, 0.01, 0.3))]


@pytest.mark.parametrize("budget_mb", [0.011, 0.006, 0.004])
def test_mixed_plan_respects_a_size_budget(budget_mb):
    rows = _rows()
    bits = choose_bits(rows, rest_bytes=500, budget_mb=budget_mb)
    assert plan_bytes(rows, bits, 500) <= budget_mb * 1e6
    assert bits["big"] <= bits["first"]            # the robust big layer gives up bits first


@pytest.mark.parametrize("avg", [6.0, 4.0, 2.5])
def test_mixed_plan_respects_average_bits(avg):
    rows = _rows()
    bits = choose_bits(rows, rest_bytes=0, avg_bits=avg)
    assert plan_avg_bits(rows, bits) <= avg
    assert bits["first"] == 8 or bits["big"] == 2


def test_impossible_budget_is_a_user_error():
    with pytest.raises(UserError, match="raise --budget-mb"):
        choose_bits(_rows(), rest_bytes=500, budget_mb=0.0001)


def test_mixed_precision_run_meets_budget(mlp_run, tmp_path):
    # the MLP takes about 3.1 kB with every layer at 8 bits and 1.3 kB at 2 bits (BN and biases stay float)
    budget = 0.0025
    result = quantize_run(mlp_run, QuantSpec(8), budget_mb=budget, out=tmp_path / "m", progress=False,
                          latency_rounds=1)
    assert min(row["bits"] for row in result.plan) < 8
    assert all({"layer", "params", "bits", "sensitivity"} <= set(row) for row in result.plan)
    loaded = load_quantized(result.path)
    assert model_nbytes(loaded) <= budget * 1e6
    assert (result.path / "quantized.safetensors").stat().st_size <= budget * 1e6 + 2000   # + safetensors header
    assert {n: layer.spec.bits for n, layer in quantized_layers(loaded).items()} == \
        {row["layer"]: row["bits"] for row in result.plan}


def test_refusals(mlp_run, tmp_path):
    with pytest.raises(UserError, match="exclude each other"):
        quantize_run(mlp_run, act="dynamic", calibrate_batches=2, progress=False)
    with pytest.raises(UserError, match="not a danlu run directory"):
        quantize_run(tmp_path, progress=False)
    with pytest.raises(UserError, match="not a quantized model folder"):
        load_quantized(tmp_path)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x.txt").write_text("keep me")
    with pytest.raises(UserError, match="already exists"):
        quantize_run(mlp_run, out=tmp_path / "taken", progress=False)
    assert (tmp_path / "taken" / "x.txt").read_text() == "keep me"


def test_quantized_folder_is_refused_for_another_run(mlp_run, cnn_run, tmp_path):
    result = quantize_run(mlp_run, QuantSpec(8), out=tmp_path / "q", progress=False, latency_rounds=1)
    with pytest.raises(UserError, match="input_shape"):
        evaluate_quantized(cnn_run, result.path)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_quantized_model_runs_on_cuda(mlp_run, tmp_path):
    result = quantize_run(mlp_run, QuantSpec(8), act="dynamic", out=tmp_path / "q", progress=False,
                          latency_rounds=1)
    cpu, gpu = load_quantized(result.path), load_quantized(result.path, device="cuda")
    model, _p, _m, recipe = runs.load_model(mlp_run)
    X = runs.prepare_run_data(recipe).splits["test"][0]
    out = model_outputs(gpu, X.cuda())
    assert out.device.type == "cuda"
    set_kernel(cpu, "int_mm")                               # the same integer arithmetic as on the GPU
    assert torch.allclose(out.cpu(), model_outputs(cpu, X), atol=1e-3)
    q = quantize_model(model.cuda(), {n: QuantSpec(4, "asym", "group", 16, "lut") for n in quantizable_layers(model)})
    assert model_outputs(q, X.cuda()).device.type == "cuda"
