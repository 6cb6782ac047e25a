"""The PatchGAN discriminator used by the tokenizer's adversarial loss (pix2pix / VQGAN style).

Owns `PatchDiscriminator`: stride-2 4x4 convs (LeakyReLU 0.2, a norm after every conv but the first),
one stride-1 conv, then a 1-channel stride-1 conv: one real/fake logit per receptive-field patch.
Input [B, 3, H, W] in [-1, 1]; output logits [B, 1, h, w]. GroupNorm by default (no batch statistics,
so real and fake can share one forward and DDP needs no SyncBatchNorm).
"""

from __future__ import annotations

import torch
import torch.nn as nn

NORMS = ("group", "batch", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(min(32, channels), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class PatchDiscriminator(nn.Module):
    def __init__(self, in_channels: int = 3, channels: int = 64, num_layers: int = 3, norm: str = "group"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"discriminator norm must be one of {NORMS}, got {norm!r}")
        if num_layers < 1 or channels < 1:
            raise ValueError(f"discriminator needs num_layers >= 1 and channels >= 1, got {num_layers}, {channels}")
        self.num_layers = num_layers
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, num_layers + 1):  # num_layers - 1 more stride-2 convs, then one stride-1 conv
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < num_layers else 1
            layers += [
                nn.Conv2d(channels * prev, channels * mult, 4, stride, 1, bias=norm == "none"),
                _norm(norm, channels * mult),
                nn.LeakyReLU(0.2),
            ]
        layers.append(nn.Conv2d(channels * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.GroupNorm, nn.BatchNorm2d)):
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)

    def output_size(self, size: int) -> int:
        """Side of the logit map for an input side `size` (stride-2 convs halve, stride-1 convs take 1)."""
        for _ in range(self.num_layers):
            size = (size + 2 - 4) // 2 + 1
        return size - 2  # two stride-1, kernel-4, padding-1 convs

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 1, h, w]
        if x.dim() != 4:
            raise ValueError(f"discriminator input must be [B, C, H, W], got {tuple(x.shape)}")
        if min(self.output_size(x.shape[-2]), self.output_size(x.shape[-1])) < 1:
            raise ValueError(f"images of size {tuple(x.shape[-2:])} are too small for a {self.num_layers}-layer "
                             "PatchGAN; lower loss.disc_layers")
        return self.main(x)


__all__ = ["PatchDiscriminator", "NORMS"]
