"""Loaders for real image datasets, each returning a ``datasets.Dataset`` with an ``image`` column.

Images on disk are stored by path (the datasets ``Image`` feature decodes them lazily to PIL);
in-memory arrays (CIFAR-100) are stored as PNG bytes. Class labels are ``ClassLabel`` ints with a
``label_name`` string column beside them. Formats:
- CIFAR-100, python version: ``root/cifar-100-python/{train,test,meta}`` (``root`` may also be
  the ``cifar-100-python`` folder itself): pickled dicts, b"data" [N, 3072] uint8 (R, G, B planes
  of 32 x 32), b"fine_labels"; meta b"fine_label_names". Pickle is the dataset's own format, so this
  loader unpickles files from the data folder: only the regular files named ``train``, ``test`` and
  ``meta`` there (no symlinks), with a restricted unpickler that builds nothing but builtin containers
  and numpy arrays (any other class in the file is refused with a ValueError naming it).
- Mini-ImageNet: ``root/images/<filename>`` + ``root/{train,val,test}.csv`` (header
  ``filename,label``); labels are indexed in sorted order of the split's label names.
- ImageNet class folders: ``root/<split>/<wnid>/*.JPEG``; labels indexed by sorted wnid.
- Any image folder: images found recursively; when every image sits in a subfolder, the label is
  its first-level subfolder name (sorted), else there is no label column.
- COCO captions: ``annotations_json`` with "images" (id, file_name) and "annotations" (image_id,
  id, caption). One row per caption (image, caption, image_id, caption_id) by default; with
  ``per_image=True`` one row per image (image, image_id, captions list, caption = the first).
- VQAv2: questions json ("questions": image_id, question, question_id) + optional annotations
  json ("annotations": question_id, answers [{answer, ...}], multiple_choice_answer); images
  found in ``images_dir`` by the image id that ends their file name (COCO_val2014_000000000042.jpg).
"""

from __future__ import annotations

import csv
import inspect
import json
import os
import pickle
import re
from pathlib import Path

from .photos import load_photo_patches

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def _datasets():
    import datasets

    return datasets


def _dir(path, name: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"{name}: folder not found: {p}")
    return p


