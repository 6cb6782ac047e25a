"""Which object each Gaussian of an input image draws, read off the image itself: the LM's object groups.

An LM that reads an image in the tokenizer's anchor order sees one object's Gaussians scattered over several
raster rows. Measured (bench/RESULTS.md, issue 12): it captions one-object scenes without error but binds the
wrong colour or shape to an object in most two- and three-object scenes. With `image_groups: K` in the LM
config each input-image token also gets a learned embedding of its Gaussian's object group:

- the image is split into foreground components: pixels that differ from the background colour (the median of
  the border pixels) by more than `threshold` in some channel, 4-connected (`data.shapes_parse.connected_components`),
  components smaller than `min_pixels` dropped;
- a component holding two or more core colours (`colour_cores`: colours of >= `min_pixels` pixels that are not a
  blend of the background and a core, or of two cores, as anti-aliased edge pixels are) is objects of different
  colours that touch: each pixel goes to the core whose blend with the background it is nearest, and each core's
  connected pieces are components (measured on 300 held-out scenes drawn anti-aliased at sub-pixel positions, the
  demo's second renderer: 2.3% of them had two objects in one component, 0.3% after; 1.4% -> 0.25% of 2,000 others;
  pixel renders never touch);
- components are numbered 1, 2, ... left to right by their centre (then top to bottom), at most K (later ones
  share K); 0 is the background;
- a Gaussian takes the group of the component under its centre, else of a component within one pixel
  (Chebyshev), else 0 (`lm.object_layout.owners_from_masks`, the rule the text-to-image layout uses for the
  true objects).

No ground truth is used: the groups are a function of the image (training: the rendered scene; inference: the
image given, or the tokenizer's reconstruction of given codes), so captioning and VQA work on any image. The
rule needs a flat background (the Shapes world); real photographs keep `image_groups: 0`.

With `input_layout: objects` in the LM config the groups go further: the input image is written as the
object-major span text-to-image writes (`lm.object_layout`), one `<obj>` per foreground group left to right with
its Gaussians (`group_slots`, `input_span`), background Gaussians left out; each object's tokens are then
contiguous and in the form the LM itself draws objects in.
"""

from __future__ import annotations

import numpy as np
import torch


def _segment_distance(colours: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """colours [P, 3] -> [P]: each colour's largest channel distance to the nearest point of the segment a-b (the
    colours an edge pixel blending a and b can take)."""
    d = (b - a).astype(np.float64)
    t = np.clip(((colours - a) @ d) / max(float(d @ d), 1e-9), 0.0, 1.0)  # [P]
    return np.abs(colours - (a + t[:, None] * d)).max(-1)


MAX_CORES = 8  # more core colours than this in one component: not a flat-coloured world, the component is kept whole


def _is_blend(c: np.ndarray, others: list[np.ndarray], background: np.ndarray, tol: float) -> bool:
    """Whether colour c [3] lies within `tol` of a blend of the background and one of `others`, or of two of them."""
    ends = [(background, a) for a in others] + [(a, b) for i, a in enumerate(others) for b in others[i + 1:]]
    return any(_segment_distance(c[None], a, b)[0] <= tol for a, b in ends)


def colour_cores(colours: np.ndarray, background: np.ndarray, min_pixels: int = 3, tol: float = 20.0) -> np.ndarray:
    """One component's pixel colours [P, 3] -> its core colours [K, 3]: the colours at least `min_pixels` pixels hold
    that are not, within `tol` per channel, a blend of the background and another core or of two other cores (the
    edge pixels of an anti-aliased drawing). Candidates are taken most common first, then any core that turns out to
    be a blend of the others is dropped (a small object can hold more edge pixels than pixels of its own colour).
    Stops at MAX_CORES + 1 cores, returned as they are (no flat-coloured world: the caller keeps the component whole)."""
    values, counts = np.unique(colours.astype(np.int64), axis=0, return_counts=True)
    cores: list[np.ndarray] = []
    for k in np.argsort(-counts, kind="stable"):
        if counts[k] < min_pixels or len(cores) > MAX_CORES:
            break
        c = values[k].astype(np.float64)
        if not _is_blend(c, cores, background, tol):
            cores.append(c)
    changed = len(cores) <= MAX_CORES
    while changed and len(cores) > 1:
        changed = False
        for i, c in enumerate(cores):
            if _is_blend(c, cores[:i] + cores[i + 1:], background, tol):
                del cores[i]
                changed = True
                break
    return np.stack(cores) if cores else np.zeros((0, 3))


def _split_by_colour(img: np.ndarray, mask: np.ndarray, background: np.ndarray, min_pixels: int) -> list[np.ndarray]:
    """A foreground component of an image [S, S, 3] (mask [S, S]) -> its parts: with two to MAX_CORES core colours
    (`colour_cores`: objects of different colours that touch), each pixel goes to the core whose blend with the
    background it is nearest to, and each core's 4-connected pieces of >= min_pixels are parts; else [mask]."""
    from gaussiantoken.data.shapes_parse import connected_components

    colours = img[mask].astype(np.float64)  # [P, 3]
    cores = colour_cores(colours, background, min_pixels)
    if not 2 <= len(cores) <= MAX_CORES:
        return [mask]
    dist = np.stack([_segment_distance(colours, background, c) for c in cores], -1)  # [P, K]
    owner = np.zeros(mask.shape, dtype=np.int64)
    owner[mask] = dist.argmin(-1) + 1
    labels = connected_components(owner)
    parts = [labels == lab for lab in np.unique(labels[labels > 0])]
    return [m for m in parts if m.sum() >= min_pixels]


def foreground_components(images: np.ndarray, threshold: int = 40, min_pixels: int = 3) -> list[np.ndarray]:
    """uint8 images [N, S, S, 3] -> per image bool masks [K, S, S] of its foreground components, left to right."""
    from gaussiantoken.data.shapes_parse import connected_components

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [N, S, S, 3], got {images.dtype} {images.shape}")
    out = []
    for img in images.astype(np.int16):
        border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])  # [4S, 3]
        background = np.median(border, axis=0)
        fg = (np.abs(img - background) > threshold).any(-1)  # [S, S]
        labels = connected_components(fg.astype(np.int64))
        comps = []
        for lab in np.unique(labels[labels > 0]):
            for mask in _split_by_colour(img, labels == lab, background, min_pixels):
                if mask.sum() >= min_pixels:
                    ys, xs = np.nonzero(mask)
                    comps.append(((xs.mean(), ys.mean()), mask))
        comps.sort(key=lambda c: c[0])
        out.append(np.stack([m for _, m in comps]) if comps else np.zeros((0,) + fg.shape, dtype=bool))
    return out


