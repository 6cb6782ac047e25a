"""Quantized Gaussian geometry (docs/token_layout.md): attribute <-> uniform bin, slots of jointly
binned attributes <-> one token each, straight-through estimation, and the token layout.

Attributes and their ranges (n bins each, bin i has centre lo + (i + 0.5) (hi - lo) / n):
- "x", "y": absolute position in [-1, 1] (position_mode="absolute"; with position_bins = image_size the
  centres are exactly the pixel centres) or an offset from the Gaussian slot's anchor in
  [-offset_range, offset_range] (position_mode="anchor_offset").
- "scale_x", "scale_y": log standard deviation in [log scale_min, log scale_max].
- "rotation": theta in [0, pi), periodic (theta and theta + pi are the same ellipse).
A slot of attributes (a1, a2, ...) with bins (n1, n2, ...) takes the mixed-radix index
i1 * (n2 * n3 ...) + i2 * (n3 ...) + ... in [0, n1 * n2 * ...).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


class TokenSlot(NamedTuple):
    """One slot of a Gaussian's token group: local ids in [start, start + size)."""

    name: str
    start: int
    size: int


class AttributeBins(NamedTuple):
    lo: float
    hi: float
    bins: int
    periodic: bool


class GeometryQuantizer:
    """Stateless uniform quantizer of the Gaussian attributes described by a config."""

    def __init__(self, config):
        self.slots = [tuple(slot) for slot in config.geometry_slots]
        if config.position_mode == "absolute":
            pos = (-1.0, 1.0)
        else:
            pos = (-config.offset_range, config.offset_range)
        log_lo, log_hi = math.log(config.scale_min), math.log(config.scale_max)
        self.attributes = {
            "x": AttributeBins(pos[0], pos[1], config.position_bins, False),
            "y": AttributeBins(pos[0], pos[1], config.position_bins, False),
            "scale_x": AttributeBins(log_lo, log_hi, config.scale_bins, False),
            "scale_y": AttributeBins(log_lo, log_hi, config.scale_bins, False),
            "rotation": AttributeBins(0.0, math.pi, config.rotation_bins, True),
        }

    # ------------------------------------------------------------------ per attribute
    def bin_index(self, name: str, value: torch.Tensor) -> torch.Tensor:
        """Continuous attribute -> bin index (long), clamped (or wrapped, for rotation) into range."""
        a = self.attributes[name]
        width = (a.hi - a.lo) / a.bins
        if a.periodic:
            value = torch.remainder(value - a.lo, a.hi - a.lo) + a.lo
        idx = torch.floor((value - a.lo) / width).long()
        return torch.remainder(idx, a.bins) if a.periodic else idx.clamp(0, a.bins - 1)

    def bin_centre(self, name: str, index: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        a = self.attributes[name]
        width = (a.hi - a.lo) / a.bins
        return a.lo + (index.to(dtype) + 0.5) * width

    def slot_size(self, slot) -> int:
        return math.prod(self.attributes[a].bins for a in slot)

    # ------------------------------------------------------------------ slots
    def slot_names(self) -> list[str]:
        return ["_".join(slot) for slot in self.slots]

    def encode(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """{attribute: [B, M]} -> per-slot local indices [B, M, n_slots] (slot-relative, from 0)."""
        out = []
        for slot in self.slots:
            idx = torch.zeros_like(self.bin_index(slot[0], values[slot[0]]))
            for a in slot:
                idx = idx * self.attributes[a].bins + self.bin_index(a, values[a])
            out.append(idx)
        return torch.stack(out, -1)

    def decode(self, indices: torch.Tensor, dtype=torch.float32) -> dict[str, torch.Tensor]:
        """Per-slot indices [B, M, n_slots] -> {attribute: bin centre [B, M]}."""
        values = {}
        for k, slot in enumerate(self.slots):
            idx = indices[..., k]
            for a in reversed(slot):
                n = self.attributes[a].bins
                values[a] = self.bin_centre(a, torch.remainder(idx, n), dtype)
                idx = torch.div(idx, n, rounding_mode="floor")
        return values

    def straight_through(self, values: dict[str, torch.Tensor]):
        """Quantize with a straight-through gradient: returns (indices [B, M, n_slots],
        {attribute: value + (centre - value).detach()})."""
        indices = self.encode({k: v.detach() for k, v in values.items()})
        centres = self.decode(indices, values["x"].dtype)
        return indices, {a: values[a] + (centres[a] - values[a]).detach() for a in values}


def build_token_layout(codebook_size: int, geometry: GeometryQuantizer) -> list[TokenSlot]:
    """Feature slot first, then the geometry slots; disjoint consecutive id ranges."""
    layout = [TokenSlot("feature", 0, codebook_size)]
    start = codebook_size
    for name, slot in zip(geometry.slot_names(), geometry.slots):
        size = geometry.slot_size(slot)
        layout.append(TokenSlot(name, start, size))
        start += size
    return layout


__all__ = ["TokenSlot", "GeometryQuantizer", "build_token_layout", "AttributeBins"]
