"""`GaussianTokenProcessor`: text tokenizer + GaussianTokenizerImageProcessor for the multimodal LM.

Owns turning (text with "<image>" placeholders, images or precomputed codes) into model inputs:
- each "<image>" id of the tokenized text is expanded to `<boi> + T x <image> + <eoi>` (T = tokens_per_image);
  with `images=` the pixel_values [N, 3, S, S] are returned and the model fills the <image> positions with
  the images' codes (Chameleon style); with `image_tokens=` (LOCAL codes from extract-codes, [N, T]) the span
  holds the codes directly (offset + local id) and no pixels are needed;
- the number of placeholders must equal the number of images (ValueError otherwise);
- batches are padded on the left by default (prompts to generate from; `padding_side="right"` too), with an
  attention_mask.

Plain text without placeholders (what users of the stock "image-text-to-text" task pass) is formatted
with our prompts, image first (`sequences.image_request_prompt`); chat messages go through the
processor's `chat_template` (`sequences.chat_template`), so `apply_chat_template(messages,
add_generation_prompt=True, tokenize=...)` works.

Saved with the LM: the tokenizer files, preprocessor_config.json (image processor),
processor_config.json (this class and its vocabulary layout) and chat_template.jinja.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from transformers import BatchFeature, ProcessorMixin

from gaussiantoken.lm.sequences import (
    BOI_TOKEN,
    EOI_TOKEN,
    IMAGE_TOKEN,
    REASON_SEPARATOR,
    VocabLayout,
    chat_template as default_chat_template,
    check_user_text,
    expand_image_placeholders,
    final_answer,
    image_request_prompt,
)

PROCESSOR_FILE = "processor_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"


class GaussianTokenProcessor(ProcessorMixin):
    """Processor of `GaussianTokenForCausalLM` (see the module docstring)."""

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        tokens_per_image: int | None = None,
        image_token_offset: int | None = None,
        image_vocab_size: int | None = None,
        chat_template=None,
        **kwargs,
    ):
        super().__init__(image_processor, tokenizer, chat_template=chat_template or default_chat_template())
        if tokens_per_image is None or image_vocab_size is None:
            raise ValueError("GaussianTokenProcessor needs tokens_per_image and image_vocab_size (from the LM config)")
        offset = len(tokenizer) if image_token_offset is None else int(image_token_offset)
        if offset != len(tokenizer):
            raise ValueError(
                f"text tokenizer has {len(tokenizer)} tokens but image_token_offset is {offset}: "
                "tokenizer/LM vocabulary mismatch"
            )
        self.tokens_per_image = int(tokens_per_image)
        self.image_token_offset = offset
        self.image_vocab_size = int(image_vocab_size)
        ids = tokenizer.convert_tokens_to_ids([BOI_TOKEN, EOI_TOKEN, IMAGE_TOKEN])
        if any(i is None or i == tokenizer.unk_token_id for i in ids):
            raise ValueError(f"the text tokenizer lacks the specials {BOI_TOKEN}, {EOI_TOKEN}, {IMAGE_TOKEN}")
        self.boi_token_id, self.eoi_token_id, self.image_token_id = ids
        self.image_token = IMAGE_TOKEN
        eos = tokenizer.eos_token_id
        self.layout = VocabLayout(
            image_token_offset=offset, image_vocab_size=self.image_vocab_size, tokens_per_image=self.tokens_per_image,
            boi_token_id=ids[0], eoi_token_id=ids[1], image_token_id=ids[2], bos_token_id=tokenizer.bos_token_id,
            eos_token_id=eos, pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
        )

    @classmethod
    def from_model_config(cls, config, tokenizer, image_processor=None) -> "GaussianTokenProcessor":
        """Build from a GaussianTokenLMConfig (checks that the tokenizer matches its vocabulary)."""
        if image_processor is None:
            from gaussiantoken.tokenizer import GaussianTokenizerImageProcessor

            image_processor = GaussianTokenizerImageProcessor(image_size=config.tokenizer_config.image_size)
        proc = cls(
            image_processor=image_processor, tokenizer=tokenizer, tokens_per_image=config.tokens_per_image,
            image_token_offset=config.image_token_offset, image_vocab_size=config.image_vocab_size,
        )
        check_processor_matches(proc, config)
        return proc

    # ------------------------------------------------------------------ main entry
    def __call__(
        self,
        images=None,
        text=None,
        image_tokens=None,
        return_tensors: str | None = "pt",
        padding: bool | str = True,
        add_special_tokens: bool = True,
        padding_side: str = "left",
        **kwargs,
    ) -> BatchFeature:
        """text: str or list[str]; images: PIL images / arrays / paths (flat, or one list per text) or
        image_tokens: local codes [N, T]. Returns input_ids, attention_mask (+ pixel_values with images).

        Text with "<image>" placeholders is our prompt format, used as is (placeholders in order over the
        batch = images in order). Plain text (no placeholder in any text) is a user's request: each text
        gets its images first and is formatted by `sequences.image_request_prompt` (caption request ->
        captioning prompt, anything else -> a VQA question); one image per text, or all images for a
        single text; text=None with images means "caption each image". Rows are padded on the left by default
