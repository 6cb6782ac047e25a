"""Shared fixtures of the LM tests: a tiny Llama backbone on the tiny random image tokenizer (16x16,
4 Gaussians -> 12 tokens per image) and text tokenizer of tests/conftest.py, its processor, and an
extract-codes dir of a few Shapes scenes, and the tiny LM saved to a directory (`lm_dir`). A randomly initialised
image tokenizer is enough for LM plumbing."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def make_tiny_llama():
    """vocab_size -> a random 2-layer LlamaForCausalLM (see `tiny_llama`)."""
    return tiny_llama


def tiny_llama(vocab_size: int):
    """A random 2-layer LlamaForCausalLM (no tokenizer) with sharpened logits, so greedy and sampling
    differences are visible; the generation-core tests drive it with hand-made token layouts."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    return model


@pytest.fixture()
def text_tokenizer(text_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(text_tokenizer_dir)


@pytest.fixture()
def tiny_lm(text_tokenizer, image_tokenizer_dir, tiny_text_config):
    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM

    torch.manual_seed(0)
    return GaussianTokenForCausalLM.from_parts(text_tokenizer, image_tokenizer_dir, text_config=dict(tiny_text_config))


@pytest.fixture()
def processor(tiny_lm, text_tokenizer):
    from gaussiantoken.lm.processing import GaussianTokenProcessor

    return GaussianTokenProcessor.from_model_config(tiny_lm.config, text_tokenizer)


@pytest.fixture()
def lm_dir(tiny_lm, processor, tmp_path):
    """The tiny LM and its processor saved to a directory (what the bench commands load)."""
    tiny_lm.save_pretrained(tmp_path / "lm")
    processor.save_pretrained(tmp_path / "lm")
    return tmp_path / "lm"


@pytest.fixture(scope="session")
def shapes_small():
    from gaussiantoken.data.shapes import make_dataset

    return make_dataset(24, seed=3, image_size=16)


@pytest.fixture(scope="session")
def codes_dir(tmp_path_factory, image_tokenizer_dir, shapes_small):
    from gaussiantoken.lm.extract import extract_codes

    path = tmp_path_factory.mktemp("codes")
    extract_codes(image_tokenizer_dir, shapes_small, path, batch_size=8, shard_size=10, progress=False)
    return path