def _file(path, name: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{name}: file not found: {p}")
    return p


def _check_split(split: str, allowed: tuple[str, ...]) -> str:
    if split not in allowed:
        raise ValueError(f"split must be one of {allowed}, got {split!r}")
    return split


def _path_images(paths) -> list[dict]:
    return [{"path": str(p), "bytes": None} for p in paths]


def _labelled(paths: list[Path], label_names: list[str], names: list[str]):
    """Dataset of images by path with a ClassLabel ``label`` (index into ``names``) + ``label_name``."""
    ds = _datasets()
    index = {n: i for i, n in enumerate(names)}
    features = ds.Features({"image": ds.Image(), "label": ds.ClassLabel(names=names), "label_name": ds.Value("string")})
    data = {"image": _path_images(paths), "label": [index[n] for n in label_names], "label_name": label_names}
    return ds.Dataset.from_dict(data, features=features)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


_CIFAR_PICKLE_GLOBALS = {  # what the CIFAR-100 pickles reference: numpy arrays, nothing else
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _CIFAR_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of the CIFAR-100 format")


def _load_cifar_pickle(path: Path, name: str):
    if path.is_symlink() or not path.is_file():
        raise FileNotFoundError(f"{name}: expected a regular file at {path}")
    with open(path, "rb") as f:
        try:
            return _CifarUnpickler(f, encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
            raise ValueError(f"{path} is not a CIFAR-100 python pickle: {exc}") from None


def load_cifar100(root, split: str = "train"):
    """CIFAR-100 (python pickle version) -> Dataset(image, label, label_name); fine labels."""
    import numpy as np

    from .shapes import png_bytes

    _check_split(split, ("train", "test"))
    base = _dir(root, "root")
    if (base / "cifar-100-python").is_dir():
        base = base / "cifar-100-python"
    batch = _load_cifar_pickle(base / split, f"CIFAR-100 {split} file")
    meta = _load_cifar_pickle(base / "meta", "CIFAR-100 meta file")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[b"fine_label_names"]]
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"CIFAR-100 {split}: b'data' must be [N, 3072] uint8, got {data.shape}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # [N, 32, 32, 3]
    labels = [int(v) for v in batch[b"fine_labels"]]
    if len(labels) != len(images):
        raise ValueError(f"CIFAR-100 {split}: {len(images)} images but {len(labels)} fine_labels")
    ds = _datasets()
    features = ds.Features({"image": ds.Image(), "label": ds.ClassLabel(names=names), "label_name": ds.Value("string")})
    rows = {"image": png_bytes(images), "label": labels, "label_name": [names[i] for i in labels]}
    return ds.Dataset.from_dict(rows, features=features)


def load_mini_imagenet(root, split: str = "train"):
    """Mini-ImageNet (images/ + {split}.csv with filename,label) -> Dataset(image, label, label_name)."""
    _check_split(split, ("train", "val", "test"))
    base = _dir(root, "root")
    images_dir = _dir(base / "images", "Mini-ImageNet images folder")
    with open(_file(base / f"{split}.csv", f"Mini-ImageNet {split}.csv"), newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"filename", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{split}.csv must have columns filename,label, got {reader.fieldnames}")
        rows = [(r["filename"], r["label"]) for r in reader]
    paths = [images_dir / name for name, _ in rows]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"Mini-ImageNet {split}: {len(missing)} image(s) missing, e.g. {missing[0]}")
    label_names = [label for _, label in rows]
    return _labelled(paths, label_names, sorted(set(label_names)))


def load_imagenet(root, split: str = "train"):
    """ImageNet class folders root/<split>/<wnid>/*.JPEG -> Dataset(image, label, label_name)."""
    split_dir = _dir(Path(root) / split, f"ImageNet split {split!r}")
    wnids = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    if not wnids:
        raise ValueError(f"ImageNet split folder {split_dir} has no class subfolders")
    paths, label_names = [], []
    for wnid in wnids:
        for p in sorted((split_dir / wnid).iterdir()):
            if _is_image(p):
                paths.append(p)
                label_names.append(wnid)
    if not paths:
        raise ValueError(f"ImageNet split folder {split_dir} holds no images")
    return _labelled(paths, label_names, wnids)


def load_image_folder(root):
    """All images under ``root`` (recursive); ``label`` from the first-level subfolder when all have one."""
    base = _dir(root, "root")
    paths = sorted(p for p in base.rglob("*") if _is_image(p))
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {base}")
    parts = [p.relative_to(base).parts for p in paths]
    if all(len(x) > 1 for x in parts):
        label_names = [x[0] for x in parts]
        return _labelled(paths, label_names, sorted(set(label_names)))
    ds = _datasets()
    return ds.Dataset.from_dict({"image": _path_images(paths)}, features=ds.Features({"image": ds.Image()}))


def load_hub(name: str, split: str = "train", image_column: str = "image", **kwargs):
    """``datasets.load_dataset(name, split=split, **kwargs)`` with the image column renamed to ``image``.

    Needs the Hub (or a local/packaged builder such as "imagefolder" with ``data_dir=``); fails
    with a clear RuntimeError when the dataset cannot be reached (offline).
    """
    ds = _datasets()
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty dataset name, got {name!r}")
    try:
        data = ds.load_dataset(name, split=split, **kwargs)
    except (ConnectionError, OSError, ValueError) as err:  # includes hub/offline errors
        offline = ds.config.HF_HUB_OFFLINE or os.environ.get("HF_DATASETS_OFFLINE") == "1"
        hint = " (offline mode is on)" if offline else " (no network or unknown dataset?)"
        raise RuntimeError(f"load_hub: could not load dataset {name!r} split {split!r}{hint}: {err}") from err
    if image_column not in data.column_names:
        raise ValueError(f"image_column {image_column!r} not in the dataset's columns {data.column_names}")
    if image_column != "image":
        if "image" in data.column_names:
            data = data.remove_columns("image")
        data = data.rename_column(image_column, "image")
    if not isinstance(data.features["image"], ds.Image):
        data = data.cast_column("image", ds.Image())
    return data


def _load_json(path, name: str) -> dict:
    with open(_file(path, name)) as f:
        return json.load(f)


def load_coco_captions(annotations_json, images_dir, per_image: bool = False):
    """COCO captions -> one row per caption (image, caption, image_id, caption_id) or per image."""
    ann = _load_json(annotations_json, "annotations_json")
    images_dir = _dir(images_dir, "images_dir")
    if "images" not in ann or "annotations" not in ann:
        raise ValueError("annotations_json must be COCO captions format with 'images' and 'annotations'")
    files = {int(im["id"]): images_dir / im["file_name"] for im in ann["images"]}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"COCO captions: {len(missing)} image(s) missing, e.g. {missing[0]}")
    ds = _datasets()
    anns = sorted(ann["annotations"], key=lambda a: (int(a["image_id"]), int(a.get("id", 0))))
    for a in anns:
        if int(a["image_id"]) not in files:
            raise ValueError(f"COCO captions: annotation {a.get('id')} refers to unknown image_id {a['image_id']}")
    if not per_image:
        data = {
            "image": _path_images(files[int(a["image_id"])] for a in anns),
            "caption": [a["caption"].strip() for a in anns],
            "image_id": [int(a["image_id"]) for a in anns],
            "caption_id": [int(a.get("id", -1)) for a in anns],
        }
        features = ds.Features({"image": ds.Image(), "caption": ds.Value("string"),
                                "image_id": ds.Value("int64"), "caption_id": ds.Value("int64")})
        return ds.Dataset.from_dict(data, features=features)
    grouped: dict[int, list[str]] = {i: [] for i in sorted(files)}
    for a in anns:
        grouped[int(a["image_id"])].append(a["caption"].strip())
    ids = [i for i in grouped if grouped[i]]
    data = {
        "image": _path_images(files[i] for i in ids),
        "image_id": ids,
        "captions": [grouped[i] for i in ids],
        "caption": [grouped[i][0] for i in ids],
    }
    features = ds.Features({"image": ds.Image(), "image_id": ds.Value("int64"),
                            "captions": ds.List(ds.Value("string")), "caption": ds.Value("string")})
    return ds.Dataset.from_dict(data, features=features)


def load_vqav2(questions_json, annotations_json, images_dir):
    """VQAv2 -> rows image, question, question_id, image_id, answers (list), multiple_choice_answer.

    ``annotations_json`` may be None (test splits): answers are then empty and
    multiple_choice_answer is None.
    """
    qs = _load_json(questions_json, "questions_json")
    if "questions" not in qs:
        raise ValueError("questions_json must be VQAv2 format with a 'questions' list")
    by_qid = {}
    if annotations_json is not None:
        anns = _load_json(annotations_json, "annotations_json")
        if "annotations" not in anns:
            raise ValueError("annotations_json must be VQAv2 format with an 'annotations' list")
        by_qid = {int(a["question_id"]): a for a in anns["annotations"]}
    images_dir = _dir(images_dir, "images_dir")
    by_image = {}
    for p in images_dir.iterdir():
        m = re.search(r"(\d+)$", p.stem)
        if m and _is_image(p):
            by_image[int(m.group(1))] = p
    rows = {"image": [], "question": [], "question_id": [], "image_id": [], "answers": [], "multiple_choice_answer": []}
    for q in qs["questions"]:
        qid, iid = int(q["question_id"]), int(q["image_id"])
        if iid not in by_image:
            raise FileNotFoundError(f"VQAv2: no image for image_id {iid} in {images_dir}")
        if by_qid and qid not in by_qid:
            raise ValueError(f"VQAv2: question_id {qid} has no annotation in annotations_json")
        a = by_qid.get(qid, {})
        rows["image"].append({"path": str(by_image[iid]), "bytes": None})
        rows["question"].append(q["question"])
        rows["question_id"].append(qid)
        rows["image_id"].append(iid)
        rows["answers"].append([x["answer"] for x in a.get("answers", [])])
        rows["multiple_choice_answer"].append(a.get("multiple_choice_answer"))
    ds = _datasets()
    features = ds.Features({
        "image": ds.Image(), "question": ds.Value("string"), "question_id": ds.Value("int64"),
        "image_id": ds.Value("int64"), "answers": ds.List(ds.Value("string")),
        "multiple_choice_answer": ds.Value("string"),
    })
    return ds.Dataset.from_dict(rows, features=features)


_MIXED_KEYS = ("renderers", "color_noise", "jitter", "supersample")  # data/shapes_mixed.py's extra arguments


def _shapes(**kwargs):
    """``shapes.make_dataset``; with any of _MIXED_KEYS, ``shapes_mixed.make_mixed_dataset`` (mixed renderers)."""
    if any(k in kwargs for k in _MIXED_KEYS):
        from .shapes_mixed import make_mixed_dataset

        return make_mixed_dataset(**kwargs)
    from .shapes import make_dataset

    return make_dataset(**kwargs)


LOADERS = {
    "shapes": _shapes,
    "cifar100": load_cifar100,
    "mini_imagenet": load_mini_imagenet,
    "imagenet": load_imagenet,
    "image_folder": load_image_folder,
    "hub": load_hub,
    "coco_captions": load_coco_captions,
    "vqav2": load_vqav2,
    "photo_patches": load_photo_patches,  # data/photos.py: patches of a photo folder (default: packaged photos)
}


def load_dataset_from_config(spec: dict):
    """Dispatch on ``spec["name"]`` (a key of LOADERS); the other keys are the loader's arguments.

    E.g. ``{"name": "shapes", "num_samples": 50000, "seed": 0}``, Shapes drawn by a mix of renderers
    ``{"name": "shapes", ..., "renderers": {"pixel": 0.5, "antialiased": 0.5}, "color_noise": 0.02}``
    (data/shapes_mixed.py), or ``{"name": "cifar100", "root": "/data/cifar", "split": "test"}``.
    """
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"spec must be a dict with a 'name' key, got {spec!r}")
    args = {k: v for k, v in spec.items() if k != "name"}
    name = spec["name"]
    if name not in LOADERS:
        raise ValueError(f"unknown dataset name {name!r}; expected one of {sorted(LOADERS)}")
    loader = LOADERS[name]
    target = make_dataset_signature() if name == "shapes" else inspect.signature(loader)
    try:
        target.bind(**args)
    except TypeError as err:
        raise TypeError(f"dataset {name!r}: bad arguments {sorted(args)}: {err}") from err
    return loader(**args)


def make_dataset_signature() -> inspect.Signature:
    """The arguments a ``shapes`` spec takes: ``make_mixed_dataset``'s (a superset of ``make_dataset``'s)."""
    from .shapes_mixed import make_mixed_dataset

    return inspect.signature(make_mixed_dataset)
