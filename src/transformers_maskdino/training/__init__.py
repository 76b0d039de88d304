# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Fine-tuning and evaluation helpers, kept apart from the model code (which is what transformers itself would ship):

- `transformers_maskdino.training.data`: dataset rows to model inputs, collation, the original's optimizer settings,
  ImageNet backbone weights;
- `transformers_maskdino.training.evaluation`: PQ, COCO AP and mIoU;
- `transformers_maskdino.training.synthetic_data`: the synthetic shapes dataset the tests and the demo model use.
"""

from .data import (
    DEFAULT_BACKBONE_LEARNING_RATE_MULTIPLIER,
    DEFAULT_LEARNING_RATE,
    DEFAULT_MAX_GRAD_NORM,
    DEFAULT_WEIGHT_DECAY,
    SEMANTIC_IGNORE_INDEX,
    TASKS,
    BackboneLoadingInfo,
    SegmentationTransform,
    build_model_and_image_processor,
    build_optimizer,
    collate_segmentation_batch,
    dataset_label_names,
    dataset_stuff_label_ids,
    evaluation_loss,
    ground_truth_at_input_size,
    ground_truth_segments,
    load_backbone_weights,
    load_segmentation_dataset,
    optimizer_parameter_groups,
    segment_class_mapping,
)

__all__ = [
    "DEFAULT_BACKBONE_LEARNING_RATE_MULTIPLIER",
    "DEFAULT_LEARNING_RATE",
    "DEFAULT_MAX_GRAD_NORM",
    "DEFAULT_WEIGHT_DECAY",
    "SEMANTIC_IGNORE_INDEX",
    "TASKS",
    "BackboneLoadingInfo",
    "SegmentationTransform",
    "build_model_and_image_processor",
    "build_optimizer",
    "collate_segmentation_batch",
    "dataset_label_names",
    "dataset_stuff_label_ids",
    "evaluation_loss",
    "ground_truth_at_input_size",
    "ground_truth_segments",
    "load_backbone_weights",
    "load_segmentation_dataset",
    "optimizer_parameter_groups",
    "segment_class_mapping",
]
