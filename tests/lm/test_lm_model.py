"""The LM: vocabulary extension, save/load of the whole directory, generation with KV cache, overfitting."""

import pytest
import torch

from gaussiantoken.lm.modeling import GaussianTokenForCausalLM
from gaussiantoken.lm.sequences import VocabLayout, build_caption, build_text_to_image, build_vqa


def test_vocabulary_extension(tiny_lm, text_tokenizer, image_tokenizer_dir):
    cfg = tiny_lm.config
    assert cfg.image_token_offset == len(text_tokenizer)
    assert cfg.text_config.vocab_size == len(text_tokenizer) + tiny_lm.image_tokenizer.vocab_size
    assert tiny_lm.get_input_embeddings().weight.shape[0] == cfg.text_config.vocab_size
    assert tiny_lm.get_output_embeddings().weight.shape[0] == cfg.text_config.vocab_size
    assert cfg.tokens_per_image == tiny_lm.image_tokenizer.tokens_per_image == 12
    assert not any(p.requires_grad for p in tiny_lm.image_tokenizer.parameters())
    tiny_lm.train()
    assert not tiny_lm.image_tokenizer.training
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    ids = tiny_lm.encode_images(x)
    assert ids.shape == (2, 12) and bool((ids >= cfg.image_token_offset).all())
    assert torch.equal(ids - cfg.image_token_offset, tiny_lm.image_tokenizer.encode(x))
    assert tiny_lm.decode_image_tokens(ids).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="LM ids"):
        tiny_lm.decode_image_tokens(ids - cfg.image_token_offset)


def test_save_load_round_trip(tiny_lm, processor, tmp_path):
    from transformers import AutoModelForCausalLM, AutoProcessor

    tiny_lm.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json", "processor_config.json"} <= names
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert isinstance(loaded, GaussianTokenForCausalLM)
    a, b = tiny_lm.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    proc = AutoProcessor.from_pretrained(tmp_path)
    assert proc.image_token_offset == loaded.config.image_token_offset
    ids = tiny_lm.encode_images(torch.rand(2, 3, 16, 16) * 2 - 1)  # [2, T] LM ids (a valid token grammar)
    assert torch.equal(tiny_lm.decode_image_tokens(ids), loaded.decode_image_tokens(ids))


def test_wrong_directory_kinds(image_tokenizer_dir, tiny_lm, tmp_path):
    with pytest.raises(ValueError, match="gaussian_tokenizer"):
        GaussianTokenForCausalLM.from_pretrained(image_tokenizer_dir)
    tiny_lm.save_pretrained(tmp_path)
    from gaussiantoken.tokenizer import GaussianTokenizer

    with pytest.raises(ValueError):
        GaussianTokenizer.from_pretrained(tmp_path)


def test_tokenizer_vocab_mismatch(tiny_lm):
    from gaussiantoken.lm.configuration import GaussianTokenLMConfig

    cfg = tiny_lm.config.to_dict()
    cfg["image_vocab_size"] += 1
    with pytest.raises(ValueError, match="vocabulary mismatch"):
        GaussianTokenLMConfig(**cfg)


def test_generate_with_cache_matches_no_cache(tiny_lm, processor, shapes_small):
    tiny_lm.eval()
    batch = processor(images=[shapes_small[0]["image"]], text="<image>Describe the image.")
    kw = dict(max_new_tokens=8, do_sample=False, pad_token_id=processor.layout.pad_token_id)
    cached = tiny_lm.generate(**batch, use_cache=True, **kw)
    plain = tiny_lm.generate(**batch, use_cache=False, **kw)
    assert torch.equal(cached, plain) and cached.shape[1] == batch["input_ids"].shape[1] + 8


def test_tiny_backbone_overfits(tiny_lm, text_tokenizer):
    """Six sequences (2 per task) memorised: mean loss < 0.05 within 150 full-batch AdamW steps."""
    from gaussiantoken.lm.data import SequenceCollator

    torch.manual_seed(0)
    layout = VocabLayout.from_config(tiny_lm.config, text_tokenizer)
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, layout.image_vocab_size, (2, 12), generator=g).tolist()
    seqs = [
        build_text_to_image(text_tokenizer, "a large red circle", codes[0], layout),
        build_text_to_image(text_tokenizer, "a small blue square", codes[1], layout),
        build_caption(text_tokenizer, "a large red circle", codes[0], layout),
        build_caption(text_tokenizer, "a small blue square", codes[1], layout),
        build_vqa(text_tokenizer, "what color is the circle?", "red", codes[0], layout),
        build_vqa(text_tokenizer, "how many objects are there?", "one", codes[1], layout),
    ]
    batch = SequenceCollator(layout.pad_token_id)(seqs)
    tiny_lm.train()
    opt = torch.optim.AdamW([p for p in tiny_lm.parameters() if p.requires_grad], lr=3e-3)
    first = None
    for step in range(150):
        loss = tiny_lm(**batch).loss
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.05:
            break
    assert first > 4.0 and loss.item() < 0.05, (first, loss.item(), step)
    tiny_lm.eval()
    prompt = seqs[4]["input_ids"][: seqs[4]["labels"].index(next(l for l in seqs[4]["labels"] if l != -100))]
    out = tiny_lm.generate(torch.tensor([prompt]), max_new_tokens=3, do_sample=False,
                           pad_token_id=layout.pad_token_id, eos_token_id=layout.eos_token_id)
    assert text_tokenizer.decode(out[0, len(prompt):], skip_special_tokens=True).strip() == "red"


def test_group_embedding_starts_at_zero(tiny_lm):
    """model.image_groups: a new model's group embedding is zero (post_init draws every other weight), so it reads
    its input as the same model without groups until training moves it."""
    from gaussiantoken.lm.configuration import GaussianTokenLMConfig
    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM

    torch.manual_seed(0)
    fresh = GaussianTokenForCausalLM(GaussianTokenLMConfig(**{**tiny_lm.config.to_dict(), "image_groups": 3}))
    assert fresh.group_embed is not None and fresh.group_embed.weight.shape[0] == 4
    assert not fresh.group_embed.weight.any()
