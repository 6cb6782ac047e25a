"""Differentiable 2D Gaussian splatting: the one switch point between backends.

`splat(means, scales, rotations, features, height, width, opacities=None, backend="auto")`
renders [B, M] Gaussians into a [B, C, H, W] feature map by the plain-sum rule that
`reference.py` specifies (docs/splatting.md). Backends:

- "torch": the chunked PyTorch reference (CPU and GPU, autograd).
- "cuda": the CUDA extension (`cuda.py`, sources in `csrc/`), built lazily on first use.
- "auto": "cuda" for CUDA inputs when the extension loads, else "torch".

Inputs are validated here, in Python, before any kernel runs:
- always (metadata only, no device sync): types, shapes, one device, one dtype, positive sizes, and
  the output's size against the memory available (a clear MemoryError instead of the OOM killer);
- values (`validate=`): scales > 0 and finite, means / rotations / features / opacities finite. A value
  check reads the tensors back to the host, so `validate=None` (the default) checks on the reference
  path (CPU inputs, where reading back is free) and skips on CUDA (no host sync in a training step);
  `validate=True` checks on any device (debugging), `validate=False` never.
Zero Gaussians (M == 0) or an empty batch render to zeros.
"""

from __future__ import annotations

import torch

from .reference import ALPHA_CUTOFF, pixel_centers, splat_reference

BACKENDS = ("auto", "torch", "cuda")
_CHECK_MEMORY_ABOVE = 1 << 28  # bytes of output below which the memory estimate is not worth a query


def _available_bytes(device: torch.device) -> int | None:
    """Free memory on `device` (CUDA: the allocator's view; CPU: MemAvailable), None when unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free) + int(torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _check_output_size(B: int, C: int, height: int, width: int, dtype: torch.dtype, device: torch.device) -> None:
    need = B * C * height * width * torch.empty((), dtype=dtype).element_size()
    if need <= _CHECK_MEMORY_ABOVE:
        return
    free = _available_bytes(device)
    if free is not None and need > free:
        raise MemoryError(f"splat output [B={B}, C={C}, H={height}, W={width}] would take {need / 2**30:.1f} GiB, "
                          f"more than the {free / 2**30:.1f} GiB available on {device}; render fewer or smaller images")


def _check_values(means, scales, rotations, features, opacities) -> None:
    """The value contract (see module docstring); reads the tensors back to the host."""
    if scales.numel() and not bool((scales > 0).all()):  # NaN compares False, so it is caught here too
        bad = scales[~(scales > 0)]
        raise ValueError(f"scales must be > 0 and finite (the Gaussians' standard deviations); got "
                         f"{bad.numel()} invalid value(s), e.g. {float(bad[0])}")
    tensors = {"scales": scales, "means": means, "rotations": rotations, "features": features}
    if opacities is not None:
        tensors["opacities"] = opacities
    for name, t in tensors.items():
        if t.numel() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or infinite values")


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
    validate: bool | None = None,  # value checks: None = on CPU inputs only (no host sync on CUDA)
) -> torch.Tensor:  # [B, C, H, W]
    """Render 2D Gaussians into a feature map (see the module docstring and docs/splatting.md)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    _check_inputs(means, scales, rotations, features, height, width, opacities)
    B, M, C = features.shape
    _check_output_size(B, C, height, width, features.dtype, features.device)
    if validate or (validate is None and not features.is_cuda):
        _check_values(means, scales, rotations, features, opacities)
    if M == 0 or B == 0:  # nothing to draw: zeros (still connected to the inputs for autograd)
        return features.new_zeros(B, C, height, width) + 0.0 * features.sum()
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
