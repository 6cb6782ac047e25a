"""Captioning and VQA through transformers' pipelines: the stock task and our two explicit ones.

1. `pipeline("image-text-to-text", model=DIR)` is transformers' own `ImageTextToTextPipeline` over
   `GaussianTokenForImageTextToText` (lm/modeling.py: the LM checkpoint, text-only `generate`) and
   `GaussianTokenProcessor` (lm/processing.py). Everything its users pass works:
       pipe(images=img, text=request)                      # plain text, image goes first
       pipe(images=[a, b], text=["What color is the circle?", request])   # a batch
       pipe(text=[{"role": "user", "content": [{"type": "image", "image": img},
                                               {"type": "text", "text": "What color is the circle?"}]}])
   (`request`: a caption request, one of `lm.sequences.CAPTION_REQUESTS` such as "caption", or a question)
   with `return_full_text`, `max_new_tokens` and `generate_kwargs`. The processor formats plain text
   with our prompts (`lm.sequences.image_request_prompt`: a caption request -> the captioning prompt,
   anything else -> a VQA question) and renders chat messages with its saved `chat_template`
   (`lm.sequences.chat_template`), so the answers equal those of the tasks below. Text that already
   holds the "<image>" placeholder is taken as our raw prompt format.
2. `pipeline("gaussiantoken-captioning", model=DIR)(image)` -> [{"generated_text": caption}] and
   `pipeline("gaussiantoken-vqa", model=DIR)(image, "What color is the circle?")` -> [{"generated_text":
   answer}] (lists in input order for lists of images; images as `lm.generation.as_image_list` takes them,
   file paths included): prompts from lm.sequences, greedy decoding with `lm.generation.generate_text`.
   User text is text: a question containing <image>/<boi>/<eoi> is a ValueError naming it.

The tasks are registered by gaussiantoken/registration.py.
"""

from __future__ import annotations

import torch
from transformers import Pipeline

CAPTION_TASK = "gaussiantoken-captioning"
VQA_TASK = "gaussiantoken-vqa"


def __getattr__(name: str):
    if name == "GaussianTokenForImageTextToText":  # the model class lives with the LM (lm/modeling.py)
        from gaussiantoken.lm.modeling import GaussianTokenForImageTextToText

        return GaussianTokenForImageTextToText
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class GaussianTokenImageTextToTextPipeline(Pipeline):
    """image(s) [+ question(s)] -> caption / answer. `task` decides the prompt: captioning ignores the
    text (it always asks for the caption), VQA needs one question per image (or one for all)."""

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
        from gaussiantoken.lm.generation import as_image_list
        from gaussiantoken.lm.sequences import check_user_text

        images, single = as_image_list(images, paths=True)  # paths read here: errors name the file
        if self.task == VQA_TASK:
            questions = [text] if isinstance(text, str) else text
            if not questions or not isinstance(questions, (list, tuple)):
                raise ValueError("VQA needs a question (a string, or one per image)")
            if len(questions) == 1 and len(images) > 1:
                questions = list(questions) * len(images)
            if len(questions) != len(images):
                raise ValueError(f"got {len(images)} image(s) but {len(questions)} question(s)")
            for q in questions:
                if not isinstance(q, str):
                    raise TypeError(f"a question must be a str, got {type(q).__name__}")
                check_user_text(q, "question")
            prompts = list(questions)
        else:
            prompts = None  # generate_text's default: the captioning prompt for every image
        return {"images": images, "prompts": prompts, "single": single}

    def _forward(self, model_inputs, max_new_tokens=None, batch_size=32):  # None: generate_text's default
        from gaussiantoken.lm.generation import generate_text

        texts = generate_text(self.model, self.processor, model_inputs["images"], model_inputs["prompts"],
                              max_new_tokens=max_new_tokens, batch_size=batch_size)
        return {"texts": texts, "single": model_inputs["single"]}

    def postprocess(self, model_outputs):
        records = [{"generated_text": t} for t in model_outputs["texts"]]
        return records if not model_outputs["single"] else records[:1]


__all__ = ["CAPTION_TASK", "VQA_TASK", "GaussianTokenImageTextToTextPipeline", "GaussianTokenForImageTextToText"]
