"""transformers.pipeline("text-to-image" | "image-text-to-text" | our captioning/VQA tasks) from a saved dir."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

import gaussiantoken  # noqa: F401  (registers our tasks and auto classes)
from gaussiantoken.lm.generation import generate_images, generate_text

PROMPTS = ["a large red circle", "a small blue square"]


@pytest.fixture(scope="module")
def t2i(tiny_lm_dir):
    return pipeline("text-to-image", model=str(tiny_lm_dir), device="cpu")


def test_pipeline_loads_from_dir_and_matches_the_core(t2i, tiny_lm):
    from gaussiantoken.pipelines.text_to_image import TextToImagePipeline

    model, processor = tiny_lm
    assert isinstance(t2i, TextToImagePipeline) and t2i.model.dtype == torch.float32
    kw = dict(guidance_scale=2.0, num_images_per_prompt=2)
    pt = t2i(PROMPTS, output_type="pt", generator=torch.Generator().manual_seed(4), **kw)
    ids = generate_images(model, processor, PROMPTS, generator=torch.Generator().manual_seed(4), **kw)
    expected = (model.decode_image_tokens(ids) + 1) / 2  # prompt-major order
    torch.testing.assert_close(pt, expected.clamp(0, 1))
    plain = t2i(PROMPTS, output_type="pt", generator=torch.Generator().manual_seed(4), num_candidates=1, **kw)
    ids = generate_images(model, processor, PROMPTS, generator=torch.Generator().manual_seed(4), num_candidates=1, **kw)
    torch.testing.assert_close(plain, ((model.decode_image_tokens(ids) + 1) / 2).clamp(0, 1))
    assert not torch.equal(plain, pt)  # the best of 4 keeps other samples than plain sampling draws


def test_output_types(t2i, tiny_lm):
    model, _ = tiny_lm
    seed = lambda: torch.Generator().manual_seed(9)  # noqa: E731
    pil = t2i(PROMPTS, num_images_per_prompt=3, generator=seed())
    pt = t2i(PROMPTS, num_images_per_prompt=3, generator=seed(), output_type="pt")
    arr = t2i(PROMPTS, num_images_per_prompt=3, generator=seed(), output_type="np")
    gs = t2i(PROMPTS, num_images_per_prompt=3, generator=seed(), output_type="gaussians")
    assert isinstance(pil, list) and len(pil) == 6 and all(isinstance(i, Image.Image) for i in pil)
    assert pil[0].size == (16, 16) and pil[0].mode == "RGB"
    assert pt.shape == (6, 3, 16, 16) and pt.dtype == torch.float32 and 0 <= pt.min() and pt.max() <= 1
    assert isinstance(arr, np.ndarray) and arr.shape == (6, 16, 16, 3) and arr.dtype == np.float32
    np.testing.assert_allclose(arr, pt.permute(0, 2, 3, 1).numpy())
    np.testing.assert_array_equal(np.asarray(pil[5]), (pt[5].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    M = model.config.tokenizer_config.num_gaussians
    assert gs["means"].shape == (6, M, 2) and gs["ids"].shape == (6, model.config.tokens_per_image)
    torch.testing.assert_close(model.image_tokenizer.decode_gaussians({k: v for k, v in gs.items() if k != "ids"}),
                               pt * 2 - 1, atol=1e-5, rtol=0)


def test_same_seed_same_images(t2i):
    a = t2i("a large red circle", generator=torch.Generator().manual_seed(3), output_type="pt")
    b = t2i("a large red circle", generator=torch.Generator().manual_seed(3), output_type="pt")
    c = t2i("a large red circle", generator=torch.Generator().manual_seed(4), output_type="pt")
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_text_to_image_bad_input(t2i, tiny_lm_dir, tmp_path):
    with pytest.raises(ValueError, match="empty"):
        t2i("")
    with pytest.raises(ValueError, match="prompt too long"):
        t2i("red circle " * 100)
    with pytest.raises(ValueError, match="guidance_scale"):
        t2i("a red circle", guidance_scale=0.3)
    with pytest.raises(ValueError, match="num_images_per_prompt"):
        t2i("a red circle", num_images_per_prompt=0)
    with pytest.raises(ValueError, match="output_type"):
        t2i("a red circle", output_type="jpeg")
    with pytest.raises(TypeError, match="unknown text-to-image argument"):
        t2i("a red circle", num_inference_steps=20)
    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM

    GaussianTokenForCausalLM.from_pretrained(tiny_lm_dir).image_tokenizer.save_pretrained(tmp_path / "tok")
    from gaussiantoken.runtime.model_dirs import PipelineModelError

    with pytest.raises(PipelineModelError, match="gaussian_tokenizer"):  # not buried in transformers' ValueError
        pipeline("text-to-image", model=str(tmp_path / "tok"), device="cpu")


def _images(model, processor):
    ids = generate_images(model, processor, PROMPTS, temperature=0.0)
    return [Image.fromarray(a) for a in ((model.decode_image_tokens(ids) + 1) * 127.5).round().byte()
            .permute(0, 2, 3, 1).numpy()]


def test_captioning_and_vqa_tasks(tiny_lm_dir, tiny_lm):
    model, processor = tiny_lm
    images = _images(model, processor)
    cap = pipeline("gaussiantoken-captioning", model=str(tiny_lm_dir), device="cpu")
    vqa = pipeline("gaussiantoken-vqa", model=str(tiny_lm_dir), device="cpu")
    expected = generate_text(model, processor, images, ["Describe the image."] * 2, max_new_tokens=6)
    assert [r["generated_text"] for r in cap(images, max_new_tokens=6)] == expected
    assert cap(images[0], max_new_tokens=6) == [{"generated_text": expected[0]}]
    q = "what color is the circle?"
    answer = generate_text(model, processor, images[:1], [q], max_new_tokens=4)[0]
    assert vqa(images[0], q, max_new_tokens=4) == [{"generated_text": answer}]
    with pytest.raises(TypeError, match="PIL image"):
        cap(12345)
    with pytest.raises(ValueError, match="could not read an image"):
        cap(str(tiny_lm_dir / "config.json"))
    with pytest.raises(ValueError, match="question"):
        vqa(images[0])
