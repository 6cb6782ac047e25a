"""The multimodal LM's architecture config: `GaussianTokenLMConfig` (model_type "gaussiantoken_lm").

Owns the vocabulary layout of stage two. The LM's vocabulary is the text tokenizer's vocabulary
(ids [0, image_token_offset), including the special tokens bos/eos/pad/unk and the markers
"<boi>", "<eoi>", "<image>") followed by the image tokenizer's codes:

    LM id = image_token_offset + local id,   local id in [0, image_vocab_size)

so `vocab_size = image_token_offset + image_vocab_size` (the backbone's `text_config.vocab_size` is set
to it). Image token ids are computed, never parsed out of token strings.

Two sub-configs travel inside config.json: `text_config` (any causal-LM config that AutoConfig knows,
e.g. LlamaConfig) and `tokenizer_config` (GaussianTokenizerConfig), so the saved LM directory alone can
turn pixels into tokens and back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from transformers import AutoConfig, PretrainedConfig
from transformers.configuration_utils import SubConfigSpec

from gaussiantoken.tokenizer.configuration import GaussianTokenizerConfig
from gaussiantoken.runtime.model_dirs import LM_KIND

MODEL_TYPE = LM_KIND  # "gaussiantoken_lm" (runtime/model_dirs.py holds the kinds' names)
_TOKENIZER_MODEL_TYPE = GaussianTokenizerConfig.model_type


def _dir_model_type(path) -> str | None:
    """model_type recorded in a local directory's config.json (None when there is none)."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return None
    try:
        return json.loads(cfg.read_text()).get("model_type")
    except (OSError, json.JSONDecodeError):
        return None


def check_model_dir_kind(path, expected: str, what: str) -> None:
    """Raise ValueError when local dir `path` is not a saved model, holds a different kind of checkpoint than
    `expected`, or has truncated or corrupted config.json / weights (`runtime.model_dirs.check_model_dir`)."""
    from gaussiantoken.runtime.model_dirs import check_model_dir, looks_local

    if path is None or not looks_local(path):
        return
    check_model_dir(path, expected, what, needs_weights=False)


def as_text_config(value) -> PretrainedConfig:
    """The LM backbone config of a `text_config` value: None (a default LlamaConfig), a PretrainedConfig
    (kept), or a dict ({model_type: llama, ...} through AutoConfig.for_model); else a TypeError."""
    if value is None:
        from transformers import LlamaConfig

        return LlamaConfig()
    if isinstance(value, PretrainedConfig):
        return value
    if isinstance(value, dict):
        value = dict(value)
        model_type = value.pop("model_type", "llama")
        if model_type == MODEL_TYPE:
            raise ValueError("text_config must be a causal-LM backbone config, not another gaussiantoken_lm config")
        return AutoConfig.for_model(model_type, **value)
    raise TypeError(f"text_config must be a dict or PretrainedConfig, got {type(value).__name__}")


_as_text_config = as_text_config  # the name lm/ modules use (configuration, modeling)


def _as_tokenizer_config(value) -> GaussianTokenizerConfig:
    if value is None:
        return GaussianTokenizerConfig()
    if isinstance(value, GaussianTokenizerConfig):
        return value
    if isinstance(value, PretrainedConfig):
        raise ValueError(
            f"tokenizer_config must be a GaussianTokenizerConfig, got a {type(value).__name__} "
            f"(model_type {getattr(value, 'model_type', '?')!r})"
        )
    if isinstance(value, dict):
        value = dict(value)
        kind = value.pop("model_type", GaussianTokenizerConfig.model_type)
        if kind != GaussianTokenizerConfig.model_type:
            raise ValueError(f"tokenizer_config has model_type {kind!r}, expected {GaussianTokenizerConfig.model_type!r}")
        return GaussianTokenizerConfig(**value)
    raise TypeError(f"tokenizer_config must be a dict or GaussianTokenizerConfig, got {type(value).__name__}")


