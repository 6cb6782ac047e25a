"""Shared fixtures of the LM tests: a tiny random image tokenizer (16x16, 4 Gaussians -> 12 tokens per image),
a small sentencepiece text tokenizer, a tiny Llama backbone and an extract-codes dir of a few Shapes scenes.
A randomly initialised image tokenizer is enough for LM plumbing."""

import pytest
import torch

torch.set_num_threads(1)

TOKENIZER_KWARGS = dict(
    image_size=16, encoder_channels=8, encoder_channel_mult=[1, 2], hidden_size=32, num_heads=4, ffn_dim=32,
    num_decoder_layers=1, num_gaussians=4, codebook_size=16, position_bins=8, scale_bins=4, rotation_bins=4,
    splat_channels=8, feature_mlp_hidden=16, decoder_channels=8, decoder_num_res_blocks=1,
)
TEXT_CONFIG = dict(
    model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=4, max_position_embeddings=128, tie_word_embeddings=False,
)


@pytest.fixture(scope="session")
def image_tokenizer_dir(tmp_path_factory):
    from gaussiantoken.tokenizer import GaussianTokenizer, GaussianTokenizerConfig, GaussianTokenizerImageProcessor

    torch.manual_seed(0)
    model = GaussianTokenizer(GaussianTokenizerConfig(**TOKENIZER_KWARGS)).eval()
    path = tmp_path_factory.mktemp("image_tokenizer")
    model.save_pretrained(path)
    GaussianTokenizerImageProcessor(image_size=16).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def text_tokenizer_dir(tmp_path_factory):
    from gaussiantoken.lm.text_tokenizer import default_corpus, train_text_tokenizer

    path = tmp_path_factory.mktemp("text_tokenizer")
    train_text_tokenizer(default_corpus(200, seed=1, image_size=16), vocab_size=320, out_dir=path)
    return path


@pytest.fixture()
def text_tokenizer(text_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(text_tokenizer_dir)


@pytest.fixture()
def tiny_lm(text_tokenizer, image_tokenizer_dir):
    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM

    torch.manual_seed(0)
    return GaussianTokenForCausalLM.from_parts(text_tokenizer, image_tokenizer_dir, text_config=dict(TEXT_CONFIG))


@pytest.fixture()
def processor(tiny_lm, text_tokenizer):
    from gaussiantoken.lm.processing import GaussianTokenProcessor

    return GaussianTokenProcessor.from_model_config(tiny_lm.config, text_tokenizer)


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
