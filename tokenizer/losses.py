"""Training losses of the tokenizer: pixel (L1/L2), LPIPS perceptual distance, GAN terms, LeCam.

Owns:
- `pixel_loss(recon, target, kind)`: mean L1, L2 or L1 + L2 over all pixels.
- `LPIPS` / `load_lpips(path)`: the learned perceptual distance (Zhang et al. 2018). A VGG16 or AlexNet
  feature stack plus one 1x1 linear head per stage, all weights read from ONE safetensors file (no
  download, no torchvision). Parameter names follow the `lpips` package layout (`net.slice{k}.{i}.*`,
  `lin{k}.model.1.weight`), so a converted `lpips` state dict loads as is; torchvision backbone names
  (`features.<i>.*`) and bare heads (`lin<k>.weight`) are accepted too. The distance is
      d(x, y) = sum_k mean_hw( w_k . (n(f_k(x)) - n(f_k(y)))^2 ),   n(f) = f / (||f||_channel + eps)
  The eval package imports this module for its LPIPS metric (imports flow data <- tokenizer <- eval).
- GAN terms: `hinge_d_loss` (discriminator), `non_saturating_g_loss` (generator), `LeCam` (EMA of the
  mean real/fake logits + the regulariser of Tseng et al. 2021), `adaptive_gan_weight` (VQGAN's
  gradient-norm ratio at the decoder's last layer).
The commitment/codebook loss is not here: it comes from the model output (`quantization_loss`).
"""

from __future__ import annotations

import os
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

PIXEL_LOSSES = ("l1", "l2", "l1+l2")