def relative_steps(grid) -> list[tuple[int, int]]:
    """The (row, column) steps a later Gaussian of an object may take from the object's first slot on a rows x
    cols slot grid (`lm.object_layout`, slots "relative"), in token order: slots ascend within an object, so rows
    go down (>= 0) and, on the first slot's own row, columns go right."""
    rows, cols = int(grid[0]), int(grid[1])
    return [(dr, dc) for dr in range(rows) for dc in range(-(cols - 1), cols) if dr > 0 or dc > 0]


def extra_token_count(spec: dict) -> int:
    """Extra LM tokens of an object layout spec (the config's `object_layout`): M slot tokens, the relative steps
    when "slots" is "relative", and <obj>."""
    steps = len(relative_steps(spec["grid"])) if spec.get("slots", "absolute") == "relative" else 0
    return int(spec["num_slots"]) + steps + 1


class GaussianTokenLMConfig(PretrainedConfig):
    """Config of `GaussianTokenForCausalLM`: backbone config + image tokenizer config + vocabulary layout.

    Args:
        text_config: backbone causal-LM config (dict with "model_type" or a PretrainedConfig; default llama).
        tokenizer_config: GaussianTokenizerConfig (or its dict) of the frozen image tokenizer.
        image_token_offset: LM id of local image code 0 (= len(text tokenizer incl. specials)).
        image_vocab_size: number of local image codes (GaussianTokenizer.vocab_size).
        tokens_per_image: image tokens per image (GaussianTokenizer.tokens_per_image).
        boi_token_id / eoi_token_id / image_token_id: text ids of "<boi>", "<eoi>", "<image>" (placeholder).
        object_layout: None (text-to-image spans in the tokenizer's grid order) or {"num_slots", "group",
            "fill"[, "slots": "relative", "grid": [rows, cols]]} of the object-major span (`lm.object_layout`); its
            `extra_token_count` extra tokens follow the image codes (vocab_size = image_token_offset +
            image_vocab_size + extra).
        image_groups: 0, or K: each input image's tokens also get a learned embedding of their Gaussian's object
            group (0 background, 1..K foreground components left to right; `lm.object_groups`).
        input_layout: "grid" (captioning / VQA read an input image as the tokenizer's codes in anchor order) or
            "objects" (as the object-major span of its foreground components, `lm.object_groups.input_span`;
            needs object_layout and image_groups).
    """

    model_type = MODEL_TYPE
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
        "tokenizer_config": SubConfigSpec(config_class=GaussianTokenizerConfig),
    }

    def __init__(
        self,
        text_config=None,
        tokenizer_config=None,
        image_token_offset: int | None = None,
        image_vocab_size: int | None = None,
        tokens_per_image: int | None = None,
        boi_token_id: int | None = None,
        eoi_token_id: int | None = None,
        image_token_id: int | None = None,
        object_layout: dict | None = None,
        image_groups: int = 0,
        input_layout: str = "grid",
        **kwargs,
    ):
        self.text_config = _as_text_config(text_config)
        self.tokenizer_config = _as_tokenizer_config(tokenizer_config)
        self.image_token_offset = None if image_token_offset is None else int(image_token_offset)
        self.image_vocab_size = None if image_vocab_size is None else int(image_vocab_size)
        if tokens_per_image is None:
            tokens_per_image = self.tokenizer_config.tokens_per_image
        self.tokens_per_image = int(tokens_per_image)
        self.boi_token_id = boi_token_id
        self.eoi_token_id = eoi_token_id
        self.image_token_id = image_token_id
        self.object_layout = None if not object_layout else dict(object_layout)
        if not isinstance(image_groups, int) or image_groups < 0:
            raise ValueError(f"image_groups must be an int >= 0, got {image_groups!r}")
        self.image_groups = int(image_groups)
        if input_layout not in ("grid", "objects"):
            raise ValueError(f"input_layout must be grid or objects, got {input_layout!r}")
        if input_layout == "objects" and not (self.object_layout and self.image_groups):
            raise ValueError("input_layout=objects needs an object_layout and image_groups > 0")
        self.input_layout = input_layout
        kwargs.setdefault("tie_word_embeddings", getattr(self.text_config, "tie_word_embeddings", False))
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            kwargs.setdefault(key, getattr(self.text_config, key, None))
        super().__init__(**kwargs)
        self.validate_layout()

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        """As PretrainedConfig.from_dict; an inconsistent saved config names its directory's config.json."""
        from gaussiantoken.runtime.model_dirs import config_from_dict

        return config_from_dict(super().from_dict, cls, config_dict, kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        check_model_dir_kind(pretrained_model_name_or_path, MODEL_TYPE, f"{cls.__name__}.from_pretrained")
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def validate_layout(self) -> None:
        """Raise ValueError naming the field when the vocabulary layout is inconsistent."""
        if self.tokens_per_image <= 0:
            raise ValueError(f"tokens_per_image must be positive, got {self.tokens_per_image}")
        if self.tokens_per_image != self.tokenizer_config.tokens_per_image:
            raise ValueError(
                f"tokens_per_image {self.tokens_per_image} does not match the tokenizer config's "
                f"{self.tokenizer_config.tokens_per_image}"
            )
        if self.image_token_offset is None:
            return
        if self.image_token_offset <= 0:
            raise ValueError(f"image_token_offset must be positive, got {self.image_token_offset}")
        for name in ("boi_token_id", "eoi_token_id", "image_token_id"):
            value = getattr(self, name)
            if value is None or not 0 <= int(value) < self.image_token_offset:
                raise ValueError(f"{name} must be a text id in [0, {self.image_token_offset}), got {value}")
        extra = self._check_object_layout()
        if self.image_vocab_size is not None:
            vocab = getattr(self.text_config, "vocab_size", None)
            if vocab is not None and vocab != self.image_token_offset + self.image_vocab_size + extra:
                more = f" + {extra} object-layout tokens" if extra else ""
                raise ValueError(
                    f"text_config.vocab_size {vocab} != image_token_offset {self.image_token_offset} + "
                    f"image_vocab_size {self.image_vocab_size}{more}: tokenizer/LM vocabulary mismatch"
                )

    def _check_object_layout(self) -> int:
        """Extra vocabulary of the object layout (0 without one); ValueError naming the bad field."""
        spec = self.object_layout
        if not spec:
            return 0
        missing = sorted({"num_slots", "group", "fill"} - set(spec))
        if missing:
            raise ValueError(f"object_layout lacks {missing}")
        M, G, fill = spec["num_slots"], spec["group"], spec["fill"]
        if not (isinstance(M, int) and isinstance(G, int) and M > 0 and G > 0 and M * G == self.tokens_per_image):
            raise ValueError(f"object_layout num_slots {M} x group {G} must be tokens_per_image {self.tokens_per_image}")
        if len(fill) != M * G or (self.image_vocab_size is not None
                                  and not all(0 <= int(v) < self.image_vocab_size for v in fill)):
            raise ValueError(f"object_layout fill must hold {M * G} local image ids in [0, {self.image_vocab_size})")
        slots, grid = spec.get("slots", "absolute"), spec.get("grid")
        if slots not in ("absolute", "relative"):
            raise ValueError(f"object_layout slots must be absolute or relative, got {slots!r}")
        if slots == "relative" and not (isinstance(grid, (list, tuple)) and len(grid) == 2
                                        and all(isinstance(v, int) and v > 0 for v in grid) and grid[0] * grid[1] >= M):
            raise ValueError(f"object_layout slots=relative needs grid [rows, cols] holding {M} slots, got {grid!r}")
        return extra_token_count(spec)

    @property
    def vocab_size(self) -> int:
        return self.text_config.vocab_size

    def get_text_config(self, decoder=None, encoder=None) -> PretrainedConfig:
        return self.text_config

    @property
    def max_position_embeddings(self) -> int | None:
        return getattr(self.text_config, "max_position_embeddings", None)


__all__ = ["GaussianTokenLMConfig", "MODEL_TYPE", "as_text_config", "check_model_dir_kind", "extra_token_count", "relative_steps"]
