"""GaussianTokenizer: token grammar, encode/decode round trips, save/load, bad inputs."""

import json

import pytest
import torch

from gaussiantoken.tokenizer import GaussianTokenizer, GaussianTokenizerConfig, GaussianTokenizerOutput
from gaussiantoken.tokenizer.geometry import GeometryQuantizer, build_token_layout

torch.set_num_threads(1)


def tiny_config(**kw):
    base = dict(
        image_size=16, encoder_channels=8, encoder_channel_mult=[1, 2], encoder_num_res_blocks=1,
        encoder_out_channels=16, num_feature_levels=2, hidden_size=16, num_heads=2, num_points=2, ffn_dim=32,
        num_encoder_layers=1, num_decoder_layers=2, num_gaussians=4, codebook_size=8, codebook_dim=4,
        position_bins=16, scale_bins=4, rotation_bins=4, splat_channels=8, feature_mlp_hidden=16,
        decoder_channels=8, decoder_num_res_blocks=1,
    )
    base.update(kw)
    return GaussianTokenizerConfig(**base)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = GaussianTokenizer(tiny_config())
    m.train()
    m(torch.rand(4, 3, 16, 16) * 2 - 1)  # k-means init + one EMA step
    return m.eval()


def images(n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 16, 16, generator=g) * 2 - 1


def test_layout_sizes_and_grammar(model):
    layout = model.token_layout
    assert [s.name for s in layout] == ["feature", "x_y", "scale_x_scale_y_rotation"]
    assert [(s.start, s.size) for s in layout] == [(0, 8), (8, 256), (264, 64)]
    assert model.vocab_size == 328 and model.tokens_per_image == 12
    ids = model.encode(images())
    assert ids.shape == (3, 12) and ids.dtype == torch.long
    for t in range(12):
        slot = layout[t % 3]
        assert ((ids[:, t] >= slot.start) & (ids[:, t] < slot.start + slot.size)).all()


def test_decode_of_encode_equals_eval_forward(model):
    x = images()
    out = model(x)
    assert isinstance(out, GaussianTokenizerOutput)
    assert torch.equal(model.encode(x), out.ids)
    rec = model.decode(out.ids)
    assert rec.shape == (3, 3, 16, 16)
    assert torch.equal(rec, out.reconstruction)
    assert rec.min() >= -1 and rec.max() <= 1
    g = model.encode_gaussians(x)
    assert torch.equal(model.decode_gaussians(g), rec)
    assert g["means"].shape == (3, 4, 2) and g["scales"].shape == (3, 4, 2)
    assert g["rotations"].shape == (3, 4) and g["features"].shape == (3, 4, 4)


def test_training_forward_matches_quantized_values_and_has_gradients():
    torch.manual_seed(0)
    m = GaussianTokenizer(tiny_config(gradient_estimator="straight_through"))
    m.train()
    x = images(4)
    out = m(x)
    assert out.quantization_loss.dim() == 0 and out.quantization_loss.requires_grad
    assert 0 < out.codebook_usage <= 1 and out.codebook_perplexity >= 1
    # straight-through values equal the dequantized ids up to float rounding
    ref = m.ids_to_gaussians(out.ids)
    for key in ("means", "scales", "rotations"):
        torch.testing.assert_close(out.gaussians[key], ref[key], atol=1e-5, rtol=1e-5)
    (out.reconstruction.square().mean() + out.quantization_loss).backward()
    for name in ("encoder.conv_in.weight", "feature_head.weight", "scale_head.weight", "xy_heads.0.weight",
                 "gaussian_layers.0.attn.sampling_offsets.weight", "decoder.conv_out.weight"):
        grad = dict(m.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_encode_does_not_change_the_model_in_training_mode():
    torch.manual_seed(0)
    m = GaussianTokenizer(tiny_config())
    m.train()
    m(images(4))
    before = m.quantizer.codebook.clone()
    m.encode(images(2, seed=5))
    assert torch.equal(before, m.quantizer.codebook)


def test_save_load_bit_exact(tmp_path, model):
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "gaussian_tokenizer"
    loaded = GaussianTokenizer.from_pretrained(tmp_path).eval()
    sd_a, sd_b = model.state_dict(), loaded.state_dict()
    assert sd_a.keys() == sd_b.keys()
    for k in sd_a:
        assert torch.equal(sd_a[k], sd_b[k]), k
    x = images()
    assert torch.equal(model.encode(x), loaded.encode(x))
    assert torch.equal(model(x).reconstruction, loaded(x).reconstruction)


def test_from_pretrained_of_another_kind_names_both(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gaussiantoken_lm"}))
    with pytest.raises(ValueError, match="gaussiantoken_lm.*gaussian_tokenizer"):
        GaussianTokenizer.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="gaussiantoken_lm.*gaussian_tokenizer"):
        GaussianTokenizerConfig.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.rand(2, 3, 8, 8), r"shape \[B, 3, 16, 16\]"),
        (torch.rand(2, 1, 16, 16), r"shape \[B, 3, 16, 16\]"),
        (torch.rand(3, 16, 16), r"shape"),
        (torch.rand(2, 3, 16, 16) * 255, r"\[-1, 1\]"),
        (torch.full((1, 3, 16, 16), float("nan")), "NaN"),
        (torch.zeros(1, 3, 16, 16, dtype=torch.uint8), "float"),
        ([[0.0]], "torch.Tensor"),
    ],
)
def test_bad_pixels(model, bad, match):
    with pytest.raises(ValueError, match=match):
        model.encode(bad)
    with pytest.raises(ValueError, match=match):
        model(bad)


