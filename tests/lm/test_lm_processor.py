"""Processor: placeholder expansion and count errors, pixel_values == precomputed codes, save/load, mismatches."""

import pytest
import torch

from gaussiantoken.lm.processing import GaussianTokenProcessor, check_processor_matches
from gaussiantoken.lm.sequences import caption_prompt, text_to_image_prompt, vqa_prompt


def test_expansion_and_padding(processor, shapes_small):
    T = processor.tokens_per_image
    texts = [caption_prompt(), vqa_prompt("how many objects are there?")]
    batch = processor(images=list(shapes_small[:2]["image"]), text=texts)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert batch["pixel_values"].shape == (2, 3, 16, 16)
    for row, m in zip(ids, mask):
        valid = row[m.bool()].tolist()
        b = valid.index(processor.boi_token_id)
        assert valid[b + 1:b + 1 + T] == [processor.image_token_id] * T and valid[b + 1 + T] == processor.eoi_token_id
    assert mask[0].sum() < mask[1].sum() and ids[0, 0] == processor.layout.pad_token_id  # left padding (prompts)
    right = processor(images=list(shapes_small[:2]["image"]), text=texts, padding_side="right")
    assert right["input_ids"][0, -1] == processor.layout.pad_token_id and right["attention_mask"][0, -1] == 0


def test_placeholder_count_errors(processor, shapes_small):
    img = shapes_small[0]["image"]
    with pytest.raises(ValueError, match="placeholder"):
        processor(images=[img, img], text=caption_prompt())
    with pytest.raises(ValueError, match="placeholder"):
        processor(images=None, text=caption_prompt())
    with pytest.raises(ValueError, match="reserved"):  # plain text is a request; "<boi>" is not user text
        processor(images=[img], text=text_to_image_prompt("a red circle"))
    with pytest.raises(ValueError, match="placeholder"):
        processor(image_tokens=torch.zeros(2, processor.tokens_per_image, dtype=torch.long), text=caption_prompt())


def test_pixel_values_equals_precomputed_codes(processor, tiny_lm, shapes_small, image_tokenizer_dir):
    from gaussiantoken.tokenizer import GaussianTokenizer

    images = list(shapes_small[:3]["image"])
    texts = [caption_prompt(), vqa_prompt("what shape is the red object?"), caption_prompt() + " a"]
    with_pixels = processor(images=images, text=texts)
    tok = GaussianTokenizer.from_pretrained(image_tokenizer_dir).eval()
    codes = tok.encode(processor.image_processor(images, return_tensors="pt")["pixel_values"])  # [3, T] local ids
    with_codes = processor(image_tokens=codes, text=texts)
    assert "pixel_values" not in with_codes
    tiny_lm.eval()
    a = tiny_lm(**with_pixels).logits
    b = tiny_lm(**with_codes).logits
    assert torch.equal(a, b)
    merged = tiny_lm.merge_image_tokens(with_pixels["input_ids"], with_pixels["pixel_values"])
    assert torch.equal(merged, with_codes["input_ids"])
    with pytest.raises(ValueError, match="no pixel_values"):
        tiny_lm(input_ids=with_pixels["input_ids"])
    with pytest.raises(ValueError, match="image"):
        tiny_lm(input_ids=with_pixels["input_ids"], pixel_values=with_pixels["pixel_values"][:2])


def test_save_load_round_trip(processor, tmp_path, shapes_small):
    processor.save_pretrained(tmp_path)
    assert {"processor_config.json", "preprocessor_config.json", "tokenizer.json"} <= {p.name for p in tmp_path.iterdir()}
    again = GaussianTokenProcessor.from_pretrained(tmp_path)
    texts = [vqa_prompt("what color is the square?")]
    img = [shapes_small[5]["image"]]
    a, b = processor(images=img, text=texts), again(images=img, text=texts)
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["pixel_values"], b["pixel_values"])


def test_vocabulary_mismatch_and_wrong_dirs(processor, tiny_lm, image_tokenizer_dir, text_tokenizer):
    cfg = tiny_lm.config
    with pytest.raises(ValueError, match="vocabulary mismatch"):
        GaussianTokenProcessor(processor.image_processor, text_tokenizer, tokens_per_image=cfg.tokens_per_image,
                               image_token_offset=cfg.image_token_offset + 1, image_vocab_size=cfg.image_vocab_size)
    bigger = type(text_tokenizer).from_pretrained(text_tokenizer.name_or_path)
    bigger.add_tokens(["zebra"])
    with pytest.raises(ValueError, match="vocabulary mismatch"):
        GaussianTokenProcessor.from_model_config(cfg, bigger, processor.image_processor)
    wrong = GaussianTokenProcessor(processor.image_processor, text_tokenizer, tokens_per_image=cfg.tokens_per_image + 3,
                                   image_vocab_size=cfg.image_vocab_size)
    with pytest.raises(ValueError, match="tokens_per_image"):
        check_processor_matches(wrong, cfg)
    with pytest.raises(ValueError, match="not a gaussiantoken_lm"):
        GaussianTokenProcessor.from_pretrained(image_tokenizer_dir)
