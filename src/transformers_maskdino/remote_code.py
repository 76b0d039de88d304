# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Keeping saved directories loadable as Hub remote code (`trust_remote_code=True`) where the package is absent."""

import importlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

# The modules that `trust_remote_code=True` loads from a model directory, flat beside the weights. They import each
# other with single-dot imports only. The kernel builder and sources are not among them: remote code uses the PyTorch
# path, or the compiled kernel when the package is installed as well.
REMOTE_CODE_MODULES = (
    "configuration_maskdino",
    "modeling_maskdino",
    "loss_maskdino",
    "image_processing_maskdino",
    "image_processing_pil_maskdino",
    "post_processing_maskdino",
    "remote_code",
)


def sync_remote_code(save_directory: str | os.PathLike) -> None:
    """
    Keeps a saved directory loadable with `trust_remote_code=True` when its `config.json` has an `auto_map` (a model
    converted for the Hub, or one fine-tuned from such a model): writes the module of every package class that the
    `auto_map` names, with the modules it imports, as transformers does for remote code (`custom_object_save`), and
    drops `image_processor_type` from its `preprocessor_config.json`, so that the image processor is found through
    `config.json`'s `auto_map` (transformers does not know that class name). A directory without `auto_map` is left
    alone: users of the installed package get no code files. Called after saving a config or an image processor, so
    the order in which a model and its processor are saved does not matter.

    (Not `register_for_auto_class()`: it would write the code files on every save, and it maps a class to one Auto
    class, where the model class serves three.)
    """
    from transformers.dynamic_module_utils import custom_object_save

    directory = Path(save_directory)
    config_file = directory / "config.json"
    auto_map = json.loads(config_file.read_text()).get("auto_map") if config_file.is_file() else None
    if not auto_map:
        return
    for reference in _class_references(auto_map):
        module_name, _, class_name = reference.rpartition(".")
        if module_name in REMOTE_CODE_MODULES:
            module = importlib.import_module(f".{module_name}", __package__)
            custom_object_save(getattr(module, class_name), directory)
    processor_file = directory / "preprocessor_config.json"
    if processor_file.is_file():
        content = json.loads(processor_file.read_text())
        if content.pop("image_processor_type", None) is not None:
            processor_file.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")


def _class_references(auto_map: dict) -> Iterator[str]:
    """`"module.Class"` strings of an `auto_map`, whose values are strings, lists or backend dicts."""
    for value in auto_map.values():
        if isinstance(value, dict):
            value = list(value.values())
        yield from (reference for reference in (value if isinstance(value, list) else [value]) if reference)


__all__ = ["REMOTE_CODE_MODULES", "sync_remote_code"]