# ----------------------------------------------------------------------------- pixel loss
def pixel_loss(recon: torch.Tensor, target: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Mean absolute (l1), squared (l2) error, or their sum (l1+l2), over every element; [B, 3, H, W]."""
    if kind not in PIXEL_LOSSES:
        raise ValueError(f"pixel loss kind must be one of {PIXEL_LOSSES}, got {kind!r}")
    if recon.shape != target.shape:
        raise ValueError(f"recon shape {tuple(recon.shape)} != target shape {tuple(target.shape)}")
    diff = recon.float() - target.float()
    l1, l2 = diff.abs().mean(), (diff * diff).mean()
    return l1 if kind == "l1" else l2 if kind == "l2" else l1 + l2


# ----------------------------------------------------------------------------- LPIPS
# (in_channels, out_channels, kernel, stride, padding) per conv, "M" = 2x2 max-pool, "A" = 3x3/2 max-pool.
_VGG16 = [(3, 64, 3, 1, 1), (64, 64, 3, 1, 1), "M", (64, 128, 3, 1, 1), (128, 128, 3, 1, 1), "M",
          (128, 256, 3, 1, 1), (256, 256, 3, 1, 1), (256, 256, 3, 1, 1), "M",
          (256, 512, 3, 1, 1), (512, 512, 3, 1, 1), (512, 512, 3, 1, 1), "M",
          (512, 512, 3, 1, 1), (512, 512, 3, 1, 1), (512, 512, 3, 1, 1)]  # fmt: skip
_ALEX = [(3, 64, 11, 4, 2), "A", (64, 192, 5, 1, 2), "A", (192, 384, 3, 1, 1), (384, 256, 3, 1, 1),
         (256, 256, 3, 1, 1)]  # fmt: skip
# Stage boundaries as indices into the torchvision-style `features` list (conv, relu, pool ...).
_SLICES = {"vgg": [(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)], "alex": [(0, 2), (2, 5), (5, 8), (8, 10), (10, 12)]}
_CHANNELS = {"vgg": [64, 128, 256, 512, 512], "alex": [64, 192, 384, 256, 256]}
# Input normalisation of the LPIPS package (inputs in [-1, 1]).
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


def _feature_layers(net: str) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for spec in _VGG16 if net == "vgg" else _ALEX:
        if spec == "M":
            layers.append(nn.MaxPool2d(2, 2))
        elif spec == "A":
            layers.append(nn.MaxPool2d(3, 2))
        else:
            cin, cout, k, s, p = spec
            layers += [nn.Conv2d(cin, cout, k, s, p), nn.ReLU(inplace=False)]
    return layers


class _Linear(nn.Module):
    """One stage's 1x1 head (named like the lpips package: `model.1.weight`)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(0.0), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x):
        return self.model(x)


class LPIPS(nn.Module):
    """Learned perceptual distance; `forward(x, y)` takes [B, 3, H, W] in [-1, 1], returns [B]."""

    def __init__(self, net: str = "vgg", eps: float = 1e-10) -> None:
        super().__init__()
        if net not in _SLICES:
            raise ValueError(f"LPIPS net must be one of {sorted(_SLICES)}, got {net!r}")
        self.net_name, self.eps = net, eps
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        layers = _feature_layers(net)
        self.net = nn.Module()
        for k, (lo, hi) in enumerate(_SLICES[net], start=1):
            stage = nn.Sequential()
            for i in range(lo, hi):
                stage.add_module(str(i), layers[i])  # torchvision indices, as in the lpips package
            setattr(self.net, f"slice{k}", stage)
        for k, c in enumerate(_CHANNELS[net]):
            setattr(self, f"lin{k}", _Linear(c))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five stage outputs for x [B, 3, H, W] in [-1, 1]."""
        h = (x - self.shift) / self.scale
        out = []
        for k in range(1, 6):
            h = getattr(self.net, f"slice{k}")(h)
            out.append(h)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # [B]
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS inputs must both be [B, 3, H, W], got {tuple(x.shape)} and {tuple(y.shape)}")
        fx, fy = self.features(x.float()), self.features(y.float())
        total = torch.zeros(x.shape[0], device=x.device)
        for k, (a, b) in enumerate(zip(fx, fy)):
            a = a / (a.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps)  # [B, C_k, h, w]
            b = b / (b.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps)
            total = total + getattr(self, f"lin{k}")((a - b) ** 2).mean(dim=(1, 2, 3))  # [B]
        return total


def _canonical_keys(state: dict) -> dict:
    """Accept torchvision backbone names (`features.<i>.*`) and bare heads (`lin<k>.weight`) too."""
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"features\.(\d+)\.(weight|bias)", key)
        if m:
            i = int(m.group(1))
            k = 1 + sum(1 for lo, _ in _SLICES[_guess_net(state)][1:] if i >= lo)
            key = f"net.slice{k}.{i}.{m.group(2)}"
        m = re.fullmatch(r"lin(\d)\.weight", key)
        if m:
            key = f"lin{m.group(1)}.model.1.weight"
        out[key] = value
    return out


def _guess_net(state: dict) -> str:
    first = state.get("features.0.weight", state.get("net.slice1.0.weight"))
    return "alex" if first is not None and first.shape[-1] == 11 else "vgg"


def load_lpips(path: str | os.PathLike, net: str | None = None, device=None) -> LPIPS:
    """Build a frozen LPIPS network from a safetensors file holding all its weights.

    `net` ("vgg" or "alex") is inferred from the first conv's kernel size when None. Missing or
    unexpected tensors raise a ValueError naming them (the `scaling_layer.*` constants are ignored).
    """
    from safetensors.torch import load_file

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"LPIPS weights file not found: {path}")
    state = _canonical_keys({k: v for k, v in load_file(path).items() if not k.startswith("scaling_layer.")})
    first = state.get("net.slice1.0.weight")
    if first is None:
        raise ValueError(f"{path} is not an LPIPS safetensors file: no 'net.slice1.0.weight' tensor")
    if net is None:
        net = "alex" if first.shape[-1] == 11 else "vgg"
    model = LPIPS(net)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"LPIPS weights in {path} do not match net={net!r}: missing {missing[:8]}, "
                         f"unexpected {unexpected[:8]}")
    negative = [k for k in state if k.startswith("lin") and bool((state[k] < 0).any())]
    if negative:
        raise ValueError(f"LPIPS linear heads must be non-negative; {negative} in {path} are not")
    model.load_state_dict(state, strict=True)
    model.requires_grad_(False).eval()
    return model.to(device) if device is not None else model


# ----------------------------------------------------------------------------- GAN terms
def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: 0.5 * (mean relu(1 - D(x)) + mean relu(1 + D(G(z))))."""
    return 0.5 * (F.relu(1.0 - logits_real.float()).mean() + F.relu(1.0 + logits_fake.float()).mean())


def non_saturating_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Generator term: mean softplus(-D(G(z))) = -mean log sigmoid(D(G(z)))."""
    return F.softplus(-logits_fake.float()).mean()


class LeCam(nn.Module):
    """LeCam regulariser: EMAs of the mean real/fake logits and
    R = mean relu(D(x) - ema_fake)^2 + mean relu(ema_real - D(G(z)))^2.

    The EMAs are buffers (saved with the discriminator state); `update` is called once per
    discriminator step with the detached logits, before `forward`.
    """

    def __init__(self, decay: float = 0.999) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"LeCam decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def update(self, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> None:
        real, fake = logits_real.float().mean(), logits_fake.float().mean()
        if not bool(self.initialized):  # first call: start the averages at the first batch means
            self.ema_real.copy_(real)
            self.ema_fake.copy_(fake)
            self.initialized.fill_(True)
            return
        self.ema_real.mul_(self.decay).add_(real, alpha=1 - self.decay)
        self.ema_fake.mul_(self.decay).add_(fake, alpha=1 - self.decay)

    def forward(self, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
        return (F.relu(logits_real.float() - self.ema_fake).pow(2).mean()
                + F.relu(self.ema_real - logits_fake.float()).pow(2).mean())


def adaptive_gan_weight(
    rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor, max_weight: float = 1e4
) -> torch.Tensor:
    """VQGAN's balance: ||dL_rec/dW|| / (||dL_G/dW|| + 1e-4) at the decoder's last weight W (detached)."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.norm() / (g_grad.norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()


__all__ = [
    "PIXEL_LOSSES",
    "pixel_loss",
    "LPIPS",
    "load_lpips",
    "hinge_d_loss",
    "non_saturating_g_loss",
    "LeCam",
    "adaptive_gan_weight",
]
