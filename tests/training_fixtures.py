# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Helpers of the training, example and evaluation tests: a tiny model config, small synthetic datasets on disk, and
the example scripts imported as modules."""

import contextlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import ResNetConfig

from transformers_maskdino import MaskDinoConfig
from transformers_maskdino.training.synthetic_data import LABELS, STUFF_LABEL_IDS, generate_dataset_dict

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

# <1M parameters, runs a training step on two 64x64 images in a fraction of a second
TINY_TRAINING_CONFIG = {
    "model_type": "maskdino",
    "backbone_config": {
        "model_type": "resnet",
        "embedding_size": 8,
        "hidden_sizes": [16, 16, 32, 32],
        "depths": [1, 1, 1, 1],
        "layer_type": "bottleneck",
        "out_features": ["stage1", "stage2", "stage3", "stage4"],
    },
    "hidden_dim": 32,
    "num_queries": 8,
    "feature_size": 32,
    "mask_feature_size": 16,
    "encoder_layers": 1,
    "encoder_ffn_dim": 32,
    "decoder_layers": 2,
    "decoder_ffn_dim": 32,
    "num_denoising": 6,
    "train_num_points": 256,
}


@contextlib.contextmanager
def one_intra_op_thread():
    """Run torch on one intra-op thread. The tiny models' operations are too small to gain from a second one, and on
    a shared 2-core machine two threads spend their time waiting on each other (the overfitting test took 224 s with
    two threads and 13 s with one, with another process busy)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def tiny_training_config(**kwargs) -> MaskDinoConfig:
    """The tiny config with the synthetic dataset's labels."""
    values = {
        key: value for key, value in TINY_TRAINING_CONFIG.items() if key not in ("model_type", "backbone_config")
    }
    values.update(
        backbone_config=ResNetConfig(
            **{k: v for k, v in TINY_TRAINING_CONFIG["backbone_config"].items() if k != "model_type"}
        ),
        id2label=dict(enumerate(LABELS)),
        label2id={name: index for index, name in enumerate(LABELS)},
        stuff_label_ids=STUFF_LABEL_IDS,
    )
    values.update(kwargs)
    return MaskDinoConfig(**values)


def write_tiny_config(path: Path) -> Path:
    path.write_text(json.dumps(TINY_TRAINING_CONFIG, indent=2))
    return path


def save_synthetic_dataset(
    directory: Path, num_train: int = 8, num_validation: int = 4, image_size: int = 64, seed: int = 0
) -> Path:
    generate_dataset_dict(num_train, num_validation, seed=seed, image_size=image_size, max_objects=2).save_to_disk(
        str(directory)
    )
    return directory


def import_example(name: str):
    """An example script (`examples/<name>.py`) as a module, under a name that cannot shadow a library."""
    module_name = f"maskdino_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def perfect_outputs(masks: np.ndarray, labels: np.ndarray, num_queries: int = 6, num_labels: int = 3):
    """Outputs whose post-processing reproduces the ground truth exactly: one confident query per segment, with
    mask logits of +-20 at full resolution and its exact box; the other queries predict nothing."""
    height, width = masks.shape[-2:]
    class_logits = torch.full((1, num_queries, num_labels), -20.0)
    mask_logits = torch.full((1, num_queries, height, width), -20.0)
    boxes = torch.zeros(1, num_queries, 4)
    for query, (mask, label) in enumerate(zip(masks, labels)):
        class_logits[0, query, label] = 20.0
        mask_logits[0, query][torch.from_numpy(mask)] = 20.0
        rows, cols = np.nonzero(mask)
        x0, y0, x1, y1 = cols.min(), rows.min(), cols.max() + 1, rows.max() + 1
        boxes[0, query] = torch.tensor(
            [(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height]
        )
    sizes = torch.tensor([[height, width]])
    return {
        "class_queries_logits": class_logits,
        "masks_queries_logits": mask_logits,
        "pred_boxes": boxes,
        "image_sizes": sizes,
        "padded_image_sizes": sizes,
    }
