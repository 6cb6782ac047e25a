"""The object-major text-to-image sequence (`data.t2i_layout: objects`): an image span as a list of objects.

The Gaussians are splatted as a sum, so their order in the LM's sequence is free. The anchor-slot layout
(`grid`, the tokenizer's own order) asks the LM to emit all 32 Gaussians in a fixed raster, background
included, and leaves it to find which Gaussians make up one object: measured, it learns single objects
but not the count or the composition (two-object prompts come out with three or more blobs). The object
layout writes the span as the scene's objects, in the caption's order, each as the Gaussians that draw
it, with an explicit object marker:

    <boi> (<obj> (SLOT f o sr)+)+ <eoi> eos

- `SLOT` is one of M slot tokens (the Gaussian's anchor slot k, which its offset token is relative to);
  f / o / sr are its G = 3 tokens exactly as the tokenizer coded them. Within an object slots ascend.
- Gaussians on no object are not written: decoding fills every unwritten slot with that slot's
  usual background triple (`fit_fill`, kept in the LM config), so the LM never models the background.
- The number of objects is the number of `<obj>` markers, so counting is one decision per object.
- With `slots: relative` (`data.object_slots`) only an object's first Gaussian names its slot; each later one
  names its step (rows down, columns right) from that slot on the tokenizer's anchor grid, so an object the
  tokenizer codes alike at two places (a `translation_equivariant` tokenizer, moved by whole anchor steps)
  is written alike but for its first slot token:

      <boi> (<obj> SLOT f o sr (STEP f o sr)*)+ <eoi> eos

Owns `ObjectLayout` (the extra vocabulary, span <-> anchor-layout codes), `assign_gaussians` (which
object each Gaussian of an encoded Shapes scene draws), `fit_fill` (the background of unwritten slots) and `ObjectGrammar` (the state machine that keeps
generation inside the span grammar, vectorized over rows).

The extra tokens (M slot tokens, the relative steps if any, then `<obj>`) sit after the image codes: LM id
image_token_offset + image_vocab_size + j. Captioning and VQA still read the tokenizer's own codes in anchor order (with
`data.image_input_loss` they also learn to predict them, `lm.sequences`).
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
import torch

from gaussiantoken.lm.configuration import relative_steps

NEG_INF = float("-inf")


class ObjectLayout:
    """Extra vocabulary and span conversion of the object-major layout.

    num_slots M, group G (tokens per Gaussian), fill: M * G LOCAL ids (each slot's background triple),
    extra_offset: LM id of slot token 0 (= image_token_offset + image_vocab_size), image_token_offset,
    max_objects: the most objects a span may hold (bounds the sequence length; the Shapes world has <= 3).
    slots: "absolute" (every Gaussian names its slot) or "relative" (an object's first Gaussian names its slot,
    each later one the step (rows down, columns right) from it on the `grid` = (rows, cols) of the tokenizer's
    anchors: one object drawn at two places differs in its first slot token only, when the tokenizer codes it
    alike there, as a `translation_equivariant` one does at whole anchor steps).
    """

    def __init__(self, num_slots: int, group: int, fill: Sequence[int], extra_offset: int, image_token_offset: int,
                 max_objects: int = 8, slots: str = "absolute", grid: Sequence[int] | None = None):
        self.num_slots, self.group, self.max_objects = int(num_slots), int(group), int(max_objects)
        self.fill = [int(v) for v in fill]
        if len(self.fill) != self.num_slots * self.group:
            raise ValueError(f"object layout fill has {len(self.fill)} ids, expected {self.num_slots} x {self.group}")
        self.extra_offset, self.image_token_offset = int(extra_offset), int(image_token_offset)
        if slots not in ("absolute", "relative"):
            raise ValueError(f"object layout slots must be absolute or relative, got {slots!r}")
        self.slots = slots
        self.grid = None if grid is None else (int(grid[0]), int(grid[1]))
        if slots == "relative" and (self.grid is None or self.grid[0] * self.grid[1] < self.num_slots):
            raise ValueError(f"relative object slots need a grid (rows, cols) holding {self.num_slots} slots, got {grid}")
        self.steps = relative_steps(self.grid) if slots == "relative" else []
        # target[k, j]: the slot that step j leads to from first slot k (-1: off the grid) [M, S]
        cols = self.grid[1] if self.grid else 1
        self.target = torch.full((self.num_slots, len(self.steps)), -1, dtype=torch.long)
        for k in range(self.num_slots):
            r, c = divmod(k, cols)
            for j, (dr, dc) in enumerate(self.steps):
                t = (r + dr) * cols + (c + dc)
                if 0 <= c + dc < cols and t < self.num_slots:
                    self.target[k, j] = t
        self._step_of = {(dr, dc): j for j, (dr, dc) in enumerate(self.steps)}

    # ---- ids
    @property
    def num_extra_tokens(self) -> int:
        return self.num_slots + len(self.steps) + 1

    @property
    def step_offset(self) -> int:
        """LM id of relative step 0 (right after the slot tokens)."""
        return self.extra_offset + self.num_slots

    @property
    def obj_token_id(self) -> int:
        return self.extra_offset + self.num_slots + len(self.steps)

    def slot_token_id(self, k: int) -> int:
        return self.extra_offset + int(k)

    def step_token_id(self, first: int, k: int) -> int:
        """LM id of the step from slot `first` to the later slot `k` of the same object."""
        cols = self.grid[1]
        (r0, c0), (r, c) = divmod(int(first), cols), divmod(int(k), cols)
        j = self._step_of.get((r - r0, c - c0))
        if j is None:
            raise ValueError(f"slot {k} is not a later slot of an object that starts at slot {first}")
        return self.step_offset + j

    @property
    def max_span_tokens(self) -> int:
        """Longest span after <boi>, <eoi> included: every slot written, max_objects markers."""
        return self.num_slots * (self.group + 1) + self.max_objects + 1

    # ---- (de)serialisation in the LM config
    def to_dict(self) -> dict:
        out = {"num_slots": self.num_slots, "group": self.group, "fill": list(self.fill), "max_objects": self.max_objects}
        if self.slots == "relative":
            out.update(slots=self.slots, grid=list(self.grid))
        return out

    @classmethod
    def from_config(cls, config) -> "ObjectLayout | None":
        """From a GaussianTokenLMConfig (None when it has no object layout)."""
        spec = getattr(config, "object_layout", None)
        if not spec:
            return None
        return cls(spec["num_slots"], spec["group"], spec["fill"], config.image_token_offset + config.image_vocab_size,
                   config.image_token_offset, spec.get("max_objects", 8), spec.get("slots", "absolute"), spec.get("grid"))

    # ---- spans
    def span(self, codes: Sequence[int], objects: Sequence[Sequence[int]]) -> list[int]:
        """LOCAL codes [M * G] (anchor order) + slot lists per object (caption order) -> LM ids after <boi>
        up to, not including, <eoi>."""
        G, off = self.group, self.image_token_offset
        out: list[int] = []
        seen: set[int] = set()
        if not 1 <= len(objects) <= self.max_objects:
            raise ValueError(f"an object span holds 1 to {self.max_objects} objects, got {len(objects)}")
        for slots in objects:
            if not slots:
                raise ValueError("every object of an object span needs at least one Gaussian")
            out.append(self.obj_token_id)
            ordered = sorted(int(s) for s in slots)
            for i, k in enumerate(ordered):
                if not 0 <= k < self.num_slots or k in seen:
                    raise ValueError(f"object slot {k} is out of range [0, {self.num_slots}) or used twice")
                seen.add(k)
                head = self.step_token_id(ordered[0], k) if self.slots == "relative" and i else self.slot_token_id(k)
                out += [head, *(off + int(c) for c in codes[k * G:(k + 1) * G])]
        return out

    def span_to_codes(self, span: Sequence[int]) -> list[int]:
        """LM ids of a span (as `span` writes them, <eoi> or padding after it ignored) -> LOCAL codes [M * G]."""
        G, off = self.group, self.image_token_offset
        codes = list(self.fill)
        ids = [int(i) for i in span]
        first, i = -1, 0
        while i < len(ids):
            t = ids[i]
            if t == self.obj_token_id:
                first = -1
                i += 1
                continue
            if self.extra_offset <= t < self.step_offset:
                k = first = t - self.extra_offset
            elif self.step_offset <= t < self.obj_token_id and first >= 0:
                k = int(self.target[first, t - self.step_offset])
                if k < 0:
                    raise ValueError(f"object span steps off the slot grid from slot {first}")
            else:
                break  # <eoi> (or anything after it)
            group = ids[i + 1:i + 1 + G]
            if len(group) < G:
                raise ValueError(f"object span ends inside Gaussian slot {k}")
            codes[k * G:(k + 1) * G] = [g - off for g in group]
            i += 1 + G
        return codes

    def spans_to_lm_ids(self, spans: torch.Tensor) -> torch.LongTensor:
        """Generated spans [B, L] (LM ids) -> anchor-layout image LM ids [B, M * G]."""
        rows = [self.span_to_codes(row) for row in spans.tolist()]
        return torch.tensor(rows, dtype=torch.long, device=spans.device) + self.image_token_offset


# ----------------------------------------------------------------------------------------------
# Which object each Gaussian draws


@torch.no_grad()
def fit_fill(tokenizer, scenes: Sequence[Sequence[dict]], radius: int = 1, batch_size: int = 256) -> list[int]:
    """The fill of unwritten slots: per slot, its most common (f, o, sr) among the Gaussians that draw no
    object (`assign_gaussians`) when the tokenizer encodes these Shapes scenes; the slot's most common triple
    overall where it never lands on the background. -> LOCAL ids [M * G] (anchor order)."""
    from gaussiantoken.data.shapes_render import render_batch
    from gaussiantoken.lm.extract import encode_uint8

    S = int(tokenizer.config.image_size)
    ids = encode_uint8(tokenizer, render_batch(scenes, S), batch_size)  # [N, T]
    means = tokenizer.ids_to_gaussians(ids)["means"]  # [N, M, 2]
    N, M = means.shape[:2]
    grouped = ids.view(N, M, -1)  # [N, M, G]
    background = torch.ones(N, M, dtype=torch.bool)  # [N, M]
    for i, objects in enumerate(assign_gaussians(means, scenes, S, radius)):
        for slots in objects:
            background[i, slots] = False
    fill: list[int] = []
    for k in range(M):
        rows = grouped[background[:, k], k] if bool(background[:, k].any()) else grouped[:, k]  # [n, G]
        fill += list(Counter(map(tuple, rows.tolist())).most_common(1)[0][0])
    return [int(v) for v in fill]


def object_masks(scenes: Sequence[Sequence[dict]], image_size: int) -> list[np.ndarray]:
    """Per scene, bool [K, S, S]: the pixels object k paints when drawn alone."""
    from gaussiantoken.data.shapes_render import render_batch
    from gaussiantoken.data.shapes_world import BACKGROUND

    flat = [[o] for scene in scenes for o in scene]
    alone = render_batch(flat, image_size) if flat else np.zeros((0, image_size, image_size, 3), np.uint8)
    painted = (alone != np.array(BACKGROUND, dtype=np.uint8)).any(-1)  # [sum K, S, S]
    out, s = [], 0
    for scene in scenes:
        out.append(painted[s:s + len(scene)])
        s += len(scene)
    return out


def _centre_pixels(means: torch.Tensor, image_size: int) -> np.ndarray:
    """Gaussian centres [N, M, 2] (x, y in [-1, 1]) -> the pixel under each, [N, M, 2] int (x, y)."""
    S = int(image_size)
    return ((means.detach().float().cpu() + 1) / 2 * S).clamp(0, S - 1e-3).long().numpy()


def owners_from_masks(means: torch.Tensor, masks: Sequence[np.ndarray], image_size: int, radius: int = 1) -> np.ndarray:
    """Gaussian centres means [N, M, 2] + per image bool masks [K, S, S] (one per object, later ones drawn over
    earlier ones) -> owner [N, M]: the object painted under the centre, else the object nearest within
    `radius` pixels (Chebyshev rings, the last-drawn on a tie), else -1 (background)."""
    pix = _centre_pixels(means, image_size)
    N, M = pix.shape[:2]
    owner = np.full((N, M), -1)
    for i, m in enumerate(masks):  # m [K, S, S]
        x, y = pix[i, :, 0], pix[i, :, 1]
        for k in range(m.shape[0]):
            owner[i][m[k, y, x]] = k
        for r in range(1, radius + 1):
            grown = dilate(m, r)
            free = owner[i] == -1
            for k in range(m.shape[0]):
                owner[i][free & grown[k, y, x]] = k
    return owner


def assign_gaussians(means: torch.Tensor, scenes: Sequence[Sequence[dict]], image_size: int,
                     radius: int = 1) -> list[list[list[int]]]:
    """Gaussian centres means [N, M, 2] (x, y in [-1, 1]) + the scenes -> per scene, per object (scene
    order), the slots of the Gaussians that draw it.

    A Gaussian belongs to the object painted under its centre (the last-drawn object where they overlap,
    as the renderer paints); else to the object nearest within `radius` pixels (Chebyshev rings, the
    last-drawn on a tie); else to none (background): `owners_from_masks`. An object that no Gaussian reaches
    this way (tiny, or a weak tokenizer) takes the Gaussian whose centre is nearest its own among the
    background ones and those of objects with more than one, so every object has at least one.
    """
    S = int(image_size)
    all_masks = object_masks(scenes, S)
    owners = owners_from_masks(means, all_masks, S, radius)  # [N, M]
    pix = _centre_pixels(means, S)
    result = []
    for i, masks in enumerate(all_masks):
        owner = owners[i]
        for k, obj in enumerate(scenes[i]):  # an object no centre reached takes the nearest spare Gaussian
            if (owner == k).any():
                continue
            counts = np.bincount(owner[owner >= 0], minlength=masks.shape[0])
            spare = (owner == -1) | ((owner >= 0) & (counts[np.maximum(owner, 0)] > 1))  # [M]
            if spare.any():
                d = (pix[i, :, 0] + 0.5 - float(obj["x"])) ** 2 + (pix[i, :, 1] + 0.5 - float(obj["y"])) ** 2
                owner[int(np.argmin(np.where(spare, d, np.inf)))] = k
        result.append([np.nonzero(owner == k)[0].tolist() for k in range(masks.shape[0])])
    return result


def dilate(masks: np.ndarray, r: int) -> np.ndarray:
    """bool masks [K, S, S] grown by r pixels (Chebyshev distance)."""
    out = masks.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out |= _pad_shift(masks, dy, dx)
    return out


def _pad_shift(masks: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """masks [K, S, S] shifted by (dy, dx) with zeros entering (no wrap-around)."""
    out = np.zeros_like(masks)
    S = masks.shape[-1]
    ys, yd = (slice(0, S - dy), slice(dy, S)) if dy >= 0 else (slice(-dy, S), slice(0, S + dy))
    xs, xd = (slice(0, S - dx), slice(dx, S)) if dx >= 0 else (slice(-dx, S), slice(0, S + dx))
    out[:, yd, xd] = masks[:, ys, xs]
    return out


def caption_order(scene: Sequence[dict], caption: str) -> list[int]:
    """Indices of the scene's objects in the order its caption names them (`data.shapes_text.caption_for`:
    one object; two: subject first; three: the canonical left-to-right order). ValueError when the caption
    does not describe the scene."""
    from gaussiantoken.data.shapes_text import parse_caption
    from gaussiantoken.data.shapes_world import canonical_order, relation_holds

    if len(scene) == 1:
        return [0]
    if len(scene) >= 3:
        where = {id(obj): i for i, obj in enumerate(scene)}
        return [where[id(obj)] for obj in canonical_order(list(scene))]
    parsed = parse_caption(caption)
    if parsed is not None and len(parsed["objects"]) == 2:
        for a, b in ((0, 1), (1, 0)):
            same = all(parsed["objects"][j][k] == scene[i][k] for j, i in ((0, a), (1, b)) for k in ("color", "shape", "size"))
            if same and relation_holds(scene[a], scene[b], parsed["relation"]):
                return [a, b]
    raise ValueError(f"the caption {caption!r} does not describe the scene {list(scene)!r}")


# ----------------------------------------------------------------------------------------------
# Generation inside the span grammar

# phases of a row: what the next token may be
_START, _SLOT, _TOKEN, _AFTER, _DONE = 0, 1, 2, 3, 4


class ObjectGrammar:
    """Which LM ids the next token of an object-major span may take, row by row.

    After <boi>: <obj>. After <obj>: an unused slot token. After a slot token: its G tokens, each from
    its token kind's range (the tokenizer's `token_layout`). After a whole Gaussian: a later unused slot
    of the same object (relative slots: a step from the object's first slot that lands on such a slot of
    the grid), <obj> (while a slot is unused and fewer than max_objects began) or <eoi>. After <eoi>: <eoi> (rows already done
    are padded by the caller). Every span this allows decodes (`ObjectLayout.span_to_codes`).
    """

    def __init__(self, layout: ObjectLayout, token_layout, eoi_token_id: int):
        self.layout = layout
        self.kinds = [(int(s[1]), int(s[2])) for s in token_layout]  # (start, size) per token kind
        if len(self.kinds) != layout.group:
            raise ValueError(f"token_layout has {len(self.kinds)} kinds but the object layout groups {layout.group}")
        self.eoi_token_id = int(eoi_token_id)
        self.max_new_tokens = layout.max_span_tokens

    @classmethod
    def from_model(cls, model) -> "ObjectGrammar":
        return cls(ObjectLayout.from_config(model.config), model.image_tokenizer.token_layout,
                   model.config.eoi_token_id)

    def stepper(self, rows: int, vocab_size: int, device) -> "_ObjectStepper":
        return _ObjectStepper(self, rows, vocab_size, device)

    def images(self, new: torch.Tensor) -> torch.LongTensor:
        """Generated spans [R, <= max_new_tokens] -> anchor-layout image LM ids [R, tokens_per_image]."""
        return self.layout.spans_to_lm_ids(new)


class _ObjectStepper:
    """The grammar's state over R rows: bias() -> additive mask [R, V]; advance(tokens [R])."""

    def __init__(self, grammar: ObjectGrammar, rows: int, vocab_size: int, device):
        lay = grammar.layout
        self.g, self.M, self.G = grammar, lay.num_slots, lay.group
        if lay.obj_token_id >= vocab_size or grammar.eoi_token_id >= vocab_size:
            raise ValueError(f"the object grammar needs ids up to {lay.obj_token_id} but the LM vocabulary has {vocab_size}")
        self.vocab, self.device = int(vocab_size), device
        self.relative = lay.slots == "relative"
        self.phase = torch.full((rows,), _START, dtype=torch.long, device=device)
        self.kind = torch.zeros(rows, dtype=torch.long, device=device)  # next token kind inside a Gaussian
        self.used = torch.zeros(rows, self.M, dtype=torch.bool, device=device)
        self.last = torch.full((rows,), -1, dtype=torch.long, device=device)  # last slot of the current object
        self.first = torch.zeros(rows, dtype=torch.long, device=device)  # first slot of the current object
        self.objects = torch.zeros(rows, dtype=torch.long, device=device)  # <obj> markers so far
        kinds = torch.full((self.G, vocab_size), NEG_INF, device=device)  # [G, V]
        for j, (start, size) in enumerate(grammar.kinds):
            kinds[j, lay.image_token_offset + start:lay.image_token_offset + start + size] = 0.0
        self.kind_bias = kinds
        self.slot_ids = torch.arange(self.M, device=device)
        self.target = lay.target.to(device)  # [M, S] slot reached by step j from first slot k (-1: off the grid)

    def bias(self) -> torch.Tensor:
        lay, R = self.g.layout, self.phase.shape[0]
        out = torch.full((R, self.vocab), NEG_INF, device=self.device)  # [R, V]
        free = ~self.used  # [R, M]
        later = free & (self.slot_ids[None, :] > self.last[:, None])  # [R, M]
        starting, after = (self.phase == _SLOT)[:, None], (self.phase == _AFTER)[:, None]  # [R, 1]
        # absolute slot tokens: the first Gaussian of an object (any free slot); later ones too in absolute mode
        slot_ok = (starting & free) | (after & later & (not self.relative))
        out[:, lay.extra_offset:lay.step_offset] = torch.where(slot_ok, 0.0, NEG_INF)
        if self.relative:  # a later Gaussian: a step from the first slot to a later free slot on the grid
            tgt = self.target[self.first]  # [R, S]
            step_ok = after & (tgt >= 0) & later.gather(1, tgt.clamp(min=0))
            out[:, lay.step_offset:lay.obj_token_id] = torch.where(step_ok, 0.0, NEG_INF)
        obj_ok = (self.phase == _START) | ((self.phase == _AFTER) & free.any(dim=1) & (self.objects < lay.max_objects))
        out[:, lay.obj_token_id] = torch.where(obj_ok, 0.0, NEG_INF)
        eoi_ok = (self.phase == _AFTER) | (self.phase == _DONE)
        out[:, self.g.eoi_token_id] = torch.where(eoi_ok, 0.0, NEG_INF)
        inside = (self.phase == _TOKEN)[:, None]  # [R, 1]; no host sync in the decode loop
        return torch.where(inside, self.kind_bias[self.kind], out)

    def advance(self, tokens: torch.Tensor) -> None:
        lay = self.g.layout
        tokens = tokens.to(self.device)
        is_obj = tokens == lay.obj_token_id
        is_slot = (tokens >= lay.extra_offset) & (tokens < lay.step_offset)
        is_step = (tokens >= lay.step_offset) & (tokens < lay.obj_token_id)
        is_eoi = tokens == self.g.eoi_token_id
        inside = self.phase == _TOKEN
        slot = (tokens - lay.extra_offset).clamp(0, self.M - 1)
        if self.relative:
            step = (tokens - lay.step_offset).clamp(0, max(self.target.shape[1] - 1, 0))
            stepped = self.target[self.first, step].clamp(min=0)  # [R]
            slot = torch.where(is_step, stepped, slot)
        # a token inside a Gaussian: count it; the last one ends the Gaussian
        kind = torch.where(inside, self.kind + 1, self.kind)
        ended = inside & (kind == self.G)
        phase = torch.where(ended, torch.full_like(self.phase, _AFTER), self.phase)
        kind = torch.where(ended, torch.zeros_like(kind), kind)
        phase = torch.where(~inside & is_obj, torch.full_like(phase, _SLOT), phase)
        self.last = torch.where(~inside & is_obj, torch.full_like(self.last, -1), self.last)
        self.objects = self.objects + (~inside & is_obj).long()
        took = ~inside & (is_slot | is_step)
        self.first = torch.where(~inside & is_slot & (self.phase == _SLOT), slot, self.first)
        self.used |= took[:, None] & (self.slot_ids[None, :] == slot[:, None])  # [R, M]; no boolean indexing (host sync)
        self.last = torch.where(took, slot, self.last)
        phase = torch.where(took, torch.full_like(phase, _TOKEN), phase)
        phase = torch.where(~inside & is_eoi, torch.full_like(phase, _DONE), phase)
        self.phase, self.kind = phase, kind

    def finished(self) -> bool:
        return bool((self.phase == _DONE).all())


__all__ = ["ObjectLayout", "ObjectGrammar", "assign_gaussians", "owners_from_masks", "fit_fill", "caption_order", "object_masks", "dilate"]
