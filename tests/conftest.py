"""Shared test setup: CPU by default, `cuda` tests skip cleanly without a GPU; the tiny saved models
(a random 16x16 image tokenizer and a sentencepiece text vocabulary) that the LM, pipeline and eval
tests build on."""

import pytest
import torch

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
def tiny_text_config() -> dict:
    """The tiny Llama config the LM tests use (copy it before changing it)."""
    return dict(TEXT_CONFIG)


@pytest.fixture(scope="session")
def image_tokenizer_dir(tmp_path_factory):
    """A saved random GaussianTokenizer (16x16 images, 4 Gaussians) with its image processor."""
    from gaussiantoken.tokenizer import GaussianTokenizer, GaussianTokenizerConfig, GaussianTokenizerImageProcessor

    torch.manual_seed(0)
    model = GaussianTokenizer(GaussianTokenizerConfig(**TOKENIZER_KWARGS)).eval()
    path = tmp_path_factory.mktemp("image_tokenizer")
    model.save_pretrained(path)
    GaussianTokenizerImageProcessor(image_size=16).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def text_tokenizer_dir(tmp_path_factory):
    """A saved sentencepiece text vocabulary trained on a small Shapes corpus."""
    from gaussiantoken.lm.text_tokenizer import default_corpus, train_text_tokenizer

    path = tmp_path_factory.mktemp("text_tokenizer")
    train_text_tokenizer(default_corpus(200, seed=1, image_size=16), vocab_size=320, out_dir=path)
    return path

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
