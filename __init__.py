"""GaussianToken: discrete image tokenization with 2D Gaussian splatting, and the multimodal LM on it.

Importing the package is cheap: no kernel build, no model loading. Subpackages
(`gaussiantoken.tokenizer`, `.lm`, `.pipelines`, `.eval`, `.data`) load on first access. The
package root is the one place that registers our transformers auto classes and pipeline tasks
(`text-to-image`, and our model for `image-text-to-text`); that happens on first use of
`transformers.pipeline` through `gaussiantoken.pipelines.register()`, which is called here.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"
__all__ = ["tokenizer", "lm", "pipelines", "eval", "data", "__version__"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
