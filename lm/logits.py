"""The logits side of generation: the image grammar and the logits processors that `lm.generation` (the
decode loops) applies, and the checks of the sampling settings.

Owns:
- `ImageGrammar`: which LM ids image position t may take (offset + token_layout[t % L] of the image
  tokenizer's slot ranges; at t == tokens_per_image only <eoi>), as additive bias tables [L + 1, V];
- the processors, applied in this order for images: `ClassifierFreeGuidanceLogitsProcessor` (rows
  [cond; uncond], guided = uncond + g (cond - uncond) written to both halves),
  `ImageGrammarLogitsProcessor` (the grammar's mask for the current position), `SamplingLogitsProcessor`
  (temperature, top-k, top-p, then the token is DRAWN here with Gumbel-max noise from a `torch.Generator`
  and returned as one-hot scores, so `generate` runs greedy and takes it; temperature 0 = argmax); and
  `TextOnlyLogitsProcessor` for captions and answers (image tokens, <boi>, <eoi>, <image> masked);
- `filter_logits`, `gumbel_argmax`, `device_generator` (the sampling primitives);
- `check_guidance_scale` and `validate_sampling`: THE checks of guidance and sampling settings, used by
  the generation functions, the text-to-image pipeline and the evaluation config alike.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from transformers import LogitsProcessor

NEG_INF = float("-inf")


# ----------------------------------------------------------------------------------------------
# The image grammar


class ImageGrammar:
    """Which LM ids each image position may take.

    token_layout: [(name, start, size), ...] slot ranges of ONE Gaussian group (local ids);
    position t of an image takes local ids in token_layout[t % L]; LM id = local id + offset.
    """

    def __init__(self, token_layout, image_token_offset: int, tokens_per_image: int, eoi_token_id: int):
        self.slots = [(int(s[1]), int(s[2])) for s in token_layout]  # (start, size) per slot
        if not self.slots:
            raise ValueError("token_layout is empty")
        for start, size in self.slots:
            if start < 0 or size < 1:
                raise ValueError(f"bad token_layout slot (start={start}, size={size})")
        self.offset = int(image_token_offset)
        self.tokens_per_image = int(tokens_per_image)
        self.eoi_token_id = int(eoi_token_id)
        self.image_vocab_size = max(start + size for start, size in self.slots)
        self._bias: dict[tuple, torch.Tensor] = {}

    @classmethod
    def from_model(cls, model) -> "ImageGrammar":
        """Read the grammar from a GaussianTokenForCausalLM (its tokenizer's token_layout + the LM config)."""
        config = model.config
        return cls(
            model.image_tokenizer.token_layout,
            config.image_token_offset,
            config.tokens_per_image,
            config.eoi_token_id,
        )

    def slot_bounds(self, step: int) -> tuple[int, int]:
        """[lo, hi) LM-id range allowed at image position `step` (< tokens_per_image)."""
        start, size = self.slots[step % len(self.slots)]
        return self.offset + start, self.offset + start + size

    def bias_table(self, vocab_size: int, device, dtype=torch.float32) -> torch.Tensor:
        """Additive masks [L + 1, V]: row k < L allows slot k, row L allows only <eoi>; 0 / -inf."""
        key = (vocab_size, str(device), dtype)
        if key not in self._bias:
            if self.offset + self.image_vocab_size > vocab_size or self.eoi_token_id >= vocab_size:
                raise ValueError(
                    f"the image grammar needs ids up to {self.offset + self.image_vocab_size} but the LM "
                    f"vocabulary has {vocab_size}"
                )
            table = torch.full((len(self.slots) + 1, vocab_size), NEG_INF, dtype=dtype)  # [L+1, V]
            for k, (start, size) in enumerate(self.slots):
                table[k, self.offset + start : self.offset + start + size] = 0.0
            table[-1, self.eoi_token_id] = 0.0
            self._bias[key] = table.to(device)
        return self._bias[key]

    def row_index(self, step: int) -> int:
        """Row of `bias_table` for generation step `step` (0-based; step == tokens_per_image -> <eoi>)."""
        if step >= self.tokens_per_image:
            return len(self.slots)
        return step % len(self.slots)

    @property
    def max_new_tokens(self) -> int:
        """Tokens generated after <boi>: the image, then <eoi>."""
        return self.tokens_per_image + 1

    def stepper(self, rows: int, vocab_size: int, device) -> "_GridStepper":
        """The grammar's state over `rows` generated rows (the interface `lm.object_layout.ObjectGrammar` shares)."""
        return _GridStepper(self, vocab_size, device)

    def images(self, new: torch.Tensor) -> torch.LongTensor:
        """Generated ids [R, >= tokens_per_image] -> the image LM ids [R, tokens_per_image] (checked)."""
        images = new[:, : self.tokens_per_image]
        if images.shape[1] != self.tokens_per_image or not bool(self.check(images).all()):
            raise RuntimeError("internal error: generated image tokens violate the image grammar")
        return images

    def check(self, ids: torch.Tensor) -> torch.Tensor:
        """BoolTensor [N]: which rows of LM ids [N, T] obey the grammar."""
        if ids.ndim != 2 or ids.shape[1] != self.tokens_per_image:
            return torch.zeros(ids.shape[0] if ids.ndim else 0, dtype=torch.bool)
        steps = torch.arange(self.tokens_per_image, device=ids.device)
        lo = torch.tensor([self.slot_bounds(int(t))[0] for t in steps], device=ids.device)
        hi = torch.tensor([self.slot_bounds(int(t))[1] for t in steps], device=ids.device)
        return ((ids >= lo) & (ids < hi)).all(dim=1)


class _GridStepper:
    """Grid grammar state: the position only (every row is at the same one). bias() -> [V]."""

    def __init__(self, grammar: ImageGrammar, vocab_size: int, device):
        self.grammar, self.step = grammar, 0
        self.table = grammar.bias_table(vocab_size, device)  # [L+1, V]

    def bias(self) -> torch.Tensor:
        return self.table[self.grammar.row_index(self.step)]

    def advance(self, tokens: torch.Tensor) -> None:
        self.step += 1

    def finished(self) -> bool:
        return self.step >= self.grammar.max_new_tokens


# ----------------------------------------------------------------------------------------------
# Logits processors


def check_guidance_scale(guidance_scale, name: str = "guidance_scale") -> float:
    """A finite real number >= 1 (1 disables guidance; < 1, nan and inf are undefined) -> float; else a
    ValueError naming `name` (the argument, or a config key)."""
    if (isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float))
            or not math.isfinite(guidance_scale) or not guidance_scale >= 1.0):
        raise ValueError(f"{name} must be a finite number >= 1 (1 disables guidance; < 1 is undefined), "
                         f"got {guidance_scale!r}")
    return float(guidance_scale)