def test_bad_ids_name_the_position(model):
    ids = model.encode(images(2))
    with pytest.raises(ValueError, match=r"shape \[B, 12\]"):
        model.decode(ids[:, :11])
    with pytest.raises(ValueError, match="integer"):
        model.decode(ids.float())
    bad = ids.clone()
    bad[1, 4] = 5000
    with pytest.raises(ValueError, match=r"ids\[1, 4\] = 5000 at position 4 \(Gaussian 1, slot 'x_y'\).*out of range"):
        model.decode(bad)
    bad = ids.clone()
    bad[0, 5] = 3  # a feature code where a scale/rotation token belongs
    with pytest.raises(ValueError, match=r"position 5 .*'feature' token.*wrong slot kind"):
        model.decode(bad)
    bad = ids.clone()
    bad[0, 0] = -1
    with pytest.raises(ValueError, match=r"ids\[0, 0\] = -1"):
        model.decode(bad)


def test_config_presets_and_validation():
    s = GaussianTokenizerConfig.shapes()
    assert s.tokens_per_image == 96 <= 128
    layout = build_token_layout(s.codebook_size, GeometryQuantizer(s))
    assert [(t.name, t.size) for t in layout] == [("feature", 64), ("x_y", 256), ("scale_x_scale_y_rotation", 512)]
    assert s.decoder_norm_groups == 1  # statistics over all channels (bench/RESULTS.md, issue 16)
    c = GaussianTokenizerConfig.cifar()
    assert (c.num_gaussians, c.codebook_size, c.codebook_dim) == (64, 1024, 3)
    assert c.image_size // 2 ** (len(c.encoder_channel_mult) - 1) == 16
    i = GaussianTokenizerConfig.imagenet()
    assert (i.num_gaussians, i.codebook_size, i.codebook_dim, i.codebook_decay) == (256, 1024, 8, 0.8)
    assert i.image_size // 2 ** (len(i.encoder_channel_mult) - 1) == 32 and i.encoder_out_channels == 64
    assert GaussianTokenizerConfig.preset("cifar").to_dict()["num_gaussians"] == 64
    with pytest.raises(ValueError, match="geometry_slots"):
        GaussianTokenizerConfig(geometry_slots=[["x"], ["y"]])
    with pytest.raises(ValueError, match="position_mode"):
        GaussianTokenizerConfig(position_mode="polar")
    with pytest.raises(ValueError, match="unknown tokenizer preset"):
        GaussianTokenizerConfig.preset("mnist")


def test_anchor_offset_mode_round_trip():
    torch.manual_seed(0)
    m = GaussianTokenizer(tiny_config(position_mode="anchor_offset", position_bins=4,
                                      geometry_slots=[["x"], ["y"], ["scale_x", "scale_y"], ["rotation"]]))
    m.train()
    m(images(4))
    m.eval()
    x = images()
    out = m(x)
    assert m.tokens_per_image == 4 * 5
    assert torch.equal(m.decode(m.encode(x)), out.reconstruction)
    offsets = out.gaussians["means"] - m.anchor_position.detach()
    assert offsets.abs().max() <= m.config.offset_range


def test_auto_classes_resolve(tmp_path, model):
    from transformers import AutoConfig, AutoModel

    model.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), GaussianTokenizerConfig)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, GaussianTokenizer)
    assert torch.equal(loaded.quantizer.codebook, model.quantizer.codebook)


def test_patchify_stem_and_no_encoder_layers():
    torch.manual_seed(0)
    m = GaussianTokenizer(tiny_config(encoder_stem_stride=2, num_encoder_layers=0, codebook_l2_normalize=True)).eval()
    maps = m.encoder(images(2))
    assert [tuple(t.shape) for t in maps] == [(2, 16, 8, 8), (2, 16, 4, 4)]
    x = images(2)
    assert torch.equal(m.decode(m.encode(x)), m(x).reconstruction)
    with pytest.raises(ValueError, match="not divisible"):
        tiny_config(image_size=17)


