"""A small CNN trained on the Shapes world to give FID/KID features offline (no Inception weights here).

Owns:
- `ShapesFeatureNetConfig` / `ShapesFeatureNet` (HF PretrainedConfig / PreTrainedModel, safetensors):
  conv blocks (full resolution, then strided), global average + max pooling to a `feature_dim` vector (`extract_features`),
  and a linear head predicting scene attributes (`forward` -> logits).
- `shapes_targets(objects)`: the multi-label target of one scene: presence of each (color, shape)
  pair, presence of each size, and the object count (one-hot over 1..max_objects).
- `train_shapes_feature_net(dataset, ...)`: trains it on a `datasets.Dataset` with columns `image`
  (PIL / array / tensor) and `objects` (a list of {color, shape, size, ...} dicts, or the same as a dict
  of lists), e.g. `gaussiantoken.data.shapes.make_dataset(...)`.
- `shapes_attribute_accuracy(model, dataset)`: per-label and exact-match accuracy on held-out scenes.

FID/KID computed with these features are only comparable with other numbers from the same trained
network (same weights file), never with Inception FID from papers.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

# The Shapes world vocabulary (docs/shapes_world.md).
COLORS = ("red", "green", "blue", "yellow", "magenta", "cyan", "white")
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
MAX_OBJECTS = 3


class ShapesFeatureNetConfig(PretrainedConfig):
    model_type = "gaussiantoken_shapes_feature_net"

    def __init__(self, channels=(32, 64, 128), feature_dim: int = 128, colors=COLORS, shapes=SHAPES,
                 sizes=SIZES, max_objects: int = MAX_OBJECTS, **kwargs):
        self.channels = list(channels)
        self.feature_dim = feature_dim
        self.colors, self.shapes, self.sizes = list(colors), list(shapes), list(sizes)
        self.max_objects = max_objects
        super().__init__(**kwargs)

    @property
    def num_labels_total(self) -> int:
        return len(self.colors) * len(self.shapes) + len(self.sizes) + self.max_objects


class ShapesFeatureNet(PreTrainedModel):
    """Images [B, 3, H, W] in [0, 1] -> features [B, feature_dim] -> attribute logits [B, num_labels]."""

    config_class = ShapesFeatureNetConfig
    base_model_prefix = "shapes_feature_net"
    main_input_name = "pixel_values"

    def __init__(self, config: ShapesFeatureNetConfig):
        super().__init__(config)
        layers, c_in = [], 3
        for i, c in enumerate(config.channels):  # the first block keeps full resolution for small objects
            layers += [nn.Conv2d(c_in, c, 3, stride=1 if i == 0 else 2, padding=1), nn.GroupNorm(8, c), nn.SiLU(),
                       nn.Conv2d(c, c, 3, padding=1), nn.SiLU()]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.proj = nn.Linear(2 * c_in, config.feature_dim)
        self.head = nn.Linear(config.feature_dim, config.num_labels_total)
        self.post_init()

    @property
    def num_features(self) -> int:
        return self.config.feature_dim

    def _init_weights(self, module):
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="linear")
            nn.init.zeros_(module.bias)

    def extract_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        h = self.body(pixel_values * 2.0 - 1.0)  # [B, C, H/4, W/4]
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)  # [B, 2C]: average and max (presence)
        return self.proj(pooled)  # [B, feature_dim]

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.head(F.silu(self.extract_features(pixel_values)))  # [B, num_labels]


def _objects_list(objects) -> list[dict]:
    if isinstance(objects, dict):  # datasets stores a sequence of structs as a dict of lists
        keys = list(objects)
        objects = [dict(zip(keys, vals)) for vals in zip(*(objects[k] for k in keys))]
    if not isinstance(objects, (list, tuple)):
        raise TypeError(f"objects must be a list of dicts or a dict of lists, got {type(objects).__name__}")
    return list(objects)


def shapes_targets(objects, config: ShapesFeatureNetConfig | None = None) -> torch.Tensor:
    """Multi-hot target [num_labels]: (color, shape) pairs present, sizes present, count one-hot."""
    cfg = config or ShapesFeatureNetConfig()
    objs = _objects_list(objects)
    if not 1 <= len(objs) <= cfg.max_objects:
        raise ValueError(f"a scene must hold 1..{cfg.max_objects} objects, got {len(objs)}")
    target = torch.zeros(cfg.num_labels_total)
    n_pairs = len(cfg.colors) * len(cfg.shapes)
    for obj in objs:
        try:
            color, shape, size = obj["color"], obj["shape"], obj["size"]
        except (KeyError, TypeError) as err:
            raise ValueError(f"each object needs color, shape and size keys, got {obj!r}") from err
        for name, value, vocab in (("color", color, cfg.colors), ("shape", shape, cfg.shapes), ("size", size, cfg.sizes)):
            if value not in vocab:
                raise ValueError(f"unknown {name} {value!r}; expected one of {vocab}")
        target[cfg.colors.index(color) * len(cfg.shapes) + cfg.shapes.index(shape)] = 1.0
        target[n_pairs + cfg.sizes.index(size)] = 1.0
    target[n_pairs + len(cfg.sizes) + len(objs) - 1] = 1.0
    return target


def image_to_tensor(image) -> torch.Tensor:
    """PIL image / HWC uint8 array / CHW tensor -> float [3, H, W] in [0, 1]."""
    if isinstance(image, torch.Tensor):
        t = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
        if t.dim() != 3:
            raise ValueError(f"image tensor must be [3, H, W], got {tuple(t.shape)}")
        return t
    arr = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"image array must be [H, W, 3], got {arr.shape}")
    t = torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1)
    return t.float() / 255.0 if t.dtype == torch.uint8 else t.float()


def _tensors(dataset, config) -> tuple[torch.Tensor, torch.Tensor]:
    for col in ("image", "objects"):
        if col not in dataset.column_names:
            raise ValueError(f"dataset needs an {col!r} column, has {dataset.column_names}")
    if len(dataset) == 0:
        raise ValueError("dataset is empty")
    images = torch.stack([image_to_tensor(im) for im in dataset["image"]])  # [N, 3, H, W]
    targets = torch.stack([shapes_targets(o, config) for o in dataset["objects"]])  # [N, L]
    return images, targets


def train_shapes_feature_net(dataset, config: ShapesFeatureNetConfig | None = None, epochs: int = 10,
                             batch_size: int = 64, lr: float = 3e-3, seed: int = 0) -> tuple[ShapesFeatureNet, list[float]]:
    """Train a ShapesFeatureNet with BCE on `shapes_targets`. Returns (model in eval mode, epoch losses)."""
    cfg = config or ShapesFeatureNetConfig()
    images, targets = _tensors(dataset, cfg)
    torch.manual_seed(seed)
    model = ShapesFeatureNet(cfg)
    losses = fit_feature_net(model, images, targets, F.binary_cross_entropy_with_logits,
                             epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    return model.eval(), losses


def fit_feature_net(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, loss_fn, *, epochs: int,
                    batch_size: int, lr: float, seed: int) -> list[float]:
    """The one training loop of our fixed feature nets: AdamW + one-cycle LR over shuffled minibatches of
    images [N, 3, H, W] and their targets [N, ...]; returns the mean loss of each epoch (model left in train mode)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * max(1, -(-len(images) // batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    losses = []
    model.train()
    for _ in range(epochs):
        perm, total = torch.randperm(len(images), generator=gen), 0.0
        for start in range(0, len(images), batch_size):
            idx = perm[start:start + batch_size]
            loss = loss_fn(model(images[idx]), targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(images))
    return losses


@torch.no_grad()
def shapes_attribute_accuracy(model: ShapesFeatureNet, dataset, batch_size: int = 256) -> dict:
    """Label accuracy (mean over all binary labels) and exact-match accuracy (all labels right)."""
    images, targets = _tensors(dataset, model.config)
    model.eval()
    preds = torch.cat([(model(images[i:i + batch_size]) > 0).float() for i in range(0, len(images), batch_size)])
    correct = preds == targets  # [N, L]
    return {"label_accuracy": float(correct.float().mean()), "exact_match": float(correct.all(dim=1).float().mean())}
