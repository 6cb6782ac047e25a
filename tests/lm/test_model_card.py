"""Model cards (tokenizer/model_card.py): save_pretrained writes a hub-format README.md; metrics become a
model-index; the recipe and sample grid are embedded; a person's own README.md is never overwritten."""

import yaml

from gaussiantoken.tokenizer.model_card import MARKER, write_model_card


def _meta(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---")[1])


def test_tokenizer_save_pretrained_writes_a_card(image_tokenizer_dir, tmp_path):
    from gaussiantoken.tokenizer import GaussianTokenizer

    tok = GaussianTokenizer.from_pretrained(image_tokenizer_dir)
    tok.save_pretrained(tmp_path)
    card = (tmp_path / "README.md").read_text()
    meta = _meta(card)
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "image-feature-extraction"
    assert "model-index" not in meta and "Not evaluated yet" in card
    assert "AutoModel.from_pretrained" in card and f"num_gaussians: {tok.config.num_gaussians}" in card

    (tmp_path / "train_config.yaml").write_text("data: {name: shapes, num_samples: 64}\ntrain: {learning_rate: 0.002}\n")
    (tmp_path / "grid.png").write_bytes(b"\x89PNG")
    write_model_card(tmp_path, tok.config, {"reconstruction.psnr": 31.23456, "reconstruction.seconds": 4.0,
                                            "reconstruction.ssim": float("nan"), "vqa.accuracy": 0.5},
                     samples=tmp_path / "grid.png")
    card = (tmp_path / "README.md").read_text()
    meta = _meta(card)
    assert meta["datasets"] == ["shapes"]
    (result,) = meta["model-index"][0]["results"]  # reconstruction only; no time, no NaN
    assert result["task"]["type"] == "image-to-image"
    assert result["metrics"] == [{"type": "psnr", "name": "psnr", "value": 31.2346}]
    assert "learning_rate: 0.002" in card and "![samples](samples.png)" in card and (tmp_path / "samples.png").is_file()


def test_lm_card_and_a_persons_readme_is_kept(tiny_lm, tmp_path):
    tiny_lm.save_pretrained(tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert MARKER in card and _meta(card)["pipeline_tag"] == "image-text-to-text"
    assert 'pipeline("image-text-to-text"' in card and '"type": "image"' in card
    (tmp_path / "README.md").write_text("# my own notes\n")
    tiny_lm.save_pretrained(tmp_path)
    assert (tmp_path / "README.md").read_text() == "# my own notes\n"


def test_a_vqa_fine_tune_card_offers_only_what_it_was_trained_for(tiny_lm, tmp_path):
    """An LM whose recipe trained VQA alone (a VQA fine-tune, the demo's lm_vqa) is carded as a VQA model: no
    text-to-image usage or tags; the same model with a mixed recipe keeps the multimodal card."""
    import yaml

    from gaussiantoken.tokenizer.model_card import model_card

    tiny_lm.save_pretrained(tmp_path)
    recipe = {"data": {"source": "shapes_stream", "ratios": {"text_to_image": 0, "caption": 0, "vqa": 1}}}
    (tmp_path / "train_config.yaml").write_text(yaml.safe_dump(recipe))
    card = model_card(tmp_path, tiny_lm.config, {"vqa.accuracy": 0.9})
    assert "visual question answering model" in card and 'pipeline("text-to-image"' not in card
    assert "text-to-image" not in _meta(card)["tags"] and "visual-question-answering" in _meta(card)["tags"]
    assert "## Architecture" in card and "vocab_size" in card
    assert "positions first" not in card  # plain relation answers
    recipe["data"]["relation_positions"] = True
    (tmp_path / "train_config.yaml").write_text(yaml.safe_dump(recipe))
    assert '"left: red circle 2, blue square 5, so yes"' in model_card(tmp_path, tiny_lm.config, {})
    recipe["data"]["ratios"] = {"text_to_image": 0.5, "caption": 0.25, "vqa": 0.25}
    (tmp_path / "train_config.yaml").write_text(yaml.safe_dump(recipe))
    card = model_card(tmp_path, tiny_lm.config, {"vqa.accuracy": 0.9})
    assert "multimodal LM" in card and 'pipeline("text-to-image"' in card and "text-to-image" in _meta(card)["tags"]
