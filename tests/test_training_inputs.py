# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Issue 13: training inputs are checked at the model's boundary, with a `ValueError` naming the image and the field,
before the model runs: non-binary (0/255) masks, float or out-of-range class labels, mis-shaped or unnormalised
`target_boxes`, counts that disagree, float64 pixels; a NaN image raises before BatchNorm statistics change; a
non-finite loss raises before `backward()` and the optimizer.
"""

import pytest
import torch
from test_modeling import make_model, random_targets, tiny_config

from transformers_maskdino import MaskDinoForUniversalSegmentation

HEIGHT, WIDTH = 64, 96


def training_model(**kwargs) -> MaskDinoForUniversalSegmentation:
    # trainable BatchNorm (as the Cityscapes checkpoint was trained), so that a forward changes running statistics
    model = make_model(tiny_config(freeze_backbone_batch_norm=False, **kwargs))
    return model.train()


def batch(batch_size=2, seed=0):
    torch.manual_seed(seed)
    masks, labels = random_targets(batch_size, HEIGHT, WIDTH)
    return torch.randn(batch_size, 3, HEIGHT, WIDTH), masks, labels


def batch_norm_statistics(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running_" in k or "num_batches_tracked" in k}


def test_model_has_trainable_batch_norm():
    model = training_model()
    assert batch_norm_statistics(model)
    before = batch_norm_statistics(model)
    pixel_values, masks, labels = batch()
    model(pixel_values=pixel_values, mask_labels=masks, class_labels=labels).loss.backward()
    assert any(not torch.equal(before[k], v) for k, v in batch_norm_statistics(model).items())


def test_0_255_masks_are_refused():
    model = training_model()
    pixel_values, masks, labels = batch()
    masks[1] = masks[1] * 255
    with pytest.raises(
        ValueError,
        match=r"`mask_labels\[1\]` must be binary \(0/1 or bool\), got values \[0\.0, 255\.0\]; 0/255 masks must be divided by 255",
    ):
        model(pixel_values=pixel_values, mask_labels=masks, class_labels=labels)
    # the same masks as bool or 0/1 integers are fine, and give the loss of 0/1 float masks
    torch.manual_seed(0)
    expected = model(pixel_values=pixel_values, mask_labels=[m.clamp(max=1) for m in masks], class_labels=labels).loss
    for cast in (torch.bool, torch.uint8, torch.float64):
        torch.manual_seed(0)
        loss = model(
            pixel_values=pixel_values, mask_labels=[(m > 0).to(cast) for m in masks], class_labels=labels
        ).loss
        torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize(
    "labels, message",
    [
        (
            torch.tensor([1.7]),
            r"`class_labels\[1\]` must hold integer class ids \(torch\.long\), got torch\.float32: float labels would be truncated",
        ),
        (torch.tensor([True]), r"`class_labels\[1\]` must hold integer class ids"),
        (torch.tensor([4]), r"`class_labels\[1\]` must be in \[0, 3\] \(the model has 4 labels\), got \[4\]"),
        (torch.tensor([-1]), r"`class_labels\[1\]` must be in \[0, 3\]"),
        (torch.tensor([0, 1]), r"`class_labels\[1\]` must have shape \(1,\) to match `mask_labels\[1\]`"),
    ],
)
def test_bad_class_labels_are_refused(labels, message):
    model = training_model()
    pixel_values, masks, class_labels = batch()
    class_labels[1] = labels
    with pytest.raises(ValueError, match=message):
        model(pixel_values=pixel_values, mask_labels=masks, class_labels=class_labels)


@pytest.mark.parametrize(
    "boxes, message",
    [
        (torch.rand(2, 3), r"`target_boxes\[0\]` must have shape \(2, 4\) to match `mask_labels\[0\]`"),
        (torch.rand(3, 4), r"`target_boxes\[0\]` must have shape \(2, 4\)"),
        (
            torch.tensor([[10.0, 20.0, 5.0, 5.0], [0.5, 0.5, 0.1, 0.1]]),
            r"`target_boxes\[0\]` must hold finite .* all in \[0, 1\]; got values from 0\.1 to 20 \(pixel boxes must be divided",
        ),
        (torch.tensor([[0.5, 0.5, float("nan"), 0.1], [0.5, 0.5, 0.1, 0.1]]), r"`target_boxes\[0\]` must hold finite"),
        (torch.tensor([[0.5, 0.5, -0.1, 0.1], [0.5, 0.5, 0.1, 0.1]]), r"all in \[0, 1\]"),
        (
            torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]]),
            r"`target_boxes\[0\]` must be a floating-point tensor, got torch\.int64",
        ),
    ],
)
def test_bad_target_boxes_are_refused(boxes, message):
    model = training_model()
    pixel_values, masks, labels = batch()
    target_boxes = [boxes, torch.tensor([[0.5, 0.5, 0.2, 0.2]])]
    with pytest.raises(ValueError, match=message):
        model(pixel_values=pixel_values, mask_labels=masks, class_labels=labels, target_boxes=target_boxes)


def test_target_boxes_need_one_entry_per_image_and_the_other_targets():
    model = training_model()
    pixel_values, masks, labels = batch()
    with pytest.raises(ValueError, match=r"`target_boxes` must be a list with one entry per image \(2\), got 1"):
        model(pixel_values=pixel_values, mask_labels=masks, class_labels=labels, target_boxes=[torch.rand(2, 4)])
    with pytest.raises(ValueError, match=r"`target_boxes` needs `mask_labels` and `class_labels`"):
        model(pixel_values=pixel_values, target_boxes=[torch.rand(2, 4), torch.rand(1, 4)])
    with pytest.raises(ValueError, match=r"`mask_labels\[0\]` must be a tensor, got list"):
        model(pixel_values=pixel_values, mask_labels=[[0, 1], masks[1]], class_labels=labels)


def test_float64_inputs():
    model = training_model()
    pixel_values, masks, labels = batch()
    with pytest.raises(ValueError, match=r"`pixel_values` is float64.*pixel_values\.float\(\)"):
        model(pixel_values=pixel_values.double(), mask_labels=masks, class_labels=labels)
    # float64 targets are cast by the loss: same loss as float32
    boxes = [torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.5, 0.3, 0.2]]), torch.tensor([[0.5, 0.5, 0.2, 0.2]])]
    torch.manual_seed(0)
    expected = model(pixel_values=pixel_values, mask_labels=masks, class_labels=labels, target_boxes=boxes).loss
    torch.manual_seed(0)
    loss = model(
        pixel_values=pixel_values,
        mask_labels=[m.double() for m in masks],
        class_labels=labels,
        target_boxes=[b.double() for b in boxes],
    ).loss
    torch.testing.assert_close(loss, expected)


def test_nan_image_raises_before_batch_norm_statistics_change():
    model = training_model()
    before = batch_norm_statistics(model)
    pixel_values, masks, labels = batch()
    pixel_values[1, 0, 5, 7] = float("nan")
    with pytest.raises(ValueError, match=r"`pixel_values\[1\]` holds NaN or infinite values; nothing was run"):
        model(pixel_values=pixel_values, mask_labels=masks, class_labels=labels)
    # also in training mode without targets (a forward there updates the statistics too)
    pixel_values[1, 0, 5, 7] = float("inf")
    with pytest.raises(ValueError, match=r"`pixel_values\[1\]` holds NaN or infinite values"):
        model(pixel_values=pixel_values)
    after = batch_norm_statistics(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(torch.isfinite(v.float()).all() for v in after.values())


def test_non_finite_loss_raises_before_the_optimizer_step():
    model = training_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    weights = {k: v.clone() for k, v in model.named_parameters()}
    with torch.no_grad():  # a diverged class head: every class logit is infinite
        model.model.decoder.class_embed.bias.fill_(float("inf"))
    weights["model.decoder.class_embed.bias"] = model.model.decoder.class_embed.bias.clone()
    pixel_values, masks, labels = batch()
    with pytest.raises(
        ValueError, match=r"The loss is not finite \(loss_ce, .*\): the step was stopped before any gradient"
    ):
        model(pixel_values=pixel_values, mask_labels=masks, class_labels=labels).loss.backward()
    optimizer.step()  # no gradients: nothing changes
    assert all(torch.equal(weights[k], v) for k, v in model.named_parameters())


def test_valid_batch_still_trains():
    model = training_model()
    pixel_values, masks, labels = batch()
    boxes = [torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.5, 0.3, 0.2]]), torch.tensor([[0.5, 0.5, 0.2, 0.2]])]
    outputs = model(pixel_values=pixel_values, mask_labels=masks, class_labels=labels, target_boxes=boxes)
    assert torch.isfinite(outputs.loss)
    outputs.loss.backward()
    # images without targets are fine too
    empty = model(
        pixel_values=pixel_values,
        mask_labels=[torch.zeros(0, HEIGHT, WIDTH)] * 2,
        class_labels=[torch.zeros(0, dtype=torch.long)] * 2,
    )
    assert torch.isfinite(empty.loss)
