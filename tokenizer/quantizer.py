"""Feature vector quantization: an EMA codebook with k-means initialisation, dead-code restart,
straight-through or rotation-trick gradients, a commitment loss, and usage/perplexity statistics.

The codebook is a buffer (not a parameter): in training mode `forward` assigns codes, then moves each
code toward the mean of the vectors assigned to it by an exponential moving average
(cluster_size and embed_sum EMAs, Laplace-smoothed), then re-seeds codes whose EMA count fell below
`dead_code_threshold` from vectors of the current batch. In eval mode nothing changes and the output
is exactly `codebook[codes]` (bit-identical to a lookup from ids).

Under torch.distributed (DDP training) every statistic is global: the k-means init and the dead-code
re-seeding draw from the vectors of all processes (gathered in rank order), and the EMA counts and sums
are summed over processes, so N processes with batch B update the codebook exactly as one process with
batch N * B would (up to float summation order), and every process keeps the same codebook.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gaussiantoken.runtime.dist import dist_cat, dist_sum_


def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Lloyd's k-means on x [N, d] -> centroids [k, d], seeded by k-means++ (D^2 sampling); empty
    clusters are re-seeded from random points. When N < k, points are repeated with small noise."""
    n = x.shape[0]
    if n < k:
        reps = (k + n - 1) // n
        x = x.repeat(reps, 1)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        x = x + 1e-3 * x.std().clamp_min(1e-6) * noise
        n = x.shape[0]
    first = int(torch.randint(0, n, (1,), generator=generator))
    centroids = [x[first]]
    d2 = (x - x[first]).pow(2).sum(-1)  # [N] squared distance to the nearest chosen centroid
    for _ in range(1, k):
        probs = d2.cpu() / d2.sum().cpu() if float(d2.sum()) > 0 else torch.full((n,), 1.0 / n)
        nxt = int(torch.multinomial(probs, 1, generator=generator))
        centroids.append(x[nxt])
        d2 = torch.minimum(d2, (x - x[nxt]).pow(2).sum(-1))
    centroids = torch.stack(centroids)  # [k, d]
    for _ in range(iters):
        assign = torch.cdist(x, centroids).argmin(-1)  # [N]
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)  # [k]
        empty = counts == 0
        centroids = torch.where(empty.unsqueeze(-1), centroids, sums / counts.clamp_min(1).unsqueeze(-1))
        if empty.any():
            refill = torch.randint(0, n, (int(empty.sum()),), generator=generator).to(x.device)
            centroids[empty] = x[refill]
    return centroids


