"""`GridVQTokenizer`: the grid vector-quantized baseline (VQGAN-style), image <-> h x w codes.

Pipeline:
    pixels [B, 3, S, S] --CNN encoder (residual blocks, strided convs per axis)--> z [B, d, h, w]
    z --EMA VQ (`quantizer.EMAVectorQuantizer`, the same machinery as GaussianTokenizer)--> codes
    ids [B, h * w] (row-major) --codebook--> [B, d, h, w] --CNN decoder (nearest upsampling)--> RGB
It keeps GaussianTokenizer's contract, so the trainer, the evaluation and the LM take either:
`encode(pixels) -> ids [B, tokens_per_image]`, `decode(ids) -> pixels`, `forward` -> a
`GaussianTokenizerOutput` (gaussians None), `tokens_per_image`, `vocab_size` and `token_layout`
(one "feature" slot). In eval mode `forward` rebuilds the image from its own ids, so
decode(encode(x)) equals the forward reconstruction bit for bit. The grid may be rectangular
(e.g. 8 x 16 = 128 tokens at 32 x 32): each axis is halved by its own stride-2 convs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from .configuration import GRADIENT_ESTIMATORS, OUTPUT_ACTIVATIONS
from .encoder import ResBlock, _groups
from .geometry import TokenSlot
from .modeling import GaussianTokenizer, GaussianTokenizerOutput, check_model_type
from .quantizer import EMAVectorQuantizer


class GridVQConfig(PretrainedConfig):
    """Architecture of `GridVQTokenizer` (module docstring); run settings live in the trainer's YAML."""

    model_type = "grid_vq_tokenizer"

    def __init__(
        self,
        image_size: int = 32,
        in_channels: int = 3,
        grid_size: list[int] | tuple[int, int] = (8, 8),  # (h, w) codes per image
        encoder_channels: int = 64,
        encoder_num_res_blocks: int = 1,  # per resolution
        codebook_size: int = 1024,
        codebook_dim: int = 8,
        codebook_decay: float = 0.9,
        codebook_l2_normalize: bool = False,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 0.5,
        commitment_weight: float = 0.25,
        gradient_estimator: str = "rotation",
        decoder_channels: int = 64,
        decoder_num_res_blocks: int = 1,  # per resolution
        output_activation: str = "tanh",
        **kwargs,
    ):
        self.image_size = int(image_size)
        self.in_channels = int(in_channels)
        self.grid_size = [int(g) for g in grid_size]
        self.encoder_channels = int(encoder_channels)
        self.encoder_num_res_blocks = int(encoder_num_res_blocks)
        self.codebook_size = int(codebook_size)
        self.codebook_dim = int(codebook_dim)
        self.codebook_decay = float(codebook_decay)
        self.codebook_l2_normalize = bool(codebook_l2_normalize)
        self.kmeans_init = bool(kmeans_init)
        self.kmeans_iters = int(kmeans_iters)
        self.dead_code_threshold = float(dead_code_threshold)
        self.commitment_weight = float(commitment_weight)
        self.gradient_estimator = gradient_estimator
        self.decoder_channels = int(decoder_channels)
        self.decoder_num_res_blocks = int(decoder_num_res_blocks)
        self.output_activation = output_activation
        super().__init__(**kwargs)
        self.validate_architecture()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        check_model_type(pretrained_model_name_or_path, cls.model_type)
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def validate_architecture(self) -> None:
        """Raise ValueError naming the field when the architecture is inconsistent."""
        for name in ("image_size", "in_channels", "encoder_channels", "codebook_size", "codebook_dim",
                     "decoder_channels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("encoder_num_res_blocks", "decoder_num_res_blocks"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if len(self.grid_size) != 2:
            raise ValueError(f"grid_size must be [h, w], got {self.grid_size}")
        for g in self.grid_size:
            f = self.image_size // g if g > 0 else 0
            if g <= 0 or self.image_size % g or f & (f - 1):
                raise ValueError(f"grid_size {self.grid_size}: image_size {self.image_size} must be each side times a power of 2")
        if not 0.0 <= self.codebook_decay < 1.0:
            raise ValueError(f"codebook_decay must be in [0, 1), got {self.codebook_decay}")
        if self.gradient_estimator not in GRADIENT_ESTIMATORS:
            raise ValueError(f"gradient_estimator must be one of {GRADIENT_ESTIMATORS}, got {self.gradient_estimator!r}")
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {self.output_activation!r}")

    @property
    def tokens_per_image(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    @property
    def tokens_per_gaussian(self) -> int:  # one code per grid cell: the LM's slot grammar has one slot
        return 1

    @classmethod
    def preset(cls, name: str, **overrides) -> "GridVQConfig":
        """"vq64": 8 x 8 codes at 32 x 32; "vq128": 8 x 16; "vq256": 16 x 16 (codebook 1024 x 8)."""
        grids = {"vq64": [8, 8], "vq128": [8, 16], "vq256": [16, 16]}
        if name not in grids:
            raise ValueError(f"unknown grid-VQ preset {name!r}; known: {sorted(grids)}")
        return cls(**{"grid_size": grids[name], **overrides})


def _strides(size: int, grid: list[int]) -> list[tuple[int, int]]:
    """Per-stage (stride_y, stride_x) that bring size x size down to grid (h, w), halving each axis."""
    ny, nx = int(math.log2(size // grid[0])), int(math.log2(size // grid[1]))
    return [(2 if i < ny else 1, 2 if i < nx else 1) for i in range(max(ny, nx))]


class GridEncoder(nn.Module):
    """conv3x3, then per stage residual blocks + a stride-(sy, sx) conv, residual blocks, GN/SiLU/1x1 to d."""

    def __init__(self, c: GridVQConfig):
        super().__init__()
        C = c.encoder_channels
        layers: list[nn.Module] = [nn.Conv2d(c.in_channels, C, 3, padding=1)]
        for s in _strides(c.image_size, c.grid_size):
            layers += [ResBlock(C, C) for _ in range(c.encoder_num_res_blocks)]
            layers.append(nn.Conv2d(C, C, 3, stride=s, padding=1))
        layers += [ResBlock(C, C) for _ in range(c.encoder_num_res_blocks)]
        layers += [nn.GroupNorm(_groups(C), C), nn.SiLU(), nn.Conv2d(C, c.codebook_dim, 1)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, S, S] -> [B, d, h, w]
        return self.body(x)


class GridDecoder(nn.Module):
    """conv3x3 from d, residual blocks, per stage nearest (sy, sx) upsampling + conv + residual blocks,
    GN/SiLU/conv to RGB, tanh (or clamp)."""

    def __init__(self, c: GridVQConfig):
        super().__init__()
        C = c.decoder_channels
        layers: list[nn.Module] = [nn.Conv2d(c.codebook_dim, C, 3, padding=1)]
        layers += [ResBlock(C, C) for _ in range(c.decoder_num_res_blocks)]
        for s in reversed(_strides(c.image_size, c.grid_size)):
            layers += [nn.Upsample(scale_factor=s, mode="nearest"), nn.Conv2d(C, C, 3, padding=1)]
            layers += [ResBlock(C, C) for _ in range(c.decoder_num_res_blocks)]
        layers += [nn.GroupNorm(_groups(C), C), nn.SiLU(), nn.Conv2d(C, 3, 3, padding=1)]
        self.body = nn.Sequential(*layers)
        self.activation = c.output_activation

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # [B, d, h, w] -> [B, 3, S, S]
        h = self.body(z)
        return torch.tanh(h) if self.activation == "tanh" else h.clamp(-1.0, 1.0)


class GridVQTokenizer(PreTrainedModel):
    config_class = GridVQConfig
    base_model_prefix = "grid_vq_tokenizer"
    main_input_name = "pixel_values"
    _no_split_modules: list[str] = []

    def __init__(self, config: GridVQConfig):
        super().__init__(config)
        c = config
        self.encoder = GridEncoder(c)
        self.quantizer = EMAVectorQuantizer(
            c.codebook_size, c.codebook_dim, decay=c.codebook_decay, commitment_weight=c.commitment_weight,
            l2_normalize=c.codebook_l2_normalize, kmeans_init=c.kmeans_init, kmeans_iters=c.kmeans_iters,
            dead_code_threshold=c.dead_code_threshold, gradient_estimator=c.gradient_estimator,
        )
        self.decoder = GridDecoder(c)
        self.token_layout: list[TokenSlot] = [TokenSlot("feature", 0, c.codebook_size)]
        self.post_init()

    def _init_weights(self, module):
        """Modules initialise themselves in their constructors (PyTorch defaults)."""

    @property
    def tokens_per_image(self) -> int:
        return self.config.tokens_per_image

    @property
    def vocab_size(self) -> int:
        return self.config.codebook_size

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        check_model_type(pretrained_model_name_or_path, cls.config_class.model_type)
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    _check_pixels = GaussianTokenizer._check_pixels  # same pixel contract: float [B, C, S, S] in [-1, 1]

    def _check_ids(self, ids) -> None:
        T, K = self.tokens_per_image, self.config.codebook_size
        if not isinstance(ids, torch.Tensor) or ids.is_floating_point() or ids.dtype == torch.bool or ids.is_complex():
            raise ValueError(f"ids must be an integer tensor [B, {T}], got {getattr(ids, 'dtype', type(ids).__name__)}")
        if ids.dim() != 2 or ids.shape[1] != T or ids.shape[0] == 0:
            raise ValueError(f"ids must have shape [B, {T}] (tokens_per_image = {T}), got {tuple(ids.shape)}")
        bad = (ids < 0) | (ids >= K)
        if bool(bad.any()):
            b, t = (int(i) for i in bad.nonzero()[0])
            raise ValueError(f"ids[{b}, {t}] = {int(ids[b, t])} is out of range [0, {K}) (the codebook)")

    def _latents(self, pixel_values: torch.Tensor) -> torch.Tensor:  # -> [B, h, w, d]
        return self.encoder(pixel_values).permute(0, 2, 3, 1)

    def _decode_latents(self, q: torch.Tensor) -> torch.Tensor:  # [B, h, w, d] -> [B, 3, S, S]
        return self.decoder(q.permute(0, 3, 1, 2))

    @torch.no_grad()
    def encode(self, pixel_values: torch.Tensor) -> torch.LongTensor:
        """pixels [B, 3, S, S] in [-1, 1] -> ids [B, h * w] (row-major). Never changes the model."""
        self._check_pixels(pixel_values)
        z = self.quantizer._prepare(self._latents(pixel_values))
        return self.quantizer.assign(z).reshape(pixel_values.shape[0], -1)

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.FloatTensor:
        """ids [B, h * w] -> pixels [B, 3, S, S] in [-1, 1]."""
        self._check_ids(ids)
        h, w = self.config.grid_size
        return self._decode_latents(self.quantizer.lookup(ids.long().view(-1, h, w)))

    def forward(self, pixel_values: torch.Tensor, return_dict: bool = True, **kwargs: Any) -> GaussianTokenizerOutput:
        self._check_pixels(pixel_values)
        z_q, codes, qloss, stats = self.quantizer(self._latents(pixel_values))  # [B, h, w, d], [B, h, w]
        reconstruction = self._decode_latents(z_q)
        out = GaussianTokenizerOutput(
            reconstruction=reconstruction, quantization_loss=qloss, ids=codes.reshape(codes.shape[0], -1),
            gaussians=None, codebook_usage=stats["usage"], codebook_perplexity=stats["perplexity"],
            codebook_restarts=stats["restarted"],
        )
        return out if return_dict else out.to_tuple()


__all__ = ["GridVQConfig", "GridVQTokenizer"]
