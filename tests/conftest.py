# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Shared test helpers: where the reference fixtures are, and converted copies of them (made once per session)."""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# Tests never build into the user's kernel cache (~/.cache/torch_extensions), where other environments may be building
# at the same time: without TORCH_EXTENSIONS_DIR set, the session gets its own, removed at exit. Subprocesses inherit it.
if not os.environ.get("TORCH_EXTENSIONS_DIR"):
    os.environ["TORCH_EXTENSIONS_DIR"] = tempfile.mkdtemp(prefix="maskdino-test-extensions-")
    atexit.register(shutil.rmtree, os.environ["TORCH_EXTENSIONS_DIR"], ignore_errors=True)

REPO = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(os.environ.get("MASKDINO_REFERENCE_DIR", REPO.parent / "shared" / "reference"))
if not REFERENCE_DIR.is_dir():
    raise RuntimeError(
        f"The reference fixtures are missing: {REFERENCE_DIR} does not exist. Put shared/reference beside the repository "
        "or set MASKDINO_REFERENCE_DIR."
    )
REFERENCE_VARIANTS = sorted(p.name for p in REFERENCE_DIR.iterdir() if (p / "model.pth").is_file())
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)

sys.path.insert(0, str(REPO / "conversion"))


@pytest.fixture(scope="session")
def converted_reference(tmp_path_factory):
    """`converted_reference(variant, config_name="config.yaml")` -> directory of the converted fixture checkpoint."""
    from convert_maskdino_to_hf import convert

    cache = {}

    def get(variant: str, config_name: str = "config.yaml") -> Path:
        key = (variant, config_name)
        if key not in cache:
            source = REFERENCE_DIR / variant
            output_dir = tmp_path_factory.mktemp(f"{variant}_{Path(config_name).stem}")
            convert(source / config_name, source / "model.pth", output_dir, source / "metadata.json")
            cache[key] = output_dir
        return cache[key]

    return get
