# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Post-processing conventions (Mask2Former's signatures and ids, COCO RLE, box names) and its errors on odd
inputs; the model's minimum input size."""

import inspect

import numpy as np
import pytest
import torch
from transformers import Mask2FormerImageProcessorPil

from transformers_maskdino import MaskDinoConfig, MaskDinoForUniversalSegmentation, MaskDinoImageProcessor
from transformers_maskdino.modeling_maskdino import (
    MaskDinoForUniversalSegmentationOutput,
    check_input_size,
    minimum_input_size,
)


def random_outputs(batch_size=2, num_queries=12, num_labels=5, seed=0, **overrides):
    generator = torch.Generator().manual_seed(seed)
    fields = {
        "class_queries_logits": torch.randn(batch_size, num_queries, num_labels, generator=generator) * 3,
        "masks_queries_logits": torch.randn(batch_size, num_queries, 16, 24, generator=generator) * 4,
        "pred_boxes": torch.rand(batch_size, num_queries, 4, generator=generator) * 0.5 + 0.2,
        "image_sizes": torch.tensor([[60, 90]] * batch_size),
        "padded_image_sizes": torch.tensor([[64, 96]] * batch_size),
    }
    fields.update(overrides)
    return MaskDinoForUniversalSegmentationOutput(**fields)


@pytest.fixture
def processor():
    return MaskDinoImageProcessor(stuff_label_ids=[3, 4], detections_per_image=10)


@pytest.mark.parametrize("method", ["semantic", "instance", "panoptic"])
def test_positional_order_and_names_are_mask2formers(method):
    name = f"post_process_{method}_segmentation"
    ours = list(inspect.signature(getattr(MaskDinoImageProcessor, name)).parameters)
    theirs = list(inspect.signature(getattr(Mask2FormerImageProcessorPil, name)).parameters)
    assert ours[: len(theirs)] == theirs


@pytest.mark.parametrize("method", ["semantic", "instance", "panoptic", "detection"])
def test_unknown_keyword_arguments_raise(processor, method):
    name = "post_process_object_detection" if method == "detection" else f"post_process_{method}_segmentation"
    with pytest.raises(TypeError, match="target_size"):
        getattr(processor, name)(random_outputs(), target_size=[(10, 10)] * 2)


def test_instance_ids_start_at_0_with_background_minus_1(processor):
    outputs = random_outputs()
    maps = processor.post_process_instance_segmentation(outputs, threshold=0.0)
    binary = processor.post_process_instance_segmentation(outputs, threshold=0.0, return_binary_maps=True)
    for result, masks in zip(maps, binary):
        info = result["segments_info"]
        assert [segment["id"] for segment in info] == list(range(len(info))) and len(info) > 0
        assert masks["segmentation"].shape == (len(info), 60, 90) and masks["segmentation"].dtype == torch.bool
        segmentation = result["segmentation"]
        assert segmentation.min() >= -1 and (segmentation == -1).any()
        for segment in info:
            # row `id` of the binary maps is the segment; where the map shows it, its mask is set
            shown = segmentation == segment["id"]
            assert (masks["segmentation"][segment["id"]] | ~shown).all()
            assert len(segment["box_xyxy"]) == 4 and segment["was_fused"] is False
        assert ((segmentation == -1) == ~masks["segmentation"].any(0)).all()


def test_coco_rle_decodes_to_the_binary_maps(processor):
    from pycocotools import mask as mask_utils  # a dev dependency: missing, the test fails
    outputs = random_outputs()
    binary = processor.post_process_instance_segmentation(outputs, return_binary_maps=True)[0]["segmentation"]
    encoded = processor.post_process_instance_segmentation(outputs, return_coco_rle=True)[0]["segmentation"]
    starts = processor.post_process_instance_segmentation(outputs, return_coco_annotation=True)[0]["segmentation"]
    assert len(encoded) == len(starts) == len(binary) > 0
    for mask, rle, runs in zip(binary, encoded, starts):
        assert rle["size"] == [60, 90] and isinstance(rle["counts"], str)
        assert np.array_equal(mask_utils.decode(rle).astype(bool), mask.numpy())
        # transformers' encoding: 1-based start / length pairs over the row-major pixels
        decoded = np.zeros(60 * 90, dtype=bool)
        for start, length in zip(runs[::2], runs[1::2]):
            decoded[start - 1 : start - 1 + length] = True
        assert np.array_equal(decoded.reshape(60, 90), mask.numpy())
    with pytest.raises(ValueError, match="at most one"):
        processor.post_process_instance_segmentation(outputs, return_coco_rle=True, return_binary_maps=True)


