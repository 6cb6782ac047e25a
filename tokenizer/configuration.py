"""The GaussianToken tokenizer's architecture config (`GaussianTokenizerConfig`) and its named presets.

Every size of the model lives here (saved as config.json beside the weights); run settings (learning
rate, steps, losses) live in the trainer's YAML dataclasses, never here.

Token grammar (docs/token_layout.md): each Gaussian contributes one feature-code token followed by one
token per entry of `geometry_slots` (each a tuple of attributes quantized jointly by uniform bins).
Attributes: "x", "y" (position; absolute in [-1, 1] or, with position_mode="anchor_offset", an offset
from the slot's learned anchor in [-offset_range, offset_range]), "scale_x", "scale_y" (log of the
standard deviation, uniform in [log scale_min, log scale_max]) and "rotation" (theta in [0, pi), periodic:
an ellipse is unchanged by theta + pi). With quantize_geometry=False (the seed paper's setting; an ablation
here) the decoder sees the continuous geometry; the geometry tokens are still produced, but
decode(ids) then differs from the forward reconstruction. Opacity is fixed to 1: under the plain-sum splat rule it is
redundant with the feature vector's magnitude.

`geometry_slots=[]`: one token per Gaussian. The geometry is not tokenized but decoded from the Gaussian's
feature code by a learned head (offset from the slot's anchor, log-scales, rotation), so each codebook entry
is a joint (appearance, shape) prototype and the token budget buys twice the Gaussians of the two-token
layout (configs/tokenizer/photos.yaml; bench/RESULTS.md).
"""

from __future__ import annotations

import math
import os

from transformers import PretrainedConfig

from gaussiantoken.runtime.model_dirs import TOKENIZER_KIND

GEOMETRY_ATTRIBUTES = ("x", "y", "scale_x", "scale_y", "rotation")
POSITION_MODES = ("absolute", "anchor_offset")
GRADIENT_ESTIMATORS = ("straight_through", "rotation")
OUTPUT_ACTIVATIONS = ("tanh", "clamp")


def check_model_type(path: str | os.PathLike, expected: str) -> None:
    """Raise ValueError when a local checkpoint directory holds a model of another kind, or when its
    config.json / safetensors weights are truncated or corrupted (`runtime.CheckpointError` naming the file).
    Here, beside the config, so that loading a config never imports the model stack."""
    from gaussiantoken.runtime.integrity import check_pretrained_dir

    config = check_pretrained_dir(path)  # None: not a local dir, or no config.json
    if config is not None:
        found = config.get("model_type")
        if found != expected:
            raise ValueError(
                f"{os.fspath(path)!r} holds a model of type {found!r}, not a {expected!r} "
                f"(GaussianTokenizer); load it with the class for {found!r}"
            )


def anchor_grid_shape(num_gaussians: int, layout: str = "square") -> tuple[int, int]:
    """(rows, cols) of the anchor grid; slot k sits at row k // cols, column k % cols. "square": a
    ceil(sqrt(M)) square (a short last row when M is not a square); "fill": rows x cols = M, rows the largest
    divisor <= sqrt(M) (M = 32: 4 x 8)."""
    m = int(num_gaussians)
    if layout == "fill":
        rows = max(d for d in range(1, math.isqrt(m) + 1) if m % d == 0)
        return rows, m // rows
    side = math.ceil(math.sqrt(m))
    return side, side


