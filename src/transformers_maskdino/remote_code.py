# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Keeping saved directories loadable as Hub remote code (`trust_remote_code=True`) where the package is absent."""

import json
import os
import shutil
from pathlib import Path

# The modules that `trust_remote_code=True` loads from a model directory, flat beside the weights. They import each
# other with single-dot imports only. The kernel builder and sources are not among them: remote code uses the PyTorch
# path, or the compiled kernel when the package is installed as well.
REMOTE_CODE_MODULES = (
    "configuration_maskdino",
    "modeling_maskdino",
    "loss_maskdino",
    "image_processing_pil_maskdino",
    "post_processing_maskdino",
    "remote_code",
)


def sync_remote_code(save_directory: str | os.PathLike) -> None:
    """
    Keeps a saved directory loadable with `trust_remote_code=True` when its `config.json` has an `auto_map` (a model
    converted for the Hub, or one fine-tuned from such a model): copies the modules of [`REMOTE_CODE_MODULES`] found
    beside this file into it, and drops `image_processor_type` from its `preprocessor_config.json`, so that the
    image processor is found through `config.json`'s `auto_map` (transformers does not know that class name). A
    directory without `auto_map` is left alone. Called after saving a config or an image processor, so the order in
    which a model and its processor are saved does not matter.
    """
    directory = Path(save_directory)
    config_file = directory / "config.json"
    if not config_file.is_file() or "auto_map" not in json.loads(config_file.read_text()):
        return
    for name in REMOTE_CODE_MODULES:
        source = Path(__file__).with_name(f"{name}.py")
        target = directory / source.name
        if source.is_file() and not (target.exists() and target.samefile(source)):
            shutil.copyfile(source, target)
    processor_file = directory / "preprocessor_config.json"
    if processor_file.is_file():
        content = json.loads(processor_file.read_text())
        if content.pop("image_processor_type", None) is not None:
            processor_file.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")


__all__ = ["REMOTE_CODE_MODULES", "sync_remote_code"]
