"""Stage one: the GaussianToken tokenizer (images <-> 2D Gaussians <-> discrete tokens).

Light at import: heavy modules load on first attribute access.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "splat": ".render",
    "GaussianTokenizerConfig": ".configuration",
    "GaussianTokenizer": ".modeling",
    "GaussianTokenizerOutput": ".modeling",
    "GridVQConfig": ".grid_vq_config",
    "GridVQTokenizer": ".grid_vq",
    "TokenSlot": ".geometry",
    "GaussianTokenizerImageProcessor": ".image_processing",
    "draw_gaussians": ".visualize",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = list(_LAZY)
