"""Photo patches (data/photos.py): packaged photos, split by photograph, determinism, folder form."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from gaussiantoken.data.loaders import load_dataset_from_config
from gaussiantoken.data.photos import DEFAULT_TEST_PHOTOS, load_photo_patches, packaged_photos, split_photos


def _folder(tmp_path, n=5, size=(80, 60)):
    rng = np.random.default_rng(0)
    for i in range(n):
        sub = tmp_path / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(sub / f"p{i}.png")
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "tiny.png")  # too small
    return tmp_path


def test_packaged_photos_are_colour_files_with_the_default_test_photos():
    photos = packaged_photos()
    assert set(DEFAULT_TEST_PHOTOS) <= set(photos) and "astronaut" in photos
    for path in photos.values():
        with Image.open(path) as im:
            assert min(im.size) >= 200


def test_packaged_split_by_photograph_and_deterministic():
    train = load_photo_patches(split="train", num_samples=120, seed=3)
    test = load_photo_patches(split="test", num_samples=30, seed=3)
    assert len(train) == 120 and len(test) == 30
    assert set(test["photo"]) == set(DEFAULT_TEST_PHOTOS)
    assert not set(train["photo"]) & set(test["photo"])
    assert set(train["scale"]) == {1.0, 0.5, 0.25}
    again = load_photo_patches(split="train", num_samples=120, seed=3)
    a = np.stack([np.asarray(im) for im in train["image"]])
    assert a.shape == (120, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, np.stack([np.asarray(im) for im in again["image"]]))
    other = load_photo_patches(split="train", num_samples=120, seed=4)
    assert not np.array_equal(a, np.stack([np.asarray(im) for im in other["image"]]))


def test_patch_is_the_crop_of_the_photo(tmp_path):
    root = _folder(tmp_path)
    ds = load_photo_patches(root, split="all", patch_size=16, num_samples=40, scales=[1.0, 0.5], seed=1)
    row = next(r for r in ds if r["scale"] == 1.0)
    photo = np.asarray(Image.open(root / f"{row['photo']}.png").convert("RGB"))
    crop = photo[row["top"] : row["top"] + 16, row["left"] : row["left"] + 16]
    assert np.array_equal(np.asarray(row["image"]), crop)
    half = next(r for r in ds if r["scale"] == 0.5)
    small = np.asarray(Image.open(root / f"{half['photo']}.png").convert("RGB").resize((40, 30), Image.BOX))
    assert np.array_equal(np.asarray(half["image"]), small[half["top"] : half["top"] + 16, half["left"] : half["left"] + 16])
    assert "tiny" not in set(ds["photo"])  # smaller than a patch: skipped
    assert len(ds) < 40  # its share was dropped, not redistributed


def test_folder_split_is_stable_and_disjoint(tmp_path):
    root = _folder(tmp_path)
    train = load_photo_patches(root, split="train", patch_size=16, num_samples=30)
    test = load_photo_patches(root, split="test", patch_size=16, num_samples=30)
    assert set(train["photo"]).isdisjoint(test["photo"]) and len(set(test["photo"])) >= 1
    names = ["a/p1", "a/p3", "b/p0", "b/p2", "b/p4", "tiny"]
    assert split_photos(names) == split_photos(list(reversed(names)))
    named = load_photo_patches(root, split="test", patch_size=16, num_samples=10, test_photos=["b/p0"])
    assert set(named["photo"]) == {"b/p0"}


def test_bad_arguments_name_the_value(tmp_path):
    with pytest.raises(ValueError, match="test_photos"):
        load_photo_patches(_folder(tmp_path), test_photos=["nope"])
    with pytest.raises(ValueError, match="split"):
        load_photo_patches(split="val")
    with pytest.raises(ValueError, match="scales"):
        load_photo_patches(scales=[2.0])
    with pytest.raises(FileNotFoundError, match="root"):
        load_photo_patches(tmp_path / "missing")
    with pytest.raises(TypeError, match="photo_patches"):
        load_dataset_from_config({"name": "photo_patches", "bogus": 1})


def test_config_spec_in_a_fresh_process():
    code = ("from gaussiantoken.data.loaders import load_dataset_from_config as L; "
            "d = L({'name': 'photo_patches', 'split': 'test', 'num_samples': 12, 'patch_size': 64}); "
            "print(len(d), d[0]['image'].size, sorted(set(d['photo'])))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "12 (64, 64) ['chelsea', 'coffee']"
