# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""A real third-party client on our post-processed outputs: `supervision`'s `Detections.from_transformers` reads
detection, instance (binary maps, indexed by segment id), panoptic and semantic results as it reads Mask2Former's."""

import numpy as np
import pytest
import supervision as sv  # a dev dependency: missing, these tests fail instead of skipping
import torch
from PIL import Image
from tiny_checkpoint import save_tiny_checkpoint

from transformers_maskdino import MaskDinoForUniversalSegmentation, MaskDinoImageProcessor


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    directory = save_tiny_checkpoint(tmp_path_factory.mktemp("tiny_maskdino_sv"))
    model = MaskDinoForUniversalSegmentation.from_pretrained(directory).eval()
    processor = MaskDinoImageProcessor.from_pretrained(directory)
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    with torch.no_grad():
        outputs = model(**processor(image, return_tensors="pt"))
    return model, processor, outputs


def test_detection(run):
    model, processor, outputs = run
    result = processor.post_process_object_detection(outputs, 0.0, [(50, 70)])[0]
    detections = sv.Detections.from_transformers(result, id2label=model.config.id2label)
    assert len(detections) == len(result["scores"]) > 0
    np.testing.assert_allclose(detections.xyxy, result["boxes"].numpy(), rtol=0, atol=1e-5)
    assert detections.class_id.tolist() == result["labels"].tolist()
    assert detections.data["class_name"].tolist() == [model.config.id2label[i] for i in result["labels"].tolist()]


def test_instance_with_binary_maps(run):
    model, processor, outputs = run
    result = processor.post_process_instance_segmentation(
        outputs, threshold=0.0, target_sizes=[(50, 70)], return_binary_maps=True
    )[0]
    detections = sv.Detections.from_transformers(result, id2label=model.config.id2label)
    assert len(detections) == len(result["segments_info"]) > 1
    # supervision takes row `id` of the binary maps as the segment's mask: ids must start at 0
    assert np.array_equal(detections.mask, result["segmentation"].numpy())
    assert detections.class_id.tolist() == [s["label_id"] for s in result["segments_info"]]
    np.testing.assert_allclose(detections.confidence, [s["score"] for s in result["segments_info"]])
    # and the segment-id map gives the same masks where instances do not overlap
    id_map = processor.post_process_instance_segmentation(outputs, threshold=0.0, target_sizes=[(50, 70)])[0]
    from_map = sv.Detections.from_transformers(id_map, id2label=model.config.id2label)
    assert (from_map.mask <= detections.mask).all() and len(from_map) == len(detections)


def test_panoptic(run):
    model, processor, outputs = run
    result = processor.post_process_panoptic_segmentation(outputs, threshold=0.0, target_sizes=[(50, 70)])[0]
    detections = sv.Detections.from_transformers(result, id2label=model.config.id2label)
    assert len(detections) == len(result["segments_info"]) > 0
    for mask, segment in zip(detections.mask, result["segments_info"]):
        assert np.array_equal(mask, (result["segmentation"] == segment["id"]).numpy())
    assert detections.class_id.tolist() == [s["label_id"] for s in result["segments_info"]]


@pytest.mark.parametrize("with_scores", [False, True])
def test_semantic(run, with_scores):
    model, processor, outputs = run
    result = processor.post_process_semantic_segmentation(
        outputs, target_sizes=[(50, 70)], return_segmentation_scores=with_scores
    )[0]
    segmentation = result.segmentation if with_scores else result
    detections = sv.Detections.from_transformers(result, id2label=model.config.id2label)
    labels = np.unique(segmentation.numpy())
    assert detections.class_id.tolist() == labels.tolist()
    for mask, label in zip(detections.mask, labels):
        assert np.array_equal(mask, segmentation.numpy() == label)
