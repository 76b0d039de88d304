# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Comparison of our post-processing with the original's post-processed fixtures (`postprocessed.safetensors`,
`segments_info.json`), at the acceptance tolerances of issue 3: semantic argmax and panoptic categories agree on at
least 99.9% of pixels, panoptic results have the same number of segments, instances have the same count, labels and
order, scores within 1e-3, mask IoU >= 0.99 and boxes within 1e-3 x image size."""

import json
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from transformers_maskdino import MaskDinoImageProcessor


def fixture_processor(variant_dir: Path, **overrides) -> MaskDinoImageProcessor:
    """The processor with the inference settings the fixtures were made with (config.yaml, metadata.json)."""
    config = yaml.safe_load((variant_dir / "config.yaml").read_text())
    test = config["MODEL"]["MaskDINO"]["TEST"]
    metadata = json.loads((variant_dir / "metadata.json").read_text())
    # the original's inference reads softmax logits when SEMANTIC_ON and SEMANTIC_CE_LOSS and not PANOPTIC_ON
    cross_entropy = bool(
        config["MODEL"]["MaskDINO"]["SEMANTIC_CE_LOSS"] and test["SEMANTIC_ON"] and not test["PANOPTIC_ON"]
    )
    settings = {
        "object_mask_threshold": test["OBJECT_MASK_THRESHOLD"],
        "overlap_threshold": test["OVERLAP_THRESHOLD"],
        "panoptic_temperature": test["PANO_TEMPERATURE"],
        "apply_panoptic_temperature": test["PANO_TRANSFORM_EVAL"],
        "detections_per_image": config["TEST"]["DETECTIONS_PER_IMAGE"],
        "stuff_label_ids": metadata["stuff_contiguous_ids"],
        "use_semantic_cross_entropy": cross_entropy,
        "semantic_resize_mask_logits": bool(
            test["SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE"] or test["PANOPTIC_ON"] or test["INSTANCE_ON"]
        ),
    }
    settings.update(overrides)
    return MaskDinoImageProcessor(**settings)


def check_post_processing(
    processor, outputs, index, variant_dir: Path, prefix: str, name: str, exact: bool
) -> set[str]:
    """
    Checks every task the fixture has results for (prefix `""` for the single image, `"batch2.{i}."` for batch
    element `i`) and returns the set of tasks checked. `exact` adds tighter checks for the original's own raw outputs.
    """
    reference = load_file(variant_dir / "postprocessed.safetensors")
    checked = set()
    if f"{prefix}sem_seg" in reference:
        check_semantic(processor, outputs, index, reference[f"{prefix}sem_seg"], name, exact)
        checked.add("semantic")
    if f"{prefix}instances.scores" in reference:
        check_instances(processor, outputs, index, reference, prefix, name)
        checked.add("instance")
    if f"{prefix}panoptic_seg" in reference:
        segments = json.loads((variant_dir / "segments_info.json").read_text())
        expected_info = segments["single"] if not prefix else segments["batch2"][int(prefix.split(".")[1])]
        check_panoptic(processor, outputs, index, reference[f"{prefix}panoptic_seg"], expected_info, name, exact)
        checked.add("panoptic")
    return checked


def check_semantic(processor, outputs, index, expected_scores, name, exact):
    result = processor.post_process_semantic_segmentation(outputs, return_segmentation_scores=True)[index]
    agreement = (result.segmentation == expected_scores.argmax(0)).float().mean().item()
    assert agreement >= 0.999, f"{name}: semantic argmax agrees on {agreement:.5f} of pixels"
    if exact:
        torch.testing.assert_close(result.segmentation_scores, expected_scores, atol=1e-5, rtol=1e-5)


def check_instances(processor, outputs, index, reference, prefix, name):
    result = processor.post_process_instance_segmentation(outputs, return_binary_maps=True)[index]
    segments = result["segments_info"]
    expected_scores = reference[f"{prefix}instances.scores"]
    assert len(segments) == len(expected_scores), f"{name}: {len(segments)} instances, expected {len(expected_scores)}"
    # the reference is sorted by score (stable), as ours
    expected_labels = reference[f"{prefix}instances.pred_classes"].tolist()
    assert [s["label_id"] for s in segments] == expected_labels, f"{name}: instance labels"
    scores = torch.tensor([s["score"] for s in segments])
    torch.testing.assert_close(scores, expected_scores, atol=1e-3, rtol=0, msg=f"{name}: instance scores")
    image_height, image_width = reference[f"{prefix}instances.image_size"].tolist()
    box_tolerance = 1e-3 * max(image_height, image_width)
    boxes = torch.tensor([s["box_xyxy"] for s in segments]).reshape(-1, 4)
    expected_boxes = reference[f"{prefix}instances.pred_boxes"]
    torch.testing.assert_close(boxes, expected_boxes, atol=box_tolerance, rtol=0, msg=f"{name}: instance boxes")
    masks, expected_masks = result["segmentation"], reference[f"{prefix}instances.pred_masks"].bool()
    assert masks.shape == expected_masks.shape, name
    for k in range(len(segments)):
        union = (masks[k] | expected_masks[k]).sum().item()
        iou = 1.0 if union == 0 else (masks[k] & expected_masks[k]).sum().item() / union
        assert iou >= 0.99, f"{name}: instance {k} mask IoU {iou:.4f}"

    # object detection ranks the same (query, class) pairs by class probability
    detections = processor.post_process_object_detection(
        outputs, -1.0, [tuple(size) for size in outputs["image_sizes"].tolist()]
    )[index]
    class_probabilities = reference[f"{prefix}instances.class_prob"]
    order = class_probabilities.argsort(descending=True, stable=True)
    torch.testing.assert_close(detections["scores"], class_probabilities[order], atol=1e-3, rtol=0)
    torch.testing.assert_close(detections["boxes"], expected_boxes[order], atol=box_tolerance, rtol=0)


def check_panoptic(processor, outputs, index, expected_segmentation, expected_info, name, exact):
    result = processor.post_process_panoptic_segmentation(outputs)[index]
    assert len(result["segments_info"]) == len(expected_info), (
        f"{name}: {len(result['segments_info'])} panoptic segments, expected {len(expected_info)}"
    )
    expected = category_map(expected_segmentation, expected_info, "category_id")
    ours = category_map(result["segmentation"], result["segments_info"], "label_id")
    agreement = (ours == expected).float().mean().item()
    assert agreement >= 0.999, f"{name}: panoptic categories agree on {agreement:.5f} of pixels"
    stuff = set(processor.stuff_label_ids)
    assert [s["label_id"] not in stuff for s in result["segments_info"]] == [s["isthing"] for s in expected_info]
    if exact:
        assert torch.equal(result["segmentation"], expected_segmentation)


def category_map(segmentation, segments_info, key):
    categories = torch.full(segmentation.shape, -1, dtype=torch.int64)
    for segment in segments_info:
        categories[segmentation == segment["id"]] = segment[key]
    return categories
