"""Captioning and VQA: how our model is wired into transformers' pipelines.

1. `pipeline("image-text-to-text", model=DIR)` - the stock v5 `ImageTextToTextPipeline`. We register
   `GaussianTokenForImageTextToText` (the same checkpoint and weights as GaussianTokenForCausalLM; its
   `generate` can only produce text: image tokens, <boi>, <eoi>, <image> are masked) with
   `AutoModelForImageTextToText`, and the LM code registers our processor with `AutoProcessor`.
   What the stock pipeline cannot do for us: it hands the user's text VERBATIM to the processor
   (`processor(images=..., text=...)`), and our processor needs the "<image>" placeholder in the text
   (it raises when placeholders and images differ); its chat path needs a processor chat template,
   which our processor does not ship. So with the stock task the text must already be in our prompt
   format (`lm.sequences.caption_prompt()` = "<image>Describe the image.",
   `vqa_prompt(q)` = "<image>Question: {q} Answer:"), e.g.
       pipe(images=img, text="<image>Describe the image.", return_full_text=False)
2. So that plain text works, we also register two clearly named tasks with our own pipeline class:
   `pipeline("gaussiantoken-captioning", model=DIR)(image)` -> [{"generated_text": caption}] and
   `pipeline("gaussiantoken-vqa", model=DIR)(image, "What color is the circle?")` -> [{"generated_text": answer}]
   (lists in input order for lists of images). They format the prompt with lm.sequences and decode
   with `lm.generation.generate_text` (greedy, text-only).
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessorList, Pipeline

from gaussiantoken.lm.generation import TextOnlyLogitsProcessor
from gaussiantoken.lm.modeling import GaussianTokenForCausalLM

CAPTION_TASK = "gaussiantoken-captioning"
VQA_TASK = "gaussiantoken-vqa"


class GaussianTokenForImageTextToText(GaussianTokenForCausalLM):
    """GaussianTokenForCausalLM whose `generate` produces text only (for image-text-to-text)."""

    def generate(self, *args, logits_processor=None, **kwargs):
        processors = LogitsProcessorList(list(logits_processor or []))
        processors.append(TextOnlyLogitsProcessor.from_model(self))
        return super().generate(*args, logits_processor=processors, **kwargs)


def _load_images(images):
    """PIL image | path | list of those -> list of PIL images; anything else raises TypeError."""
    from PIL import Image

    single = not isinstance(images, (list, tuple))
    items = [images] if single else list(images)
    if not items:
        raise ValueError("no images given")
    out = []
    for item in items:
        if isinstance(item, str):
            try:
                item = Image.open(item)
                item.load()
            except (OSError, ValueError) as err:
                raise ValueError(f"could not read an image from {item!r}: {err}") from err
        if not isinstance(item, Image.Image):
            raise TypeError(f"expected a PIL image or an image file path, got {type(item).__name__}")
        out.append(item)
    return out, single


class GaussianTokenImageTextToTextPipeline(Pipeline):
    """image(s) [+ question(s)] -> caption / answer. `task` decides the prompt: captioning ignores the
    text (it always asks "Describe the image."), VQA needs one question per image."""

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False
    _pipeline_calls_generate = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from gaussiantoken.pipelines.text_to_image import check_and_place_model

        check_and_place_model(self)

    def _sanitize_parameters(self, max_new_tokens=None, batch_size=None, **kwargs):
        if kwargs:
            raise TypeError(f"unknown {self.task} argument(s): {sorted(kwargs)}")
        forward = {}
        if max_new_tokens is not None:
            forward["max_new_tokens"] = max_new_tokens
        if batch_size is not None:
            forward["batch_size"] = batch_size
        return {}, forward, {}

    def __call__(self, images, text=None, **kwargs):
        _, forward_params, _ = self._sanitize_parameters(**kwargs)
        model_inputs = self.preprocess(images, text)
        with torch.inference_mode():
            out = self._forward(model_inputs, **forward_params)
        return self.postprocess(out)

    def preprocess(self, images, text=None):
        images, single = _load_images(images)
        if self.task == VQA_TASK:
            questions = [text] if isinstance(text, str) else text
            if not questions or not isinstance(questions, (list, tuple)):
                raise ValueError("VQA needs a question (a string, or one per image)")
            if len(questions) == 1 and len(images) > 1:
                questions = list(questions) * len(images)
            if len(questions) != len(images):
                raise ValueError(f"got {len(images)} image(s) but {len(questions)} question(s)")
            prompts = list(questions)
        else:
            prompts = ["Describe the image."] * len(images)
        return {"images": images, "prompts": prompts, "single": single}

    def _forward(self, model_inputs, max_new_tokens=32, batch_size=32):
        from gaussiantoken.lm.generation import generate_text

        texts = generate_text(self.model, self.processor, model_inputs["images"], model_inputs["prompts"],
                              max_new_tokens=max_new_tokens, batch_size=batch_size)
        return {"texts": texts, "single": model_inputs["single"]}

    def postprocess(self, model_outputs):
        records = [{"generated_text": t} for t in model_outputs["texts"]]
        return records if not model_outputs["single"] else records[:1]


def register_tasks(registry) -> None:
    """Register our image-text-to-text model and the two explicit tasks (called by pipelines.register)."""
    from transformers import AutoModelForImageTextToText

    from gaussiantoken.lm.configuration import GaussianTokenLMConfig

    AutoModelForImageTextToText.register(GaussianTokenLMConfig, GaussianTokenForImageTextToText, exist_ok=True)
    for task in (CAPTION_TASK, VQA_TASK):
        registry.register_pipeline(task, pipeline_class=GaussianTokenImageTextToTextPipeline,
                                   pt_model=GaussianTokenForCausalLM, type="multimodal")
