"""Differentiable 2D Gaussian splatting: the one switch point between backends.

`splat(means, scales, rotations, features, height, width, opacities=None, backend="auto")`
renders [B, M] Gaussians into a [B, C, H, W] feature map by the plain-sum rule that
`reference.py` specifies (DESIGN.md section 3). Backends:

- "torch": the chunked PyTorch reference (CPU and GPU, autograd).
- "cuda": the CUDA extension (`cuda.py`, sources in `csrc/`), built lazily on first use.
- "auto": "cuda" for CUDA inputs when the extension loads, else "torch".

Inputs are validated here, in Python, before any kernel runs.
"""

from __future__ import annotations

import torch

from .reference import ALPHA_CUTOFF, pixel_centers, splat_reference

BACKENDS = ("auto", "torch", "cuda")


def _inputs_ok(means, scales, rotations, features, height, width, opacities) -> bool:
    """Fast path of `_check_inputs`: True when everything is plainly valid (one dtype, one device)."""
    if type(height) is not int or type(width) is not int or height <= 0 or width <= 0:
        return False
    if not isinstance(features, torch.Tensor) or features.dim() != 3 or not features.is_floating_point():
        return False
    B, M, C = features.shape
    dtype, device = features.dtype, features.device
    for t, shape in ((means, (B, M, 2)), (scales, (B, M, 2)), (rotations, (B, M)), (opacities, (B, M))):
        if t is None and shape == (B, M) and opacities is None:
            continue
        if not isinstance(t, torch.Tensor) or t.shape != shape or t.dtype != dtype or t.device != device:
            return False
    return C > 0


def _check_inputs(means, scales, rotations, features, height, width, opacities) -> None:
    if _inputs_ok(means, scales, rotations, features, height, width, opacities):
        return
    tensors = {"means": means, "scales": scales, "rotations": rotations, "features": features}
    if opacities is not None:
        tensors["opacities"] = opacities
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if features.dim() != 3:
        raise ValueError(f"features must be [B, M, C], got shape {tuple(features.shape)}")
    B, M, C = features.shape
    if C == 0:
        raise ValueError("features must have at least one channel (C > 0)")
    expected = {"means": (B, M, 2), "scales": (B, M, 2), "rotations": (B, M), "opacities": (B, M)}
    for name, shape in expected.items():
        if name not in tensors:
            continue
        t = tensors[name]
        if t.dim() != len(shape):
            raise ValueError(f"{name} must have {len(shape)} dims {list(shape)}, got shape {tuple(t.shape)}")
        if tuple(t.shape) != shape:
            raise ValueError(
                f"{name} has shape {tuple(t.shape)} but features [B={B}, M={M}, C={C}] require {shape}"
                " (mismatched batch or Gaussian count)"
            )
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        raise ValueError(f"all inputs must be on one device, got {devices}")
    dtypes = {name: t.dtype for name, t in tensors.items()}
    if len(set(dtypes.values())) > 1 and not torch.is_autocast_enabled(features.device.type):
        raise ValueError(f"all inputs must share one dtype (or run under autocast), got {dtypes}")


def splat(
    means: torch.Tensor,  # [B, M, 2] (x, y) in [-1, 1]
    scales: torch.Tensor,  # [B, M, 2] std devs along the Gaussian's axes, > 0
    rotations: torch.Tensor,  # [B, M] radians
    features: torch.Tensor,  # [B, M, C]
    height: int,
    width: int,
    opacities: torch.Tensor | None = None,  # [B, M] or None (= 1)
    backend: str = "auto",
) -> torch.Tensor:  # [B, C, H, W]
    """Render 2D Gaussians into a feature map (see the module docstring and DESIGN.md section 3)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    _check_inputs(means, scales, rotations, features, height, width, opacities)
    if backend == "auto":
        backend = "torch"
        if features.is_cuda:
            from . import cuda

            if cuda._READY or cuda.cuda_status().available:
                backend = "cuda"
    if backend == "cuda":
        from .cuda import splat_cuda

        return splat_cuda(means, scales, rotations, features, height, width, opacities)
    return splat_reference(means, scales, rotations, features, height, width, opacities)


__all__ = ["splat", "splat_reference", "pixel_centers", "ALPHA_CUTOFF", "BACKENDS"]
