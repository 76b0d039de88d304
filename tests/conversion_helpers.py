# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Helpers shared by the conversion tests."""

import json
import shutil
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's small models on one thread: on a busy two-core machine, two OpenMP threads per convolution
    make a 0.1 s forward take seconds."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def copy_with_reference_image_size(source: Path, target: Path) -> Path:
    """A copy of a converted reference checkpoint whose processor keeps the reference images (150x210) at their size
    instead of COCO's 800-pixel test resize: the same code on far less compute."""
    shutil.copytree(source, target)
    processor_file = target / "preprocessor_config.json"
    processor = json.loads(processor_file.read_text())
    processor["size"] = {"shortest_edge": 150, "longest_edge": 224}
    processor_file.write_text(json.dumps(processor, indent=2, sort_keys=True) + "\n")
    return target
