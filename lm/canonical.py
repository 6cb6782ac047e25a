"""Canonical background Gaussians for text-to-image targets on the Shapes world.

About half of the Shapes tokenizer's Gaussians sit on the flat background. Their feature codes come from
a set of "background codes", and their geometry tokens (offset, scale, rotation) vary from image to image
without changing the picture: entropy (measured ~5.5 + 3.4 bits a Gaussian) that the LM must model and
that sampling turns into stray marks. `BackgroundCanon` replaces every background Gaussian's three tokens
by one fixed triple per anchor slot, so the LM only decides *whether* a slot is background.
Measured on a 1,244-step tokenizer (300 held-out scenes): PSNR 31.6 -> 30.3 dB, scene parse exact
0.980 -> 0.980 (bench/RESULTS.md). Only the text-to-image *targets* are canonicalized (`lm.data`);
captioning / VQA still read the tokenizer's own codes of real images, as at inference.

Fitting (`BackgroundCanon.fit`) is deterministic: a Gaussian is on the background when the pixel under its
centre has the Shapes background colour; a code is a background code when >= 90% of its (>= 20) uses in the
probe are on the background; each slot's triple is the most common code / offset / scale-rotation token of
its background-coded Gaussians in the probe. A slot never seen with a background code is left alone.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch


class BackgroundCanon:
    """codes (LOCAL ids, Gaussian-major [M x G]) -> the same with background Gaussians canonical."""

    def __init__(self, background_codes: set[int], slot_tokens: dict[int, tuple[int, ...]], group: int):
        self.background_codes, self.slot_tokens, self.group = set(background_codes), dict(slot_tokens), int(group)

    @classmethod
    @torch.no_grad()
    def fit(cls, tokenizer, images_uint8: np.ndarray, background=(24, 24, 24), share: float = 0.9,
            min_uses: int = 20) -> "BackgroundCanon":
        """Fit on rendered Shapes images uint8 [N, S, S, 3] (see the module docstring)."""
        from gaussiantoken.lm.extract import encode_uint8

        ids = encode_uint8(tokenizer, images_uint8)  # [N, T]
        means = tokenizer.ids_to_gaussians(ids)["means"]  # [N, M, 2] in [-1, 1]
        N, M = means.shape[:2]
        G = ids.shape[1] // M
        S = images_uint8.shape[1]
        pix = ((means + 1) / 2 * S).clamp(0, S - 1e-3).long()  # [N, M, 2] (x, y)
        rows = torch.arange(N)[:, None].expand(N, M)
        under = torch.from_numpy(images_uint8)[rows, pix[..., 1], pix[..., 0]]  # [N, M, 3]
        on_bg = (under == torch.tensor(background, dtype=under.dtype)).all(-1)  # [N, M]
        grouped = ids.view(N, M, G)
        feat = grouped[..., 0]
        uses, bg_uses = Counter(feat.flatten().tolist()), Counter(feat[on_bg].tolist())
        codes = {c for c, n in uses.items() if n >= min_uses and bg_uses[c] >= share * n}
        is_bg = torch.isin(feat, torch.tensor(sorted(codes), dtype=feat.dtype)) if codes else torch.zeros_like(on_bg)
        slots = {}
        for k in range(M):
            sel = is_bg[:, k]
            if sel.any():
                slots[k] = tuple(Counter(grouped[:, k, j][sel].tolist()).most_common(1)[0][0] for j in range(G))
        return cls(codes, slots, G)

    def __call__(self, codes) -> list[int]:
        out = [int(c) for c in codes]
        for k, triple in self.slot_tokens.items():
            if out[k * self.group] in self.background_codes:
                out[k * self.group:(k + 1) * self.group] = triple
        return out

    def state(self) -> dict:
        return {"background_codes": sorted(self.background_codes),
                "slot_tokens": {str(k): list(v) for k, v in sorted(self.slot_tokens.items())}, "group": self.group}


__all__ = ["BackgroundCanon"]
