"""The CUDA splatting backend: torch.library custom ops over the lazily built extension in `csrc/`.

Public: `cuda_status()` (is the backend usable here, and if not, why) and `splat_cuda(...)` (the
`splat` contract of docs/splatting.md on CUDA tensors). The kernels are registered as the custom
ops `gaussiantoken::splat_fwd` and `gaussiantoken::splat_bwd` (with fake implementations and an
autograd formula), so `torch.compile(fullgraph=True)` traces through them as single opaque nodes.

Backward variants (env var `GAUSSIANTOKEN_SPLAT_BWD`, read at each backward call):
- "tile" (default): per-(image, 16x16 tile) partial sums over the tile's culled Gaussians, with
  dL/dout staged in shared memory once per tile, then a fixed-order reduction over tiles per Gaussian.
- "gaussian": the first version, one warp per Gaussian walking its box (kept as a fallback).
Both are deterministic (no float atomics) and compute the same gradients up to float32 rounding.

Call path: in eager mode `splat_cuda` goes through a plain `torch.autograd.Function` that calls the
extension directly (the least Python per call); under `torch.compile` it calls the custom ops.

Precision: the kernels compute and accumulate in float32. Inputs of any floating dtype (fp16/bf16
under autocast, float64) are cast to float32 here; the output has the features' dtype, like the
reference backend, and gradients flow back in each input's own dtype. Second derivatives are not
supported. Nothing is compiled at import: the extension is built on the first CUDA call (build.py).
"""

import dataclasses
import os
from typing import Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

DEFAULT_TILE = (16, 16)  # (tile_w, tile_h): one thread per pixel, one block per (tile, image)
BWD_ENV = "GAUSSIANTOKEN_SPLAT_BWD"
BWD_VARIANTS = {"gaussian": 0, "tile": 1}


@dataclasses.dataclass(frozen=True)
class CudaStatus:
    available: bool
    reason: str  # why not, or what was loaded


_BUILD_STATUS: Optional[CudaStatus] = None
_READY = False  # set once a call found the backend available: later calls skip the status check
_MODULE = None


def cuda_status(device=None) -> CudaStatus:
    """Whether the CUDA backend can run (for tensors on `device`, if given); builds on first call on a GPU."""
    global _BUILD_STATUS
    if device is not None and torch.device(device).type != "cuda":
        return CudaStatus(False, f"inputs are on {torch.device(device)}; the cuda backend needs CUDA tensors")
    if not torch.cuda.is_available():
        return CudaStatus(
            False,
            f"torch.cuda.is_available() is False (torch {torch.__version__}, CUDA build {torch.version.cuda})",
        )
    if _BUILD_STATUS is not None:
        return _BUILD_STATUS
    from torch.utils.cpp_extension import CUDA_HOME, is_ninja_available

    if CUDA_HOME is None:
        return CudaStatus(False, "no CUDA toolkit found (nvcc; set CUDA_HOME) to build the extension")
    if not is_ninja_available():
        return CudaStatus(False, "ninja is not installed; it is needed to build the extension")
    try:
        from .build import load_extension

        module = load_extension()
        _BUILD_STATUS = CudaStatus(True, f"extension {module.__name__} loaded")
    except Exception as exc:  # a compiler or loader failure: report it, fall back in "auto"
        lines = str(exc).strip().splitlines()
        _BUILD_STATUS = CudaStatus(False, f"extension build failed: {type(exc).__name__}: {' | '.join(lines[-5:])}")
    return _BUILD_STATUS


def extension():
    """The compiled splatting extension module (built / loaded once, on first call)."""
    global _MODULE
    if _MODULE is None:
        from .build import load_extension

        _MODULE = load_extension()
    return _MODULE


def backward_variant() -> int:
    """The backward kernel to use: GAUSSIANTOKEN_SPLAT_BWD = "gaussian" (default) or "tile".

    "gaussian" (warp per Gaussian) is the variant verified on an H200. "tile" (per-tile partial sums,
    dL/dout read once per tile) is compile-checked and its bookkeeping is emulated on CPU in the tests,
    but it has not yet run on a GPU: opt in, and run `pytest -m cuda` first.
    """
    name = os.environ.get(BWD_ENV, "gaussian") or "gaussian"
    try:
        return BWD_VARIANTS[name]
    except KeyError:
        raise ValueError(f"{BWD_ENV} must be one of {sorted(BWD_VARIANTS)}, got {name!r}") from None


@torch.library.custom_op("gaussiantoken::splat_fwd", mutates_args=())
def splat_fwd(
    means: Tensor,  # [B, M, 2] float32
    scales: Tensor,  # [B, M, 2]
    rotations: Tensor,  # [B, M]
    features: Tensor,  # [B, M, C]
    opacities: Tensor,  # [B, M]
    height: int,
    width: int,
    tile_w: int,
    tile_h: int,
) -> Tensor:  # [B, C, H, W] float32
    return extension().forward(means, scales, rotations, features, opacities, height, width, tile_w, tile_h)


