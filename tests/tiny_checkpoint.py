# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""A tiny randomly initialised Mask DINO checkpoint directory (model + processor), for pipeline and command tests."""

from pathlib import Path

import torch
from transformers import ResNetConfig

LABELS = ["cat", "dog", "car", "sky", "grass"]
STUFF_LABEL_IDS = [3, 4]


def save_tiny_checkpoint(directory: Path) -> Path:
    from transformers_maskdino import (
        MaskDinoConfig,
        MaskDinoForUniversalSegmentation,
        MaskDinoImageProcessor,
    )

    backbone = ResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 16, 32, 64],
        depths=[1, 1, 1, 1],
        layer_type="basic",
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = MaskDinoConfig(
        backbone_config=backbone,
        hidden_dim=32,
        num_queries=10,
        feature_size=32,
        mask_feature_size=32,
        encoder_layers=1,
        encoder_ffn_dim=32,
        decoder_layers=2,
        decoder_ffn_dim=32,
        num_denoising=0,
        id2label=dict(enumerate(LABELS)),
        label2id={label: index for index, label in enumerate(LABELS)},
        stuff_label_ids=STUFF_LABEL_IDS,
    )
    torch.manual_seed(0)
    model = MaskDinoForUniversalSegmentation(config).eval()
    # small test-time size so that the model runs in milliseconds; 64 keeps resized images off multiples of 32
    processor = MaskDinoImageProcessor(
        size={"shortest_edge": 64, "longest_edge": 128}, stuff_label_ids=STUFF_LABEL_IDS, detections_per_image=20
    )
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
