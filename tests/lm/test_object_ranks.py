"""model.input_object_ranks: each object of an object-major input span carries its rank in the span (left to right,
capped at image_groups) through the group embedding, the same in training (`lm.data`) and at inference
(`GaussianTokenForCausalLM.input_object_ranks`); text-to-image targets carry none."""

import importlib.util
from pathlib import Path

import pytest
import torch

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "lm" / "shapes.yaml"


def _overrides(image_tokenizer_dir, text_tokenizer_dir, out, **extra):
    spec = importlib.util.spec_from_file_location("_lm_train_tests_rank", Path(__file__).with_name("test_lm_train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.overrides(image_tokenizer_dir, "unused", text_tokenizer_dir, out, **{
        "data.source": "shapes_stream", "data.stream_chunk": 8, "model.image_groups": 2, "data.t2i_layout": "objects",
        "model.input_layout": "objects", "model.input_object_ranks": "true", "data.vqa_turns": 2,
        "data.ratios": "{text_to_image: 0.3, caption: 0.3, vqa: 0.4}", "model.text_config.max_position_embeddings": 192,
        **extra})


def test_object_ranks_tag_input_spans_alike_in_training_and_inference(image_tokenizer_dir, text_tokenizer_dir,
                                                                       tmp_path):
    from gaussiantoken.lm.object_layout import ObjectLayout
    from gaussiantoken.lm.referent import span_objects
    from gaussiantoken.lm.train import LMRunConfig, build_model_and_processor, check_config
    from gaussiantoken.lm.train_build import build_dataset, build_stream
    from gaussiantoken.runtime.config import load_run_config
    from gaussiantoken.tokenizer import GaussianTokenizer

    cfg = load_run_config(LMRunConfig, CONFIG, _overrides(image_tokenizer_dir, text_tokenizer_dir, tmp_path / "a"))
    check_config(cfg)
    model, processor = build_model_and_processor(cfg)
    assert model.config.input_object_ranks
    stream, _ = build_stream(cfg, GaussianTokenizer.from_pretrained(image_tokenizer_dir).eval())
    data = build_dataset(cfg, processor, model.config, rows=stream)
    obj = ObjectLayout.from_config(model.config).obj_token_id
    seen = {"text_to_image": 0, "caption": 0, "vqa": 0}
    for i in range(len(data)):
        item = data[i]
        seen[item["task"]] += 1
        if item["task"] == "text_to_image":
            assert not any(item["image_groups"])
            continue
        objects = span_objects(item["input_ids"], processor.layout, obj)
        assert item["image_groups"] == [min(n, 2) for n in objects] and max(item["image_groups"]) >= 1
        ids = torch.tensor([item["input_ids"]])
        assert model.input_object_ranks(ids)[0].tolist() == item["image_groups"]  # inference tags it alike
        with torch.no_grad():  # eval forward without groups computes them: the same logits as the training tags
            model.eval()
            torch.testing.assert_close(model(input_ids=ids).logits,
                                       model(input_ids=ids, image_groups=torch.tensor([item["image_groups"]])).logits)
    assert all(seen.values()), seen
    open_span = torch.tensor([item["input_ids"][:item["input_ids"].index(processor.layout.eoi_token_id)]])
    assert not model.input_object_ranks(open_span).any()  # an unclosed span (an image being written) gets none
    with pytest.raises(ValueError, match="model.input_object_ranks"):
        check_config(load_run_config(LMRunConfig, CONFIG, _overrides(
            image_tokenizer_dir, text_tokenizer_dir, tmp_path / "b", **{"model.input_layout": "grid"})))
