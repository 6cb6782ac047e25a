"""Stage two: the multimodal LM (vocabulary extension, processor, model, sequences, code extraction,
DeepSpeed training).

Light at import: heavy modules load on first attribute access. `register_auto_classes()` registers
AutoConfig / AutoModelForCausalLM / AutoProcessor for model_type "gaussiantoken_lm" (cheap, idempotent).
"""

from __future__ import annotations

import importlib

_LAZY = {
    "GaussianTokenLMConfig": ".configuration",
    "GaussianTokenForCausalLM": ".modeling",
    "GaussianTokenProcessor": ".processing",
    "check_processor_matches": ".processing",
    "VocabLayout": ".sequences",
    "text_to_image_prompt": ".sequences",
    "unconditional_prompt": ".sequences",
    "caption_prompt": ".sequences",
    "vqa_prompt": ".sequences",
    "load_codes": ".extract",
}

__all__ = [*_LAZY, "register_auto_classes"]


def register_auto_classes() -> None:
    """Register the LM's config/model/processor with the transformers Auto classes."""
    from .modeling import register_auto_classes as _register

    _register()


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
