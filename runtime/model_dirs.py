"""Is this a saved gaussiantoken model directory of the right kind? One check, one clear message.

`check_model_dir(path, kind, what)` is what every loader runs before transformers reads a directory
(`GaussianTokenizer.from_pretrained`, `GaussianTokenForCausalLM.from_pretrained`, the CLI's --model /
--tokenizer, extract-codes, the pipelines). It raises `ModelDirectoryError` (a ValueError) with one line
naming the path and what is wrong, instead of transformers' messages about repo ids, `model_type`,
`ignore_mismatched_sizes` or sentencepiece:

- the path does not exist, or is a file;
- no config.json; config.json truncated/malformed (`runtime.CheckpointError`); no `model_type` key;
  a model of another kind (e.g. an image tokenizer given where the LM is expected);
- no weights file (model.safetensors or a sharded index); damaged weights (`CheckpointError`);
- `needs_text_tokenizer=True` (the LM for our pipelines): no tokenizer.json beside it.

`check_weights_fit(model, path)` compares a model built from config.json (on the meta device, no memory)
with the safetensors header: a config edited after saving (e.g. `num_gaussians`) is named by tensor.

Inside a transformers `pipeline(...)` call, the loader's ValueError would be buried in a nested traceback
("Could not load model ... with any of the following classes"), so `from_pipeline=True` raises
`PipelineModelError` instead (not a ValueError, so transformers passes it through unchanged).
"""

from __future__ import annotations

import os
from pathlib import Path

from .integrity import CheckpointError, check_pretrained_dir, check_safetensors_file

LM_KIND = "gaussiantoken_lm"
TOKENIZER_KIND = "gaussian_tokenizer"
KINDS = {LM_KIND: "the multimodal LM", TOKENIZER_KIND: "the image tokenizer"}


class ModelDirectoryError(ValueError):
    """A path that is not a usable saved model directory of the expected kind; the message names it."""


class PipelineModelError(Exception):
    """`ModelDirectoryError`'s message, raised from inside a transformers pipeline's model loading (which
    wraps every ValueError into an unreadable one)."""


def config_from_dict(from_dict, config_cls, config_dict: dict, kwargs: dict):
    """`from_dict(config_dict, **kwargs)` (a config class's inherited one); when it fails its checks on a
    saved directory's config.json (e.g. an edited num_gaussians), the error names that file."""
    try:
        return from_dict(config_dict, **kwargs)
    except (ValueError, TypeError) as exc:
        where = kwargs.get("name_or_path")
        if not where:
            raise
        raise ModelDirectoryError(f"{str(where).rstrip('/')}/config.json does not describe a valid "
                                  f"{config_cls.model_type!r} model: {exc}") from None


def _kind(kind: str | None) -> str:
    if kind is not None and " or " in kind:  # several kinds, already formatted
        return kind
    return f"{kind!r} ({KINDS[kind]})" if kind in KINDS else repr(kind)


def check_model_dir(path, kind: str | tuple[str, ...], what: str = "model directory", needs_text_tokenizer: bool = False,
                    from_pipeline: bool = False, needs_weights: bool = True) -> dict:
    """Check saved directory `path` holds a `kind` model (or one of several kinds; see the module docstring);
    returns its config.json. `needs_weights=False`: a config-only directory passes (what config classes'
    from_pretrained need)."""
    try:
        return _check(Path(os.fspath(path)), kind, what, needs_text_tokenizer, needs_weights)
    except ValueError as exc:  # ModelDirectoryError and CheckpointError
        if from_pipeline:
            raise PipelineModelError(str(exc)) from None
        raise