def object_groups(images: np.ndarray, means: torch.Tensor, max_groups: int, radius: int = 1) -> torch.LongTensor:
    """uint8 images [N, S, S, 3] + the Gaussians' centres means [N, M, 2] (x, y in [-1, 1]) -> groups [N, M]:
    0 background, 1..max_groups the foreground components left to right (see the module docstring)."""
    from gaussiantoken.lm.object_layout import owners_from_masks

    if max_groups < 1:
        raise ValueError(f"max_groups must be >= 1, got {max_groups}")
    masks = foreground_components(images)
    owners = owners_from_masks(means, masks, images.shape[1], radius)  # [N, M], -1 background
    return torch.from_numpy(np.minimum(owners + 1, max_groups)).long()


def pixels_to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """pixels [N, 3, S, S] in [-1, 1] -> uint8 [N, S, S, 3] (as a saved PNG rounds them)."""
    return ((pixels.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def groups_from_codes(tokenizer, codes: torch.Tensor, k: int) -> torch.Tensor:
    """Object groups [N, M] of images given as LOCAL codes [N, T], from the image tokenizer's reconstruction of them
    (how captioning / VQA group an image that arrives as codes rather than pixels)."""
    codes = codes.to(next(tokenizer.parameters()).device)
    pixels = tokenizer.decode(codes)  # [N, 3, S, S]
    return object_groups(pixels_to_uint8(pixels), tokenizer.ids_to_gaussians(codes)["means"], k)


def group_slots(groups) -> list[list[int]]:
    """Groups of one image's Gaussians [M] (0 background, 1..K) -> the slot lists of groups 1..K that hold any,
    in group order (left to right); an image with no foreground group is one object of all M slots."""
    groups = [int(g) for g in groups]
    objects = [[k for k, g in enumerate(groups) if g == j] for j in range(1, max(groups, default=0) + 1)]
    objects = [o for o in objects if o]
    return objects or [list(range(len(groups)))]


def input_span(layout, codes, groups) -> list[int]:
    """An input image as the object-major span (`model.input_layout: objects`): LOCAL codes [M * G] + its
    Gaussians' groups [M] -> LM ids after <boi> up to <eoi>: one object per foreground group, left to right,
    in `lm.object_layout.ObjectLayout`'s form (the form text-to-image writes), background Gaussians left out."""
    return layout.span(codes, group_slots(groups))


__all__ = ["foreground_components", "object_groups", "pixels_to_uint8", "groups_from_codes", "group_slots", "input_span"]
