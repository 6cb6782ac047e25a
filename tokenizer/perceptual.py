"""The one LPIPS-style perceptual distance of the project (Zhang et al. 2018), no torchvision, no download.

Owns (the tokenizer trains with it, `eval.perceptual` re-exports it; imports flow tokenizer <- eval):
- `PerceptualDistance(feature_net, linear_weights=None)`: the LPIPS formula over any feature network.
  For each layer l: unit-normalise the features over channels, square the difference of the two images'
  normalised features, weight channels with a non-negative 1x1 linear head w_l, average over space,
  then sum over layers:
      d(x, y) = sum_l mean_hw( sum_c w_lc (x̂_lchw - ŷ_lchw)^2 ),   x̂ = f / (||f||_channel + eps)
  Without linear weights every w_lc is 1. Heads are stored as [1, C_l, 1, 1] (`weights.<l>`).
- `VGG16Features`, `AlexNetFeatures`: the two LPIPS backbones with torchvision's layer indices
  (`features.<i>.*`) and the LPIPS input scaling (images in [-1, 1]), returning the five ReLU stages.
- `LPIPS(net="vgg"|"alex")`: a `PerceptualDistance` over one of those backbones with trainable-shaped
  heads (all ones until weights are loaded); its state dict is the native layout below.
- `load_lpips(path, net=None, device=None)`: a frozen `LPIPS` from ONE safetensors or torch
  (weights_only) file holding backbone + heads. Accepted key layouts (an optional `module.` prefix):
  backbone `feature_net.features.<i>.*` (native), `features.<i>.*` / `net.features.<i>.*`
  (torchvision), `net.slice<k>.<i>.*` (the lpips package); heads `weights.<l>` (native),
  `lin<l>.model.1.weight` (lpips package), `lin<l>.weight`; `scaling_layer.*` constants are ignored.
  Negative head weights, missing/unknown tensors and wrong shapes raise a ValueError naming them.
"""

from __future__ import annotations

import os
import re
from typing import Sequence

import torch
from torch import nn

# LPIPS input scaling (images in [-1, 1] -> ImageNet-normalised), per RGB channel.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


def normalize_channels(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Divide each spatial feature vector by its L2 norm over channels. [B, C, H, W] -> same."""
    return feat / (feat.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class PerceptualDistance(nn.Module):
    """d(x, y) = sum_l mean_hw( sum_c w_lc (x̂_l - ŷ_l)^2 ), x̂_l the channel-normalised layer-l features.

    feature_net: module mapping images [B, C, H, W] to a list of feature maps [B, C_l, H_l, W_l].
    linear_weights: optional per-layer channel weights, each with C_l non-negative elements (any shape
    that flattens to C_l, e.g. an LPIPS [1, C_l, 1, 1] conv weight); None -> all ones.
    forward(x, y) -> [B] distances (computed in float32).
    """

    def __init__(self, feature_net: nn.Module, linear_weights: Sequence[torch.Tensor] | None = None,
                 eps: float = 1e-10):
        super().__init__()
        if not isinstance(feature_net, nn.Module):
            raise TypeError("feature_net must be an nn.Module returning a list of feature maps")
        self.feature_net, self.eps = feature_net, eps
        self.weights = nn.ParameterList()
        for i, w in enumerate(() if linear_weights is None else linear_weights):
            w = torch.as_tensor(w, dtype=torch.float32).detach().reshape(1, -1, 1, 1).clone()  # [1, C_l, 1, 1]
            if (w < 0).any():
                raise ValueError(f"linear_weights[{i}] has negative entries; LPIPS weights are non-negative")
            self.weights.append(nn.Parameter(w, requires_grad=False))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature network's layer outputs for x (a single tensor counts as one layer)."""
        feats = self.feature_net(x)
        feats = [feats] if isinstance(feats, torch.Tensor) else list(feats)
        if len(self.weights) and len(self.weights) != len(feats):
            raise ValueError(f"feature_net returned {len(feats)} layers but {len(self.weights)} linear weights were given")
        return feats

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # [B]
        if x.shape != y.shape or x.dim() != 4:
            raise ValueError(f"x and y must both be [B, C, H, W] of equal shape, got {tuple(x.shape)}, {tuple(y.shape)}")
        total = torch.zeros(x.shape[0], device=x.device, dtype=torch.float32)
        for l, (fx, fy) in enumerate(zip(self.features(x.float()), self.features(y.float()))):
            nx, ny = normalize_channels(fx.float(), self.eps), normalize_channels(fy.float(), self.eps)
            diff = (nx - ny).pow(2)  # [B, C_l, h, w]
            if len(self.weights):
                w = self.weights[l]  # [1, C_l, 1, 1]
                if w.shape[1] != diff.shape[1]:
                    raise ValueError(f"linear weight {l} has {w.shape[1]} channels, features have {diff.shape[1]}")
                diff = diff * w.to(diff.device)
            total = total + diff.sum(dim=1).mean(dim=(1, 2))  # [B]
        return total


class _ScaledStages(nn.Module):
    """A `features` Sequential cut into stages; returns the output of each stage (LPIPS-scaled input)."""

    channels: tuple[int, ...] = ()

    def __init__(self, layers: list[nn.Module], stage_ends: Sequence[int]):
        super().__init__()
        self.features = nn.Sequential(*layers)
        self.stage_ends = tuple(stage_ends)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{type(self).__name__} takes RGB images [B, 3, H, W] in [-1, 1], got {tuple(x.shape)}")
        h = (x - self.shift) / self.scale
        outs, start = [], 0
        for end in self.stage_ends:
            for i in range(start, end):
                h = self.features[i](h)
            outs.append(h)  # [B, C_k, H_k, W_k]
            start = end
        return outs


class VGG16Features(_ScaledStages):
    """VGG-16 convolutional trunk (torchvision indices); stages end at relu1_2 .. relu5_3."""

    channels = (64, 128, 256, 512, 512)

    def __init__(self):
        layers: list[nn.Module] = []
        c_in = 3
        for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU(inplace=False)]
                c_in = v
        super().__init__(layers, stage_ends=(4, 9, 16, 23, 30))