def _check(path: Path, kind, what: str, needs_text_tokenizer: bool, needs_weights: bool = True) -> dict:
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    kind = " or ".join(_kind(k) for k in kinds) if len(kinds) > 1 else kinds[0]
    if not path.exists():
        raise ModelDirectoryError(f"{what} {path}: no such directory (expected a saved {_kind(kind)} directory)")
    if not path.is_dir():
        raise ModelDirectoryError(f"{what} {path} is a file, not a saved model directory")
    if not (path / "config.json").is_file():
        raise ModelDirectoryError(f"{what} {path} has no config.json: not a saved model directory (expected a "
                                  f"save_pretrained output of {_kind(kind)})")
    config = check_pretrained_dir(path)  # CheckpointError naming a malformed config.json or damaged weights
    found = config.get("model_type")
    if found is None:
        raise ModelDirectoryError(f"{path / 'config.json'} has no 'model_type' key (expected {_kind(kind)}); "
                                  "was the file edited?")
    if found not in kinds:
        raise ModelDirectoryError(f"{what} {path} holds a {_kind(found)} checkpoint, expected {_kind(kind)}")
    weights = (path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file()
    if needs_weights and not weights:
        raise ModelDirectoryError(f"{what} {path} has no model.safetensors weights")
    if needs_text_tokenizer and not (path / "tokenizer.json").is_file():
        raise ModelDirectoryError(f"{what} {path} has no tokenizer.json: the LM directory needs its text tokenizer "
                                  "(GaussianTokenProcessor.save_pretrained writes it beside the model)")
    return config


def looks_local(path) -> bool:
    """A path meant as a local directory (it exists, or is absolute / ./ ../ ~ / several levels deep), as
    opposed to a hub id such as "org/name"; loaders check local ones themselves."""
    text = os.fspath(path)
    return (os.path.exists(text) or os.path.isabs(text) or text.startswith((".", "~"))
            or text.count("/") >= 2 or os.sep != "/" and os.sep in text)


def check_loadable(model_cls, path, kind: str, what: str, needs_text_tokenizer: bool = False,
                   from_pipeline: bool = False, check_fit: bool = True) -> None:
    """The loaders' check before `from_pretrained` reads a local directory: `check_model_dir`, then
    config.json builds `model_cls.config_class` and (`check_fit`) a meta-device model that fits the weights.
    Hub ids (not `looks_local`) are left to transformers."""
    if not looks_local(path):
        return
    try:
        check_model_dir(path, kind, what, needs_text_tokenizer)
        if check_fit:
            _check_fit(model_cls, Path(os.fspath(path)))
    except ValueError as exc:
        if from_pipeline:
            raise PipelineModelError(str(exc)) from None
        raise


def _check_fit(model_cls, path: Path) -> None:
    import torch

    try:
        config = model_cls.config_class.from_json_file(str(path / "config.json"))
        with torch.device("meta"):
            model = model_cls(config)
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelDirectoryError(f"{path / 'config.json'} does not describe a valid model: {exc}") from None
    check_weights_fit(model, path)


def check_weights_fit(model, path) -> None:
    """`model` (built from `path`'s config.json, typically on the meta device) must have exactly the tensor
    names and shapes of path/model.safetensors (a single-file save); else `ModelDirectoryError` naming one."""
    path = Path(os.fspath(path))
    weights = path / "model.safetensors"
    if not weights.is_file():
        return  # sharded saves: left to transformers
    header = check_safetensors_file(weights)
    saved = {k: list(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    for name, shape in expected.items():
        if name in saved and saved[name] != shape:
            raise ModelDirectoryError(
                f"{weights} does not fit {path / 'config.json'}: tensor {name!r} is {saved[name]} in the weights but "
                f"{shape} by the config (was config.json edited after saving?)")
    missing = sorted(set(expected) - set(saved))
    if missing and len(missing) == len(expected):
        raise ModelDirectoryError(f"{weights} holds none of the tensors {path / 'config.json'} describes")


__all__ = ["LM_KIND", "TOKENIZER_KIND", "ModelDirectoryError", "PipelineModelError", "CheckpointError",
           "check_model_dir", "check_loadable", "config_from_dict", "check_weights_fit", "looks_local"]
