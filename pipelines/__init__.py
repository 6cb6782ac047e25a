"""Use of the trained models: HF pipelines, the CLI commands and their registration with transformers.

`register()` (called by the package root at import) makes
- `transformers.pipeline("text-to-image", model=DIR)` -> `TextToImagePipeline` (text_to_image.py), and
- `transformers.pipeline("image-text-to-text", model=DIR)` work for our checkpoints (our config/model/
  processor registered with AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText and
  AutoProcessor; see image_text_to_text.py for how captioning/VQA are wired), plus our own explicit tasks
  "gaussiantoken-captioning" and "gaussiantoken-vqa" (image_text_to_text.py).

`register()` is cheap and idempotent: importing `transformers.pipelines` costs seconds, so when it is
not imported yet we only install an import hook that registers everything right after
`transformers.pipelines` finishes importing (which `transformers.pipeline(...)` always does). When it is
already imported we register at once.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys

_TRIGGER = "transformers.pipelines"
_done = False
_hook_installed = False

_LAZY = {
    "TextToImagePipeline": ".text_to_image",
    "GaussianTokenImageTextToTextPipeline": ".image_text_to_text",
    "GaussianTokenForImageTextToText": ".image_text_to_text",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _register_now() -> None:
    """Register the auto classes and the pipeline tasks (imports the model code)."""
    global _done
    if _done:
        return
    from transformers.pipelines import PIPELINE_REGISTRY

    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM, register_auto_classes
    from gaussiantoken.pipelines.image_text_to_text import register_tasks
    from gaussiantoken.pipelines.text_to_image import TextToImagePipeline

    register_auto_classes()
    _register_image_tokenizer()
    PIPELINE_REGISTRY.register_pipeline(
        "text-to-image", pipeline_class=TextToImagePipeline, pt_model=GaussianTokenForCausalLM, type="multimodal"
    )
    register_tasks(PIPELINE_REGISTRY)
    _done = True


def _register_image_tokenizer() -> None:
    """AutoConfig/AutoModel know 'gaussian_tokenizer' too, so a tokenizer directory given where an LM is
    expected fails with an error naming both kinds instead of 'unrecognized model'."""
    from transformers import AutoConfig, AutoModel

    from gaussiantoken.tokenizer import GaussianTokenizer, GaussianTokenizerConfig

    AutoConfig.register(GaussianTokenizerConfig.model_type, GaussianTokenizerConfig, exist_ok=True)
    AutoModel.register(GaussianTokenizerConfig, GaussianTokenizer, exist_ok=True)


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the loader of `transformers.pipelines` to register after it runs."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _TRIGGER or _done:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            _register_now()

        spec.loader.exec_module = exec_then_register
        return spec


def register() -> None:
    """Make our tasks and auto classes known to transformers (cheap, idempotent; see module doc)."""
    global _hook_installed
    if _done:
        return
    if _TRIGGER in sys.modules:
        _register_now()
        return
    if not _hook_installed:
        sys.meta_path.insert(0, _RegisterAfterImport())
        _hook_installed = True


__all__ = ["register", "TextToImagePipeline", "GaussianTokenImageTextToTextPipeline", "GaussianTokenForImageTextToText"]
