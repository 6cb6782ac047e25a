"""A tiny, randomly initialised GaussianToken LM (tiny GaussianTokenizer + tiny Llama + a small trained
sentencepiece vocabulary) saved once per session, for the generation / pipeline / CLI tests."""

import pytest
import torch

TEXTS = [
    "a large red circle", "a small blue square", "a small green triangle to the left of a large white circle",
    "what color is the circle?", "red", "blue", "green", "yes", "no", "two", "three", "one",
    "a small yellow square above a large cyan triangle", "how many objects are there?",
    "Generate an image: ", "Describe the image.", "Question: Answer:", "magenta", "below", "right",
] * 20


def build_tiny_lm(seed: int = 0):
    from transformers import LlamaConfig

    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM
    from gaussiantoken.lm.processing import GaussianTokenProcessor
    from gaussiantoken.lm.text_tokenizer import train_text_tokenizer
    from gaussiantoken.tokenizer import GaussianTokenizer, GaussianTokenizerConfig

    torch.manual_seed(seed)
    text_tokenizer = train_text_tokenizer(TEXTS, vocab_size=300)
    tok_config = GaussianTokenizerConfig(
        image_size=16, encoder_channels=8, encoder_channel_mult=(1, 2), encoder_out_channels=16, hidden_size=16,
        num_heads=2, num_points=2, ffn_dim=32, num_encoder_layers=1, num_decoder_layers=1, num_gaussians=6,
        codebook_size=16, codebook_dim=4, kmeans_init=False, position_bins=8, scale_bins=4, rotation_bins=4,
        splat_channels=4, feature_mlp_hidden=16, decoder_channels=8, decoder_num_res_blocks=1,
        splat_backend="torch",
    )
    image_tokenizer = GaussianTokenizer(tok_config).eval()
    text_config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=2, max_position_embeddings=96)
    model = GaussianTokenForCausalLM.from_parts(text_tokenizer, image_tokenizer, text_config=text_config).eval()
    with torch.no_grad():  # sharper distributions: seeds and guidance visibly change the samples
        model.language_model.lm_head.weight.mul_(6.0)
    processor = GaussianTokenProcessor.from_model_config(model.config, text_tokenizer)
    return model, processor


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_lm")
    model, processor = build_tiny_lm()
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_lm(tiny_lm_dir):
    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM
    from gaussiantoken.lm.processing import GaussianTokenProcessor

    model = GaussianTokenForCausalLM.from_pretrained(tiny_lm_dir).eval()
    return model, GaussianTokenProcessor.from_pretrained(tiny_lm_dir)