(these are prompts to generate from). Kwargs that the stock pipelines
        and `apply_chat_template` pass for other modalities (videos=None, ...) are ignored."""
        if images is not None and image_tokens is not None:
            raise ValueError("give either images or image_tokens, not both")
        nested = _nested_images(images)
        images = _flatten_images(images)
        n_images = len(images) if images is not None else (len(image_tokens) if image_tokens is not None else 0)
        if text is None:
            if not n_images:
                raise ValueError("text is required (a prompt, or images to caption)")
            text = [None] * n_images
        texts = [text] if isinstance(text, str) else list(text)
        if not all(t is None or isinstance(t, str) for t in texts):
            raise TypeError("text must be a str or a list of str")
        if n_images and not any(t is not None and IMAGE_TOKEN in t for t in texts):
            texts = _requests_to_prompts(texts, nested, n_images)
        n_placeholders = sum(t.count(IMAGE_TOKEN) for t in texts)
        if n_placeholders != n_images:
            raise ValueError(
                f"text has {n_placeholders} {IMAGE_TOKEN} placeholder(s) but {n_images} image(s) were given"
                f"{'' if n_images else ' (user text cannot contain ' + IMAGE_TOKEN + ')'}"
            )
        codes_per_text = None
        if image_tokens is not None:
            codes = torch.as_tensor(image_tokens).tolist() if not isinstance(image_tokens, list) else image_tokens
            codes_per_text, k = [], 0
            for t in texts:
                n = t.count(IMAGE_TOKEN)
                codes_per_text.append(codes[k:k + n])
                k += n
        bos = self.layout.bos_token_id
        rows = []
        for i, t in enumerate(texts):
            ids = list(self.tokenizer(t, add_special_tokens=add_special_tokens)["input_ids"])
            if add_special_tokens and bos is not None and (not ids or ids[0] != bos):
                ids = [bos] + ids  # as in training (sequences._prompt_ids)
            rows.append(expand_image_placeholders(ids, self.layout, None if codes_per_text is None else codes_per_text[i]))
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        data = self._pad(rows, padding, padding_side)
        if images is not None and len(images) > 0:
            data["pixel_values"] = self.image_processor(images, return_tensors="pt")["pixel_values"]
        return BatchFeature(data=data, tensor_type=return_tensors)

    def apply_chat_template(self, conversation, chat_template=None, **kwargs):
        """As ProcessorMixin.apply_chat_template (our template by default, see sequences.chat_template);
        user text containing <boi>/<eoi>/<image> is a ValueError (user text is text)."""
        conversations = conversation if conversation and isinstance(conversation[0], (list, tuple)) else [conversation]
        for chat in conversations:
            for message in getattr(chat, "messages", chat):
                content = message.get("content") if isinstance(message, dict) else None
                parts = [content] if isinstance(content, str) else [
                    p.get("text") for p in (content or []) if isinstance(p, dict) and p.get("type") == "text"]
                for part in parts:
                    if isinstance(part, str):
                        check_user_text(part, f"{message.get('role', 'message')} text")
        return super().apply_chat_template(conversation, chat_template=chat_template, **kwargs)

    def _pad(self, rows: list[list[int]], padding, padding_side: str) -> dict:
        lengths = [len(r) for r in rows]
        if not padding or padding == "do_not_pad":
            if len(set(lengths)) > 1:
                raise ValueError("rows have different lengths; use padding=True to batch them")
        width = max(lengths)
        pad = self.layout.pad_token_id
        left = padding_side == "left"
        input_ids, mask = [], []
        for r in rows:
            fill = width - len(r)
            input_ids.append(([pad] * fill + r) if left else (r + [pad] * fill))
            mask.append(([0] * fill + [1] * len(r)) if left else ([1] * len(r) + [0] * fill))
        return {"input_ids": input_ids, "attention_mask": mask}

    # ------------------------------------------------------------------ outputs
    def image_token_ids_to_local(self, ids: torch.Tensor) -> torch.Tensor:
        """LM ids of image tokens -> local tokenizer ids (validated)."""
        ids = torch.as_tensor(ids)
        lo, hi = self.image_token_offset, self.image_token_offset + self.image_vocab_size
        if bool(((ids < lo) | (ids >= hi)).any()):
            raise ValueError(f"image token ids must lie in [{lo}, {hi})")
        return ids - lo

    def post_process_image_text_to_text(self, generated_outputs, skip_special_tokens=True, **kwargs):
        """Decode as ProcessorMixin does; a describe-then-answer reply keeps only its answer (the text after the
        last ", so ", `lm.sequences.final_answer`), as `generate_text` returns it. The stock image-text-to-text
        pipeline decodes the prompt the same way, finds it no longer in front, and so returns the answer."""
        texts = super().post_process_image_text_to_text(generated_outputs, skip_special_tokens=skip_special_tokens,
                                                        **kwargs)

        def answer(text: str) -> str:
            return final_answer(text) if REASON_SEPARATOR in text else text

        return answer(texts) if isinstance(texts, str) else [answer(t) for t in texts]

    def postprocess(self, pixel_values, output_type: str = "pil"):
        """Decoded pixels [B, 3, H, W] in [-1, 1] -> PIL images / arrays (via the image processor)."""
        return self.image_processor.postprocess(pixel_values, output_type=output_type)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        """Tokenizer files + preprocessor_config.json + processor_config.json into `save_directory`."""
        os.makedirs(save_directory, exist_ok=True)
        self.tokenizer.save_pretrained(save_directory)
        self.image_processor.save_pretrained(save_directory)
        payload = {
            "processor_class": type(self).__name__,
            "tokens_per_image": self.tokens_per_image,
            "image_token_offset": self.image_token_offset,
            "image_vocab_size": self.image_vocab_size,
        }
        path = os.path.join(save_directory, PROCESSOR_FILE)
        with open(path, "w") as fh:
            json.dump(payload, fh, indent=2)
        template = os.path.join(save_directory, CHAT_TEMPLATE_FILE)
        with open(template, "w") as fh:
            fh.write(self.chat_template)
        return [path, template]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> "GaussianTokenProcessor":
        """Load from a saved LM (or processor) directory; a tokenizer-only dir raises ValueError."""
        from transformers import AutoTokenizer

        from gaussiantoken.tokenizer import GaussianTokenizerImageProcessor

        path = Path(pretrained_model_name_or_path)
        proc_file = path / PROCESSOR_FILE
        if not proc_file.is_file():
            raise ValueError(
                f"{path} has no {PROCESSOR_FILE}: not a gaussiantoken_lm directory (an image tokenizer dir or a "
                "plain backbone cannot be loaded as a GaussianTokenProcessor)"
            )
        payload = json.loads(proc_file.read_text())
        if payload.get("processor_class") != cls.__name__:
            raise ValueError(f"{proc_file} is for {payload.get('processor_class')!r}, not {cls.__name__}")
        tokenizer = AutoTokenizer.from_pretrained(path)
        image_processor = GaussianTokenizerImageProcessor.from_pretrained(path)
        template_file = path / CHAT_TEMPLATE_FILE  # absent in directories saved before it existed: the default
        return cls(
            image_processor=image_processor, tokenizer=tokenizer, tokens_per_image=payload["tokens_per_image"],
            image_token_offset=payload["image_token_offset"], image_vocab_size=payload["image_vocab_size"],
            chat_template=template_file.read_text() if template_file.is_file() else None,
        )


def check_processor_matches(processor: GaussianTokenProcessor, config) -> None:
    """Raise ValueError when a processor and an LM config disagree on the vocabulary layout."""
    pairs = {
        "image_token_offset": (processor.image_token_offset, config.image_token_offset),
        "image_vocab_size": (processor.image_vocab_size, config.image_vocab_size),
        "tokens_per_image": (processor.tokens_per_image, config.tokens_per_image),
        "boi_token_id": (processor.boi_token_id, config.boi_token_id),
        "eoi_token_id": (processor.eoi_token_id, config.eoi_token_id),
        "image_token_id": (processor.image_token_id, config.image_token_id),
    }
    bad = {k: v for k, v in pairs.items() if v[0] != v[1]}
    if bad:
        details = ", ".join(f"{k}: processor {a} vs model {b}" for k, (a, b) in bad.items())
        raise ValueError(f"tokenizer/LM vocabulary mismatch ({details})")


def _requests_to_prompts(texts: list, nested: list | None, n_images: int) -> list[str]:
    """Plain requests (no placeholders) -> prompts with their images first (see `__call__`)."""
    if nested is not None and len(nested) == len(texts):
        counts = [len(group) for group in nested]
    elif n_images == len(texts):
        counts = [1] * len(texts)
    elif len(texts) == 1:
        counts = [n_images]
    else:
        raise ValueError(f"got {len(texts)} text(s) and {n_images} image(s): give one image per text, all images "
                         f"for one text, or one list of images per text")
    prompts = []
    for t, n in zip(texts, counts):
        if n < 1:
            raise ValueError("each text needs at least one image (or use <image> placeholders)")
        prompts.append(IMAGE_TOKEN * (n - 1) + image_request_prompt(t))
    return prompts


def _nested_images(images):
    """One list of images per text when `images` is a list of lists, else None."""
    if isinstance(images, (list, tuple)) and images and all(isinstance(i, (list, tuple)) for i in images):
        return [list(i) for i in images]
    return None


def _load(item):
    """Image paths/URLs (chat messages may carry them) -> PIL images; other items pass through."""
    if isinstance(item, str):
        from transformers.image_utils import load_image

        return load_image(item)
    return item


def _flatten_images(images):
    """None | image | list[image] | list[list[image]] -> flat list (or None)."""
    if images is None:
        return None
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return list(images)
    if not isinstance(images, (list, tuple)):
        return [_load(images)]
    flat = []
    for item in images:
        if isinstance(item, (list, tuple)):
            flat.extend(_load(i) for i in item)
        else:
            flat.append(_load(item))
    return flat


__all__ = ["GaussianTokenProcessor", "check_processor_matches"]
