"""`GaussianTokenizerImageProcessor`: images of any mode/size <-> pixel_values [B, 3, S, S] in [-1, 1].

Preprocessing (PIL, no torchvision): convert to RGB (palette/RGBA/LA images are composited on a
black background, grayscale replicated), resize the shorter side to S (bicubic by default), centre
crop to S x S, scale to [-1, 1]. Float ("F") PIL images hold values in [0, 1] (scaled by 255) or in
[0, 255]; 32-bit ("I") and 16-bit ("I;16") ones 0..255 or 0..65535 (scaled by 1/257); any other range,
NaN or infinity is a ValueError. Also accepts uint8 numpy arrays [H, W, 3|1] / [H, W] and finite float
tensors [3, H, W] already in [-1, 1]. An empty (0-pixel) image is a ValueError. `load_image_file(path)`
opens an image file, naming the file when it is missing, truncated or not an image. Saved beside the model as preprocessor_config.json.
`postprocess` maps pixel_values back to PIL images, uint8 numpy arrays or clamped tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

_RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


def load_image_file(path) -> Image.Image:
    """Open and fully decode an image file; a missing, truncated or non-image file is a ValueError naming it."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except FileNotFoundError:
        raise ValueError(f"image file not found: {path}") from None
    except (OSError, ValueError, SyntaxError) as exc:  # PIL raises these for truncated / unknown files
        raise ValueError(f"could not read an image from {path}: {exc}") from None


def _high_depth_to_8bit(image: Image.Image, index: int) -> Image.Image:
    """F / I / I;16 PIL images -> L (8-bit), by the value ranges of the module docstring."""
    arr = np.asarray(image, dtype=np.float64)
    if arr.size and not np.isfinite(arr).all():
        raise ValueError(f"images[{index}]: the {image.mode!r} image contains NaN or infinite values")
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if image.mode == "F" and lo >= 0.0 and hi <= 1.0:
        arr = arr * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        pass
    elif image.mode != "F" and lo >= 0.0 and hi <= 65535.0:
        arr = arr / 257.0
    else:
        raise ValueError(f"images[{index}]: {image.mode!r} image values span [{lo:.4g}, {hi:.4g}]; expected "
                         "[0, 1], [0, 255] or (integer modes) [0, 65535]")
    return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image, index: int = 0) -> Image.Image:
    """Any PIL mode -> RGB; transparency is composited on black; F/I/I;16 scaled as the module says."""
    if image.mode == "RGB":
        return image
    if image.mode in ("F", "I", "I;16", "I;16L", "I;16B", "I;16N"):
        return _high_depth_to_8bit(image, index).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


