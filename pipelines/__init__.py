"""Use of the trained models: HF pipelines, the CLI commands and the demo.

- `transformers.pipeline("text-to-image", model=DIR)` -> `TextToImagePipeline` (text_to_image.py);
- `transformers.pipeline("image-text-to-text", model=DIR)` -> the stock pipeline over our
  `GaussianTokenForImageTextToText` and `GaussianTokenProcessor` (plain text or chat messages;
  image_text_to_text.py explains the wiring);
- our explicit tasks "gaussiantoken-captioning" and "gaussiantoken-vqa" (image_text_to_text.py).

All of them are registered with transformers by gaussiantoken/registration.py, which the package root
runs at import; nothing here registers anything.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "TextToImagePipeline": ".text_to_image",
    "GaussianTokenImageTextToTextPipeline": ".image_text_to_text",
    "GaussianTokenForImageTextToText": ".image_text_to_text",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