def test_detection_boxes_are_corners(processor):
    outputs = random_outputs(pred_boxes=torch.tensor([[[0.5, 0.5, 0.25, 0.5]] * 12] * 2))
    boxes = processor.post_process_object_detection(outputs, 0.0, [(60, 90)] * 2)[0]["boxes"]
    # (cx, cy, w, h) relative to the padded 64x96 input -> (x_min, y_min, x_max, y_max) in the 60x90 image
    torch.testing.assert_close(boxes[0], torch.tensor([36.0, 16.0, 60.0, 48.0]) * torch.tensor([90 / 90, 60 / 60] * 2))


@pytest.mark.parametrize("field", ["class_queries_logits", "masks_queries_logits", "pred_boxes"])
@pytest.mark.parametrize("method", ["semantic", "instance", "panoptic", "detection"])
def test_non_finite_outputs_raise_naming_the_tensor(processor, field, method):
    outputs = random_outputs()
    values = outputs[field].clone()
    values[0, 1, 0] = float("nan") if field != "pred_boxes" else float("inf")
    outputs = random_outputs(**{field: values})
    name = "post_process_object_detection" if method == "detection" else f"post_process_{method}_segmentation"
    with pytest.raises(ValueError, match=f"`{field}` has [0-9]+ non-finite"):
        getattr(processor, name)(outputs)


@pytest.mark.parametrize("method", ["semantic", "instance", "panoptic", "detection"])
def test_an_all_zero_pixel_mask_raises(method):
    model = MaskDinoForUniversalSegmentation(
        MaskDinoConfig(
            backbone_config={"model_type": "resnet", "embedding_size": 8, "hidden_sizes": [8, 16, 32, 64],
                             "depths": [1, 1, 1, 1], "layer_type": "basic",
                             "out_features": ["stage1", "stage2", "stage3", "stage4"]},
            hidden_dim=32, num_queries=10, feature_size=32, mask_feature_size=32, encoder_layers=1,
            encoder_ffn_dim=32, decoder_layers=2, decoder_ffn_dim=32, num_denoising=0, num_labels=5,
        )
    ).eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 96, 96), pixel_mask=torch.zeros(1, 96, 96, dtype=torch.long))
    name = "post_process_object_detection" if method == "detection" else f"post_process_{method}_segmentation"
    with pytest.raises(ValueError, match="pixel_mask` is all zeros"):
        getattr(MaskDinoImageProcessor(), name)(outputs)


@pytest.mark.parametrize("top_k", [-1, 0, 2.5])
def test_bad_top_k_raises(processor, top_k):
    with pytest.raises(ValueError, match="`top_k` must be a positive integer"):
        processor.post_process_instance_segmentation(random_outputs(), top_k=top_k)
    with pytest.raises(ValueError, match="`top_k` must be a positive integer"):
        processor.post_process_object_detection(random_outputs(), top_k=top_k)


def test_mismatched_batch_sizes_raise(processor):
    outputs = random_outputs(pred_boxes=torch.rand(3, 12, 4))
    with pytest.raises(ValueError, match="disagree on the batch size"):
        processor.post_process_instance_segmentation(outputs)
    with pytest.raises(ValueError, match="disagree on the batch size"):
        processor.post_process_semantic_segmentation(random_outputs(image_sizes=torch.tensor([[60, 90]])))


def test_inputs_below_the_minimum_size_raise_naming_it():
    # default config: 300 queries are selected from the encoder tokens (193 at 96x96)
    config = MaskDinoConfig(num_labels=5)
    assert minimum_input_size(config) == 128
    with pytest.raises(ValueError, match="at least 128x128 pixels"):
        check_input_size(config, torch.zeros(1, 3, 96, 96, device="meta"))
    check_input_size(config, torch.zeros(1, 3, 128, 128, device="meta"))
    # feature_size=32: GroupNorm(32) needs more than one value per group on the 1x1 level of a 64x64 input
    config = MaskDinoConfig(num_labels=5, feature_size=32, mask_feature_size=32, hidden_dim=32, num_queries=10)
    model = MaskDinoForUniversalSegmentation(config).eval()
    with pytest.raises(ValueError, match="at least 96x96 pixels"):
        model(torch.randn(1, 3, 64, 64))
    with torch.no_grad():
        assert model(torch.randn(1, 3, 96, 96)).class_queries_logits.shape == (1, 10, 5)
