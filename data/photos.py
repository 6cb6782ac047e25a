"""Real photographs offline: square RGB patches cut from a folder of photos, split by photograph.

Owns ``packaged_photos`` (the colour photographs that ship inside installed packages: scikit-image's
``skimage/data``, scikit-learn's ``datasets/images``, matplotlib's ``mpl-data/sample_data``; found on
disk, nothing downloaded) and ``load_photo_patches`` (a ``datasets.Dataset`` of patches).

Patches: each photograph is resized (PIL box filter, i.e. area averaging) by every factor in
``scales``; from each resized copy ``num_samples / (photos x scales)`` patches of ``patch_size`` x
``patch_size`` pixels are cut at uniformly random positions (the remainder goes to the first pairs).
The positions are a pure function of (seed, photo name, scale), so the same call returns the same
dataset, and adding a photo never moves another photo's patches. A resized copy smaller than a
patch is skipped. Split by photograph: a test photo contributes no patch to "train". The packaged
default holds out ``DEFAULT_TEST_PHOTOS``; a user folder holds out about ``test_fraction`` of its
photos, chosen by a hash of the file name (stable, independent of the seed).
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

# (package, folder inside it, file names): colour photographs only (no textures, masks, plots).
_PACKAGED = (
    ("skimage", "data", ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png",
                         "motorcycle_left.png", "retina.jpg", "rocket.jpg")),
    ("sklearn", "datasets/images", ("china.jpg", "flower.jpg")),
    ("matplotlib", "mpl-data/sample_data", ("grace_hopper.jpg",)),
)
DEFAULT_TEST_PHOTOS = ("chelsea", "coffee")  # both ship with scikit-image (always there for the tests)
DEFAULT_SCALES = (1.0, 0.5, 0.25)
SPLITS = ("train", "test", "all")


def packaged_photos() -> dict[str, Path]:
    """{name (file stem): path} of the packaged colour photographs found in this environment."""
    found = {}
    for package, folder, names in _PACKAGED:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        base = Path(list(spec.submodule_search_locations)[0]) / folder
        for name in names:
            if (base / name).is_file():
                found[Path(name).stem] = base / name
    return found


def _folder_photos(root) -> dict[str, Path]:
    from .loaders import _dir, _is_image

    base = _dir(root, "root")
    paths = sorted(p for p in base.rglob("*") if _is_image(p))
    if not paths:
        raise ValueError(f"no images found under {base}")
    photos = {}
    for p in paths:
        name = p.relative_to(base).with_suffix("").as_posix()
        photos[name] = p
    return photos


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big")


def split_photos(names: list[str], test_photos=None, test_fraction: float = 0.2) -> tuple[list[str], list[str]]:
    """(train names, test names), both sorted. ``test_photos`` names them; else about
    ``test_fraction`` of them (at least one when there are two or more), lowest name hash first."""
    names = sorted(names)
    if test_photos is not None:
        test = sorted(str(n) for n in test_photos)
        unknown = [n for n in test if n not in names]
        if unknown:
            raise ValueError(f"test_photos {unknown} are not among the photos {names}")
    else:
        if not 0.0 <= test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
        k = round(test_fraction * len(names))
        if len(names) >= 2 and test_fraction > 0:
            k = max(1, k)
        test = sorted(sorted(names, key=_stable_hash)[:k])
    return [n for n in names if n not in test], test


def _patch_counts(total: int, pairs: int) -> list[int]:
    base, extra = divmod(total, pairs)
    return [base + (i < extra) for i in range(pairs)]


def cut_patches(image, patch_size: int, count: int, seed: int, name: str, scale: float):
    """Resize a PIL image by ``scale`` and cut ``count`` random patches -> (uint8 [count, P, P, 3],
    lefts, tops); empty when the resized copy is smaller than a patch."""
    import numpy as np
    from PIL import Image

    w, h = image.size
    sw, sh = round(w * scale), round(h * scale)
    empty = np.zeros((0, patch_size, patch_size, 3), np.uint8)
    if sw < patch_size or sh < patch_size or count == 0:
        return empty, [], []
    resized = np.asarray(image.resize((sw, sh), Image.BOX) if (sw, sh) != (w, h) else image)  # [sh, sw, 3]
    rng = np.random.default_rng([int(seed), _stable_hash(name) % (1 << 32), round(scale * 1e6)])
    lefts = rng.integers(0, sw - patch_size + 1, count)
    tops = rng.integers(0, sh - patch_size + 1, count)
    patches = np.stack([resized[t : t + patch_size, x : x + patch_size] for x, t in zip(lefts, tops)])
    return patches, lefts.tolist(), tops.tolist()


def load_photo_patches(root=None, split: str = "train", patch_size: int = 32, num_samples: int = 20000,
                       scales=DEFAULT_SCALES, seed: int = 0, test_photos=None, test_fraction: float = 0.2):
    """Patches of the photos in ``root`` (recursive; default: ``packaged_photos()``) ->
    Dataset(image, photo, scale, left, top); see the module docstring for the split and the sampling."""
    import datasets
    import numpy as np
    from PIL import Image

    from .shapes import png_bytes

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size <= 0:
        raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples <= 0:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    scales = [float(s) for s in scales]
    if not scales or any(not 0.0 < s <= 1.0 for s in scales):
        raise ValueError(f"scales must be a non-empty list of factors in (0, 1], got {scales}")
    if root is None:
        photos = packaged_photos()
        if not photos:
            raise ValueError("no packaged photographs found (install scikit-image) and no root folder given")
        if test_photos is None:
            test_photos = [n for n in DEFAULT_TEST_PHOTOS if n in photos]
    else:
        photos = _folder_photos(root)
    train_names, test_names = split_photos(list(photos), test_photos, test_fraction)
    names = {"train": train_names, "test": test_names, "all": sorted(photos)}[split]
    if not names:
        raise ValueError(f"split {split!r} holds no photos (photos: {sorted(photos)}, test: {test_names})")
    pairs = [(n, s) for n in names for s in scales]
    counts = _patch_counts(num_samples, len(pairs))
    chunks, rows = [], {"photo": [], "scale": [], "left": [], "top": []}
    opened: dict[str, Image.Image] = {}
    for (name, scale), count in zip(pairs, counts):
        if name not in opened:
            with Image.open(photos[name]) as im:
                opened[name] = im.convert("RGB")
        patches, lefts, tops = cut_patches(opened[name], patch_size, count, seed, name, scale)
        chunks.append(patches)
        rows["photo"] += [name] * len(lefts)
        rows["scale"] += [scale] * len(lefts)
        rows["left"] += lefts
        rows["top"] += tops
    images = np.concatenate(chunks) if chunks else np.zeros((0, patch_size, patch_size, 3), np.uint8)
    if len(images) == 0:
        raise ValueError(f"every photo of split {split!r} is smaller than a {patch_size}-pixel patch at scales {scales}")
    features = datasets.Features({"image": datasets.Image(), "photo": datasets.Value("string"),
                                  "scale": datasets.Value("float32"), "left": datasets.Value("int32"),
                                  "top": datasets.Value("int32")})
    return datasets.Dataset.from_dict({"image": png_bytes(images), **rows}, features=features)


__all__ = ["packaged_photos", "split_photos", "cut_patches", "load_photo_patches", "DEFAULT_TEST_PHOTOS",
           "DEFAULT_SCALES"]
