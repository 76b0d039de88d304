# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""bfloat16 and float16 forwards (issue 11): finite on every fixture with the kernels on and off (CPU grid_sample in
half precision returned 1e35/NaN), close to float32 where float32's own discrete decisions are kept, and the same
post-processed results on the trained demo model.

The fixtures have random weights: their query selection (top-k of near-tied token scores) and mask-enhanced anchors
(extents of speckled masks) flip under any perturbation, even in float32 (an input change of 1e-3 relative changes
12% of r50_instance's semantic map). So closeness on the fixtures is checked with float32's top-k tokens and anchors
injected into the half-precision run; post-processed agreement is checked on the trained demo model."""

import pytest
import torch
from conftest import REFERENCE_DIR, REFERENCE_VARIANTS
from PIL import Image
from safetensors.torch import load_file

import transformers_maskdino.modeling_maskdino as modeling
from transformers_maskdino import MaskDinoForUniversalSegmentation, MaskDinoImageProcessor
from transformers_maskdino.cli import DEMO_DIR as DEMO_MODEL_DIR

HALF_DTYPES = [torch.bfloat16, torch.float16]


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.float().flatten(), b.float().flatten()]))[0, 1].item()


def float_outputs(outputs) -> dict[str, torch.Tensor]:
    tensors = {name: outputs[name] for name in ("class_queries_logits", "masks_queries_logits", "pred_boxes")}
    for index, step in enumerate(outputs.auxiliary_outputs or []):
        tensors.update({f"aux{index}.{k}": v for k, v in step.items() if v is not None})
    for name, value in (outputs.encoder_proposal_outputs or {}).items():
        tensors[f"proposal.{name}"] = value
    return tensors


@pytest.fixture(scope="module")
def fixture_models(converted_reference):
    cache = {}

    def get(variant, dtype):
        if (variant, dtype) not in cache:
            directory = converted_reference(variant)
            cache[variant, dtype] = MaskDinoForUniversalSegmentation.from_pretrained(directory, dtype=dtype).eval()
        return cache[variant, dtype]

    return get


def pixel_values(variant):
    return load_file(REFERENCE_DIR / variant / "inputs.safetensors")["pixel_values"]


@pytest.mark.parametrize("kernels", ["auto", "off"])
@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("variant", REFERENCE_VARIANTS)
def test_half_precision_outputs_are_finite(fixture_models, variant, dtype, kernels, monkeypatch):
    monkeypatch.setenv("MASKDINO_KERNELS", kernels)
    model = fixture_models(variant, dtype)
    with torch.no_grad():
        outputs = model(pixel_values(variant).to(dtype))
    for name, tensor in float_outputs(outputs).items():
        assert torch.isfinite(tensor).all(), f"{variant} {dtype} kernels={kernels}: {name} is not finite"
    assert outputs.class_queries_logits.dtype == dtype
    # coordinates stay float32: bfloat16 would round boxes by up to 0.4% of the image
    assert outputs.pred_boxes.dtype == torch.float32


# (class, mask, box) correlation with float32, float32's discrete decisions kept. bfloat16 cannot reach issue 11's
# 0.999 on these random-weight fixtures: a float32 forward whose weights and input are merely rounded to bfloat16
# (what any `dtype=torch.bfloat16` model starts from) already correlates 0.9936 / 0.9972 / 0.9989 / 0.9991 in mask
# logits (r50_panoptic / r50_instance / r50_semantic / swin_panoptic), and rounding the input alone gives 0.9981 on
# r50_panoptic. Measured with bfloat16 arithmetic: masks 0.974-0.997, classes 0.9933-0.9992, boxes 0.997-0.9998.
# r50_panoptic's classes move with rounding order alone: 0.9952 NCHW, 0.9946 channels-last, 0.9933 with batch norm
# folded into the bfloat16 convolutions (which lifts r50_instance's and r50_semantic's figures).
MIN_CORRELATION = {
    torch.float16: (0.999, 0.999, 0.999),
    torch.bfloat16: (0.993, 0.97, 0.997),
}


@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("variant", REFERENCE_VARIANTS)
def test_half_precision_tracks_float32_with_the_same_discrete_decisions(fixture_models, variant, dtype, monkeypatch):
    decisions = {}
    real_topk, real_anchors = torch.topk, modeling.mask_enhanced_anchor_boxes

    def recorded_topk(scores, k, dim=-1, **kwargs):
        if "topk" in decisions:
            return torch.gather(scores, dim, decisions["topk"]), decisions["topk"]
        values, indices = real_topk(scores, k, dim=dim, **kwargs)
        decisions["topk"] = indices
        return values, indices

    def recorded_anchors(*args, **kwargs):
        decisions.setdefault("anchors", real_anchors(*args, **kwargs))
        return decisions["anchors"]

    monkeypatch.setattr(torch, "topk", recorded_topk)
    monkeypatch.setattr(modeling, "mask_enhanced_anchor_boxes", recorded_anchors)
    with torch.no_grad():
        reference = fixture_models(variant, torch.float32)(pixel_values(variant))
        half = fixture_models(variant, dtype)(pixel_values(variant).to(dtype))
    for name, minimum in zip(("class_queries_logits", "masks_queries_logits", "pred_boxes"), MIN_CORRELATION[dtype]):
        assert correlation(reference[name], half[name]) >= minimum, name


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_half_precision_demo_model_gives_the_same_segments(dtype):
    processor = MaskDinoImageProcessor.from_pretrained(DEMO_MODEL_DIR)
    inputs = processor(Image.open(DEMO_MODEL_DIR / "sample.png").convert("RGB"), return_tensors="pt")
    reference_model = MaskDinoForUniversalSegmentation.from_pretrained(DEMO_MODEL_DIR).eval()
    model = MaskDinoForUniversalSegmentation.from_pretrained(DEMO_MODEL_DIR, dtype=dtype).eval()
    with torch.no_grad():
        reference = reference_model(**inputs)
        half = model(pixel_values=inputs["pixel_values"].to(dtype), pixel_mask=inputs["pixel_mask"])
    semantic = [processor.post_process_semantic_segmentation(o)[0] for o in (reference, half)]
    assert (semantic[0] == semantic[1]).float().mean().item() >= 0.99
    panoptic = [processor.post_process_panoptic_segmentation(o)[0] for o in (reference, half)]
    assert [s["label_id"] for s in panoptic[0]["segments_info"]] == [
        s["label_id"] for s in panoptic[1]["segments_info"]
    ]
    agreement = (panoptic[0]["segmentation"] == panoptic[1]["segmentation"]).float().mean().item()
    assert agreement >= 0.99
