"""Input images of captioning / VQA written as object-major spans at inference (`model.input_layout: objects`):
`input_spans` (pixels + their codes -> spans, grouped on the image itself) and `object_input_rows` (the
processor's rows, images as <image> placeholders or as codes, rewritten with those spans; what the model's
`generate` does for the stock image-text-to-text pipeline). `lm.generation.generate_text` builds its rows with
`input_spans` directly. Training writes the same spans from the stream's groups (`lm.data`)."""

from __future__ import annotations

import torch

from gaussiantoken.lm.object_groups import groups_from_codes, input_span, object_groups, pixels_to_uint8
from gaussiantoken.lm.object_layout import ObjectLayout
from gaussiantoken.lm.sequences import VocabLayout, expand_image_spans


@torch.no_grad()
def input_spans(model, pixels: torch.Tensor, codes: list[list[int]]) -> list[list[int]]:
    """Input images pixels [B, 3, S, S] in [-1, 1] and their LOCAL codes -> object-major spans (LM ids,
    `lm.object_groups.input_span`): the groups come from the image itself, as the training stream's do."""
    tok = model.image_tokenizer
    local = torch.as_tensor(codes, device=next(tok.parameters()).device)  # [B, T]
    groups = object_groups(pixels_to_uint8(pixels), tok.ids_to_gaussians(local)["means"], model.config.image_groups)
    layout = ObjectLayout.from_config(model.config)
    return [input_span(layout, c, g) for c, g in zip(codes, groups.tolist())]


@torch.no_grad()
def object_input_rows(model, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None,
                      pixel_values: torch.Tensor | None = None) -> list[list[int]] | None:
    """Rows as the processor writes them (input_ids [B, S], padding dropped by attention_mask), each image rewritten
    as its object-major span (`input_spans`) -> id lists, to be padded again (`lm.generation.left_pad`); None when
    the rows hold no image. An image is a whole span <boi> + T ids + <eoi> of either T <image> placeholders (filled
    from pixel_values in row order, as `merge_image_tokens` does) or T codes (the processor's `image_tokens`;
    grouped on their reconstruction)."""
    cfg, T = model.config, model.config.tokens_per_image
    lo, hi = cfg.image_token_offset, cfg.image_token_offset + cfg.image_vocab_size
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    rows = [[int(i) for i, m in zip(r, k) if m] for r, k in zip(input_ids.tolist(), mask.tolist())]
    collapsed, images = [], []  # rows with one <image> id per image; per image: "pixels" or its LOCAL codes
    for r in rows:
        out, i, made = [], 0, 0
        while i < len(r):
            body = r[i + 1:i + 1 + T]
            whole = r[i] == cfg.boi_token_id and len(body) == T and r[i + 1 + T:i + 2 + T] == [cfg.eoi_token_id]
            if whole and all(t == cfg.image_token_id for t in body):
                images.append("pixels")
            elif whole and all(lo <= t < hi for t in body):
                images.append([t - lo for t in body])
            else:
                out.append(r[i])
                i += 1
                continue
            out.append(cfg.image_token_id)
            made += 1
            i += T + 2
        if out.count(cfg.image_token_id) != made:
            raise ValueError(f"input_ids hold <image> placeholders outside whole <boi> + {T} x <image> + <eoi> spans")
        collapsed.append(out)
    if not images:
        return None
    n_pixels = sum(1 for x in images if x == "pixels")
    if n_pixels != (0 if pixel_values is None else pixel_values.shape[0]):
        raise ValueError(f"input_ids hold {n_pixels} image span(s) of <image> placeholders but "
                         f"{0 if pixel_values is None else pixel_values.shape[0]} image(s) were given in pixel_values")
    spans: list = [None] * len(images)
    at = [k for k, x in enumerate(images) if x == "pixels"]
    if at:
        codes = (model.encode_images(pixel_values) - lo).tolist()  # LOCAL [N, T]
        for k, span in zip(at, input_spans(model, pixel_values, codes)):
            spans[k] = span
    given = [k for k, x in enumerate(images) if x != "pixels"]
    if given:  # grouped on the tokenizer's reconstruction of the codes
        codes = [images[k] for k in given]
        groups = groups_from_codes(model.image_tokenizer, torch.as_tensor(codes), cfg.image_groups).tolist()
        object_layout = ObjectLayout.from_config(cfg)
        for k, c, g in zip(given, codes, groups):
            spans[k] = input_span(object_layout, c, g)
    layout, it = VocabLayout.from_config(cfg), iter(spans)
    return [expand_image_spans(r, layout, [next(it) for _ in range(r.count(cfg.image_token_id))]) for r in collapsed]


__all__ = ["input_spans", "object_input_rows"]
