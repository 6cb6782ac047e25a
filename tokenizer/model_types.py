"""The one switch point between tokenizer architectures: a run config's `model` spec -> config -> model.

`model.type` picks the architecture: "gaussian" (default, `GaussianTokenizer`) or "grid_vq" (the
grid-VQ baseline, `GridVQTokenizer`); `model.preset` names one of that type's presets; every other
key is a field of that type's config class (unknown keys are a ValueError naming them).
"""

from __future__ import annotations

import importlib
import inspect

MODEL_TYPES = {  # type -> (module, config class, model class)
    "gaussian": (".modeling", "GaussianTokenizerConfig", "GaussianTokenizer"),
    "grid_vq": (".grid_vq", "GridVQConfig", "GridVQTokenizer"),  # GridVQConfig: grid_vq_config.py
}


def _classes(kind: str):
    module_name, config_name, model_name = MODEL_TYPES[kind]
    module = importlib.import_module(module_name, __package__)
    return getattr(module, config_name), getattr(module, model_name)


def config_from_spec(model_spec: dict):
    """{type?, preset?, field: value, ...} -> a validated config of that architecture."""
    spec = dict(model_spec)
    kind = spec.pop("type", "gaussian")
    if kind not in MODEL_TYPES:
        raise ValueError(f"config key 'model.type' must be one of {sorted(MODEL_TYPES)}, got {kind!r}")
    config_class, _ = _classes(kind)
    preset = spec.pop("preset", None)
    params = inspect.signature(config_class.__init__).parameters
    known = {n for n, p in params.items() if n != "self" and p.kind is not p.VAR_KEYWORD}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValueError(f"unknown model key(s) {['model.' + k for k in unknown]} for model.type {kind!r}; "
                         f"known: {sorted(known)}")
    if preset is not None:
        try:
            return config_class.preset(str(preset), **spec)
        except ValueError as exc:
            raise ValueError(f"config key 'model.preset': {exc}") from exc
    return config_class(**spec)


def model_class_for(config):
    """The model class of a config object (by its model_type)."""
    for kind in MODEL_TYPES:
        config_class, model_class = _classes(kind)
        if config.model_type == config_class.model_type:
            return model_class
    raise ValueError(f"no tokenizer architecture for model_type {config.model_type!r}")


__all__ = ["MODEL_TYPES", "config_from_spec", "model_class_for"]
