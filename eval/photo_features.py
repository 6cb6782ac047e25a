"""A small CNN trained on photo patches to give FID-style features for natural images offline.

Owns `PhotoFeatureNetConfig` / `PhotoFeatureNet` (the `ShapesFeatureNet` architecture: conv blocks,
average + max pooling to `feature_dim`, a linear head; HF PretrainedConfig / PreTrainedModel,
safetensors) and `train_photo_feature_net(dataset)`: cross-entropy on the (photo, scale) a patch was
cut from (the `photo` and `scale` columns of `data.photos.load_photo_patches`), a supervised proxy
task that needs no labels beyond the patch's origin. Distances from these features are comparable
only with other numbers from the same trained network, never with Inception FID.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .feature_nets import ShapesFeatureNet, ShapesFeatureNetConfig, fit_feature_net, image_to_tensor


class PhotoFeatureNetConfig(ShapesFeatureNetConfig):
    model_type = "gaussiantoken_photo_feature_net"

    def __init__(self, classes=(), channels=(16, 32, 64), feature_dim: int = 64, **kwargs):
        self.classes = [str(c) for c in classes]
        super().__init__(channels=channels, feature_dim=feature_dim, **kwargs)

    @property
    def num_labels_total(self) -> int:
        return max(1, len(self.classes))


class PhotoFeatureNet(ShapesFeatureNet):
    """Images [B, 3, H, W] in [0, 1] -> features [B, feature_dim] -> (photo, scale) class logits."""

    config_class = PhotoFeatureNetConfig
    base_model_prefix = "photo_feature_net"


def patch_classes(dataset) -> tuple[list[str], torch.Tensor]:
    """(sorted class names "photo@scale", class index per row [N]) of a photo-patch dataset."""
    for col in ("image", "photo", "scale"):
        if col not in dataset.column_names:
            raise ValueError(f"dataset needs a {col!r} column (data.photos.load_photo_patches), has {dataset.column_names}")
    keys = [f"{p}@{float(s):g}" for p, s in zip(dataset["photo"], dataset["scale"])]
    names = sorted(set(keys))
    return names, torch.tensor([names.index(k) for k in keys])


def train_photo_feature_net(dataset, epochs: int = 3, batch_size: int = 64, lr: float = 3e-3, seed: int = 0,
                            **config_kwargs) -> tuple[PhotoFeatureNet, list[float]]:
    """Train on (photo, scale) classification; returns (model in eval mode, mean loss per epoch)."""
    if len(dataset) == 0:
        raise ValueError("dataset is empty")
    names, labels = patch_classes(dataset)
    images = torch.stack([image_to_tensor(im) for im in dataset["image"]])  # [N, 3, H, W] in [0, 1]
    torch.manual_seed(seed)
    model = PhotoFeatureNet(PhotoFeatureNetConfig(classes=names, **config_kwargs))
    losses = fit_feature_net(model, images, labels, F.cross_entropy, epochs=epochs, batch_size=batch_size, lr=lr,
                             seed=seed)
    return model.eval(), losses


@torch.no_grad()
def patch_accuracy(model: PhotoFeatureNet, dataset, batch_size: int = 256) -> float:
    """Share of patches whose (photo, scale) class is predicted right (classes as in training)."""
    names, labels = patch_classes(dataset)
    index = torch.tensor([model.config.classes.index(n) if n in model.config.classes else -1 for n in names])
    images = torch.stack([image_to_tensor(im) for im in dataset["image"]])
    preds = torch.cat([model(images[i:i + batch_size]).argmax(-1) for i in range(0, len(images), batch_size)])
    return float((preds == index[labels]).float().mean())


__all__ = ["PhotoFeatureNetConfig", "PhotoFeatureNet", "train_photo_feature_net", "patch_classes", "patch_accuracy"]
