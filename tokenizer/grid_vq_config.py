"""`GridVQConfig`: the architecture of the grid-VQ baseline tokenizer (`grid_vq.GridVQTokenizer`) and its
presets. Light at import (transformers' PretrainedConfig only), so it can be registered with AutoConfig
without loading torch modules. model_type "grid_vq_tokenizer"; tokens_per_image = h * w of `grid_size`.
"""

from __future__ import annotations

from transformers import PretrainedConfig

from .configuration import GRADIENT_ESTIMATORS, OUTPUT_ACTIVATIONS


class GridVQConfig(PretrainedConfig):
    """Architecture of `GridVQTokenizer` (module docstring); run settings live in the trainer's YAML."""

    model_type = "grid_vq_tokenizer"

    def __init__(
        self,
        image_size: int = 32,
        in_channels: int = 3,
        grid_size: list[int] | tuple[int, int] = (8, 8),  # (h, w) codes per image
        encoder_channels: int = 32,  # width at full resolution; level i (after i downsamples): x channel_mult[i]
        channel_mult: list[int] | tuple[int, ...] = (1, 2, 2),  # per level (the last repeats), both halves
        encoder_num_res_blocks: int = 1,  # per level below full resolution
        codebook_size: int = 1024,
        codebook_dim: int = 8,
        codebook_decay: float = 0.9,
        codebook_l2_normalize: bool = False,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 0.5,
        commitment_weight: float = 0.25,
        gradient_estimator: str = "rotation",
        decoder_channels: int = 32,
        decoder_num_res_blocks: int = 1,  # per level below full resolution
        decoder_norm_groups: int | None = 1,  # GroupNorm groups in the decoder (None: up to 32; see CNNDecoder)
        output_activation: str = "tanh",
        **kwargs,
    ):
        self.image_size = int(image_size)
        self.in_channels = int(in_channels)
        self.grid_size = [int(g) for g in grid_size]
        self.encoder_channels = int(encoder_channels)
        self.channel_mult = [int(m) for m in channel_mult]
        self.encoder_num_res_blocks = int(encoder_num_res_blocks)
        self.codebook_size = int(codebook_size)
        self.codebook_dim = int(codebook_dim)
        self.codebook_decay = float(codebook_decay)
        self.codebook_l2_normalize = bool(codebook_l2_normalize)
        self.kmeans_init = bool(kmeans_init)
        self.kmeans_iters = int(kmeans_iters)
        self.dead_code_threshold = float(dead_code_threshold)
        self.commitment_weight = float(commitment_weight)
        self.gradient_estimator = gradient_estimator
        self.decoder_channels = int(decoder_channels)
        self.decoder_num_res_blocks = int(decoder_num_res_blocks)
        self.decoder_norm_groups = None if decoder_norm_groups is None else int(decoder_norm_groups)
        self.output_activation = output_activation
        super().__init__(**kwargs)
        self.validate_architecture()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """As PretrainedConfig.from_pretrained, but a directory of another model_type is a ValueError."""
        from .modeling import check_model_type

        check_model_type(pretrained_model_name_or_path, cls.model_type)
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def validate_architecture(self) -> None:
        """Raise ValueError naming the field when the architecture is inconsistent."""
        for name in ("image_size", "in_channels", "encoder_channels", "codebook_size", "codebook_dim",
                     "decoder_channels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("encoder_num_res_blocks", "decoder_num_res_blocks"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.decoder_norm_groups is not None and self.decoder_norm_groups <= 0:
            raise ValueError(f"decoder_norm_groups must be positive or null, got {self.decoder_norm_groups}")
        if not self.channel_mult or any(m <= 0 for m in self.channel_mult):
            raise ValueError(f"channel_mult must be positive multipliers, got {self.channel_mult}")
        if len(self.grid_size) != 2:
            raise ValueError(f"grid_size must be [h, w], got {self.grid_size}")
        for g in self.grid_size:
            f = self.image_size // g if g > 0 else 0
            if g <= 0 or self.image_size % g or f & (f - 1):
                raise ValueError(f"grid_size {self.grid_size}: image_size {self.image_size} must be each side times a power of 2")
        if not 0.0 <= self.codebook_decay < 1.0:
            raise ValueError(f"codebook_decay must be in [0, 1), got {self.codebook_decay}")
        if self.gradient_estimator not in GRADIENT_ESTIMATORS:
            raise ValueError(f"gradient_estimator must be one of {GRADIENT_ESTIMATORS}, got {self.gradient_estimator!r}")
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {self.output_activation!r}")

    def width(self, base: int, level: int) -> int:
        """Channels at `level` (0 = full resolution) for base width `base`."""
        return base * self.channel_mult[min(level, len(self.channel_mult) - 1)]

    @property
    def tokens_per_image(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    @property
    def tokens_per_gaussian(self) -> int:  # one code per grid cell: the LM's slot grammar has one slot
        return 1

    @classmethod
    def preset(cls, name: str, **overrides) -> "GridVQConfig":
        """"vq64": 8 x 8 codes at 32 x 32; "vq128": 8 x 16; "vq256": 16 x 16 (codebook 1024 x 8)."""
        grids = {"vq64": [8, 8], "vq128": [8, 16], "vq256": [16, 16]}
        if name not in grids:
            raise ValueError(f"unknown grid-VQ preset {name!r}; known: {sorted(grids)}")
        return cls(**{"grid_size": grids[name], **overrides})


__all__ = ["GridVQConfig"]
