"""LPIPS-style perceptual distance for evaluation: a re-export, no code of its own.

The implementation lives in `gaussiantoken/tokenizer/perceptual.py` (the tokenizer trains with the same
distance, and imports flow tokenizer <- eval): `PerceptualDistance(feature_net, linear_weights=None)`,
the `VGG16Features` / `AlexNetFeatures` backbones, `LPIPS(net)`, `normalize_channels`, and
`load_lpips(path, net=None, device=None)` for safetensors / torch (weights_only) files.
"""

from __future__ import annotations

from ..tokenizer.perceptual import (
    LPIPS,
    AlexNetFeatures,
    PerceptualDistance,
    VGG16Features,
    load_lpips,
    normalize_channels,
)

__all__ = ["PerceptualDistance", "VGG16Features", "AlexNetFeatures", "LPIPS", "load_lpips", "normalize_channels"]
