# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Acceptance of issue 2: every reference variant, converted and loaded with `from_pretrained`, reproduces the
original's backbone features, encoder inputs and outputs, mask features, encoder proposals, every decoder layer's
hidden states, reference boxes and predictions, and the final outputs, for one image and for the two-image batch:
max |ours - ref| <= 1e-4 * max(1, max |ref|)."""

import pytest
import torch
from conftest import PIXEL_MEAN, PIXEL_STD, REFERENCE_DIR, REFERENCE_VARIANTS
from safetensors.torch import load_file
from transformers import AutoModelForUniversalSegmentation

import transformers_maskdino  # noqa: F401  (registers the Auto classes)


def assert_matches(name, ours, reference):
    assert ours.shape == reference.shape, f"{name}: shape {tuple(ours.shape)} vs reference {tuple(reference.shape)}"
    difference = (ours.float() - reference.float()).abs().max().item()
    tolerance = 1e-4 * max(1.0, reference.abs().max().item())
    assert difference <= tolerance, f"{name}: max |ours - ref| = {difference:.3e} > {tolerance:.1e}"


def normalized_padded_batch(images, height, width):
    mean = torch.tensor(PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(3, 1, 1)
    batch = torch.zeros(len(images), 3, height, width)
    for i, image in enumerate(images):
        batch[i, :, : image.shape[1], : image.shape[2]] = (image.float() - mean) / std
    return batch


@pytest.fixture(scope="module", params=REFERENCE_VARIANTS)
def variant_run(request, converted_reference):
    variant = request.param
    model, loading_info = AutoModelForUniversalSegmentation.from_pretrained(
        converted_reference(variant), output_loading_info=True
    )
    model.eval()
    assert not any(loading_info.values()), f"{variant}: {loading_info}"  # every tensor converted, nothing left over
    inputs = load_file(REFERENCE_DIR / variant / "inputs.safetensors")
    with torch.no_grad():
        # intermediate feature maps come with `output_hidden_states`, earlier layers' predictions with
        # `output_auxiliary_logits`
        single = model(inputs["pixel_values"], output_hidden_states=True, output_auxiliary_logits=True)
        batch = model(normalized_padded_batch([inputs["image"], inputs["image2"]], *inputs["pixel_values"].shape[-2:]))
    return variant, model, inputs, single, batch


def test_single_image_intermediates(variant_run):
    variant, model, inputs, outputs, _ = variant_run
    reference = load_file(REFERENCE_DIR / variant / "intermediates.safetensors")
    for i, feature in enumerate(outputs.backbone_features):
        assert_matches(f"backbone.res{i + 2}", feature, reference[f"backbone.res{i + 2}"])
    levels = len(outputs.multi_scale_features)
    shapes = torch.tensor([list(f.shape[-2:]) for f in outputs.multi_scale_features])
    assert torch.equal(shapes, reference["encoder.spatial_shapes"])
    for i in range(levels):
        assert_matches(f"encoder input {i}", outputs.encoder_inputs[i], reference[f"encoder.transformer_input.{i}"])
        assert_matches(f"encoder output {i}", outputs.multi_scale_features[i], reference[f"encoder.multi_scale.{i}"])
    assert_matches("fpn output", outputs.fpn_output, reference["encoder.fpn_out"])
    assert_matches("mask features", outputs.mask_features, reference["encoder.mask_features"])
    if model.config.init_queries_from_encoder:
        assert_matches("encoder class logits", outputs.encoder_class_logits, reference["decoder.enc_outputs_class"])
        assert torch.equal(outputs.encoder_topk_indices, reference["decoder.enc_topk_indices"])
    else:
        assert outputs.encoder_class_logits is None and "decoder.enc_outputs_class" not in reference
    num_layers = model.config.decoder_layers
    for i in range(num_layers):
        assert_matches(f"hidden states {i}", outputs.intermediate_hidden_states[:, i], reference[f"decoder.hidden_states.{i}"])
    for i in range(num_layers + 1):
        assert_matches(
            f"reference points {i}", outputs.intermediate_reference_points[:, i], reference[f"decoder.reference_points.{i}"]
        )


def test_single_image_predictions(variant_run):
    variant, model, _, outputs, _ = variant_run
    reference = load_file(REFERENCE_DIR / variant / "outputs.safetensors")
    assert_matches("class logits", outputs.class_queries_logits, reference["decoder.pred_logits"])
    assert_matches("mask logits", outputs.masks_queries_logits, reference["decoder.pred_masks"])
    assert_matches("boxes", outputs.pred_boxes, reference["decoder.pred_boxes"])
    assert len(outputs.auxiliary_outputs) == model.config.decoder_layers
    for i, auxiliary in enumerate(outputs.auxiliary_outputs):
        assert_matches(f"aux {i} class logits", auxiliary["class_queries_logits"], reference[f"decoder.aux.{i}.pred_logits"])
        assert_matches(f"aux {i} boxes", auxiliary["pred_boxes"], reference[f"decoder.aux.{i}.pred_boxes"])
    if model.config.init_queries_from_encoder:
        proposals = outputs.encoder_proposal_outputs
        assert_matches("interm class logits", proposals["class_queries_logits"], reference["decoder.interm.pred_logits"])
        assert_matches("interm mask logits", proposals["masks_queries_logits"], reference["decoder.interm.pred_masks"])
        assert_matches("interm boxes", proposals["pred_boxes"], reference["decoder.interm.pred_boxes"])
    else:
        assert outputs.encoder_proposal_outputs is None


def test_two_image_batch(variant_run):
    variant, model, inputs, _, batch = variant_run
    reference = load_file(REFERENCE_DIR / variant / "outputs.safetensors")
    assert_matches("batch class logits", batch.class_queries_logits, reference["batch2.decoder.pred_logits"])
    assert_matches("batch mask logits", batch.masks_queries_logits, reference["batch2.decoder.pred_masks"])
    assert_matches("batch boxes", batch.pred_boxes, reference["batch2.decoder.pred_boxes"])
    if model.config.init_queries_from_encoder:
        proposals = batch.encoder_proposal_outputs
        assert_matches("batch interm logits", proposals["class_queries_logits"], reference["batch2.decoder.interm.pred_logits"])
        assert_matches("batch interm boxes", proposals["pred_boxes"], reference["batch2.decoder.interm.pred_boxes"])


def test_second_image_alone(variant_run):
    variant, model, inputs, _, _ = variant_run
    reference = load_file(REFERENCE_DIR / variant / "outputs.safetensors")
    image2 = inputs["image2"]
    with torch.no_grad():
        outputs = model(normalized_padded_batch([image2], *image2.shape[-2:]))
    assert_matches("image2 class logits", outputs.class_queries_logits, reference["image2_alone.decoder.pred_logits"])
    assert_matches("image2 mask logits", outputs.masks_queries_logits, reference["image2_alone.decoder.pred_masks"])
    assert_matches("image2 boxes", outputs.pred_boxes, reference["image2_alone.decoder.pred_boxes"])