class ClassifierFreeGuidanceLogitsProcessor(LogitsProcessor):
    """Rows [0, B) are conditional, rows [B, 2B) unconditional (or negative prompt) of the SAME images.

    Returns guided = uncond + g (cond - uncond) in both halves [2B, V], so both halves then pick
    the same token and their KV caches stay in step. g == 1 returns cond exactly. Finite scores stay
    finite (an overflow is clamped to the dtype's range, NaN becomes -inf), so the masks applied after
    this never leave a row without an allowed token.
    """

    def __init__(self, guidance_scale: float):
        self.guidance_scale = check_guidance_scale(guidance_scale)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] % 2:
            raise ValueError(f"classifier-free guidance needs an even batch [cond; uncond], got {scores.shape[0]}")
        cond, uncond = scores.chunk(2)  # [B, V] each
        if self.guidance_scale == 1.0:
            guided = cond
        else:
            big = torch.finfo(scores.dtype).max
            guided = (uncond + self.guidance_scale * (cond - uncond)).nan_to_num(nan=NEG_INF, posinf=big)
            guided = torch.where(torch.isfinite(cond) & torch.isfinite(uncond), guided.clamp(-big, big), guided)
        return torch.cat([guided, guided])  # [2B, V]


class ImageGrammarLogitsProcessor(LogitsProcessor):
    """Masks every id the image grammar forbids at the current image position.

    `grammar`: an `ImageGrammar` or an `lm.object_layout.ObjectGrammar` (anything with `stepper`). The
    image starts right after the (left-padded) prompt of length `prompt_length`: the tokens after it are
    fed to the grammar's state, which gives the mask of the next token.
    """

    def __init__(self, grammar, prompt_length: int):
        self.grammar = grammar
        self.prompt_length = int(prompt_length)
        self._state, self._seen = None, 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_length
        if self._state is None or step == 0 or step < self._seen:  # a new generation (its first call is step 0)
            self._state, self._seen = self.grammar.stepper(scores.shape[0], scores.shape[-1], scores.device), 0
        while self._seen < step:
            self._state.advance(input_ids[:, self.prompt_length + self._seen])
            self._seen += 1
        return scores + self._state.bias().to(scores.dtype)


