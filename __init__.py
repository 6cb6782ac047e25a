"""GaussianToken: discrete image tokenization with 2D Gaussian splatting, and the multimodal LM on it.

Importing the package is cheap: no kernel build, no model loading, not even transformers.
Subpackages (`gaussiantoken.tokenizer`, `.lm`, `.pipelines`, `.eval`, `.data`) load on first access.

The package root is the one place that hooks us into transformers: `pipelines.register()` makes our
auto classes (`gaussiantoken_lm`, `gaussian_tokenizer`) and pipeline tasks (`text-to-image`, our model
for `image-text-to-text`, `gaussiantoken-captioning`, `gaussiantoken-vqa`) known the moment
transformers loads its auto-model or pipeline modules (or at once, if it already has). So
`import gaussiantoken; transformers.pipeline("text-to-image", model=DIR)` works, and `import
gaussiantoken` alone does not pay for importing transformers.
"""

from __future__ import annotations

import importlib

from .pipelines import register as _register

__version__ = "0.1.0"
__all__ = ["tokenizer", "lm", "pipelines", "eval", "data", "__version__"]

_register()


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
