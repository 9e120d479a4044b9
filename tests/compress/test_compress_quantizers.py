"""The weight quantizers on plain tensors: conformance of every scheme, error bounds, packing."""
import pytest
import torch

from danlu.compress import (QTensor, QuantSpec, all_specs, check_quantizer, dequantize, pack_codes, quantize,
                            unpack_codes)
from danlu.compress._kmeans import kmeans_1d
from danlu.errors import UserError


@pytest.mark.parametrize("spec", all_specs(group_size=8), ids=str)
def test_every_scheme_conforms(spec):
    check_quantizer(spec)


def _weights(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bits", [8, 4, 2])
@pytest.mark.parametrize("scheme", ["sym", "asym"])
@pytest.mark.parametrize("granularity", ["tensor", "channel", "group"])
def test_uniform_error_is_at_most_half_a_step(bits, scheme, granularity):
    w = _weights(16, 50)
    spec = QuantSpec(bits, scheme, granularity, 16, "uniform")
    q = quantize(w, spec)
    # each weight's own step, from its unit's scale, laid out like the weight
    step = q.layout.from_units(q.scale.expand_as(q.codes).contiguous())
    err = (dequantize(q) - w).abs()
    assert (err <= step / 2 + 1e-6).all()


def test_finer_granularity_and_more_bits_lower_the_error():
    w = _weights(32, 128) * torch.logspace(-2, 0, 32).unsqueeze(1)   # channels of very different size

    def mse(**kw):
        return float(((dequantize(quantize(w, QuantSpec(**kw))) - w) ** 2).mean())

    assert mse(bits=4, granularity="channel") < mse(bits=4, granularity="tensor")
    assert mse(bits=4, granularity="group", group_size=32) < mse(bits=4, granularity="channel")
    assert mse(bits=8) < mse(bits=4) < mse(bits=2)


def test_symmetric_codes_are_centred_on_zero():
    w = _weights(8, 40)
    spec = QuantSpec(4, "sym", "channel", method="uniform")
    q, q_neg = quantize(w, spec), quantize(-w, spec)
    assert q.zero_point is None
    assert int(q.codes.min()) >= -7 and int(q.codes.max()) <= 7
    assert torch.equal(q_neg.codes, -q.codes)            # the grid is mirrored around zero
    assert torch.equal(dequantize(q_neg), -dequantize(q))
    assert int(q.codes.abs().max()) == 7                 # the largest weight of each channel uses the top code


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_asymmetric_fits_skewed_data_better(bits):
    relu_like = torch.relu(_weights(16, 64))                       # ReLU outputs: >= 0
    positive = _weights(16, 64, seed=1).abs() + 0.5                # all-positive weights
    for w in (relu_like, positive):
        errors = {s: float(((dequantize(quantize(w, QuantSpec(bits, s, "channel"))) - w) ** 2).mean())
                  for s in ("sym", "asym")}
        assert errors["asym"] < errors["sym"]


def test_asymmetric_zero_point_keeps_zero_exact():
    w = torch.relu(_weights(4, 32)) - 0.3
    w[:, 0] = 0.0
    q = quantize(w, QuantSpec(4, "asym", "channel"))
    assert q.zero_point.dtype == torch.uint8
    assert torch.equal(dequantize(q)[:, 0], torch.zeros(4))


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("scheme", ["sym", "asym"])
def test_log_relative_error_is_at_most_a_third(bits, scheme):
    w = _weights(8, 64)
    spec = QuantSpec(bits, scheme, "channel", method="log")
    q = quantize(w, spec)
    centre = q.offset if q.offset is not None else torch.zeros(8, 1)
    v, dv = w - centre, dequantize(q) - centre
    smallest = q.scale * 2.0 ** (1 - (2 ** (bits - 1) - 1))        # the lowest non-zero level
    inside = v.abs() >= smallest
    rel = ((dv - v).abs() / v.abs())[inside]
    assert inside.float().mean() > 0.9
    assert float(rel.max()) <= 1 / 3 + 1e-5
    # levels are signed powers of two times the scale
    levels = (dv[dv != 0].abs() / q.scale.expand_as(dv)[dv != 0])
    assert torch.allclose(torch.exp2(torch.round(torch.log2(levels))), levels)


def test_lut_beats_uniform_on_a_skewed_distribution():
    gen = torch.Generator().manual_seed(3)
    # log-normal magnitudes with random signs: most weights small, a long tail of large ones
    w = torch.exp(torch.randn(16, 128, generator=gen)) * torch.sign(torch.randn(16, 128, generator=gen))
    for bits in (4, 2):
        for scheme in ("sym", "asym"):
            uniform = dequantize(quantize(w, QuantSpec(bits, scheme, "channel", method="uniform")))
            lut = dequantize(quantize(w, QuantSpec(bits, scheme, "channel", method="lut")))
            assert float(((lut - w) ** 2).mean()) < float(((uniform - w) ** 2).mean())


def test_lut_error_is_bounded_by_the_gap_between_entries():
    w = _weights(6, 100)
    q = quantize(w, QuantSpec(4, "asym", "channel", method="lut"))
    book = q.codebook.sort(dim=1).values
    half_gap = ((book[:, 1:] - book[:, :-1]).max(dim=1).values / 2).unsqueeze(1)
    outside = torch.maximum(book[:, :1] - w, w - book[:, -1:]).clamp(min=0)   # beyond the extreme entries
    assert ((dequantize(q) - w).abs() <= torch.maximum(half_gap, outside) + 1e-6).all()
    assert q.codebook.shape == (6, 16)


def test_kmeans_finds_well_separated_clusters():
    centres = torch.tensor([-3.0, 0.0, 5.0])
    gen = torch.Generator().manual_seed(0)
    values = (centres.repeat_interleave(50) + 0.01 * torch.randn(150, generator=gen)).unsqueeze(0)
    found, codes = kmeans_1d(values, 3)
    assert torch.allclose(found[0], centres, atol=0.01)
    assert torch.equal(codes[0], torch.arange(3).repeat_interleave(50))


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_pack_unpack_round_trip_and_sizes(bits):
    codes = torch.randint(0, 2 ** bits, (1001,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    packed = pack_codes(codes, bits)
    assert packed.dtype == torch.uint8
    assert packed.numel() == -(-1001 * bits // 8)
    assert torch.equal(unpack_codes(packed, bits, 1001), codes)


def test_packed_codes_shrink_with_bits():
    w = _weights(64, 256)
    sizes = {b: quantize(w, QuantSpec(b, "sym", "channel")).tensors()["codes"].numel() for b in (8, 4, 2)}
    assert sizes == {8: 64 * 256, 4: 64 * 256 // 2, 2: 64 * 256 // 4}


def test_qtensor_survives_storage():
    w = _weights(10, 37)
    for spec in (QuantSpec(4, "asym", "group", 16, "uniform"), QuantSpec(2, "sym", "channel", method="lut"),
                 QuantSpec(4, "asym", "tensor", method="log")):
        q = quantize(w, spec)
        back = QTensor.from_tensors(spec, w.shape, q.tensors())
        assert torch.equal(dequantize(back), dequantize(q))


def test_group_padding_does_not_leak():
    w = _weights(3, 10)                                 # 10 is not a multiple of 4
    q = quantize(w, QuantSpec(8, "asym", "group", 4))
    assert q.codes.shape == (9, 4)                      # 3 channels x 3 groups
    assert dequantize(q).shape == (3, 10)
    assert float((dequantize(q) - w).abs().max()) < 0.02


def test_bad_specs_are_refused_with_one_line():
    with pytest.raises(UserError, match="bits must be one of 8, 4, 2"):
        QuantSpec(bits=3)
    with pytest.raises(UserError, match="did you mean 'channel'"):
        QuantSpec(granularity="chanel")
    with pytest.raises(UserError, match="group_size"):
        QuantSpec(granularity="group", group_size=1)
