"""The argument checks of the generation API, each in one place: `as_image_list` (the one image coercion of
generation and the captioning / VQA pipelines), `as_prompt_list`, `check_guidance_scale` (also the
evaluation config's), and the logits module's names re-exported by lm.generation."""

import pytest
import torch
from PIL import Image

import gaussiantoken.lm.generation as generation
import gaussiantoken.lm.logits as logits
from gaussiantoken.lm.generation import as_image_list, as_prompt_list, check_context
from gaussiantoken.lm.logits import check_guidance_scale


def test_as_image_list_accepts_each_form_and_says_if_one_was_bare(tmp_path):
    a, b = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("L", (5, 7))
    assert as_image_list(a) == ([a], True)
    assert as_image_list([a, b]) == ([a, b], False) and as_image_list((a,)) == ([a], False)
    batch = torch.rand(3, 3, 8, 8) * 2 - 1
    items, single = as_image_list(batch)
    assert not single and len(items) == 3 and torch.equal(torch.stack(items), batch)
    items, single = as_image_list(batch[0])
    assert single and len(items) == 1 and torch.equal(items[0], batch[0])
    assert as_image_list(list(batch))[0][1] is not None  # a list of [3, H, W] tensors (what the pipeline passes on)
    path = tmp_path / "red.png"
    a.save(path)
    items, single = as_image_list(str(path), paths=True)
    assert single and items[0].size == (8, 8) and items[0].getpixel((0, 0)) == (255, 0, 0)
    assert as_image_list([path, a], paths=True)[0][1] is a


@pytest.mark.parametrize("images, kwargs, error, words", [
    ("red.png", {}, TypeError, "must be a PIL image or a .*tensor, got str"),
    ([Image.new("RGB", (4, 4)), 3], {"paths": True}, TypeError, "PIL image, an image file path .* got int"),
    ([], {}, ValueError, "no images given"),
    (torch.zeros(2, 4, 8, 8), {}, ValueError, r"\[B, 3, H, W\]"),
    ([Image.new("RGB", (4, 4)), torch.zeros(3, 4, 4)], {}, TypeError, "not a mix"),
    ("missing.png", {"paths": True}, (ValueError, FileNotFoundError), "missing.png"),
])
def test_as_image_list_errors_name_the_problem(images, kwargs, error, words):
    with pytest.raises(error, match=words):
        as_image_list(images, **kwargs)


def test_prompt_guidance_and_context_checks():
    assert as_prompt_list("a red circle", "prompt") == ["a red circle"]
    with pytest.raises(ValueError, match="negative_prompt contains an empty string"):
        as_prompt_list(["a", " "], "negative_prompt")
    with pytest.raises(TypeError, match="prompt must hold strings"):
        as_prompt_list(["a", 3], "prompt")
    assert check_guidance_scale(1) == 1.0 and check_guidance_scale(2.5) == 2.5
    for bad in (0.5, float("nan"), float("inf"), True, "3"):
        with pytest.raises(ValueError, match="^guidance_scale must be a finite number >= 1"):
            check_guidance_scale(bad)
    with pytest.raises(ValueError, match="^config key 'x.guidance_scale' must be"):
        check_guidance_scale(0.9, name="config key 'x.guidance_scale'")

    class Config:
        max_position_embeddings = 10

    check_context(Config(), 6, 4)
    with pytest.raises(ValueError, match="6 prompt tokens \\+ 5 generated tokens exceed the model's context of 10"):
        check_context(Config(), 6, 5)
    # a text reply nobody asked a length for: TEXT_MAX_NEW_TOKENS, or what the context leaves (>= 1)
    from gaussiantoken.lm.generation import default_text_tokens
    from gaussiantoken.lm.sampling_defaults import TEXT_MAX_NEW_TOKENS

    class Long:
        max_position_embeddings = 1000

    assert default_text_tokens(Config(), 6) == 4 and default_text_tokens(Config(), 10) == 1
    assert default_text_tokens(Long(), 6) == TEXT_MAX_NEW_TOKENS == 96
    assert default_text_tokens(object(), 6) == TEXT_MAX_NEW_TOKENS  # no context length known


def test_generation_re_exports_the_logits_module():
    for name in logits.__all__:
        assert getattr(generation, name) is getattr(logits, name), name
