"""Distribution metrics for generated images: FID, KID (pluggable feature network) and CLIPScore.

Owns:
- `frechet_distance(mu1, sigma1, mu2, sigma2)`: |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) with
  scipy.linalg.sqrtm in float64; `fid_from_features(real, fake)` from two feature matrices [N, D].
- `polynomial_mmd(x, y)`: the unbiased MMD^2 with the cubic kernel k(a, b) = (a.b / D + 1)^3 and
  `kid_from_features(real, fake, subsets, subset_size)`: its mean and std over random subsets.
- `make_fid(...)` / `make_kid(...)`: torchmetrics `FrechetInceptionDistance` /
  `KernelInceptionDistance` objects (update(imgs, real=...), compute()). torchmetrics accepts any
  nn.Module as the feature extractor without torch-fidelity or torchvision; it reads the feature size
  from a `num_features` attribute (set by `FeatureExtractor`). The Inception network itself needs
  torch-fidelity and local weights (`inception_weights`); neither ships here, so without them pass a
  `feature_net` (e.g. a trained `ShapesFeatureNet`). Numbers from such a network are only comparable
  with each other, never with Inception FID/KID in papers.
- `make_clip_score(weights_path)`: torchmetrics CLIPScore from a local CLIP checkpoint directory.

Images passed to the metric objects are floats in [0, 1], [B, 3, H, W].
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (mu [D], sigma [D, D])."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mean/covariance shapes disagree: {mu1.shape}, {mu2.shape}, {s1.shape}, {s2.shape}")
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():  # singular product: regularise both covariances slightly
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"sqrtm produced a large imaginary part {np.abs(covmean.imag).max():.3g}")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def _as_features(x, name: str) -> np.ndarray:
    x = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must be a [N, D] feature matrix with N >= 2, got shape {x.shape}")
    return x


def fid_from_features(real, fake) -> float:
    """FID between two feature sets [N, D] and [M, D] (sample means, unbiased covariances)."""
    real, fake = _as_features(real, "real"), _as_features(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dims differ: real {real.shape[1]} vs fake {fake.shape[1]}")
    return frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))


def polynomial_mmd(x, y, degree: int = 3, gamma: float | None = None, coef: float = 1.0) -> float:
    """Unbiased MMD^2 between samples x [m, D] and y [n, D] with k(a, b) = (gamma a.b + coef)^degree.

    gamma defaults to 1 / D. Diagonal (i == j) kernel terms are excluded from the within-set sums.
    """
    x, y = _as_features(x, "x"), _as_features(y, "y")
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    kxx = (gamma * x @ x.T + coef) ** degree
    kyy = (gamma * y @ y.T + coef) ** degree
    kxy = (gamma * x @ y.T + coef) ** degree
    m, n = x.shape[0], y.shape[0]
    within_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * kxy.mean())


def kid_from_features(real, fake, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID: mean and std of `polynomial_mmd` over `subsets` random subsets of `subset_size` of each set."""
    real, fake = _as_features(real, "real"), _as_features(fake, "fake")
    if subset_size > min(len(real), len(fake)):
        raise ValueError(f"subset_size {subset_size} exceeds the number of samples ({len(real)} real, {len(fake)} fake)")
    rng = np.random.default_rng(seed)
    vals = [polynomial_mmd(real[rng.choice(len(real), subset_size, replace=False)],
                           fake[rng.choice(len(fake), subset_size, replace=False)]) for _ in range(subsets)]
    return float(np.mean(vals)), float(np.std(vals))


