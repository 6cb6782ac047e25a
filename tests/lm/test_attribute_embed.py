"""Attribute embeddings of image tokens (lm.attribute_embed, `model.attribute_embeddings`): the table against the
tokenizer's mixed-radix packing, a new model equal to one without, the vectors reaching only geometry tokens,
gradients, save / load through the Auto classes in a fresh process, and the static decode loop equal to HF's."""

import subprocess
import sys
from itertools import product

import pytest
import torch

from gaussiantoken.lm.attribute_embed import attribute_table


def _model(text_tokenizer, image_tokenizer_dir, tiny_text_config, **kw):
    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM

    torch.manual_seed(0)
    return GaussianTokenForCausalLM.from_parts(text_tokenizer, image_tokenizer_dir, text_config=dict(tiny_text_config),
                                               **kw).eval()


def test_table_follows_the_tokenizers_packing(text_tokenizer, image_tokenizer_dir, tiny_text_config):
    """Two geometry ids share a column's value exactly when they share that attribute's bin; each (slot, attribute,
    bin) has its own value; feature codes, text and markers hold none; slot tokens hold their anchor's row, column."""
    from gaussiantoken.tokenizer.configuration import anchor_grid_shape
    from gaussiantoken.tokenizer.geometry import GeometryQuantizer, build_token_layout

    config = _model(text_tokenizer, image_tokenizer_dir, tiny_text_config).config
    tok, off = config.tokenizer_config, config.image_token_offset
    geometry = GeometryQuantizer(tok)
    table, values = attribute_table(config)
    assert table.shape == (off + config.image_vocab_size, 3)
    slots = build_token_layout(tok.codebook_size, geometry)
    assert table[:off + slots[0].size].eq(0).all()  # text, markers and feature codes
    seen = {}
    for slot, attrs in zip(slots[1:], geometry.slots):
        bins = [geometry.attributes[a].bins for a in attrs]
        for local, digits in enumerate(product(*map(range, bins))):  # mixed radix, first attribute most significant
            row = table[off + slot.start + local].tolist()
            assert row[len(attrs):] == [0] * (3 - len(attrs))
            for j, (a, d) in enumerate(zip(attrs, digits)):
                assert seen.setdefault((slot.name, a, d), row[j]) == row[j]
    assert sorted(seen.values()) == list(range(1, values))  # one value per (slot, attribute, bin), none shared
    spec = {"num_slots": tok.num_gaussians, "group": 3, "fill": [0] * (3 * tok.num_gaussians)}
    with_slots = _model(text_tokenizer, image_tokenizer_dir, tiny_text_config, object_layout=spec).config
    table2, values2 = attribute_table(with_slots)
    rows, cols = anchor_grid_shape(tok.num_gaussians, tok.anchor_layout)
    first = off + config.image_vocab_size
    for k in range(tok.num_gaussians):  # slot k: its row and its column, new values after the geometry's
        assert table2[first + k].tolist() == [values + k // cols, values + rows + k % cols, 0]
    assert table2[first + tok.num_gaussians:].eq(0).all() and values2 == values + rows + cols  # <obj>: none


def test_new_model_reads_as_one_without_and_vectors_reach_geometry_tokens(text_tokenizer, image_tokenizer_dir,
                                                                          tiny_text_config):
    plain = _model(text_tokenizer, image_tokenizer_dir, tiny_text_config)
    model = _model(text_tokenizer, image_tokenizer_dir, tiny_text_config, attribute_embeddings=True)
    assert model.config.attribute_embeddings and model.attribute_embed.weight.eq(0).all()
    off, feature = model.config.image_token_offset, model.config.tokenizer_config.codebook_size
    ids = torch.tensor([[5, 6, off + 1, off + 2, off + feature + 3, 7, off + feature + 9]])  # text, features, geometry
    with torch.no_grad():
        assert torch.equal(plain(ids).logits, model(ids).logits)
        model.attribute_embed.weight[1:].normal_(0, 1.0)
        moved = (model(ids).logits - plain(ids).logits).abs().amax(-1)[0]  # [L]
    assert moved[:4].eq(0).all() and (moved[4:] > 0).all()  # causal: from the first geometry token on
    model.train()
    ids = torch.cat([ids, ids[:, :1]], 1)  # the last geometry token's embedding then reaches a prediction
    model(ids, labels=ids).loss.backward()
    grad = model.attribute_embed.weight.grad
    used = model.attribute_embed.table(ids.device)[ids[0]].unique()
    assert grad[0].eq(0).all() and (grad[used[used > 0]].abs().sum(-1) > 0).all()
    rest = torch.ones(len(grad), dtype=torch.bool)
    rest[used] = False
    assert grad[rest].eq(0).all()  # nothing else moves


def test_saved_model_loads_in_a_fresh_process_and_static_loop_matches_hf(text_tokenizer, image_tokenizer_dir,
                                                                         tiny_text_config, tmp_path):
    from gaussiantoken.lm.generation import image_grammar_for, sample_image_tokens

    model = _model(text_tokenizer, image_tokenizer_dir, tiny_text_config, attribute_embeddings=True)
    with torch.no_grad():
        model.attribute_embed.weight[1:].normal_(0, 2.0)
        model.language_model.lm_head.weight.mul_(8.0)  # sharp logits: a wrong embedding changes the tokens
    grammar = image_grammar_for(model)
    prompts = [text_tokenizer.encode("a red circle") + [model.config.boi_token_id],
               text_tokenizer.encode("two blue squares") + [model.config.boi_token_id]]
    kw = dict(temperature=1.0, generator=torch.Generator().manual_seed(3))
    hf = sample_image_tokens(model, grammar, prompts, **kw)
    kw["generator"] = torch.Generator().manual_seed(3)
    assert torch.equal(hf, sample_image_tokens(model, grammar, prompts, backend="static", **kw))
    model.save_pretrained(tmp_path / "lm")
    torch.save({"ids": hf, "prompts": prompts}, tmp_path / "want.pt")
    script = (
        "import sys, torch, transformers, gaussiantoken\n"
        "from gaussiantoken.lm.generation import image_grammar_for, sample_image_tokens\n"
        "d = sys.argv[1]\n"
        "m = transformers.AutoModelForCausalLM.from_pretrained(d).eval()\n"
        "assert m.config.attribute_embeddings and m.attribute_embed.weight[1:].abs().min() > 0\n"
        "want = torch.load(sys.argv[2], weights_only=True)\n"
        "got = sample_image_tokens(m, image_grammar_for(m), want['prompts'], temperature=1.0,\n"
        "                          generator=torch.Generator().manual_seed(3))\n"
        "assert torch.equal(got, want['ids']), (got, want['ids'])\n"
        "print('OK')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "lm"), str(tmp_path / "want.pt")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]


def test_config_refuses_a_non_boolean(text_tokenizer, image_tokenizer_dir, tiny_text_config):
    from gaussiantoken.lm.configuration import GaussianTokenLMConfig

    config = _model(text_tokenizer, image_tokenizer_dir, tiny_text_config).config.to_dict()
    with pytest.raises(ValueError, match="attribute_embeddings"):
        GaussianTokenLMConfig(**{**config, "attribute_embeddings": "yes"})