class GaussianTokenizerImageProcessor(BaseImageProcessor):
    model_input_names = ["pixel_values"]

    def __init__(self, image_size: int = 32, resample: str = "bicubic", do_center_crop: bool = True, **kwargs):
        super().__init__(**kwargs)
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        if resample not in _RESAMPLE:
            raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}, got {resample!r}")
        self.image_size = image_size
        self.resample = resample
        self.do_center_crop = bool(do_center_crop)

    @classmethod
    def from_config(cls, config) -> "GaussianTokenizerImageProcessor":
        """The processor matching a GaussianTokenizerConfig."""
        return cls(image_size=config.image_size)

    # ------------------------------------------------------------------ one image
    def _resize_crop(self, image: Image.Image) -> Image.Image:
        S = self.image_size
        w, h = image.size  # > 0 (checked in _to_tensor)
        if (w, h) == (S, S):
            return image
        if self.do_center_crop:
            scale = S / min(w, h)
            nw, nh = max(S, round(w * scale)), max(S, round(h * scale))
            image = image.resize((nw, nh), _RESAMPLE[self.resample])
            left, top = (nw - S) // 2, (nh - S) // 2
            return image.crop((left, top, left + S, top + S))
        return image.resize((S, S), _RESAMPLE[self.resample])

    def _to_tensor(self, image, index: int) -> torch.Tensor:  # -> [3, S, S] in [-1, 1]
        S = self.image_size
        if isinstance(image, torch.Tensor):
            if image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
                raise ValueError(f"images[{index}]: a tensor image must be float [3, H, W] in [-1, 1], got "
                                 f"{image.dtype} {tuple(image.shape)}")
            if image.shape[1] == 0 or image.shape[2] == 0:
                raise ValueError(f"images[{index}] is empty ({image.shape[2]}x{image.shape[1]} pixels)")
            if not bool(torch.isfinite(image).all()):
                raise ValueError(f"images[{index}]: the tensor contains NaN or infinite values")
            if float(image.min()) < -1.001 or float(image.max()) > 1.001:
                raise ValueError(f"images[{index}]: tensor values must be in [-1, 1]")
            if tuple(image.shape[-2:]) != (S, S):
                arr = ((image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
                return self._to_tensor(Image.fromarray(arr), index)
            return image.float()
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8:
                raise ValueError(f"images[{index}]: numpy images must be uint8, got {image.dtype}")
            if image.ndim == 3 and image.shape[-1] == 1:
                image = image[..., 0]
            if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
                raise ValueError(f"images[{index}]: numpy images must be [H, W], [H, W, 3] or [H, W, 4], got {image.shape}")
            image = Image.fromarray(image)
        if not isinstance(image, Image.Image):
            raise TypeError(f"images[{index}] must be a PIL image, a uint8 numpy array or a tensor, got {type(image).__name__}")
        if image.width == 0 or image.height == 0:
            raise ValueError(f"images[{index}] is empty ({image.width}x{image.height} pixels)")
        image = self._resize_crop(to_rgb(image, index))
        arr = np.asarray(image, dtype=np.uint8)  # [S, S, 3]
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 127.5 - 1.0

    # ------------------------------------------------------------------ API
    def preprocess(self, images, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        if kwargs:
            raise ValueError(f"unexpected arguments {sorted(kwargs)}")
        if return_tensors not in ("pt", None):
            raise ValueError(f"return_tensors must be 'pt' (or None), got {return_tensors!r}")
        if isinstance(images, (Image.Image, np.ndarray)) or (isinstance(images, torch.Tensor) and images.dim() == 3):
            images = [images]
        elif isinstance(images, torch.Tensor) and images.dim() == 4:
            images = list(images)
        elif isinstance(images, Sequence) and not isinstance(images, (str, bytes, list, tuple)):
            images = list(images)  # e.g. a `datasets` Column of images (ds["image"])
        if not isinstance(images, (list, tuple)) or len(images) == 0:
            raise ValueError("images must be a non-empty image or list of images")
        pixel_values = torch.stack([self._to_tensor(im, i) for i, im in enumerate(images)])  # [B, 3, S, S]
        return BatchFeature({"pixel_values": pixel_values}, tensor_type=return_tensors)

    def __call__(self, images, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        return self.preprocess(images, return_tensors=return_tensors, **kwargs)

    def postprocess(self, pixel_values: torch.Tensor, output_type: str = "pil"):
        """pixel_values [B, 3, H, W] (or [3, H, W]) in [-1, 1] -> list of PIL images, uint8 numpy
        [B, H, W, 3], or a float tensor clamped to [-1, 1] ("pil" | "np" | "pt")."""
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() not in (3, 4) or pixel_values.shape[-3] != 3:
            shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
            raise ValueError(f"pixel_values must be a tensor [B, 3, H, W], got {shape}")
        if pixel_values.dim() == 3:
            pixel_values = pixel_values.unsqueeze(0)
        pixel_values = pixel_values.detach().float().cpu().clamp(-1, 1)
        if output_type == "pt":
            return pixel_values
        arr = ((pixel_values + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # [B, H, W, 3]
        if output_type == "np":
            return arr
        return [Image.fromarray(a) for a in arr]


__all__ = ["GaussianTokenizerImageProcessor", "to_rgb", "load_image_file"]