def test_training_steps_reduce_reconstruction_loss():
    torch.manual_seed(0)
    m = GaussianTokenizer(tiny_config(num_encoder_layers=0))
    m.train()
    x = torch.full((4, 3, 16, 16), -0.8)
    x[:, 0, 4:10, 4:10] = 0.9  # a red square on a dark background
    x[1:, :, :, :] = x[1:].roll(shifts=3, dims=-1)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        out = m(x)
        loss = (out.reconstruction - x).abs().mean() + out.quantization_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_code_geometry_one_token_per_gaussian_round_trip(tmp_path):
    """geometry_slots=[]: one token per Gaussian; its geometry is a function of its code (same code, same slot ->
    same Gaussian), decode(encode(x)) equals the eval forward, the head trains, save/load is exact."""
    torch.manual_seed(0)
    m = GaussianTokenizer(tiny_config(geometry_slots=[], position_mode="anchor_offset"))
    assert m.tokens_per_image == 4 and [(s.name, s.start, s.size) for s in m.token_layout] == [("feature", 0, 8)]
    m.train()
    out = m(images(4))
    (out.reconstruction.square().mean() + out.quantization_loss).backward()
    params = dict(m.named_parameters())
    assert params["code_geometry.2.weight"].grad.abs().sum() > 0
    unused = {n for n, p in params.items() if p.grad is None}
    assert unused <= {"level_embed", "memory_norm.weight", "memory_norm.bias"}, unused  # no dead geometry heads
    with torch.no_grad():
        m.code_geometry[-1].weight.normal_(0, 1.0)  # a non-trivial code -> geometry map
    m.eval()
    x = images()
    out = m(x)
    assert torch.equal(m.encode(x), out.ids) and out.ids.shape == (3, 4)
    assert torch.equal(m.decode(out.ids), out.reconstruction)
    g = m.ids_to_gaussians(out.ids)
    offsets = g["means"] - m.anchor_position.detach()
    assert offsets.abs().max() <= m.config.offset_range and offsets.abs().max() > 0
    same = torch.zeros(1, 4, dtype=torch.long)  # code 0 in every slot: one shape, placed at each anchor
    g0 = m.ids_to_gaussians(same)
    assert torch.allclose(g0["means"] - m.anchor_position.detach(), offsets.new_tensor(
        (g0["means"] - m.anchor_position.detach())[0, :1]).expand(1, 4, 2))
    other = m.ids_to_gaussians(torch.ones(1, 4, dtype=torch.long))
    assert not torch.allclose(other["scales"], g0["scales"])  # the code decides the shape
    m.save_pretrained(tmp_path)
    loaded = GaussianTokenizer.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded.decode(out.ids), out.reconstruction)
    with pytest.raises(ValueError, match="quantize_geometry"):
        tiny_config(geometry_slots=[], quantize_geometry=False)


@pytest.mark.parametrize("encoder_layers", [0, 1])
def test_translation_equivariant_slots_follow_a_shift_by_one_anchor_step(encoder_layers):
    """translation_equivariant: encoder maps moved by one anchor step (8 px of a 64 px image = 4 / 2 cells of the
    two levels, as a moved image makes them) move every interior slot's continuous Gaussian and code to the next
    slot; the per-slot default does not. The maps are rolled (the encoder CNN's own border is left out), and the
    slots compared sample no further than 12 px from their anchor, away from the roll's seam and the border."""
    kw = dict(image_size=64, encoder_stem_stride=2, num_gaussians=64, anchor_layout="fill", position_mode="anchor_offset",
              num_encoder_layers=encoder_layers, num_decoder_layers=2, codebook_size=16)
    for equivariant in (True, False):
        torch.manual_seed(0)
        m = GaussianTokenizer(tiny_config(translation_equivariant=equivariant, **kw)).eval()
        with torch.no_grad():  # away from the zero init of the heads: offsets, scales and rotations vary
            for head in [*m.xy_heads, m.scale_head, m.rotation_head]:
                head.weight.normal_(0, 0.3)
        g = torch.Generator().manual_seed(1)
        maps = [torch.randn(1, 16, 32, 32, generator=g), torch.randn(1, 16, 16, 16, generator=g)]
        shifted = [torch.roll(maps[0], 4, dims=-1), torch.roll(maps[1], 2, dims=-1)]
        out = []
        for ms in (maps, shifted):
            m.encoder.forward = lambda x, ms=ms: ms
            with torch.no_grad():
                out.append(m._encode_continuous(torch.zeros(1, 3, 64, 64)))
        # 8 x 8 anchors 8 px apart: columns x = 20, 28, 36 px (with an encoder layer, whose cells sample 8 px further
        # themselves, only x = 28)
        src = [r * 8 + c for r in range(8) for c in (range(2, 5) if encoder_layers == 0 else [3])]
        moved = [k + 1 for k in src]
        diffs = {k: (out[0][k][0, src] - out[1][k][0, moved]).abs().max().item() for k in out[0]}
        if equivariant:
            assert max(diffs.values()) < 1e-5, diffs
            z0, z1 = (m.quantizer.assign(m.quantizer._prepare(o["z"])) for o in out)
            assert torch.equal(z0[0, src], z1[0, moved])
        else:
            assert diffs["z"] > 1e-3, diffs
    names = {n for n, _ in GaussianTokenizer(tiny_config(translation_equivariant=True, **kw)).named_parameters()}
    assert "anchor_position" not in names  # fixed on the grid (a buffer, saved with the model)
    with pytest.raises(ValueError, match="anchor_offset"):
        tiny_config(translation_equivariant=True)
