"""Geometry quantization: bin centres are fixed points, error within half a bin, mixed-radix slots."""

import math

import torch

from gaussiantoken.tokenizer import GaussianTokenizerConfig
from gaussiantoken.tokenizer.geometry import GeometryQuantizer, build_token_layout


def quantizer(**kw):
    return GeometryQuantizer(GaussianTokenizerConfig.shapes(**kw))


def test_position_bins_are_pixel_centres():
    g = quantizer(position_mode="absolute", position_bins=32)
    idx = torch.arange(32)
    centres = g.bin_centre("x", idx)
    torch.testing.assert_close(centres, (2 * idx.float() + 1) / 32 - 1)


def test_shapes_offsets_are_half_pixel_bins():
    g = quantizer()  # the preset: anchor offsets within +-4 pixels of a 32-pixel image, 16 bins
    a = g.attributes["x"]
    assert (a.lo, a.hi, a.bins) == (-0.25, 0.25, 16)
    assert (a.hi - a.lo) / a.bins * 32 / 2 == 0.5  # one bin = half a pixel


def test_centres_map_to_themselves():
    g = quantizer()
    for name, a in g.attributes.items():
        idx = torch.arange(a.bins)
        assert torch.equal(g.bin_index(name, g.bin_centre(name, idx)), idx), name


def test_error_bounded_by_half_a_bin():
    g = quantizer()
    gen = torch.Generator().manual_seed(0)
    for name, a in g.attributes.items():
        v = a.lo + (a.hi - a.lo) * torch.rand(1000, generator=gen)
        err = (g.bin_centre(name, g.bin_index(name, v)) - v).abs()
        assert err.max() <= (a.hi - a.lo) / a.bins / 2 + 1e-6, name


def test_rotation_is_periodic_and_out_of_range_clamps():
    g = quantizer(rotation_bins=8, position_mode="absolute", position_bins=32)
    theta = torch.tensor([0.1, 0.1 + math.pi, 0.1 - 3 * math.pi])
    assert g.bin_index("rotation", theta).tolist() == [0, 0, 0]
    assert g.bin_index("x", torch.tensor([-5.0, 5.0])).tolist() == [0, 31]


def test_slot_encode_decode_round_trip_mixed_radix():
    g = quantizer(position_bins=32, scale_bins=8, rotation_bins=8)
    gen = torch.Generator().manual_seed(1)
    values = {name: a.lo + (a.hi - a.lo) * torch.rand(2, 5, generator=gen) for name, a in g.attributes.items()}
    idx = g.encode(values)  # [2, 5, 2]
    assert idx.shape == (2, 5, 2)
    assert idx[..., 0].max() < 1024 and idx[..., 1].max() < 512
    # hand mixed radix for slot (x, y)
    expect = g.bin_index("x", values["x"]) * 32 + g.bin_index("y", values["y"])
    assert torch.equal(idx[..., 0], expect)
    decoded = g.decode(idx)
    assert torch.equal(g.encode(decoded), idx)


def test_straight_through_value_and_gradient():
    g = quantizer()
    x = torch.tensor([[0.3, -0.52]], requires_grad=True)
    values = {"x": x, "y": x * 0, "scale_x": x * 0 - 2, "scale_y": x * 0 - 2, "rotation": x * 0 + 1}
    idx, st = g.straight_through(values)
    torch.testing.assert_close(st["x"], g.decode(idx)["x"])
    st["x"].sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))  # identity gradient through the rounding


def test_layout_is_disjoint_and_contiguous():
    g = quantizer()
    layout = build_token_layout(64, g)
    assert layout[0].name == "feature" and layout[0].start == 0
    for a, b in zip(layout, layout[1:]):
        assert b.start == a.start + a.size
