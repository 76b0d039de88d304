# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Acceptance of issue 3 through the whole stack: for every reference variant, the fixture images through the
converted checkpoint's processor (`do_resize=False`, as the fixtures were made), the converted model and our
post-processing reproduce the original's post-processed results, for one image and for both elements of the
two-image batch; and the transformers pipelines on a converted directory give the same segments and boxes."""

import json

import numpy as np
import pytest
import torch
from conftest import REFERENCE_DIR, REFERENCE_VARIANTS
from PIL import Image
from postprocessing_reference import category_map, check_post_processing
from safetensors.torch import load_file
from transformers import pipeline

from transformers_maskdino import MaskDinoForUniversalSegmentation, MaskDinoImageProcessor


@pytest.fixture(scope="module", params=REFERENCE_VARIANTS)
def converted(request, converted_reference):
    variant = request.param
    directory = converted_reference(variant)
    model = MaskDinoForUniversalSegmentation.from_pretrained(directory).eval()
    processor = MaskDinoImageProcessor.from_pretrained(directory, do_resize=False)
    return REFERENCE_DIR / variant, directory, model, processor


def test_converted_processor_settings(converted):
    variant_dir, _, model, processor = converted
    metadata = json.loads((variant_dir / "metadata.json").read_text())
    assert processor.stuff_label_ids == metadata["stuff_contiguous_ids"]
    assert processor.detections_per_image == 20
    assert processor.use_semantic_cross_entropy == (variant_dir.name == "r50_semantic")
    assert model.config.num_labels == metadata["num_classes"]


def test_model_and_post_processing_reproduce_the_original(converted):
    variant_dir, _, model, processor = converted
    images = [Image.open(variant_dir / "image.png"), Image.open(variant_dir / "image2.png")]
    with torch.no_grad():
        single = model(**processor(images[0], return_tensors="pt"))
        batch = model(**processor(images, return_tensors="pt"))
    assert single.image_sizes.tolist() == [[150, 210]] and batch.image_sizes.tolist() == [[150, 210], [128, 160]]
    checked = check_post_processing(processor, single, 0, variant_dir, "", "single", exact=False)
    for index in range(2):
        prefix = f"batch2.{index}."
        assert check_post_processing(processor, batch, index, variant_dir, prefix, prefix, exact=False) == checked
    assert checked


def test_panoptic_pipeline_on_a_converted_checkpoint(converted_reference):
    variant_dir = REFERENCE_DIR / "r50_panoptic"
    directory = converted_reference("r50_panoptic")
    segmenter = pipeline(
        "image-segmentation",
        model=str(directory),
        image_processor=MaskDinoImageProcessor.from_pretrained(directory, do_resize=False),
    )
    # the pipeline's own defaults (threshold 0.9, overlap 0.5) differ from the checkpoint's; pass the checkpoint's
    results = segmenter(
        str(variant_dir / "image.png"), subtask="panoptic", threshold=0.25, overlap_mask_area_threshold=0.8
    )
    expected_info = json.loads((variant_dir / "segments_info.json").read_text())["single"]
    assert len(results) == len(expected_info)
    expected = category_map(
        load_file(variant_dir / "postprocessed.safetensors")["panoptic_seg"], expected_info, "category_id"
    )
    ours = torch.full(expected.shape, -1, dtype=torch.int64)
    label2id = {label: label_id for label_id, label in segmenter.model.config.id2label.items()}
    assert len(label2id) == segmenter.model.config.num_labels
    for result in results:
        ours[torch.from_numpy(np.array(result["mask"]) > 0)] = label2id[result["label"]]
    assert (ours == expected).float().mean().item() >= 0.999


def test_object_detection_pipeline_on_a_converted_checkpoint(converted_reference):
    variant_dir = REFERENCE_DIR / "r50_instance"
    directory = converted_reference("r50_instance")
    detector = pipeline(
        "object-detection",
        model=str(directory),
        image_processor=MaskDinoImageProcessor.from_pretrained(directory, do_resize=False),
    )
    results = detector(str(variant_dir / "image.png"), threshold=0.0)
    reference = load_file(variant_dir / "postprocessed.safetensors")
    order = reference["instances.class_prob"].argsort(descending=True, stable=True)
    assert [r["score"] for r in results] == pytest.approx(reference["instances.class_prob"][order].tolist(), abs=1e-3)
    id2label = detector.model.config.id2label
    assert [r["label"] for r in results] == [id2label[i] for i in reference["instances.pred_classes"][order].tolist()]
    boxes = torch.tensor(
        [[r["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] for r in results], dtype=torch.float32
    )
    # the pipeline truncates boxes to integers
    assert (boxes - reference["instances.pred_boxes"][order]).abs().max() <= 1.0 + 0.21