class TextOnlyLogitsProcessor(LogitsProcessor):
    """Forbids image tokens (ids >= image_token_offset) and the image special tokens (<boi>, <eoi>,
    the <image> placeholder): captions and answers are plain text."""

    def __init__(self, image_token_offset: int, banned_ids: Iterable[int] = ()):
        self.image_token_offset = int(image_token_offset)
        self.banned_ids = sorted({int(i) for i in banned_ids if i is not None})
        self._bias: dict[tuple, torch.Tensor] = {}

    @classmethod
    def from_model(cls, model) -> "TextOnlyLogitsProcessor":
        c = model.config
        return cls(c.image_token_offset, [c.boi_token_id, c.eoi_token_id, c.image_token_id])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        key = (scores.shape[-1], str(scores.device), scores.dtype)
        if key not in self._bias:
            bias = torch.zeros(scores.shape[-1], dtype=scores.dtype)  # [V]
            bias[self.image_token_offset :] = NEG_INF
            bias[[i for i in self.banned_ids if i < scores.shape[-1]]] = NEG_INF
            self._bias[key] = bias.to(scores.device)
        return scores + self._bias[key]


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus) on logits [B, V]; removed entries become -inf."""
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # [B, 1]
        logits = logits.masked_fill(logits < kth, NEG_INF)
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # [B, V]
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass strictly before each entry
        remove_sorted = before >= top_p  # the top entry always stays
        remove = torch.zeros_like(remove_sorted).scatter(1, order, remove_sorted)
        logits = logits.masked_fill(remove, NEG_INF)
    return logits


def gumbel_argmax(logits: torch.Tensor, uniform: torch.Tensor) -> torch.LongTensor:
    """Sample from softmax(logits) [B, V] with uniform noise [B, V] (Gumbel-max); -> [B]."""
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-20, 1.0 - 1e-7)))
    return torch.argmax(logits + gumbel, dim=-1)


def device_generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """The generator to draw noise on `device`: `generator` itself when it lives there, else a fresh
    one seeded from a number drawn from `generator` (deterministic given the seed)."""
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    device = torch.device(device)
    if generator.device.type == device.type:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


class SamplingLogitsProcessor(LogitsProcessor):
    """Draws the next token (temperature / top-k / top-p / generator) and returns one-hot scores
    (0 at the token, -inf elsewhere) so greedy `generate` takes it. `paired=True`: rows are
    [cond; uncond] copies; one token is drawn per pair and given to both rows."""

    def __init__(self, temperature=1.0, top_k=None, top_p=None, generator=None, paired=False):
        validate_sampling(temperature, top_k, top_p)
        self.temperature, self.top_k, self.top_p = float(temperature), top_k, top_p
        self.generator, self.paired = generator, paired

    def sample(self, logits: torch.Tensor) -> torch.LongTensor:
        """logits [B, V] -> tokens [B]."""
        if self.temperature == 0.0:
            return torch.argmax(logits, dim=-1)
        logits = logits.float()
        # softmax-invariant shift: each row's best entry is 0, so no temperature can turn a row all -inf
        logits = filter_logits(logits - logits.amax(dim=-1, keepdim=True), self.temperature, self.top_k, self.top_p)
        uniform = torch.rand(logits.shape, generator=self.generator, device=logits.device)
        return gumbel_argmax(logits, uniform)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows = scores[: scores.shape[0] // 2] if self.paired else scores  # [B, V]
        tokens = self.sample(rows)  # [B]
        if self.paired:
            tokens = torch.cat([tokens, tokens])
        out = torch.full_like(scores, NEG_INF)
        return out.scatter_(1, tokens[:, None], 0.0)


def validate_sampling(temperature, top_k, top_p) -> None:
    """temperature a finite number >= 0 (0 = greedy), top_k a positive int or None, top_p in (0, 1] or None."""
    if not (isinstance(temperature, (int, float)) and temperature >= 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")


__all__ = [
    "NEG_INF", "ImageGrammar", "check_guidance_scale", "validate_sampling", "ClassifierFreeGuidanceLogitsProcessor",
    "ImageGrammarLogitsProcessor", "TextOnlyLogitsProcessor", "SamplingLogitsProcessor", "filter_logits",
    "gumbel_argmax", "device_generator",
]
