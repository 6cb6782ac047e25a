"""Real-dataset loaders on tiny fixture files written in each format (no network)."""

import csv
import json
import pickle

import numpy as np
import pytest
from PIL import Image

from gaussiantoken.data import loaders


def _png(path, color, size=(8, 6)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def test_cifar100_pickle_format(tmp_path):
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(5, 3072), dtype=np.uint8)
    with open(base / "test", "wb") as f:
        pickle.dump({b"data": data, b"fine_labels": [2, 0, 1, 2, 0], b"coarse_labels": [0] * 5}, f)
    with open(base / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [b"apple", b"bear", b"cloud"]}, f)
    ds = loaders.load_cifar100(tmp_path, split="test")
    assert len(ds) == 5 and ds["label"] == [2, 0, 1, 2, 0]
    assert ds["label_name"][0] == "cloud" and ds.features["label"].names == ["apple", "bear", "cloud"]
    img = np.asarray(ds[1]["image"])
    assert img.shape == (32, 32, 3)
    assert img[0, 0].tolist() == [data[1, 0], data[1, 1024], data[1, 2048]]  # R, G, B planes
    assert img[3, 5, 2] == data[1, 2048 + 3 * 32 + 5]
    assert len(loaders.load_cifar100(base, split="test")) == 5  # the pickle folder itself works too
    with pytest.raises(FileNotFoundError, match="train"):
        loaders.load_cifar100(tmp_path, split="train")
    with pytest.raises(ValueError, match="split"):
        loaders.load_cifar100(tmp_path, split="val")


