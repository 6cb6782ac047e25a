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
from transformers import PreTrainedModel

from .encoder import ResBlock, _groups
from .geometry import TokenSlot
from .grid_vq_config import GridVQConfig
from .modeling import GaussianTokenizer, GaussianTokenizerOutput, check_model_type
from .quantizer import EMAVectorQuantizer


def _strides(size: int, grid: list[int]) -> list[tuple[int, int]]:
    """Per-stage (stride_y, stride_x) that bring size x size down to grid (h, w), halving each axis."""
    ny, nx = int(math.log2(size // grid[0])), int(math.log2(size // grid[1]))
    return [(2 if i < ny else 1, 2 if i < nx else 1) for i in range(max(ny, nx))]


class GridEncoder(nn.Module):
    """conv3x3 at full resolution, then per level a stride-(sy, sx) conv (widening by channel_mult) and
    residual blocks, then GN/SiLU/1x1 to the code dimension d. No residual block at full resolution
    (where a conv costs the most): the compute sits on the coarse levels, as in VQGAN's patchify-like stems."""

    def __init__(self, c: GridVQConfig):
        super().__init__()
        C = c.encoder_channels
        layers: list[nn.Module] = [nn.Conv2d(c.in_channels, C, 3, padding=1)]
        width = C
        for level, s in enumerate(_strides(c.image_size, c.grid_size), start=1):
            out = c.width(C, level)
            layers.append(nn.Conv2d(width, out, 3, stride=s, padding=1))
            layers += [ResBlock(out, out) for _ in range(c.encoder_num_res_blocks)]
            width = out
        layers += [nn.GroupNorm(_groups(width), width), nn.SiLU(), nn.Conv2d(width, c.codebook_dim, 1)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, S, S] -> [B, d, h, w]
        return self.body(x)


class GridDecoder(nn.Module):
    """The mirror: conv3x3 from d and residual blocks at the grid, then per level nearest (sy, sx)
    upsampling + conv (narrowing) + residual blocks (none at full resolution), GN/SiLU/conv to RGB,
    tanh (or clamp). GroupNorm over all channels by default (decoder_norm_groups=1): with 2 channels
    per group, one outlier code in the grid was inflated into a black disc, as in the Gaussian decoder."""

    def __init__(self, c: GridVQConfig):
        super().__init__()
        C, strides, g = c.decoder_channels, _strides(c.image_size, c.grid_size), c.decoder_norm_groups
        width = c.width(C, len(strides))
        layers: list[nn.Module] = [nn.Conv2d(c.codebook_dim, width, 3, padding=1)]
        layers += [ResBlock(width, width, g) for _ in range(c.decoder_num_res_blocks)]
        for level in range(len(strides), 0, -1):
            out = c.width(C, level - 1)
            layers += [nn.Upsample(scale_factor=strides[level - 1], mode="nearest"), nn.Conv2d(width, out, 3, padding=1)]
            if level - 1 > 0:
                layers += [ResBlock(out, out, g) for _ in range(c.decoder_num_res_blocks)]
            width = out
        layers += [nn.GroupNorm(g or _groups(width), width), nn.SiLU(), nn.Conv2d(width, 3, 3, padding=1)]
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
