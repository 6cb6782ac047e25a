"""LPIPS-style perceptual distance with a pluggable feature network (no torchvision).

Owns:
- `PerceptualDistance(feature_net, linear_weights=None)`: the LPIPS formula. For each layer l of the
  feature network: unit-normalise the features over channels, square the difference of the two images'
  normalised features, weight channels with a non-negative 1x1 linear layer w_l, average over space,
  then sum over layers:  d(x, y) = sum_l mean_hw( sum_c w_lc (x̂_lchw - ŷ_lchw)^2 ).
  Without linear weights every w_lc is 1.
- `VGG16Features`, `AlexNetFeatures`: the two LPIPS backbones, defined here with torchvision's layer
  indices (`features.<i>.weight`) and the LPIPS input scaling, returning the five ReLU stages.
- `load_lpips(weights_path)`: builds the right backbone from a safetensors / torch (weights_only) file
  holding backbone + linear weights and returns a frozen `PerceptualDistance` for images in [-1, 1].
  Accepted key layouts: `features.<i>.*` (torchvision) or `net.slice<k>.<i>.*` (the LPIPS package's
  full state dict) for the backbone, and `lin<l>.model.1.weight` or `lin<l>.weight` ([1, C, 1, 1])
  for the linear layers. Nothing is downloaded: a path to real weights must be given.
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

    feature_net: module mapping images [B, 3, H, W] to a list of feature maps [B, C_l, H_l, W_l].
    linear_weights: optional per-layer channel weights, each a tensor with C_l elements (any shape that
    flattens to C_l, e.g. an LPIPS [1, C_l, 1, 1] conv weight); None -> all ones.
    forward(x, y) -> [B] distances.
    """

    def __init__(self, feature_net: nn.Module, linear_weights: Sequence[torch.Tensor] | None = None):
        super().__init__()
        if not isinstance(feature_net, nn.Module):
            raise TypeError("feature_net must be an nn.Module returning a list of feature maps")
        self.feature_net = feature_net
        self.weights = nn.ParameterList()
        if linear_weights is not None:
            for i, w in enumerate(linear_weights):
                w = torch.as_tensor(w, dtype=torch.float32).flatten()
                if (w < 0).any():
                    raise ValueError(f"linear_weights[{i}] has negative entries; LPIPS weights are non-negative")
                self.weights.append(nn.Parameter(w, requires_grad=False))

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.feature_net(x)
        if isinstance(feats, torch.Tensor):
            feats = [feats]
        feats = list(feats)
        if len(self.weights) and len(self.weights) != len(feats):
            raise ValueError(f"feature_net returned {len(feats)} layers but {len(self.weights)} linear weights were given")
        return feats

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.dim() != 4:
            raise ValueError(f"x and y must both be [B, C, H, W] of equal shape, got {tuple(x.shape)}, {tuple(y.shape)}")
        total = torch.zeros(x.shape[0], device=x.device, dtype=torch.float32)
        for l, (fx, fy) in enumerate(zip(self._features(x), self._features(y))):
            diff = (normalize_channels(fx.float()) - normalize_channels(fy.float())).pow(2)  # [B, C, H, W]
            if len(self.weights):
                w = self.weights[l]
                if w.numel() != diff.shape[1]:
                    raise ValueError(f"linear weight {l} has {w.numel()} channels, features have {diff.shape[1]}")
                diff = diff * w.view(1, -1, 1, 1).to(diff.device)
            total = total + diff.sum(dim=1).mean(dim=(1, 2))  # [B]
        return total


class _ScaledStages(nn.Module):
    """A `features` Sequential cut into stages; returns the output of each stage (LPIPS-scaled input)."""

    def __init__(self, layers: list[nn.Module], stage_ends: Sequence[int]):
        super().__init__()
        self.features = nn.Sequential(*layers)
        self.stage_ends = tuple(stage_ends)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (x - self.shift) / self.scale
        outs, start = [], 0
        for end in self.stage_ends:
            for i in range(start, end):
                h = self.features[i](h)
            outs.append(h)
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


def _read_state(path: str) -> dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"LPIPS weights file not found: {path}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return state


def load_lpips(weights_path: str | os.PathLike, device: str | torch.device = "cpu") -> PerceptualDistance:
    """Frozen LPIPS (VGG-16 or AlexNet, chosen from the first conv's kernel size) for images in [-1, 1]."""
    path = os.fspath(weights_path)
    state = _read_state(path)
    backbone: dict[str, torch.Tensor] = {}
    lins: dict[int, torch.Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        m = re.fullmatch(r"(?:net\.slice\d+|(?:net\.)?features)\.(\d+)\.(weight|bias)", key)
        if m is not None:
            backbone[f"features.{m.group(1)}.{m.group(2)}"] = value
            continue
        m = re.fullmatch(r"lin(\d+)(?:\.model\.1)?\.weight", key)
        if m is not None:
            lins[int(m.group(1))] = value
    first = backbone.get("features.0.weight")
    if first is None:
        raise ValueError(f"{path}: no backbone weights found (expected 'features.0.weight' or 'net.slice1.0.weight')")
    if tuple(first.shape) == (64, 3, 3, 3):
        net: _ScaledStages = VGG16Features()
    elif tuple(first.shape) == (64, 3, 11, 11):
        net = AlexNetFeatures()
    else:
        raise ValueError(f"{path}: first conv weight has shape {tuple(first.shape)}; expected VGG-16 (64, 3, 3, 3) "
                         "or AlexNet (64, 3, 11, 11)")
    expected = set(net.state_dict().keys())
    missing, unexpected = sorted(expected - backbone.keys()), sorted(backbone.keys() - expected)
    if missing or unexpected:
        raise ValueError(f"{path}: backbone keys do not match {type(net).__name__}: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    net.load_state_dict(backbone)
    if sorted(lins) != list(range(len(net.channels))):
        raise ValueError(f"{path}: expected linear layers lin0..lin{len(net.channels) - 1}, found {sorted(lins)}")
    weights = [lins[i] for i in range(len(net.channels))]
    for i, (w, c) in enumerate(zip(weights, net.channels)):
        if w.numel() != c:
            raise ValueError(f"{path}: lin{i} has {w.numel()} weights, {type(net).__name__} stage {i} has {c} channels")
    model = PerceptualDistance(net, weights).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
