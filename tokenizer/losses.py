"""Training losses of the tokenizer: pixel (L1/L2), LPIPS perceptual distance, GAN terms, LeCam.

Owns:
- `pixel_loss(recon, target, kind)`: mean L1, L2 or L1 + L2 over all pixels.
- `LPIPS` / `load_lpips(path, net=None, device=None)`: the learned perceptual distance, re-exported
  from `tokenizer.perceptual` (the project's single LPIPS implementation, also used by eval).
- GAN terms: `hinge_d_loss` (discriminator), `non_saturating_g_loss` (generator), `LeCam` (EMA of the
  mean real/fake logits + the regulariser of Tseng et al. 2021), `adaptive_gan_weight` (VQGAN's
  gradient-norm ratio at the decoder's last layer).
The commitment/codebook loss is not here: it comes from the model output (`quantization_loss`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .perceptual import LPIPS, load_lpips

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


# ----------------------------------------------------------------------------- GAN terms
def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: 0.5 * (mean relu(1 - D(x)) + mean relu(1 + D(G(z))))."""
    return 0.5 * (F.relu(1.0 - logits_real.float()).mean() + F.relu(1.0 + logits_fake.float()).mean())


def non_saturating_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Generator term: mean softplus(-D(G(z))) = -mean log sigmoid(D(G(z)))."""
    return F.softplus(-logits_fake.float()).mean()


def _world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


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
        from gaussiantoken.runtime.dist import dist_sum_

        # the batch means over all processes (one process: as is), so every process keeps the same EMAs
        both = torch.stack([logits_real.float().mean(), logits_fake.float().mean()])
        real, fake = (dist_sum_(both) / _world_size()).unbind()
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