def test_mini_imagenet_csv(tmp_path):
    for name, color in [("a1.jpg", (255, 0, 0)), ("a2.jpg", (0, 255, 0)), ("b1.jpg", (0, 0, 255))]:
        _png(tmp_path / "images" / name, color)
    with open(tmp_path / "val.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "label"])
        w.writerows([["b1.jpg", "n02"], ["a1.jpg", "n01"], ["a2.jpg", "n01"]])
    ds = loaders.load_mini_imagenet(tmp_path, "val")
    assert ds["label"] == [1, 0, 0] and ds["label_name"] == ["n02", "n01", "n01"]
    assert np.asarray(ds[0]["image"])[0, 0, 2] > 200
    with pytest.raises(FileNotFoundError, match="train.csv"):
        loaders.load_mini_imagenet(tmp_path, "train")


def test_imagenet_class_folders(tmp_path):
    _png(tmp_path / "train" / "n0002" / "x.JPEG", (10, 10, 10))
    _png(tmp_path / "train" / "n0001" / "y.JPEG", (20, 20, 20))
    _png(tmp_path / "train" / "n0001" / "z.JPEG", (30, 30, 30))
    (tmp_path / "train" / "n0001" / "notes.txt").write_text("not an image")
    ds = loaders.load_imagenet(tmp_path, "train")
    assert ds["label"] == [0, 0, 1] and ds["label_name"] == ["n0001", "n0001", "n0002"]
    assert ds[2]["image"].size == (8, 6)
    with pytest.raises(FileNotFoundError, match="val"):
        loaders.load_imagenet(tmp_path, "val")


def test_image_folder_with_and_without_labels(tmp_path):
    _png(tmp_path / "labelled" / "cat" / "1.png", (1, 2, 3))
    _png(tmp_path / "labelled" / "dog" / "deep" / "2.png", (4, 5, 6))
    ds = loaders.load_image_folder(tmp_path / "labelled")
    assert ds["label_name"] == ["cat", "dog"] and ds["label"] == [0, 1]
    _png(tmp_path / "flat" / "1.png", (1, 2, 3))
    _png(tmp_path / "flat" / "sub" / "2.png", (1, 2, 3))
    flat = loaders.load_image_folder(tmp_path / "flat")
    assert flat.column_names == ["image"] and len(flat) == 2
    with pytest.raises(FileNotFoundError, match="root"):
        loaders.load_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        loaders.load_image_folder(tmp_path / "empty")


def test_coco_captions(tmp_path):
    _png(tmp_path / "imgs" / "000000000001.jpg", (255, 0, 0))
    _png(tmp_path / "imgs" / "000000000002.jpg", (0, 255, 0))
    ann = {
        "images": [{"id": 1, "file_name": "000000000001.jpg"}, {"id": 2, "file_name": "000000000002.jpg"}],
        "annotations": [
            {"image_id": 2, "id": 10, "caption": "A green square. "},
            {"image_id": 1, "id": 11, "caption": "A red square."},
            {"image_id": 1, "id": 12, "caption": "Red everywhere."},
        ],
    }
    (tmp_path / "captions.json").write_text(json.dumps(ann))
    ds = loaders.load_coco_captions(tmp_path / "captions.json", tmp_path / "imgs")
    assert ds["caption"] == ["A red square.", "Red everywhere.", "A green square."]
    assert ds["image_id"] == [1, 1, 2] and ds["caption_id"] == [11, 12, 10]
    assert np.asarray(ds[2]["image"])[0, 0, 1] > 200
    per = loaders.load_coco_captions(tmp_path / "captions.json", tmp_path / "imgs", per_image=True)
    assert per["image_id"] == [1, 2] and per["captions"][0] == ["A red square.", "Red everywhere."]
    assert per["caption"] == ["A red square.", "A green square."]
    with pytest.raises(FileNotFoundError, match="annotations_json"):
        loaders.load_coco_captions(tmp_path / "nope.json", tmp_path / "imgs")


def test_vqav2(tmp_path):
    _png(tmp_path / "val2014" / "COCO_val2014_000000000042.jpg", (0, 0, 255))
    _png(tmp_path / "val2014" / "COCO_val2014_000000000007.jpg", (255, 255, 0))
    questions = {"questions": [
        {"image_id": 42, "question": "What color is it?", "question_id": 420},
        {"image_id": 7, "question": "Is it yellow?", "question_id": 70},
    ]}
    annotations = {"annotations": [
        {"question_id": 70, "image_id": 7, "multiple_choice_answer": "yes",
         "answers": [{"answer": "yes", "answer_confidence": "yes", "answer_id": i + 1} for i in range(10)]},
        {"question_id": 420, "image_id": 42, "multiple_choice_answer": "blue",
         "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": 1} for a in ("blue", "navy")]},
    ]}
    (tmp_path / "q.json").write_text(json.dumps(questions))
    (tmp_path / "a.json").write_text(json.dumps(annotations))
    ds = loaders.load_vqav2(tmp_path / "q.json", tmp_path / "a.json", tmp_path / "val2014")
    assert ds["question_id"] == [420, 70] and ds["multiple_choice_answer"] == ["blue", "yes"]
    assert ds["answers"][0] == ["blue", "navy"] and len(ds["answers"][1]) == 10
    assert np.asarray(ds[0]["image"])[0, 0, 2] > 200
    test = loaders.load_vqav2(tmp_path / "q.json", None, tmp_path / "val2014")
    assert test["answers"] == [[], []] and test["multiple_choice_answer"] == [None, None]
    (tmp_path / "val2014" / "COCO_val2014_000000000007.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="image_id 7"):
        loaders.load_vqav2(tmp_path / "q.json", tmp_path / "a.json", tmp_path / "val2014")


def test_load_hub_local_builder_and_offline_error(tmp_path, monkeypatch):
    _png(tmp_path / "hub" / "train" / "a" / "1.png", (9, 9, 9))
    _png(tmp_path / "hub" / "train" / "b" / "2.png", (9, 9, 9))
    ds = loaders.load_hub("imagefolder", split="train", data_dir=str(tmp_path / "hub"), cache_dir=str(tmp_path / "cache"))
    assert len(ds) == 2 and "image" in ds.column_names
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RuntimeError, match="could not load dataset 'someone/x'"):
        loaders.load_hub("someone/x", split="train")


def test_load_dataset_from_config(tmp_path):
    ds = loaders.load_dataset_from_config({"name": "shapes", "num_samples": 4, "seed": 2})
    assert len(ds) == 4 and "caption" in ds.column_names
    _png(tmp_path / "f" / "x" / "1.png", (1, 1, 1))
    assert loaders.load_dataset_from_config({"name": "image_folder", "root": str(tmp_path / "f")})["label"] == [0]
    with pytest.raises(ValueError, match="unknown dataset name"):
        loaders.load_dataset_from_config({"name": "mnist"})
    with pytest.raises(TypeError, match="bad arguments"):
        loaders.load_dataset_from_config({"name": "cifar100", "root": "x", "colour": 1})
    with pytest.raises(ValueError, match="name"):
        loaders.load_dataset_from_config({"root": "x"})
