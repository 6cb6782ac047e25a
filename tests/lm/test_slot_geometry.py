"""model.slot_geometry: object-layout slot tokens embed their anchor's (x, y) through one learned linear map that
starts at zero (lm.modeling.slot_positions), so a saved model continues under it unchanged (model.init_from);
zero-initialized additions stay zero after the model's post_init."""

from pathlib import Path

import pytest
import torch

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "lm" / "shapes.yaml"


def _stream_overrides(image_tokenizer_dir, text_tokenizer_dir, out, **extra):
    import importlib.util

    spec = importlib.util.spec_from_file_location("_lm_train_tests_geo", Path(__file__).with_name("test_lm_train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.overrides(image_tokenizer_dir, "unused", text_tokenizer_dir, out, **{
        "data.source": "shapes_stream", "data.stream_chunk": 8, "data.t2i_layout": "objects", "train.max_steps": 3,
        "data.ratios": "{text_to_image: 1.0, caption: 0.5, vqa: 0.5}", **extra})


def _slot_ids(model) -> torch.LongTensor:
    """A row of text, <boi>, each slot token then one image code, <obj>, <eoi>: [1, L]."""
    cfg, spec = model.config, model.config.object_layout
    lo = cfg.image_token_offset + cfg.image_vocab_size
    row = [5, 6, cfg.boi_token_id]
    for k in range(spec["num_slots"]):
        row += [lo + k, cfg.image_token_offset + k]
    row += [lo + spec["num_slots"], cfg.eoi_token_id]
    return torch.tensor([row])


def test_slot_geometry_continues_a_saved_model_and_embeds_anchors(image_tokenizer_dir, text_tokenizer_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from gaussiantoken.lm.train import LMRunConfig, build_model_and_processor, train
    from gaussiantoken.runtime.config import load_run_config

    args = (image_tokenizer_dir, text_tokenizer_dir)
    plain = train(load_run_config(LMRunConfig, CONFIG, _stream_overrides(*args, tmp_path / "a")))
    geo = load_run_config(LMRunConfig, CONFIG, _stream_overrides(*args, tmp_path / "b", **{
        "model.slot_geometry": "true", "model.init_from": plain.final_dir}))
    model, _ = build_model_and_processor(geo)
    assert model.slot_geometry is not None and not model.slot_geometry.weight.any()
    before = AutoModelForCausalLM.from_pretrained(plain.final_dir).eval()
    ids = _slot_ids(model)
    with torch.no_grad():  # a zero map: the continued model computes what the saved one did
        torch.testing.assert_close(model.eval()(input_ids=ids).logits, before(input_ids=ids).logits)

    run = train(geo)
    trained = AutoModelForCausalLM.from_pretrained(run.final_dir).eval()
    assert trained.config.slot_geometry and trained.slot_geometry.weight.any()
    W = trained.slot_geometry.weight.detach()  # [D, 2]
    added = trained.slot_positions(ids)[0].detach()  # [L, D]
    xy = trained.image_tokenizer.anchor_xy()  # [M, 2]
    lo = trained.config.image_token_offset + trained.config.image_vocab_size
    for j, t in enumerate(ids[0].tolist()):
        k = t - lo
        want = W @ xy[k] if 0 <= k < trained.config.object_layout["num_slots"] else torch.zeros(W.shape[0])
        torch.testing.assert_close(added[j], want)
    assert len({tuple(v) for v in xy.tolist()}) == xy.shape[0]  # distinct anchors: distinct slot embeddings
    with torch.no_grad():  # the map is part of the forward: zeroing it changes the logits
        full = trained(input_ids=ids).logits
        trained.slot_geometry.weight.zero_()
        assert not torch.allclose(trained(input_ids=ids).logits, full)


def test_slot_geometry_config_errors_and_zero_start(image_tokenizer_dir, text_tokenizer_dir, tiny_lm, tmp_path):
    from gaussiantoken.lm.configuration import GaussianTokenLMConfig
    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM
    from gaussiantoken.lm.train import LMRunConfig, check_config
    from gaussiantoken.runtime.config import load_run_config

    args = (image_tokenizer_dir, text_tokenizer_dir, tmp_path / "x")
    for extra in ({"data.t2i_layout": "grid"}, {"data.object_slots": "relative"}):
        with pytest.raises(ValueError, match="model.slot_geometry"):
            check_config(load_run_config(LMRunConfig, CONFIG, _stream_overrides(
                *args, **{"model.slot_geometry": "true", **extra})))
    with pytest.raises(ValueError, match="slot_geometry needs an object_layout"):
        GaussianTokenLMConfig(**{**tiny_lm.config.to_dict(), "slot_geometry": True})
    # a fresh model's zero-initialized additions are zero (post_init draws every other weight)
    cfg = tiny_lm.config.to_dict()
    torch.manual_seed(0)
    fresh = GaussianTokenForCausalLM(GaussianTokenLMConfig(**{**cfg, "image_groups": 3}))
    assert fresh.group_embed is not None and not fresh.group_embed.weight.any()