def rotation_trick(z: torch.Tensor, q: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Fifty et al. 2024: returns q in value, but the gradient reaches z through the (detached)
    rotation + rescaling that maps z onto q: out = (|q|/|z|) (I - 2 r r^T + 2 q_hat z_hat^T) z."""
    z_norm = z.norm(dim=-1, keepdim=True).clamp_min(eps)
    q_norm = q.norm(dim=-1, keepdim=True).clamp_min(eps)
    z_hat = (z / z_norm).detach()
    q_hat = (q / q_norm).detach()
    r = F.normalize(z_hat + q_hat, dim=-1, eps=eps).detach()
    scale = (q_norm / z_norm).detach()
    out = z - 2.0 * (z * r).sum(-1, keepdim=True) * r + 2.0 * (z * z_hat).sum(-1, keepdim=True) * q_hat
    return scale * out


class EMAVectorQuantizer(nn.Module):
    """z [..., d] -> (z_q [..., d], codes [...] long, commitment loss, stats dict)."""

    def __init__(
        self,
        codebook_size: int,
        dim: int,
        decay: float = 0.9,
        commitment_weight: float = 0.25,
        l2_normalize: bool = False,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 0.5,
        gradient_estimator: str = "rotation",
        eps: float = 1e-5,
    ):
        super().__init__()
        self.codebook_size, self.dim, self.decay = codebook_size, dim, decay
        self.commitment_weight = commitment_weight
        self.l2_normalize = l2_normalize
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold = dead_code_threshold
        self.gradient_estimator = gradient_estimator
        self.eps = eps
        codebook = torch.randn(codebook_size, dim)
        if l2_normalize:
            codebook = F.normalize(codebook, dim=-1)
        self.register_buffer("codebook", codebook)  # [K, d]
        self.register_buffer("cluster_size", torch.ones(codebook_size))  # [K] EMA counts
        self.register_buffer("embed_sum", codebook.clone())  # [K, d] EMA sums
        self.register_buffer("initialized", torch.tensor(0 if kmeans_init else 1, dtype=torch.long))

    def _prepare(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(z, dim=-1) if self.l2_normalize else z

    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest-code indices for z [..., d] (already normalized when l2_normalize): [...]"""
        flat = z.reshape(-1, self.dim)
        d = (flat.pow(2).sum(-1, keepdim=True) - 2.0 * flat @ self.codebook.t()
             + self.codebook.pow(2).sum(-1).unsqueeze(0))  # [N, K]
        return d.argmin(-1).view(z.shape[:-1])

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:  # [...] -> [..., d]
        return F.embedding(codes, self.codebook)

    @torch.no_grad()
    def init_codebook(self, flat: torch.Tensor) -> None:
        """k-means initialisation from a batch of vectors [N, d] (all processes' vectors under DDP)."""
        flat = dist_cat(flat)
        centroids = kmeans(flat.float(), self.codebook_size, self.kmeans_iters).to(self.codebook.dtype)
        if self.l2_normalize:
            centroids = F.normalize(centroids, dim=-1)
        self.codebook.copy_(centroids)
        self.embed_sum.copy_(centroids)
        self.cluster_size.fill_(1.0)
        self.initialized.fill_(1)

    @torch.no_grad()
    def ema_update(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        """Move codes toward the mean of their assigned vectors; flat [N, d], codes [N]."""
        onehot_counts = dist_sum_(torch.bincount(codes, minlength=self.codebook_size).to(flat.dtype))  # [K]
        sums = dist_sum_(torch.zeros_like(self.embed_sum).index_add_(0, codes, flat.to(self.embed_sum.dtype)))  # [K, d]
        self.cluster_size.mul_(self.decay).add_(onehot_counts, alpha=1.0 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1.0 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n  # [K]
        codebook = self.embed_sum / smoothed.unsqueeze(-1)
        if self.l2_normalize:
            codebook = F.normalize(codebook, dim=-1)
        self.codebook.copy_(codebook)

    @torch.no_grad()
    def restart_dead_codes(self, flat: torch.Tensor) -> int:
        """Re-seed codes whose EMA count < dead_code_threshold from random vectors of `flat`."""
        dead = self.cluster_size < self.dead_code_threshold
        n_dead = int(dead.sum())  # the same on every process (global statistics)
        if n_dead == 0:
            return 0
        flat = dist_cat(flat)
        pick = torch.randint(0, flat.shape[0], (n_dead,), device=flat.device)
        seeds = flat[pick].to(self.codebook.dtype)
        if self.l2_normalize:
            seeds = F.normalize(seeds, dim=-1)
        self.codebook[dead] = seeds
        self.embed_sum[dead] = seeds
        self.cluster_size[dead] = 1.0
        return n_dead

    def forward(self, z: torch.Tensor):
        """z [..., d] -> z_q [..., d], codes [...], loss (scalar), stats {usage, perplexity, restarted}."""
        if z.shape[-1] != self.dim:
            raise ValueError(f"quantizer expects vectors of dim {self.dim}, got shape {tuple(z.shape)}")
        z = self._prepare(z)
        flat = z.detach().reshape(-1, self.dim)  # [N, d]
        if self.training and not bool(self.initialized):
            self.init_codebook(flat)
        with torch.no_grad():
            codes = self.assign(z.detach())  # [...]
        q = self.lookup(codes)  # [..., d] (codebook before this step's update)
        loss = self.commitment_weight * F.mse_loss(z, q.detach())
        restarted = 0
        if self.training:
            flat_codes = codes.reshape(-1)
            self.ema_update(flat, flat_codes)
            restarted = self.restart_dead_codes(flat)
        if self.training and torch.is_grad_enabled() and z.requires_grad:
            if self.gradient_estimator == "rotation":
                z_q = rotation_trick(z, q)
            else:
                z_q = z + (q - z).detach()
        else:
            z_q = q
        with torch.no_grad():
            counts = torch.bincount(codes.reshape(-1), minlength=self.codebook_size).float()
            probs = counts / counts.sum().clamp_min(1)
            perplexity = float(torch.exp(-(probs * torch.log(probs.clamp_min(1e-12))).sum()))
            usage = float((counts > 0).float().mean())
        return z_q, codes, loss, {"usage": usage, "perplexity": perplexity, "restarted": restarted}


__all__ = ["EMAVectorQuantizer", "kmeans", "rotation_trick"]