class AlexNetFeatures(_ScaledStages):
    """AlexNet convolutional trunk (torchvision indices); stages end at relu1 .. relu5."""

    channels = (64, 192, 384, 256, 256)

    def __init__(self):
        layers = [
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(),
            nn.MaxPool2d(3, 2), nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),
            nn.MaxPool2d(3, 2), nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        ]
        super().__init__(layers, stage_ends=(2, 5, 8, 10, 12))


BACKBONES = {"vgg": VGG16Features, "alex": AlexNetFeatures}
# First conv weight shape -> backbone name.
_FIRST_CONV = {(64, 3, 3, 3): "vgg", (64, 3, 11, 11): "alex"}


class LPIPS(PerceptualDistance):
    """`PerceptualDistance` over the VGG-16 or AlexNet trunk with one [1, C, 1, 1] head per stage
    (ones until loaded); `forward(x, y)` takes [B, 3, H, W] in [-1, 1] and returns [B]."""

    def __init__(self, net: str = "vgg", eps: float = 1e-10):
        if net not in BACKBONES:
            raise ValueError(f"LPIPS net must be one of {sorted(BACKBONES)}, got {net!r}")
        backbone = BACKBONES[net]()
        super().__init__(backbone, [torch.ones(c) for c in backbone.channels], eps=eps)
        self.net_name = net


_BACKBONE_KEY = re.compile(r"(?:net\.slice\d+|(?:feature_net\.|net\.)?features)\.(\d+)\.(weight|bias)")
_HEAD_KEY = re.compile(r"lin(\d+)(?:\.model\.1)?\.weight|weights\.(\d+)")


def _read_state(path: str) -> dict[str, torch.Tensor]:
    """A flat {name: tensor} dict from a safetensors file or a torch (weights_only) checkpoint."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"LPIPS weights file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(9)
    if path.endswith(".safetensors") or head[8:9] == b"{":  # safetensors: u64 header size, then JSON
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return state


def _split_state(state: dict[str, torch.Tensor], path: str) -> tuple[dict[str, torch.Tensor], dict[int, torch.Tensor]]:
    """Canonicalise every accepted key layout: backbone -> {`features.<i>.<p>`: t}, heads -> {l: t}."""
    backbone: dict[str, torch.Tensor] = {}
    heads: dict[int, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("scaling_layer."):
            continue  # the lpips package's input-scaling constants (fixed here)
        if (m := _BACKBONE_KEY.fullmatch(key)) is not None:
            backbone[f"features.{m.group(1)}.{m.group(2)}"] = value
        elif (m := _HEAD_KEY.fullmatch(key)) is not None:
            heads[int(m.group(1) or m.group(2))] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"{path}: unknown tensors for an LPIPS file: {sorted(unknown)[:8]}")
    return backbone, heads


def load_lpips(path: str | os.PathLike, net: str | None = None,
               device: str | torch.device | None = None) -> LPIPS:
    """Frozen LPIPS for images in [-1, 1] from one weights file (layouts: see the module docstring).

    `net` ("vgg" or "alex") is inferred from the first conv's kernel size when None; when given it must
    agree with the file.
    """
    path = os.fspath(path)
    backbone, heads = _split_state(_read_state(path), path)
    first = backbone.get("features.0.weight")
    if first is None:
        raise ValueError(f"{path}: no backbone weights found (expected 'features.0.weight' or 'net.slice1.0.weight')")
    found = _FIRST_CONV.get(tuple(first.shape))
    if found is None:
        raise ValueError(f"{path}: first conv weight has shape {tuple(first.shape)}; expected VGG-16 (64, 3, 3, 3) "
                         "or AlexNet (64, 3, 11, 11)")
    if net is not None and net != found:
        raise ValueError(f"{path} holds LPIPS net={found!r} weights, but net={net!r} was asked for")
    model = LPIPS(found)
    expected = set(model.feature_net.state_dict())
    missing, unexpected = sorted(expected - backbone.keys()), sorted(backbone.keys() - expected)
    if missing or unexpected:
        raise ValueError(f"{path}: backbone tensors do not match LPIPS net={found!r}: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    channels = model.feature_net.channels
    if sorted(heads) != list(range(len(channels))):
        raise ValueError(f"{path}: expected linear layers lin0..lin{len(channels) - 1}, found {sorted(heads)}")
    for l, c in enumerate(channels):
        if heads[l].numel() != c:
            raise ValueError(f"{path}: lin{l} has {heads[l].numel()} weights, stage {l} of net={found!r} "
                             f"has {c} channels")
        if bool((heads[l] < 0).any()):
            raise ValueError(f"{path}: LPIPS linear heads must be non-negative; lin{l} has negative entries")
    model.feature_net.load_state_dict(backbone, strict=True)
    with torch.no_grad():
        for l, c in enumerate(channels):
            model.weights[l].copy_(heads[l].float().reshape(1, c, 1, 1))
    model.requires_grad_(False).eval()
    return model.to(device) if device is not None else model


__all__ = [
    "normalize_channels",
    "PerceptualDistance",
    "VGG16Features",
    "AlexNetFeatures",
    "BACKBONES",
    "LPIPS",
    "load_lpips",
]