class FeatureExtractor(nn.Module):
    """Wraps a feature network for torchmetrics: eval mode, no grad, [B, ...] -> [B, num_features].

    Images in [0, 1] floats (uint8 images are divided by 255). The wrapped net's `extract_features(x)`
    method is used when it has one (e.g. `ShapesFeatureNet`), else its forward, which must return a tensor.
    """

    def __init__(self, net: nn.Module, num_features: int | None = None):
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError("feature_net must be an nn.Module")
        num_features = num_features if num_features is not None else getattr(net, "num_features", None)
        if num_features is None and hasattr(net, "config"):
            num_features = getattr(net.config, "feature_dim", None)
        if not isinstance(num_features, int) or num_features <= 0:
            raise ValueError("feature_dim is required: the feature network has no integer `num_features` attribute")
        self.net = net.eval()
        self.num_features = num_features

    def train(self, mode: bool = True) -> "FeatureExtractor":  # always frozen
        return super().train(False)

    @torch.no_grad()
    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        x = imgs.float() / 255.0 if imgs.dtype == torch.uint8 else imgs.float()
        extract = getattr(self.net, "extract_features", None)
        feats = extract(x) if callable(extract) else self.net(x)
        feats = feats.flatten(1)
        if feats.shape[1] != self.num_features:
            raise ValueError(f"feature network returned {feats.shape[1]} features, expected {self.num_features}")
        return feats


def _inception_check(inception_weights) -> str:
    import importlib.util

    path = os.fspath(inception_weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Inception weights file not found: {path}")
    if importlib.util.find_spec("torch_fidelity") is None:  # what torchmetrics' Inception features import
        raise ImportError("Inception FID/KID needs the torch-fidelity package (pip install torch-fidelity); "
                          "or pass feature_net= to use another feature network")
    return path


def make_fid(feature_net: nn.Module | None = None, inception_weights: str | os.PathLike | None = None,
             feature_dim: int | None = None):
    """A torchmetrics FrechetInceptionDistance. Exactly one of feature_net / inception_weights.

    feature_net: any module mapping [B, 3, H, W] images in [0, 1] to [B, feature_dim] features.
    inception_weights: a local torch-fidelity Inception-v3 weights file (feature_dim in 64/192/768/2048,
    default 2048); needs torch-fidelity installed.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    if (feature_net is None) == (inception_weights is None):
        raise ValueError("make_fid needs exactly one of feature_net= or inception_weights= (no weights are downloaded)")
    if feature_net is not None:
        return FrechetInceptionDistance(feature=FeatureExtractor(feature_net, feature_dim), normalize=True)
    path = _inception_check(inception_weights)
    return FrechetInceptionDistance(feature=feature_dim or 2048, normalize=True, feature_extractor_weights_path=path)


def make_kid(feature_net: nn.Module | None = None, inception_weights: str | os.PathLike | None = None,
             feature_dim: int | None = None, subsets: int = 100, subset_size: int = 1000):
    """A torchmetrics KernelInceptionDistance (cubic polynomial kernel), same feature choice as make_fid.

    compute() returns (mean, std); it needs at least `subset_size` real and fake images.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    if (feature_net is None) == (inception_weights is None):
        raise ValueError("make_kid needs exactly one of feature_net= or inception_weights= (no weights are downloaded)")
    if feature_net is not None:
        return KernelInceptionDistance(feature=FeatureExtractor(feature_net, feature_dim), subsets=subsets,
                                       subset_size=subset_size, normalize=True)
    from torchmetrics.image.fid import NoTrainInceptionV3

    path = _inception_check(inception_weights)
    dim = feature_dim or 2048
    inception = NoTrainInceptionV3(name="inception-v3-compat", features_list=[str(dim)],
                                   feature_extractor_weights_path=path)
    return KernelInceptionDistance(feature=FeatureExtractor(_Uint8Input(inception), dim), subsets=subsets,
                                   subset_size=subset_size)


class _Uint8Input(nn.Module):
    """Feeds a uint8-expecting network (torch-fidelity Inception) from float images in [0, 1]."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x.clamp(0, 1) * 255).round().to(torch.uint8))


def make_clip_score(weights_path: str | os.PathLike | None):
    """torchmetrics CLIPScore from a local Hugging Face CLIP checkpoint directory (config + weights).

    update(images uint8 [B, 3, H, W] or floats in [0, 1], captions list[str]); compute() -> score.
    """
    if weights_path is None:
        raise ValueError("CLIPScore needs local CLIP weights: pass weights_path= a directory saved with "
                         "CLIPModel.save_pretrained (nothing can be downloaded here)")
    path = os.fspath(weights_path)
    if not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"CLIP weights directory not found or missing config.json: {path}")
    from torchmetrics.multimodal.clip_score import CLIPScore

    return CLIPScore(model_name_or_path=path)
