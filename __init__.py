"""GaussianToken: discrete image tokenization with 2D Gaussian splatting, and the multimodal LM on it.

Importing the package registers our models with transformers (registration.py, the only place that
registers anything): after `import gaussiantoken`, in any import order, AutoConfig, AutoModel,
AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer, AutoImageProcessor and
`transformers.pipeline("text-to-image" | "image-text-to-text" | "gaussiantoken-captioning" |
"gaussiantoken-vqa", model=DIR)` load our directories. No model code, kernel build or weights load at
import: the model classes are resolved by name on first use. Subpackages (`gaussiantoken.tokenizer`,
`.lm`, `.pipelines`, `.eval`, `.data`) load on first access.
"""

from __future__ import annotations

import importlib

from .registration import register as _register

__version__ = "0.1.0"
__all__ = ["tokenizer", "lm", "pipelines", "eval", "data", "__version__"]

if __name__ == "gaussiantoken":  # not when a tool imports this folder under another name (pytest's rootdir)
    _register()


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
