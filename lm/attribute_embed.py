"""Attribute embeddings of image tokens (`model.attribute_embeddings: true`, `GaussianTokenLMConfig.attribute_embeddings`).

A geometry token is one mixed-radix index of several quantized attributes (docs/token_layout.md §2): on the Shapes
preset an offset token is (dx bin, dy bin), 16 x 16 = 256 ids, and a shape token (scale_x, scale_y, rotation),
8 x 8 x 8 = 512 ids; an object-layout slot token names an anchor of the tokenizer's grid (row, column). A plain
embedding table learns every one of those ids on its own, from the sequences that happen to hold it, although ids
that share a bin mean the same thing in that attribute. Here each such token's input embedding also gets one
learned vector per attribute value it holds, shared by every id that holds the value:

    embed(id) = table[id] + sum over the id's attributes a of attribute[a, bin_a(id)]

so what the LM learns about "scale_x bin 3" from any token reaches every token with that bin. Feature codes, text
and the other markers have no attributes (the sum is empty). The attribute vectors start at zero, so a new model
reads its inputs as one without them. Inputs only: the output head is unchanged.

Owns `attribute_table` (each LM id's attribute values, derived from the config alone, so a saved model rebuilds it)
and `AttributeEmbedding` (the vectors and their lookup).
"""

from __future__ import annotations

import torch
from torch import nn

MAX_ATTRIBUTES = 3  # the most attributes one token holds (scale_x, scale_y, rotation)


def attribute_table(config) -> tuple[torch.LongTensor, int]:
    """A `GaussianTokenLMConfig` -> (table [V, MAX_ATTRIBUTES]: per LM id the indices of its attribute values, 0
    for none, V = the LM's vocabulary; the number of attribute values + 1). Geometry tokens hold their slot's
    attributes, most significant first as the tokenizer packs them; object-layout slot tokens hold their anchor's
    row and column (`tokenizer.configuration.anchor_grid_shape`); relative-step tokens, feature codes, text and
    markers hold none."""
    from gaussiantoken.lm.configuration import extra_token_count
    from gaussiantoken.tokenizer.configuration import anchor_grid_shape
    from gaussiantoken.tokenizer.geometry import GeometryQuantizer, build_token_layout

    tok = config.tokenizer_config
    geometry = GeometryQuantizer(tok)
    offset, n_image = config.image_token_offset, config.image_vocab_size
    extra = extra_token_count(config.object_layout) if config.object_layout else 0
    table = torch.zeros(offset + n_image + extra, MAX_ATTRIBUTES, dtype=torch.long)  # [V, A]
    values = 1  # the next free attribute-value index (0: none)
    slots = build_token_layout(tok.codebook_size, geometry)[1:]  # the geometry slots, after the feature slot
    for slot, attrs in zip(slots, geometry.slots):
        bins = [geometry.attributes[a].bins for a in attrs]
        ids = offset + slot.start + torch.arange(slot.size)  # [S]: the slot's LM ids
        rest = torch.arange(slot.size)  # [S]: their local indices, consumed from the least significant attribute
        for j in reversed(range(len(attrs))):
            table[ids, j] = values + rest % bins[j]
            rest = rest // bins[j]
            values += bins[j]
    if config.object_layout:
        m = int(config.object_layout["num_slots"])
        rows, cols = anchor_grid_shape(tok.num_gaussians, tok.anchor_layout)
        if m == tok.num_gaussians:  # slot k sits at row k // cols, column k % cols
            k = torch.arange(m)
            first = offset + n_image
            table[first + k, 0] = values + k // cols
            table[first + k, 1] = values + rows + k % cols
            values += rows + cols
    return table, values


class AttributeEmbedding(nn.Module):
    """The attribute vectors of `attribute_table(config)` ([values, D], row 0 none; zeros at the start) and their
    sum per token: ids [...] -> [..., D]. The table is built from the config on first use (not a buffer:
    transformers builds a loading model on the meta device, where a buffer made in __init__ holds no values)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self._table: torch.LongTensor | None = None  # [V, A], built by `table`
        _, values = attribute_table(config)
        self.weight = nn.Parameter(torch.zeros(values, config.text_config.hidden_size))  # [values, D]

    def table(self, device) -> torch.LongTensor:
        if self._table is None or self._table.device != torch.device(device):
            self._table = attribute_table(self.config)[0].to(device)
        return self._table

    def forward(self, input_ids: torch.LongTensor) -> torch.Tensor:
        table = self.table(input_ids.device)  # [V, A]
        known = input_ids < table.shape[0]  # ids past the table (a resized vocabulary) hold no attributes
        idx = table[torch.where(known, input_ids, 0)]  # [..., A]
        return nn.functional.embedding(idx, self.weight, padding_idx=0).sum(-2)  # [..., D]; row 0 ("none") stays 0


__all__ = ["MAX_ATTRIBUTES", "attribute_table", "AttributeEmbedding"]
