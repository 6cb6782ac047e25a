"""Stage two: the multimodal LM (vocabulary extension, processor, model, sequences, code extraction,
DeepSpeed training).

Light at import: heavy modules load on first attribute access (transformers' auto classes resolve our
model classes from this package by name; gaussiantoken/registration.py registers them).
"""

from __future__ import annotations

import importlib

_LAZY = {
    "GaussianTokenLMConfig": ".configuration",
    "GaussianTokenForCausalLM": ".modeling",
    "GaussianTokenForImageTextToText": ".modeling",
    "GaussianTokenProcessor": ".processing",
    "check_processor_matches": ".processing",
    "VocabLayout": ".sequences",
    "text_to_image_prompt": ".sequences",
    "unconditional_prompt": ".sequences",
    "caption_prompt": ".sequences",
    "vqa_prompt": ".sequences",
    "load_codes": ".extract",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
