"""Datasets: the built-in Shapes world and loaders for real sets, all as ``datasets.Dataset``.

Light at import: ``gaussiantoken.data.make_dataset`` etc. load their module on first access.
"""

from __future__ import annotations

import importlib

_LAZY = {
    # the Shapes world
    "BACKGROUND": ".shapes", "COLORS": ".shapes", "SHAPES": ".shapes", "SIZES": ".shapes",
    "RELATIONS": ".shapes", "make_dataset": ".shapes", "render_scene": ".shapes",
    "parse_scene": ".shapes", "caption_for": ".shapes", "parse_caption": ".shapes",
    "questions_for": ".shapes", "answer_question": ".shapes", "scene_matches_caption": ".shapes",
    "sample_scenes": ".shapes",
    "sample_prompts": ".shapes", "sample_scene": ".shapes",
    # real datasets
    "load_cifar100": ".loaders", "load_mini_imagenet": ".loaders", "load_imagenet": ".loaders",
    "load_image_folder": ".loaders", "load_hub": ".loaders", "load_coco_captions": ".loaders",
    "load_vqav2": ".loaders", "load_dataset_from_config": ".loaders",
    "load_photo_patches": ".photos", "packaged_photos": ".photos",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
