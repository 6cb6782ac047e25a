"""`GaussianTokenizer`: image <-> M quantized 2D Gaussians <-> a fully discrete token sequence.

Pipeline (docs/architecture.md section 2, docs/token_layout.md):
    pixels [B, 3, S, S] --CNN encoder--> multi-scale maps --deformable encoder layers-->
    M anchor queries --num_decoder_layers x (deformable cross-attention, FFN, xy refine)--> heads:
    position, log-scale, rotation, feature z [B, M, codebook_dim]
    z --EMA VQ--> feature code;  geometry --uniform bins--> geometry tokens (straight-through)
    ids [B, M * (1 + n_geometry_slots)] (Gaussian-major, anchor slot order; see `token_layout`)
    (geometry_slots=[]: one token per Gaussian; its geometry is decoded from the code vector by
    `code_geometry`, and the encoder's geometry only steers its own deformable sampling)
    code vectors --MLP--> splat features [B, M, splat_channels] --splat--> [B, C, R, R] --CNN--> RGB
In eval mode `forward` rebuilds the Gaussians from its own ids, exactly as `decode` does, so
decode(encode(x)) equals the forward reconstruction bit for bit. In training mode the values are
equal to the bin centres / code vectors (straight-through / rotation trick), gradients flow through.
Output activation: tanh (config.output_activation="tanh"; "clamp" clips to [-1, 1]).
Opacity is fixed to 1 (redundant with the feature magnitude under the plain-sum splat rule).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration import GaussianTokenizerConfig, anchor_grid_shape, check_model_type
from .deformable import DeformableEncoderLayer, GaussianLayer, flatten_levels, level_centres, sine_embedding, split_levels
from .encoder import CNNDecoder, CNNEncoder
from .geometry import GeometryQuantizer, TokenSlot, build_token_layout
from .quantizer import EMAVectorQuantizer
from .render import splat


@dataclass
class GaussianTokenizerOutput(ModelOutput):
    """What `GaussianTokenizer.forward` returns (the trainer adds the pixel losses itself)."""

    reconstruction: torch.FloatTensor | None = None  # [B, 3, S, S] in [-1, 1]
    quantization_loss: torch.FloatTensor | None = None  # scalar, already weighted
    ids: torch.LongTensor | None = None  # [B, T]
    gaussians: dict | None = None  # means [B,M,2], scales [B,M,2], rotations [B,M], features [B,M,d]
    codebook_usage: float | None = None  # fraction of codes used in this batch
    codebook_perplexity: float | None = None
    codebook_restarts: int | None = None  # dead codes re-seeded in this step (training only)


def _anchor_grid(m: int, layout: str = "square") -> torch.Tensor:
    """M anchor centres, row-major: [M, 2] (x, y) in (-1, 1). "square": the first M cells of a
    ceil(sqrt(M)) square grid (when M is not a square the last row is short, leaving a corner without
    anchors); "fill": a rows x cols grid with rows * cols = M, rows the largest divisor <= sqrt(M)
    (M = 32: 4 x 8), so the anchors cover the whole image."""
    rows, cols = anchor_grid_shape(m, layout)
    cy = (2 * torch.arange(rows, dtype=torch.float32) + 1) / rows - 1
    cx = (2 * torch.arange(cols, dtype=torch.float32) + 1) / cols - 1
    gy, gx = torch.meshgrid(cy, cx, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)[:m]


class GaussianTokenizer(PreTrainedModel):
    config_class = GaussianTokenizerConfig
    base_model_prefix = "gaussian_tokenizer"
    main_input_name = "pixel_values"
    _no_split_modules: list[str] = []

    def __init__(self, config: GaussianTokenizerConfig):
        super().__init__(config)
        c = config
        D, M = c.hidden_size, c.num_gaussians
        self.encoder = CNNEncoder(
            c.in_channels, c.encoder_channels, c.encoder_channel_mult, c.encoder_num_res_blocks,
            c.encoder_out_channels, c.num_feature_levels, c.encoder_stem_stride,
        )
        self.input_proj = nn.ModuleList(nn.Conv2d(c.encoder_out_channels, D, 1) for _ in range(c.num_feature_levels))
        self.level_embed = nn.Parameter(torch.zeros(c.num_feature_levels, D))
        L, nH, P, F_ = c.num_feature_levels, c.num_heads, c.num_points, c.ffn_dim
        self.encoder_layers = nn.ModuleList(DeformableEncoderLayer(D, nH, L, P, F_) for _ in range(c.num_encoder_layers))
        self.memory_norm = nn.LayerNorm(D)
        # learnable anchor Gaussians: query embedding, position, scale, rotation
        grid = _anchor_grid(M, c.anchor_layout)
        # translation_equivariant: one query / scale / rotation prior for every slot (broadcast), anchors fixed
        per_slot = 1 if c.translation_equivariant else M
        self.query_embed = nn.Parameter(torch.randn(per_slot, D) * 0.02)
        if c.position_mode == "absolute":
            self.anchor_position = nn.Parameter(torch.atanh(grid.clamp(-0.999, 0.999)))  # pre-tanh
        elif c.translation_equivariant:
            self.register_buffer("anchor_position", grid.clone())  # on the grid for good
        else:
            self.anchor_position = nn.Parameter(grid.clone())  # the anchor itself; offsets are quantized
        log_lo, log_hi = math.log(c.scale_min), math.log(c.scale_max)
        frac = min(max((math.log(c.init_scale) - log_lo) / (log_hi - log_lo), 1e-3), 1 - 1e-3)
        self.anchor_scale = nn.Parameter(torch.full((per_slot, 2), math.log(frac / (1 - frac))))  # pre-sigmoid
        self.anchor_rotation = nn.Parameter(torch.zeros(per_slot))
        self.query_pos = nn.Sequential(nn.Linear(D, D), nn.GELU(), nn.Linear(D, D))
        self.gaussian_layers = nn.ModuleList(GaussianLayer(D, nH, L, P, F_) for _ in range(c.num_decoder_layers))
        self.code_geometry_mode = not c.geometry_slots
        # the refinement heads learn only through the final positions (the sampling references are detached):
        # with geometry from the code there are none, and the references stay at the anchors
        n_xy = 0 if self.code_geometry_mode else c.num_decoder_layers
        self.xy_heads = nn.ModuleList(nn.Linear(D, 2) for _ in range(n_xy))
        self.head_norm = nn.LayerNorm(D)
        zeroed = list(self.xy_heads)
        if self.code_geometry_mode:
            hidden = max(c.feature_mlp_hidden, 16)
            self.code_geometry = nn.Sequential(nn.Linear(c.codebook_dim, hidden), nn.GELU(), nn.Linear(hidden, 5))
            zeroed.append(self.code_geometry[-1])  # starts at the slot's anchor geometry
        else:
            self.scale_head = nn.Linear(D, 2)
            self.rotation_head = nn.Linear(D, 1)
            zeroed += [self.scale_head, self.rotation_head]
        self.feature_head = nn.Linear(D, c.codebook_dim)
        # quantizers
        self.quantizer = EMAVectorQuantizer(
            c.codebook_size, c.codebook_dim, decay=c.codebook_decay, commitment_weight=c.commitment_weight,
            l2_normalize=c.codebook_l2_normalize, kmeans_init=c.kmeans_init, kmeans_iters=c.kmeans_iters,
            dead_code_threshold=c.dead_code_threshold, gradient_estimator=c.gradient_estimator,
        )
        self.geometry = GeometryQuantizer(c)
        # rendering + decoder
        if c.feature_mlp_hidden > 0:
            self.feature_mlp = nn.Sequential(
                nn.Linear(c.codebook_dim, c.feature_mlp_hidden), nn.GELU(), nn.Linear(c.feature_mlp_hidden, c.splat_channels)
            )
        else:
            self.feature_mlp = nn.Linear(c.codebook_dim, c.splat_channels)
        self.decoder = CNNDecoder(
            c.splat_channels, c.decoder_channels, c.decoder_num_res_blocks, c.render_size, c.image_size,
            c.output_activation, c.decoder_norm_groups,
        )
        for head in zeroed:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.token_layout: list[TokenSlot] = build_token_layout(c.codebook_size, self.geometry)
        self.post_init()

    def _init_weights(self, module):
        """Modules initialise themselves in their constructors (deformable offsets, zeroed heads)."""

    # ------------------------------------------------------------------ sizes
    @property
    def tokens_per_image(self) -> int:
        return self.config.num_gaussians * len(self.token_layout)

    @property
    def vocab_size(self) -> int:
        last = self.token_layout[-1]
        return last.start + last.size

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        from gaussiantoken.runtime.model_dirs import check_loadable

        pipe = kwargs.get("_from_pipeline") is not None
        check_loadable(cls, pretrained_model_name_or_path, cls.config_class.model_type,
                       f"{cls.__name__}.from_pretrained", from_pipeline=pipe, check_fit="config" not in kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """As PreTrainedModel.save_pretrained, plus a README.md model card (tokenizer/model_card.py)."""
        out = super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            from .model_card import write_model_card

            write_model_card(save_directory, self.config)
        return out

    # ------------------------------------------------------------------ validation
    def _check_pixels(self, pixel_values) -> None:
        S = self.config.image_size
        if not isinstance(pixel_values, torch.Tensor):
            raise ValueError(f"pixel_values must be a torch.Tensor [B, 3, {S}, {S}], got {type(pixel_values).__name__}")
        if not pixel_values.is_floating_point():
            raise ValueError(f"pixel_values must be a float tensor in [-1, 1], got dtype {pixel_values.dtype}")
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != (self.config.in_channels, S, S):
            raise ValueError(
                f"pixel_values must have shape [B, {self.config.in_channels}, {S}, {S}], got {tuple(pixel_values.shape)}"
            )
        if pixel_values.shape[0] == 0:
            raise ValueError("pixel_values has an empty batch")
        lo, hi = float(pixel_values.min()), float(pixel_values.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError("pixel_values contains NaN or infinite values")
        if lo < -1.001 or hi > 1.001:
            raise ValueError(
                f"pixel_values must be in [-1, 1], got min {lo:.4g}, max {hi:.4g} "
                "(use GaussianTokenizerImageProcessor to convert images)"
            )

    def _as_model_dtype(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Checked pixels in the weights' dtype (float64/float16 input works: the convs need one dtype);
        under autocast the input is left as is (autocast casts per op)."""
        self._check_pixels(pixel_values)
        dtype = self.dtype
        if pixel_values.dtype != dtype and not torch.is_autocast_enabled(pixel_values.device.type):
            pixel_values = pixel_values.to(dtype)
        return pixel_values

    def _check_ids(self, ids) -> None:
        T = self.tokens_per_image
        if not isinstance(ids, torch.Tensor):
            raise ValueError(f"ids must be a LongTensor [B, {T}], got {type(ids).__name__}")
        if ids.is_floating_point() or ids.dtype == torch.bool or ids.is_complex():
            raise ValueError(f"ids must be an integer tensor, got dtype {ids.dtype}")
        if ids.dim() != 2 or ids.shape[1] != T or ids.shape[0] == 0:
            raise ValueError(f"ids must have shape [B, {T}] (tokens_per_image = {T}), got {tuple(ids.shape)}")
        G = len(self.token_layout)
        starts = torch.tensor([s.start for s in self.token_layout], device=ids.device).repeat(self.config.num_gaussians)
        sizes = torch.tensor([s.size for s in self.token_layout], device=ids.device).repeat(self.config.num_gaussians)
        bad = (ids < starts) | (ids >= starts + sizes)  # [B, T]
        if bool(bad.any()):
            b, t = (int(i) for i in bad.nonzero()[0])
            v = int(ids[b, t])
            slot = self.token_layout[t % G]
            where = f"ids[{b}, {t}] = {v} at position {t} (Gaussian {t // G}, slot {slot.name!r})"
            if 0 <= v < self.vocab_size:
                other = next(s.name for s in self.token_layout if s.start <= v < s.start + s.size)
                raise ValueError(
                    f"{where} is a {other!r} token, but this position takes {slot.name!r} ids in "
                    f"[{slot.start}, {slot.start + slot.size}) (wrong slot kind)"
                )
            raise ValueError(
                f"{where} is out of range: this position takes ids in [{slot.start}, {slot.start + slot.size}) "
                f"and the vocabulary is [0, {self.vocab_size})"
            )

    # ------------------------------------------------------------------ encoder side
    def _encode_continuous(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """Continuous Gaussian attributes before quantization: x, y (absolute or anchor offsets),
        scale_x, scale_y (log), rotation [B, M] each, and z [B, M, codebook_dim]."""
        c = self.config
        maps = [proj(m) for proj, m in zip(self.input_proj, self.encoder(pixel_values))]  # L x [B, D, h, w]
        shapes = [tuple(m.shape[-2:]) for m in maps]
        B = pixel_values.shape[0]
        if self.encoder_layers:
            tokens = flatten_levels(maps)  # [B, N, D]
            centres = level_centres(shapes, tokens.device, tokens.dtype)  # [N, 2]
            lvl = torch.cat([self.level_embed[i].expand(h * w, -1) for i, (h, w) in enumerate(shapes)], 0)  # [N, D]
            pos = lvl if c.translation_equivariant else sine_embedding(centres, c.hidden_size) + lvl  # [N, D]
            ref = centres.unsqueeze(0).expand(B, -1, -1)  # [B, N, 2]
            for layer in self.encoder_layers:
                tokens = layer(tokens, pos, ref, shapes)
            maps = split_levels(self.memory_norm(tokens), shapes)
        M = c.num_gaussians
        queries = self.query_embed.unsqueeze(0).expand(B, M, -1)  # [B, M, D]
        u = self.anchor_position.unsqueeze(0).expand(B, -1, -1)  # [B, M, 2]
        if c.position_mode == "absolute":
            xy = torch.tanh(u)
        else:
            anchor, u = u, torch.zeros_like(u)
            xy = anchor.clone()
        for i, layer in enumerate(self.gaussian_layers):
            ref = xy.detach()
            # where the query samples from: absolute, or (translation_equivariant) relative to its anchor
            where = ref - anchor if c.translation_equivariant else ref  # [B, M, 2]
            queries = layer(queries, self.query_pos(sine_embedding(where, c.hidden_size)), ref, maps)
            if i < len(self.xy_heads):
                u = u + self.xy_heads[i](queries)
                xy = torch.tanh(u) if c.position_mode == "absolute" else anchor + c.offset_range * torch.tanh(u)
        h = self.head_norm(queries)
        if self.code_geometry_mode:  # the geometry comes from the quantized code (`_code_attributes`)
            return {"z": self.feature_head(h)}
        log_lo, log_hi = math.log(c.scale_min), math.log(c.scale_max)
        log_scale = log_lo + (log_hi - log_lo) * torch.sigmoid(self.anchor_scale + self.scale_head(h))  # [B, M, 2]
        rotation = self.anchor_rotation + self.rotation_head(h).squeeze(-1)  # [B, M]
        pos_values = torch.tanh(u) if c.position_mode == "absolute" else c.offset_range * torch.tanh(u)  # [B, M, 2]
        return {
            "x": pos_values[..., 0], "y": pos_values[..., 1],
            "scale_x": log_scale[..., 0], "scale_y": log_scale[..., 1], "rotation": rotation,
            "z": self.feature_head(h),
        }

    def _code_attributes(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """geometry_slots=[]: code vectors [B, M, d] -> the Gaussians' attributes {x, y, scale_x, scale_y,
        rotation: [B, M]}, each relative to the slot's learned anchor geometry (same ranges as the binned ones)."""
        c = self.config
        g = self.code_geometry(features)  # [B, M, 5]
        if c.position_mode == "absolute":
            pos = torch.tanh(self.anchor_position.unsqueeze(0) + g[..., :2])  # [B, M, 2]
        else:
            pos = c.offset_range * torch.tanh(g[..., :2])
        log_lo, log_hi = math.log(c.scale_min), math.log(c.scale_max)
        log_scale = log_lo + (log_hi - log_lo) * torch.sigmoid(self.anchor_scale + g[..., 2:4])  # [B, M, 2]
        return {"x": pos[..., 0], "y": pos[..., 1], "scale_x": log_scale[..., 0], "scale_y": log_scale[..., 1],
                "rotation": self.anchor_rotation + g[..., 4]}

    def _assemble(self, attrs: dict[str, torch.Tensor], features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Quantized attributes + code vectors -> the Gaussian dict the renderer takes."""
        xy = torch.stack([attrs["x"], attrs["y"]], -1)  # [B, M, 2]
        if self.config.position_mode == "anchor_offset":
            xy = self.anchor_position.unsqueeze(0) + xy
        scales = torch.exp(torch.stack([attrs["scale_x"], attrs["scale_y"]], -1))  # [B, M, 2]
        return {"means": xy, "scales": scales, "rotations": attrs["rotation"], "features": features}

    def _pack(self, codes: torch.Tensor, geometry_indices: torch.Tensor | None) -> torch.Tensor:
        """codes [B, M], slot-relative geometry indices [B, M, S] (None: no geometry tokens) -> ids [B, M * (1 + S)]."""
        if geometry_indices is None:
            return codes
        starts = torch.tensor([s.start for s in self.token_layout[1:]], device=codes.device)  # [S]
        ids = torch.cat([codes.unsqueeze(-1), geometry_indices + starts], -1)  # [B, M, 1 + S]
        return ids.reshape(codes.shape[0], -1)

    def _tokenize(self, pixel_values: torch.Tensor):
        cont = self._encode_continuous(pixel_values)
        z = self.quantizer._prepare(cont["z"])
        codes = self.quantizer.assign(z)  # [B, M]
        geom = None if self.code_geometry_mode else self.geometry.encode({k: v for k, v in cont.items() if k != "z"})
        return self._pack(codes, geom), cont  # geom: [B, M, S]

    @torch.no_grad()
    def encode(self, pixel_values: torch.Tensor) -> torch.LongTensor:
        """pixels [B, 3, S, S] in [-1, 1] (any float dtype) -> local ids [B, tokens_per_image]. Never changes the model."""
        pixel_values = self._as_model_dtype(pixel_values)
        return self._tokenize(pixel_values)[0]

    @torch.no_grad()
    def encode_gaussians(self, pixel_values: torch.Tensor, quantized: bool = True) -> dict[str, torch.Tensor]:
        """pixels -> Gaussians: the quantized ones the decoder sees (default) or the continuous ones."""
        pixel_values = self._as_model_dtype(pixel_values)
        ids, cont = self._tokenize(pixel_values)
        if quantized:
            return self.ids_to_gaussians(ids)
        z = self.quantizer._prepare(cont["z"])
        if self.code_geometry_mode:
            return self._assemble(self._code_attributes(z), z)
        return self._assemble({k: v for k, v in cont.items() if k != "z"}, z)

    # ------------------------------------------------------------------ decoder side
    def ids_to_gaussians(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Validated ids [B, T] -> quantized Gaussians (bin centres, code vectors)."""
        self._check_ids(ids)
        ids = ids.long()
        G = len(self.token_layout)
        grouped = ids.view(ids.shape[0], self.config.num_gaussians, G)  # [B, M, G]
        starts = torch.tensor([s.start for s in self.token_layout[1:]], device=ids.device)
        features = self.quantizer.lookup(grouped[..., 0])  # [B, M, d]
        if self.code_geometry_mode:
            return self._assemble(self._code_attributes(features), features)
        attrs = self.geometry.decode(grouped[..., 1:] - starts, self.quantizer.codebook.dtype)
        return self._assemble(attrs, features)

    def decode_gaussians(self, gaussians: dict[str, torch.Tensor]) -> torch.Tensor:
        """Gaussians (means, scales, rotations, features = code vectors [B, M, codebook_dim]) -> pixels."""
        for key in ("means", "scales", "rotations", "features"):
            if key not in gaussians:
                raise ValueError(f"gaussians is missing {key!r} (needs means, scales, rotations, features)")
        feats = gaussians["features"]
        if feats.dim() != 3 or feats.shape[-1] != self.config.codebook_dim:
            raise ValueError(f"gaussians['features'] must be [B, M, {self.config.codebook_dim}], got {tuple(feats.shape)}")
        R = self.config.render_size
        rendered = splat(
            gaussians["means"], gaussians["scales"], gaussians["rotations"], self.feature_mlp(feats), R, R,
            opacities=gaussians.get("opacities"), backend=self.config.splat_backend,
        )  # [B, C, R, R]
        return self.decoder(rendered)

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.FloatTensor:
        """local ids [B, tokens_per_image] -> pixels [B, 3, S, S] in [-1, 1]."""
        return self.decode_gaussians(self.ids_to_gaussians(ids))

    # ------------------------------------------------------------------ training forward
    def forward(self, pixel_values: torch.Tensor, return_dict: bool = True, **kwargs: Any) -> GaussianTokenizerOutput:
        pixel_values = self._as_model_dtype(pixel_values)
        cont = self._encode_continuous(pixel_values)
        z_q, codes, qloss, stats = self.quantizer(cont["z"])
        attrs = {k: v for k, v in cont.items() if k != "z"}
        if self.code_geometry_mode:
            attrs_st = self._code_attributes(z_q)
            ids = self._pack(codes, None)
        else:
            geom_idx, attrs_st = self.geometry.straight_through(attrs)
            ids = self._pack(codes, geom_idx)
        if not self.config.quantize_geometry:  # ablation: continuous geometry, quantized features
            gaussians = self._assemble(attrs, z_q)
        elif self.training:
            gaussians = self._assemble(attrs_st, z_q)
        else:
            gaussians = self.ids_to_gaussians(ids)
        reconstruction = self.decode_gaussians(gaussians)
        out = GaussianTokenizerOutput(
            reconstruction=reconstruction, quantization_loss=qloss, ids=ids, gaussians=gaussians,
            codebook_usage=stats["usage"], codebook_perplexity=stats["perplexity"],
            codebook_restarts=stats["restarted"],
        )
        return out if return_dict else out.to_tuple()


__all__ = ["GaussianTokenizer", "GaussianTokenizerOutput", "TokenSlot", "check_model_type"]
