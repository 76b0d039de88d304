# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Fine-tuning and evaluation helpers, kept apart from the model code (which is what transformers itself would ship):

- `transformers_maskdino.training.data`: dataset rows to model inputs, collation, the original's optimizer settings,
  ImageNet backbone weights;
- `transformers_maskdino.training.formats`: readers for COCO instance / panoptic / detection files and semantic label
  folders, and the examples' data-source arguments;
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
    coco_objects_of_row,
    collate_segmentation_batch,
    dataset_label_names,
    dataset_stuff_label_ids,
    decode_panoptic_map,
    evaluation_loss,
    flip_coco_objects,
    ground_truth_at_input_size,
    ground_truth_of_row,
    ground_truth_segments,
    load_backbone_weights,
    load_segmentation_dataset,
    optimizer_parameter_groups,
    rescale_and_crop_coco_objects,
    segment_class_mapping,
    semantic_label_map,
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
    "coco_objects_of_row",
    "collate_segmentation_batch",
    "dataset_label_names",
    "dataset_stuff_label_ids",
    "decode_panoptic_map",
    "evaluation_loss",
    "flip_coco_objects",
    "ground_truth_at_input_size",
    "ground_truth_of_row",
    "ground_truth_segments",
    "load_backbone_weights",
    "load_segmentation_dataset",
    "optimizer_parameter_groups",
    "rescale_and_crop_coco_objects",
    "segment_class_mapping",
    "semantic_label_map",
]
