# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""transformers pipelines on a saved Mask DINO directory: `image-segmentation` (semantic, instance, panoptic) and
`object-detection` give what the processor's post-processing gives on the model's outputs at the image size."""

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_checkpoint import LABELS, STUFF_LABEL_IDS, save_tiny_checkpoint
from transformers import (
    AutoImageProcessor,
    AutoModelForImageSegmentation,
    AutoModelForObjectDetection,
    pipeline,
)

from transformers_maskdino import (
    MaskDinoForUniversalSegmentation,
    MaskDinoImageProcessor,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny_maskdino"))


@pytest.fixture(scope="module")
def image():
    # 50x70 is resized to 64x90 and padded to 64x96, so the padding must be cropped for the masks to line up
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def direct(checkpoint, image):
    """The model's outputs on the image, computed without a pipeline."""
    model = MaskDinoForUniversalSegmentation.from_pretrained(checkpoint).eval()
    processor = MaskDinoImageProcessor.from_pretrained(checkpoint)
    with torch.no_grad():
        outputs = model(**processor(image, return_tensors="pt"))
    assert outputs.image_sizes.tolist() == [[64, 90]] and outputs.padded_image_sizes.tolist() == [[64, 96]]
    return processor, outputs


def test_auto_classes_resolve(checkpoint):
    assert type(AutoImageProcessor.from_pretrained(checkpoint)) is MaskDinoImageProcessor
    assert type(AutoModelForImageSegmentation.from_pretrained(checkpoint)) is MaskDinoForUniversalSegmentation
    assert type(AutoModelForObjectDetection.from_pretrained(checkpoint)) is MaskDinoForUniversalSegmentation


@pytest.fixture(scope="module")
def segmenter(checkpoint):
    return pipeline("image-segmentation", model=str(checkpoint))


def masks_of(results):
    return np.stack([np.array(result["mask"]) > 0 for result in results])


def test_semantic_pipeline(segmenter, direct, image):
    processor, outputs = direct
    expected = processor.post_process_semantic_segmentation(outputs, target_sizes=[(50, 70)])[0].numpy()
    results = segmenter(image, subtask="semantic")
    assert [r["label"] for r in results] == [LABELS[label] for label in np.unique(expected)]
    assert all(r["score"] is None and r["mask"].size == (70, 50) for r in results)
    for result, label in zip(results, np.unique(expected)):
        assert (np.array(result["mask"]) > 0).tolist() == (expected == label).tolist()


def test_instance_pipeline(segmenter, direct, image):
    processor, outputs = direct
    expected = processor.post_process_instance_segmentation(outputs, threshold=0.1, target_sizes=[(50, 70)])[0]
    results = segmenter(image, subtask="instance", threshold=0.1)
    assert len(results) == len(expected["segments_info"]) > 0
    assert [r["label"] for r in results] == [LABELS[s["label_id"]] for s in expected["segments_info"]]
    assert [r["score"] for r in results] == pytest.approx([s["score"] for s in expected["segments_info"]])
    assert not {r["label"] for r in results} & {LABELS[i] for i in STUFF_LABEL_IDS}
    masks = masks_of(results)
    assert masks.shape[1:] == (50, 70)
    for mask, segment in zip(masks, expected["segments_info"]):
        assert mask.tolist() == (expected["segmentation"] == segment["id"]).numpy().tolist()


def test_panoptic_pipeline_is_the_default_subtask(segmenter, direct, image):
    processor, outputs = direct
    expected = processor.post_process_panoptic_segmentation(outputs, threshold=0.0, target_sizes=[(50, 70)])[0]
    results = segmenter(image, threshold=0.0)
    assert len(results) == len(expected["segments_info"]) > 0
    assert [r["label"] for r in results] == [LABELS[s["label_id"]] for s in expected["segments_info"]]
    masks = masks_of(results)
    assert not (masks.sum(0) > 1).any()  # panoptic segments do not overlap
    for mask, segment in zip(masks, expected["segments_info"]):
        assert mask.tolist() == (expected["segmentation"] == segment["id"]).numpy().tolist()


def test_object_detection_pipeline(checkpoint, direct, image):
    processor, outputs = direct
    expected = processor.post_process_object_detection(outputs, 0.2, [(50, 70)])[0]
    detector = pipeline("object-detection", model=str(checkpoint))
    results = detector(image, threshold=0.2)
    assert len(results) == len(expected["scores"]) > 0
    assert [r["label"] for r in results] == [LABELS[label] for label in expected["labels"].tolist()]
    assert [r["score"] for r in results] == pytest.approx(expected["scores"].tolist())
    for result, box in zip(results, expected["boxes"].tolist()):
        assert [result["box"][key] for key in ("xmin", "ymin", "xmax", "ymax")] == [int(v) for v in box]