@splat_fwd.register_fake
def _splat_fwd_fake(means, scales, rotations, features, opacities, height, width, tile_w, tile_h):
    B, M, C = features.shape
    return features.new_empty((B, C, height, width))


@torch.library.custom_op("gaussiantoken::splat_bwd", mutates_args=())
def splat_bwd(
    grad_out: Tensor,  # [B, C, H, W] float32
    means: Tensor,
    scales: Tensor,
    rotations: Tensor,
    features: Tensor,
    opacities: Tensor,
    height: int,
    width: int,
    variant: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    grads = extension().backward(grad_out, means, scales, rotations, features, opacities, height, width, variant)
    return tuple(grads)


@splat_bwd.register_fake
def _splat_bwd_fake(grad_out, means, scales, rotations, features, opacities, height, width, variant):
    return tuple(torch.empty_like(t) for t in (means, scales, rotations, features, opacities))


def _setup_context(ctx, inputs, output):
    means, scales, rotations, features, opacities, height, width, _tw, _th = inputs
    ctx.save_for_backward(means, scales, rotations, features, opacities)
    ctx.size = (height, width)


def _as_f32(t: Tensor) -> Tensor:
    """t itself when already contiguous float32 (no dispatcher round trip), else a float32 copy."""
    return t if t.dtype == torch.float32 and t.is_contiguous() else t.float().contiguous()


def _backward(ctx, grad_out):
    means, scales, rotations, features, opacities = ctx.saved_tensors
    grads = splat_bwd(_as_f32(grad_out), means, scales, rotations, features, opacities, *ctx.size, backward_variant())
    return (*grads, None, None, None, None)


splat_fwd.register_autograd(_backward, setup_context=_setup_context)


class _SplatFunction(torch.autograd.Function):
    """Eager-mode path: the same kernels as the custom ops, without the custom-op Python layers."""

    @staticmethod
    def forward(ctx, means, scales, rotations, features, opacities, height, width, tile_w, tile_h):
        ctx.save_for_backward(means, scales, rotations, features, opacities)
        ctx.size = (height, width)
        return extension().forward(means, scales, rotations, features, opacities, height, width, tile_w, tile_h)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        means, scales, rotations, features, opacities = ctx.saved_tensors
        grads = extension().backward(
            _as_f32(grad_out), means, scales, rotations, features, opacities, *ctx.size, backward_variant()
        )
        return (*grads, None, None, None, None)


def splat_cuda(
    means: Tensor,  # [B, M, 2]
    scales: Tensor,  # [B, M, 2]
    rotations: Tensor,  # [B, M]
    features: Tensor,  # [B, M, C]
    height: int,
    width: int,
    opacities: Optional[Tensor] = None,  # [B, M] or None (= 1)
    tile: tuple = DEFAULT_TILE,  # (tile_w, tile_h); tile_w * tile_h a multiple of 32, <= 1024
) -> Tensor:  # [B, C, H, W], the features' dtype
    """Render on the GPU (inputs validated by `render.splat`); raises RuntimeError when unusable."""
    global _READY
    if not features.is_cuda:
        raise RuntimeError(f"backend='cuda' needs CUDA tensors, got inputs on {features.device}")
    if tile is DEFAULT_TILE:
        tile_w, tile_h = DEFAULT_TILE
    else:
        tile_w, tile_h = (int(t) for t in tile)
        if tile_w <= 0 or tile_h <= 0 or (tile_w * tile_h) % 32 or tile_w * tile_h > 1024:
            raise ValueError(f"tile must be (w, h) with w*h a positive multiple of 32 and <= 1024, got {tile}")
    compiling = torch.compiler.is_compiling()
    if not _READY and not compiling:
        status = cuda_status(features.device)
        if not status.available:
            raise RuntimeError(f"backend='cuda' is unavailable: {status.reason}")
        _READY = True
    out_dtype = features.dtype
    if opacities is None:
        B, M, _ = features.shape
        opacities = torch.ones(B, M, device=features.device, dtype=torch.float32)
    args = (_as_f32(means), _as_f32(scales), _as_f32(rotations), _as_f32(features), _as_f32(opacities))
    if compiling:
        out = splat_fwd(*args, height, width, tile_w, tile_h)  # [B, C, H, W] float32
    else:
        out = _SplatFunction.apply(*args, height, width, tile_w, tile_h)  # [B, C, H, W] float32
    return out if out_dtype == torch.float32 else out.to(out_dtype)


__all__ = [
    "CudaStatus",
    "cuda_status",
    "splat_cuda",
    "splat_fwd",
    "splat_bwd",
    "backward_variant",
    "DEFAULT_TILE",
    "BWD_ENV",
    "BWD_VARIANTS",
]