class GaussianTokenizerConfig(PretrainedConfig):
    """Architecture of `GaussianTokenizer` (see the module docstring for the token grammar)."""

    model_type = TOKENIZER_KIND  # "gaussian_tokenizer" (model_dirs.py holds the kinds' names)

    def __init__(
        self,
        image_size: int = 32,
        in_channels: int = 3,
        # CNN encoder (Open-MAGVIT2-like): a stem conv (stride encoder_stem_stride), then one stage per
        # multiplier with a stride-2 downsample between stages
        encoder_channels: int = 32,
        encoder_channel_mult: list[int] | tuple[int, ...] = (1, 2, 2),
        encoder_num_res_blocks: int = 1,
        encoder_out_channels: int = 64,
        encoder_stem_stride: int = 1,
        num_feature_levels: int = 2,
        # deformable transformer
        hidden_size: int = 64,
        num_heads: int = 4,
        num_points: int = 4,
        ffn_dim: int = 128,
        num_encoder_layers: int = 1,
        num_decoder_layers: int = 3,
        # Gaussians
        num_gaussians: int = 32,
        init_scale: float = 0.12,
        anchor_layout: str = "square",  # "square" | "fill" (modeling._anchor_grid)
        # True: every slot runs the same function of the image around its anchor (one shared query, scale and
        # rotation prior, anchors fixed on the grid, query positions relative to the anchor), so an object moved
        # by whole anchor steps gets the same tokens in the moved slots (anchor_offset positions only)
        translation_equivariant: bool = False,
        # feature vector quantization
        codebook_size: int = 64,
        codebook_dim: int = 8,
        codebook_decay: float = 0.9,
        codebook_l2_normalize: bool = False,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 0.5,
        commitment_weight: float = 0.25,
        gradient_estimator: str = "rotation",
        # geometry quantization
        position_mode: str = "absolute",
        geometry_slots: list[list[str]] | None = None,
        position_bins: int = 32,
        offset_range: float = 0.25,
        scale_bins: int = 8,
        scale_min: float = 1.0 / 32.0,
        scale_max: float = 0.5,
        rotation_bins: int = 8,
        quantize_geometry: bool = True,  # False: the decoder sees the continuous geometry (paper setting)
        # rendering + CNN decoder
        splat_channels: int = 16,
        feature_mlp_hidden: int = 64,
        render_size: int | None = None,
        decoder_channels: int = 32,
        decoder_num_res_blocks: int = 2,
        decoder_norm_groups: int | None = None,  # None: one channel per group (tokenizer/encoder.CNNDecoder)
        output_activation: str = "tanh",
        splat_backend: str = "auto",
        **kwargs,
    ):
        if geometry_slots is None:
            geometry_slots = [["x", "y"], ["scale_x", "scale_y", "rotation"]]
        self.image_size = int(image_size)
        self.in_channels = int(in_channels)
        self.encoder_channels = int(encoder_channels)
        self.encoder_channel_mult = [int(m) for m in encoder_channel_mult]
        self.encoder_num_res_blocks = int(encoder_num_res_blocks)
        self.encoder_out_channels = int(encoder_out_channels)
        self.encoder_stem_stride = int(encoder_stem_stride)
        self.num_feature_levels = int(num_feature_levels)
        self.hidden_size = int(hidden_size)
        self.num_heads = int(num_heads)
        self.num_points = int(num_points)
        self.ffn_dim = int(ffn_dim)
        self.num_encoder_layers = int(num_encoder_layers)
        self.num_decoder_layers = int(num_decoder_layers)
        self.num_gaussians = int(num_gaussians)
        self.init_scale = float(init_scale)
        self.anchor_layout = anchor_layout
        self.translation_equivariant = bool(translation_equivariant)
        self.codebook_size = int(codebook_size)
        self.codebook_dim = int(codebook_dim)
        self.codebook_decay = float(codebook_decay)
        self.codebook_l2_normalize = bool(codebook_l2_normalize)
        self.kmeans_init = bool(kmeans_init)
        self.kmeans_iters = int(kmeans_iters)
        self.dead_code_threshold = float(dead_code_threshold)
        self.commitment_weight = float(commitment_weight)
        self.gradient_estimator = gradient_estimator
        self.position_mode = position_mode
        self.geometry_slots = [list(slot) for slot in geometry_slots]
        self.position_bins = int(position_bins)
        self.offset_range = float(offset_range)
        self.scale_bins = int(scale_bins)
        self.scale_min = float(scale_min)
        self.scale_max = float(scale_max)
        self.rotation_bins = int(rotation_bins)
        self.quantize_geometry = bool(quantize_geometry)
        self.splat_channels = int(splat_channels)
        self.feature_mlp_hidden = int(feature_mlp_hidden)
        self.render_size = int(render_size) if render_size is not None else self.image_size
        self.decoder_channels = int(decoder_channels)
        self.decoder_num_res_blocks = int(decoder_num_res_blocks)
        self.decoder_norm_groups = None if decoder_norm_groups is None else int(decoder_norm_groups)
        self.output_activation = output_activation
        self.splat_backend = splat_backend
        super().__init__(**kwargs)
        self.validate_architecture()

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        """As PretrainedConfig.from_dict; an inconsistent saved config names its directory's config.json."""
        from gaussiantoken.runtime.model_dirs import config_from_dict

        return config_from_dict(super().from_dict, cls, config_dict, kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """As PretrainedConfig.from_pretrained, but a directory of another model_type is a ValueError."""
        check_model_type(pretrained_model_name_or_path, cls.model_type)
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    # ------------------------------------------------------------------ checks
    def validate_architecture(self) -> None:
        """Raise ValueError naming the field when the architecture is inconsistent."""
        positive = (
            "image_size", "in_channels", "encoder_channels", "encoder_out_channels", "num_feature_levels",
            "hidden_size", "num_heads", "num_points", "ffn_dim", "num_decoder_layers", "num_gaussians",
            "codebook_size", "codebook_dim", "position_bins", "scale_bins", "rotation_bins",
            "splat_channels", "render_size", "decoder_channels",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.decoder_norm_groups is not None and (
                self.decoder_norm_groups <= 0 or self.decoder_channels % self.decoder_norm_groups):
            raise ValueError(f"decoder_norm_groups {self.decoder_norm_groups} must be a positive divisor of "
                             f"decoder_channels {self.decoder_channels}")
        if not self.encoder_channel_mult:
            raise ValueError("encoder_channel_mult must list at least one stage")
        if self.encoder_stem_stride not in (1, 2, 4):
            raise ValueError(f"encoder_stem_stride must be 1, 2 or 4, got {self.encoder_stem_stride}")
        downsample = 2 ** (len(self.encoder_channel_mult) - 1) * self.encoder_stem_stride
        if self.image_size % downsample:
            raise ValueError(f"image_size {self.image_size} is not divisible by the encoder downsampling {downsample}")
        if self.num_feature_levels > len(self.encoder_channel_mult):
            raise ValueError(
                f"num_feature_levels {self.num_feature_levels} exceeds the encoder's "
                f"{len(self.encoder_channel_mult)} stages (encoder_channel_mult)"
            )
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}")
        if not 0.0 <= self.codebook_decay < 1.0:
            raise ValueError(f"codebook_decay must be in [0, 1), got {self.codebook_decay}")
        if self.gradient_estimator not in GRADIENT_ESTIMATORS:
            raise ValueError(f"gradient_estimator must be one of {GRADIENT_ESTIMATORS}, got {self.gradient_estimator!r}")
        if self.anchor_layout not in ("square", "fill"):
            raise ValueError(f"anchor_layout must be 'square' or 'fill', got {self.anchor_layout!r}")
        if self.position_mode not in POSITION_MODES:
            raise ValueError(f"position_mode must be one of {POSITION_MODES}, got {self.position_mode!r}")
        if self.translation_equivariant and self.position_mode != "anchor_offset":
            raise ValueError("translation_equivariant=True needs position_mode='anchor_offset' (positions relative to "
                             f"fixed anchors), got {self.position_mode!r}")
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {self.output_activation!r}")
        if not 0.0 < self.scale_min < self.scale_max:
            raise ValueError(f"need 0 < scale_min < scale_max, got {self.scale_min}, {self.scale_max}")
        if self.offset_range <= 0:
            raise ValueError(f"offset_range must be positive, got {self.offset_range}")
        seen = [a for slot in self.geometry_slots for a in slot]
        if not self.geometry_slots:  # geometry decoded from the feature code: nothing to bin
            if not self.quantize_geometry:
                raise ValueError("geometry_slots=[] (geometry from the feature code) needs quantize_geometry=True")
            return
        for a in seen:
            if a not in GEOMETRY_ATTRIBUTES:
                raise ValueError(f"geometry_slots: unknown attribute {a!r}; known: {GEOMETRY_ATTRIBUTES}")
        if sorted(seen) != sorted(GEOMETRY_ATTRIBUTES):
            raise ValueError(
                f"geometry_slots must name each of {GEOMETRY_ATTRIBUTES} exactly once, got {self.geometry_slots}"
            )

    # ------------------------------------------------------------------ derived sizes
    @property
    def tokens_per_gaussian(self) -> int:
        return 1 + len(self.geometry_slots)

    @property
    def tokens_per_image(self) -> int:
        return self.num_gaussians * self.tokens_per_gaussian

    # ------------------------------------------------------------------ presets
    @classmethod
    def shapes(cls, **overrides) -> "GaussianTokenizerConfig":
        """The CPU recipe for 32x32 Shapes images: 32 Gaussians x 3 tokens = 96 tokens per image.

        Each Gaussian is (feature code | dx, dy | scale_x, scale_y, rotation): its position is an offset
        from the slot's learned anchor within +-4 pixels in 16 x 16 bins (half a pixel), its shape 8 x 8 x 8
        bins (vocabulary 64 + 256 + 512 = 832). Chosen by bench/tokenizer_quality.py and
        bench/tokenizer_robustness.py on 2 CPU cores (bench/RESULTS.md): whole-pixel position bins cost 5-6 dB
        (sub-pixel placement matters more than anything else measured); the decoder's GroupNorm over all
        channels (decoder_norm_groups=1) gains 2.5-5.6 dB on our renderer and more exact scenes on others;
        quarter-pixel bins (position_bins=32, vocabulary 1600, configs/tokenizer/shapes_robust.yaml) keep them
        exact on anti-aliased sub-pixel renders but slow the LM's text-to-image learning; anchor offsets
        reach the quality of 64 x 64 absolute bins with 96 tokens; a patchify stem (stride 2) buys 25% more
        steps at equal quality; 32 splat channels and a third decoder block sharpen the small shapes'
        corners; no deformable encoder layer (cheaper steps); l2-normalized codes.
        """
        base = dict(
            image_size=32, encoder_channels=32, encoder_channel_mult=[1, 2], encoder_num_res_blocks=1,
            encoder_stem_stride=2, encoder_out_channels=64, num_feature_levels=2, hidden_size=64, num_heads=4,
            num_points=4, ffn_dim=128, num_encoder_layers=0, num_decoder_layers=3, num_gaussians=32,
            codebook_size=64, codebook_dim=8, codebook_decay=0.9, codebook_l2_normalize=True,
            position_mode="anchor_offset", offset_range=0.25, position_bins=16,
            geometry_slots=[["x", "y"], ["scale_x", "scale_y", "rotation"]], scale_bins=8, rotation_bins=8,
            splat_channels=32, feature_mlp_hidden=64, render_size=32, decoder_channels=32,
            decoder_num_res_blocks=3, decoder_norm_groups=1,
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def photos(cls, **overrides) -> "GaussianTokenizerConfig":
        """The CPU recipe for 32x32 photo patches: 64 Gaussians x one token = 64 tokens per image (the grid-VQ
        baseline's 8 x 8) and 640 bits, from the `shapes` preset with what natural images need
        (bench/tokenizer_vs_vq.py, bench/RESULTS.md): the decoder's GroupNorm over all channels
        (decoder_norm_groups=1, as in `shapes`; one channel per group drew black discs), anchors filling the image,
        a 1024 x 8 codebook (the VQ's), and no geometry tokens (geometry_slots=[]: each Gaussian's geometry is
        decoded from its feature code, so a token names a whole Gaussian). Against 32 Gaussians x (feature code |
        one joint geometry token of 65,536 bins) at the same 64 tokens: +1.07 dB on held-out photos in 5 minutes
        (seed 0), +0.58 dB at equal steps (seed 1), with 640 instead of 832 bits. num_gaussians=128 gives 128
        tokens."""
        base = dict(codebook_size=1024, anchor_layout="fill", num_gaussians=64, geometry_slots=[])
        base.update(overrides)
        return cls.shapes(**base)

    @classmethod
    def cifar(cls, **overrides) -> "GaussianTokenizerConfig":
        """Paper CIFAR setting: 16x16 encoder map, 64 Gaussians, codebook 1024 x 3."""
        base = dict(
            image_size=32, encoder_channels=64, encoder_channel_mult=[1, 2], encoder_num_res_blocks=2,
            encoder_out_channels=64, num_feature_levels=2, hidden_size=128, num_heads=8, num_points=4,
            ffn_dim=512, num_encoder_layers=2, num_decoder_layers=3, num_gaussians=64, codebook_size=1024,
            codebook_dim=3, codebook_decay=0.8, position_bins=32, scale_bins=8, rotation_bins=8,
            splat_channels=64, feature_mlp_hidden=128, render_size=32, decoder_channels=64,
            decoder_num_res_blocks=2,
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def imagenet(cls, **overrides) -> "GaussianTokenizerConfig":
        """Paper ImageNet-256 setting: 32x32x64 encoder map, 256 Gaussians, codebook 1024 x 8, EMA 0.8."""
        base = dict(
            image_size=256, encoder_channels=128, encoder_channel_mult=[1, 1, 2, 2], encoder_num_res_blocks=2,
            encoder_out_channels=64, num_feature_levels=3, hidden_size=256, num_heads=8, num_points=4,
            ffn_dim=1024, num_encoder_layers=2, num_decoder_layers=3, num_gaussians=256, codebook_size=1024,
            codebook_dim=8, codebook_decay=0.8, position_bins=64, scale_bins=16, rotation_bins=16,
            scale_min=1.0 / 256.0, scale_max=0.25, init_scale=0.06, splat_channels=64,
            feature_mlp_hidden=256, render_size=128, decoder_channels=128, decoder_num_res_blocks=2,
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def preset(cls, name: str, **overrides) -> "GaussianTokenizerConfig":
        """A named preset: "shapes", "photos", "cifar" or "imagenet"."""
        presets = {"shapes": cls.shapes, "photos": cls.photos, "cifar": cls.cifar, "imagenet": cls.imagenet}
        if name not in presets:
            raise ValueError(f"unknown tokenizer preset {name!r}; known: {sorted(presets)}")
        return presets[name](**overrides)


__all__ = ["GaussianTokenizerConfig", "anchor_grid_shape", "check_model_type", "GEOMETRY_ATTRIBUTES", "POSITION_MODES", "GRADIENT_ESTIMATORS"]
