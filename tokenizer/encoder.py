"""The convolutional parts of the tokenizer: the residual block, the Open-MAGVIT2-like CNN encoder
(image -> multi-scale feature maps) and the CNN decoder (splatted feature map -> RGB)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _groups(channels: int) -> int:
    """Largest GroupNorm group count <= 32 that divides `channels`."""
    for g in (32, 16, 8, 4, 2, 1):
        if channels % g == 0:
            return g
    return 1


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv3x3, twice, with a (1x1 when the width changes) shortcut.
    `norm_groups`: GroupNorm groups (None: `_groups(channels)`, i.e. up to 32, one channel each at <= 32)."""

    def __init__(self, in_channels: int, out_channels: int, norm_groups: int | None = None):
        super().__init__()
        self.norm1 = nn.GroupNorm(norm_groups or _groups(in_channels), in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(norm_groups or _groups(out_channels), out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, Cin, H, W] -> [B, Cout, H, W]
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.shortcut(x) + h


class CNNEncoder(nn.Module):
    """conv_in (3x3, or a patchify conv of stride `stem_stride`), then one stage of residual blocks per channel multiplier with a stride-2 conv between
    stages. Returns the last `num_levels` stage outputs, finest first, each projected to `out_channels`."""

    def __init__(self, in_channels, base_channels, channel_mult, num_res_blocks, out_channels, num_levels, stem_stride=1):
        super().__init__()
        if stem_stride == 1:
            self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        else:  # patchify stem: a stride-s conv over s x s patches (cheap first stage)
            self.conv_in = nn.Conv2d(in_channels, base_channels, stem_stride, stride=stem_stride)
        self.stages = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        ch = base_channels
        widths = []
        for i, mult in enumerate(channel_mult):
            out = base_channels * mult
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(ch, out))
                ch = out
            if not blocks:
                blocks.append(nn.Conv2d(ch, out, 3, padding=1))
                ch = out
            self.stages.append(nn.Sequential(*blocks))
            widths.append(ch)
            if i < len(channel_mult) - 1:
                self.downsamples.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.num_levels = num_levels
        self.heads = nn.ModuleList(
            nn.Sequential(nn.GroupNorm(_groups(w), w), nn.SiLU(), nn.Conv2d(w, out_channels, 1))
            for w in widths[-num_levels:]
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # [B, 3, H, W] -> L x [B, D, H_l, W_l]
        h = self.conv_in(x)
        outs = []
        for i, stage in enumerate(self.stages):
            h = stage(h)
            outs.append(h)
            if i < len(self.downsamples):
                h = self.downsamples[i](h)
        outs = outs[-self.num_levels :]
        return [head(o) for head, o in zip(self.heads, outs)]


class CNNDecoder(nn.Module):
    """Splatted feature map [B, C, R, R] -> RGB [B, 3, S, S] in [-1, 1]: conv_in, residual blocks,
    nearest x2 upsampling + conv until R reaches S, GroupNorm/SiLU/conv_out, then tanh (or clamp).

    `norm_groups` (None: `_groups(channels)`): with one channel per group each GroupNorm is an instance
    norm, and a splat map is sparse (features only under the Gaussians): a channel active under one or
    two Gaussians of an image is divided by its small per-image std, which inflates those spots; the
    residual stack compounds it until tanh saturates (pre-activations near -20): the black discs, often
    red-rimmed, at Gaussian positions on photographs, which no gradient repairs (tanh' = 0 there).
    Few groups (1: statistics over all channels) normalise by the whole map and keep spots in scale."""

    def __init__(self, in_channels, channels, num_res_blocks, render_size, image_size, activation="tanh",
                 norm_groups: int | None = None):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        layers = [ResBlock(channels, channels, norm_groups) for _ in range(num_res_blocks)]
        size = render_size
        while size < image_size:
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(channels, channels, 3, padding=1)]
            layers += [ResBlock(channels, channels, norm_groups)]
            size *= 2
        if size != image_size:
            raise ValueError(f"render_size {render_size} must be image_size {image_size} divided by a power of 2")
        self.body = nn.Sequential(*layers)
        self.norm_out = nn.GroupNorm(norm_groups or _groups(channels), channels)
        self.conv_out = nn.Conv2d(channels, 3, 3, padding=1)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, R, R] -> [B, 3, S, S]
        h = self.body(self.conv_in(x))
        h = self.conv_out(F.silu(self.norm_out(h)))
        return torch.tanh(h) if self.activation == "tanh" else h.clamp(-1.0, 1.0)


__all__ = ["ResBlock", "CNNEncoder", "CNNDecoder"]
