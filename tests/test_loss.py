# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Tests of `loss_maskdino`: pure losses, matcher, criterion, denoising queries, and the criterion against the
original's loss values recomputed from the stored reference outputs."""

import itertools
import json
import math
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import NO_REFERENCE_VARIANTS, REFERENCE_AVAILABLE, REFERENCE_DIR, record_matchings
from safetensors.torch import load_file
from torch import nn

from transformers_maskdino import MaskDinoConfig
from transformers_maskdino.loss_maskdino import (
    MaskDinoHungarianMatcher,
    MaskDinoLoss,
    dice_loss,
    pair_wise_dice_loss,
    pair_wise_sigmoid_cross_entropy_loss,
    pair_wise_sigmoid_focal_cost,
    sample_points_using_uncertainty,
    sigmoid_cross_entropy_loss,
    sigmoid_focal_loss,
    uncertain_point_grid,
)
from transformers_maskdino.modeling_maskdino import (
    build_denoising_queries,
    inverse_sigmoid,
    masks_to_boxes,
    target_boxes_from_masks,
)

LOG2 = math.log(2.0)
REFERENCE_VARIANTS = (
    sorted(p.name for p in REFERENCE_DIR.iterdir() if (p / "losses.json").is_file())
    if REFERENCE_AVAILABLE
    else NO_REFERENCE_VARIANTS
)


@pytest.fixture(autouse=True)
def single_thread():
    # tiny tensors: intra-op threads only add synchronisation, which gets very slow on a busy machine
    num_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(num_threads)


def make_config(**kwargs):
    defaults = {
        "num_labels": 4,
        "train_num_points": 64,
        "decoder_layers": 2,
        "num_denoising": 0,
        "init_queries_from_encoder": True,
        "mask_enhanced_box_init": "none",
    }
    defaults.update(kwargs)
    return MaskDinoConfig(**defaults)


def random_output_set(batch_size, num_queries, num_class_logits, height=8, width=10, requires_grad=False):
    output = {
        "class_queries_logits": torch.randn(batch_size, num_queries, num_class_logits),
        "masks_queries_logits": torch.randn(batch_size, num_queries, height, width) * 3,
        "pred_boxes": torch.rand(batch_size, num_queries, 4) * 0.5 + 0.25,
    }
    if requires_grad:
        output = {key: value.requires_grad_() for key, value in output.items()}
    return output


def random_targets(num_targets_per_image, num_labels, height=32, width=40):
    targets = []
    for num_targets in num_targets_per_image:
        masks = torch.zeros(num_targets, height, width)
        boxes = torch.zeros(num_targets, 4)
        for t in range(num_targets):
            y0, x0 = torch.randint(0, height // 2, (1,)).item(), torch.randint(0, width // 2, (1,)).item()
            y1, x1 = y0 + torch.randint(2, height // 2, (1,)).item(), x0 + torch.randint(2, width // 2, (1,)).item()
            masks[t, y0:y1, x0:x1] = 1
        boxes = target_boxes_from_masks(masks, height, width)
        targets.append({"labels": torch.randint(0, num_labels, (num_targets,)), "masks": masks, "boxes": boxes})
    return targets


# ---- Pure functions, hand-worked ----


def test_dice_loss_hand_worked():
    # sigmoid(0) = 0.5 on two points, target [1, 0]: 1 - (2 * 0.5 + 1) / (0.5 + 0.5 + 1 + 1) = 1/3
    logits = torch.zeros(1, 2)
    labels = torch.tensor([[1.0, 0.0]])
    torch.testing.assert_close(dice_loss(logits, labels, 1), torch.tensor(1 / 3))
    # two identical masks, normalised by 4
    torch.testing.assert_close(dice_loss(logits.repeat(2, 1), labels.repeat(2, 1), 4), torch.tensor(2 / 3 / 4))


def test_sigmoid_cross_entropy_loss_hand_worked():
    logits = torch.tensor([[0.0, 0.0], [2.0, -2.0]])
    labels = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # mean over points, sum over masks: log 2 + softplus(-2), divided by 2
    expected = (LOG2 + math.log1p(math.exp(-2.0))) / 2
    torch.testing.assert_close(sigmoid_cross_entropy_loss(logits, labels, 2), torch.tensor(expected))


def test_sigmoid_focal_loss_hand_worked():
    # one query, two classes, logits 0 (p = 0.5, 1 - p_t = 0.5): positive alpha * 0.25 * log 2, negative
    # (1 - alpha) * 0.25 * log 2; summed over all elements and divided by num_masks
    logits = torch.zeros(1, 1, 2)
    labels = torch.tensor([[[1.0, 0.0]]])
    expected = (0.25 * 0.25 * LOG2 + 0.75 * 0.25 * LOG2) / 2
    torch.testing.assert_close(sigmoid_focal_loss(logits, labels, 2, alpha=0.25, gamma=2.0), torch.tensor(expected))
    # transformers' focal loss averages over dim 1 (the queries); the criterion multiplies by their number, which is
    # the original's normalisation: loss.mean(1).sum() / num_masks * num_queries
    logits, labels = torch.randn(2, 5, 3), (torch.rand(2, 5, 3) > 0.7).float()
    probs = logits.sigmoid()
    cross_entropy = nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    p_t = probs * labels + (1 - probs) * (1 - labels)
    elementwise = (0.25 * labels + 0.75 * (1 - labels)) * cross_entropy * (1 - p_t) ** 2
    torch.testing.assert_close(sigmoid_focal_loss(logits, labels, 3.0) * 5, elementwise.mean(1).sum() / 3.0 * 5)


def test_pair_wise_mask_costs_match_the_per_pair_losses():
    torch.manual_seed(0)
    logits, labels = torch.randn(3, 20), (torch.rand(4, 20) > 0.5).float()
    dice = pair_wise_dice_loss(logits, labels)
    cross_entropy = pair_wise_sigmoid_cross_entropy_loss(logits, labels)
    assert dice.shape == cross_entropy.shape == (3, 4)
    for i, j in itertools.product(range(3), range(4)):
        torch.testing.assert_close(dice[i, j], dice_loss(logits[i : i + 1], labels[j : j + 1], 1))
        torch.testing.assert_close(
            cross_entropy[i, j], sigmoid_cross_entropy_loss(logits[i : i + 1], labels[j : j + 1], 1)
        )


def test_pair_wise_focal_cost_hand_worked():
    # p = 0.5 for class 1: positive 0.25 * 0.25 * -log(0.5), negative 0.75 * 0.25 * -log(0.5)
    logits = torch.tensor([[3.0, 0.0, -1.0]])
    cost = pair_wise_sigmoid_focal_cost(logits, torch.tensor([1, 1]), alpha=0.25, gamma=2.0)
    expected = 0.25 * 0.25 * LOG2 - 0.75 * 0.25 * LOG2
    torch.testing.assert_close(cost, torch.full((1, 2), expected), atol=1e-6, rtol=1e-6)
    # a confident correct class is cheaper than a confident wrong one
    cost = pair_wise_sigmoid_focal_cost(torch.tensor([[5.0, -5.0]]), torch.tensor([0, 1]), 0.25, 2.0)
    assert cost[0, 0] < 0 < cost[0, 1]


def test_masks_to_boxes_hand_worked():
    masks = torch.zeros(3, 6, 8, dtype=torch.uint8)
    masks[0, 1:4, 2:7] = 1  # rows 1..3, columns 2..6
    masks[1, 5, 0] = 1  # a single pixel in the corner
    boxes = masks_to_boxes(masks)
    torch.testing.assert_close(boxes, torch.tensor([[2.0, 1.0, 7.0, 4.0], [0.0, 5.0, 1.0, 6.0], [0.0, 0.0, 0.0, 0.0]]))
    assert masks_to_boxes(torch.zeros(0, 6, 8)).shape == (0, 4)
    # normalised by the unpadded size (here 4 x 7 inside the 6 x 8 padded mask)
    torch.testing.assert_close(
        target_boxes_from_masks(masks[:1], 4, 7), torch.tensor([[4.5 / 7, 2.5 / 4, 5 / 7, 3 / 4]])
    )


@pytest.mark.parametrize("variant", REFERENCE_VARIANTS)
def test_target_boxes_from_masks_match_the_reference_targets(variant):
    targets = load_file(REFERENCE_DIR / variant / "targets.safetensors")
    height, width = targets["targets.masks"].shape[-2:]
    torch.testing.assert_close(masks_to_boxes(targets["targets.masks"]), targets["targets.boxes_xyxy"])
    torch.testing.assert_close(
        target_boxes_from_masks(targets["criterion.masks_padded"], height, width), targets["criterion.boxes_cxcywh"]
    )


def test_uncertainty_sampling_keeps_the_most_uncertain_points_and_draws_in_order():
    # logits 0 (uncertain) on the left half, 20 (certain) on the right half
    logits = torch.full((2, 1, 4, 8), 20.0)
    logits[..., :4] = 0.0
    torch.manual_seed(0)
    grid = uncertain_point_grid(logits, num_points=40, oversample_ratio=3.0, importance_sample_ratio=0.75)
    assert grid.shape == (2, 1, 40, 2)
    # the 30 importance points lie where the logits are ~0 (left half, bilinear blur only near the centre column)
    assert (grid[:, 0, :30, 0] < 1 / 8).all()
    # draws: rand(2, 120, 2) candidates, then rand(2, 10, 2) uniform points
    torch.manual_seed(0)
    candidates = 2.0 * torch.rand(2, 120, 2) - 1.0
    uniform = torch.rand(2, 10, 2)
    torch.testing.assert_close(grid[:, 0, 30:], 2.0 * uniform - 1.0, rtol=0, atol=0)
    assert all(any(torch.equal(p, c) for c in candidates[i]) for i in range(2) for p in grid[i, 0, :30])

    # the grid is transformers' sample_points_using_uncertainty, converted as sample_point converts it, bit for bit
    random_logits = torch.randn(5, 1, 16, 24)
    torch.manual_seed(1)
    points = sample_points_using_uncertainty(random_logits, 100, 3.0, 0.75)
    torch.manual_seed(1)
    grid = uncertain_point_grid(random_logits, 100, 3.0, 0.75)
    torch.testing.assert_close(grid[:, 0], 2.0 * points - 1.0, rtol=0, atol=0)


# ---- Matcher ----


def test_matcher_hand_worked_masks_and_boxes():
    # target 0 = left half, target 1 = right half; query 2 predicts the left half, query 0 the right half
    height, width = 8, 8
    target_masks = torch.zeros(2, height, width)
    target_masks[0, :, :4] = 1
    target_masks[1, :, 4:] = 1
    targets = [
        {
            "labels": torch.tensor([1, 0]),
            "masks": target_masks,
            "boxes": torch.tensor([[0.25, 0.5, 0.5, 1.0], [0.75, 0.5, 0.5, 1.0]]),
        }
    ]
    mask_logits = torch.full((1, 3, height, width), -10.0)
    mask_logits[0, 2, :, :4] = 10
    mask_logits[0, 0, :, 4:] = 10
    class_logits = torch.zeros(1, 3, 2)
    boxes = torch.tensor([[[0.75, 0.5, 0.5, 1.0], [0.5, 0.5, 0.1, 0.1], [0.25, 0.5, 0.5, 1.0]]])
    for costs in (
        {"class_cost": 0, "mask_cost": 1, "dice_cost": 0, "box_cost": 0, "giou_cost": 0},
        {"class_cost": 0, "mask_cost": 0, "dice_cost": 1, "box_cost": 0, "giou_cost": 0},
        {"class_cost": 0, "mask_cost": 0, "dice_cost": 0, "box_cost": 1, "giou_cost": 0},
        {"class_cost": 0, "mask_cost": 0, "dice_cost": 0, "box_cost": 0, "giou_cost": 1},
    ):
        matcher = MaskDinoHungarianMatcher(num_points=256, **costs)
        [(queries, target_indices)] = matcher(class_logits, mask_logits, boxes, targets)
        assert queries.tolist() == [0, 2] and target_indices.tolist() == [1, 0], costs

    # class cost alone: query 1 is confident about class 1 (target 0), query 2 about class 0 (target 1)
    class_logits = torch.tensor([[[-5.0, -5.0], [-5.0, 5.0], [5.0, -5.0]]])
    matcher = MaskDinoHungarianMatcher(class_cost=1, mask_cost=0, dice_cost=0, box_cost=0, giou_cost=0, num_points=4)
    [(queries, target_indices)] = matcher(class_logits, mask_logits, boxes, targets)
    assert queries.tolist() == [1, 2] and target_indices.tolist() == [0, 1]


def test_matcher_minimises_the_total_cost_and_handles_empty_images():
    torch.manual_seed(0)
    matcher = MaskDinoHungarianMatcher(num_points=32)
    outputs = random_output_set(3, 5, 4)
    targets = random_targets([3, 0, 5], 4)
    torch.manual_seed(1)
    indices = matcher(outputs["class_queries_logits"], outputs["masks_queries_logits"], outputs["pred_boxes"], targets)
    after_matching = torch.rand(1)
    # draws: exactly rand(1, 32, 2) per image, also for the image without targets
    torch.manual_seed(1)
    for _ in range(3):
        torch.rand(1, 32, 2)
    torch.testing.assert_close(after_matching, torch.rand(1))

    assert [len(q) for q, _ in indices] == [3, 0, 5]
    torch.manual_seed(1)  # same points again, image by image
    for image, ((queries, target_indices), target) in enumerate(zip(indices, targets)):
        cost = matcher._cost_matrix(
            outputs["class_queries_logits"][image],
            outputs["masks_queries_logits"][image],
            outputs["pred_boxes"][image],
            target,
        )
        assert cost.shape == (5, len(target["labels"])) and cost.dtype == torch.float32
        assert queries.dtype == target_indices.dtype == torch.int64
        assert queries.tolist() == sorted(queries.tolist())
        best = min(
            sum(cost[q, t].item() for t, q in enumerate(assignment))
            for assignment in itertools.permutations(range(5), len(target["labels"]))
        )
        assert sum(cost[q, t].item() for q, t in zip(queries, target_indices)) == pytest.approx(best, rel=1e-6)


def test_matcher_samples_channels_last_masks_with_the_numbers_of_nchw_sampling(monkeypatch):
    import transformers_maskdino.loss_maskdino as loss_module

    torch.manual_seed(0)
    matcher = MaskDinoHungarianMatcher(num_points=500)
    outputs = random_output_set(1, 400, 4, height=32, width=40)
    target = random_targets([6], 4)[0]
    arguments = [outputs[key][0] for key in ("class_queries_logits", "masks_queries_logits", "pred_boxes")]
    torch.manual_seed(1)
    cost = matcher._cost_matrix(*arguments, target)
    layouts, real_sample_point = [], loss_module.sample_point

    def nchw_sample_point(masks, *args, **kwargs):
        layouts.append(masks.is_contiguous(memory_format=torch.channels_last) and not masks.is_contiguous())
        return real_sample_point(masks.contiguous(), *args, **kwargs)

    monkeypatch.setattr(loss_module, "sample_point", nchw_sample_point)
    torch.manual_seed(1)
    torch.testing.assert_close(cost, matcher._cost_matrix(*arguments, target), rtol=0, atol=0)
    assert layouts == [False, True]  # the targets as given, the 400 queries' masks channels-last


# ---- Criterion ----


def test_loss_labels_focal_and_semantic_cross_entropy_hand_worked():
    targets = [{"labels": torch.tensor([1])}]
    indices = [(torch.tensor([0]), torch.tensor([0]))]
    focal = MaskDinoLoss(make_config(num_labels=2))
    loss = focal.loss_labels(torch.zeros(1, 2, 2), targets, indices, torch.tensor(1.0))["loss_ce"]
    # one positive (query 0, class 1) and three negatives, all at p = 0.5
    torch.testing.assert_close(loss, torch.tensor(0.25 * 0.25 * LOG2 + 3 * 0.75 * 0.25 * LOG2))

    semantic = MaskDinoLoss(make_config(num_labels=2, use_semantic_cross_entropy=True, no_object_weight=0.1))
    logits = torch.tensor([[[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]]])  # 2 queries, 2 classes + "no object"
    loss = semantic.loss_labels(logits, targets, indices, torch.tensor(5.0))["loss_ce"]
    nll_query0 = -torch.log_softmax(logits[0, 0], -1)[1]
    nll_query1 = -torch.log_softmax(logits[0, 1], -1)[2]  # unmatched: "no object", weight 0.1
    torch.testing.assert_close(loss, (nll_query0 + 0.1 * nll_query1) / 1.1)  # weighted mean, not / num_masks


def test_loss_boxes_hand_worked_and_stuff_exclusion():
    pred_boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.2, 0.2]]])
    targets = [{"labels": torch.tensor([0, 3]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.3, 0.3, 0.2, 0.2]])}]
    indices = [(torch.tensor([0, 1]), torch.tensor([0, 1]))]
    # pair 0: L1 = 0.4; IoU = 0.04 / 0.16 and the enclosing box is the target: GIoU = 0.25. Pair 1 is perfect.
    loss = MaskDinoLoss(make_config()).loss_boxes(pred_boxes, targets, indices, torch.tensor(2.0))
    torch.testing.assert_close(loss["loss_bbox"], torch.tensor(0.4 / 2))
    torch.testing.assert_close(loss["loss_giou"], torch.tensor(0.75 / 2))

    # label 0 is stuff: its box is not supervised unless supervise_stuff_boxes; the normaliser is unchanged
    loss = MaskDinoLoss(make_config(stuff_label_ids=[0])).loss_boxes(pred_boxes, targets, indices, torch.tensor(2.0))
    torch.testing.assert_close(loss["loss_bbox"], torch.tensor(0.0))
    torch.testing.assert_close(loss["loss_giou"], torch.tensor(0.0))
    criterion = MaskDinoLoss(make_config(stuff_label_ids=[0], supervise_stuff_boxes=True))
    loss = criterion.loss_boxes(pred_boxes, targets, indices, torch.tensor(2.0))
    torch.testing.assert_close(loss["loss_bbox"], torch.tensor(0.4 / 2))


def test_loss_masks_hand_worked():
    # Logit 0 everywhere and empty targets stay 0 and empty at any sampled point, the zero padding of grid_sample
    # included: BCE log 2 per point; dice per mask 1 - 1 / (P / 2 + 1). Three pairs, normalised by 3.
    num_points = 16
    criterion = MaskDinoLoss(make_config(train_num_points=num_points))
    mask_logits = torch.zeros(2, 3, 4, 5, requires_grad=True)
    targets = [{"masks": torch.zeros(1, 16, 20)}, {"masks": torch.zeros(2, 16, 20)}]
    indices = [(torch.tensor([2]), torch.tensor([0])), (torch.tensor([0, 1]), torch.tensor([1, 0]))]
    loss = criterion.loss_masks(mask_logits, targets, indices, torch.tensor(3.0))
    torch.testing.assert_close(loss["loss_mask"], torch.tensor(LOG2))
    torch.testing.assert_close(loss["loss_dice"], torch.tensor(1 - 1 / (num_points / 2 + 1)))
    # only the matched queries get a gradient
    (loss["loss_mask"] + loss["loss_dice"]).backward()
    has_gradient = mask_logits.grad.abs().flatten(2).sum(-1) > 0
    assert has_gradient.tolist() == [[False, False, True], [True, True, False]]


def test_forward_keys_weights_and_matching_record():
    torch.manual_seed(0)
    config = make_config(num_labels=3, decoder_layers=2, class_weight=2.0, giou_weight=3.0)
    criterion = MaskDinoLoss(config)
    matchings = record_matchings(criterion)
    outputs = random_output_set(2, 6, 3)
    outputs["auxiliary_outputs"] = [random_output_set(2, 6, 3) for _ in range(2)]
    outputs["encoder_proposal_outputs"] = random_output_set(2, 6, 3)
    targets = random_targets([2, 1], 3)
    torch.manual_seed(3)
    losses = criterion(outputs, targets)
    names = ["loss_ce", "loss_mask", "loss_dice", "loss_bbox", "loss_giou"]
    expected_keys = {f"{n}{s}" for n in names for s in ("", "_0", "_1", "_interm")}
    assert set(losses) == expected_keys
    assert len(matchings) == 4  # final, aux.0, aux.1, encoder proposals

    # weights applied once: recompute the final giou and ce from the recorded matching
    indices = matchings[0]
    num_masks = torch.tensor(3.0)
    unweighted = criterion.loss_boxes(outputs["pred_boxes"], targets, indices, num_masks)
    torch.testing.assert_close(losses["loss_giou"], 3.0 * unweighted["loss_giou"])
    torch.testing.assert_close(losses["loss_bbox"], 5.0 * unweighted["loss_bbox"])
    unweighted = criterion.loss_labels(outputs["class_queries_logits"], targets, indices, num_masks)
    torch.testing.assert_close(losses["loss_ce"], 2.0 * unweighted["loss_ce"])
    indices = matchings[3]
    unweighted = criterion.loss_labels(
        outputs["encoder_proposal_outputs"]["class_queries_logits"], targets, indices, num_masks
    )
    torch.testing.assert_close(losses["loss_ce_interm"], 2.0 * unweighted["loss_ce"])

    # no auxiliary loss, no box loss, no encoder proposals
    criterion = MaskDinoLoss(make_config(num_labels=3, use_auxiliary_loss=False, use_box_loss=False))
    outputs["encoder_proposal_outputs"] = None
    assert set(criterion(outputs, targets)) == {"loss_ce", "loss_mask", "loss_dice"}


def test_forward_random_draw_count():
    # per output set: rand(1, P, 2) per image in the matcher, then rand(N, 3P, 2) and rand(N, P - int(0.75 P), 2)
    torch.manual_seed(0)
    points = 20
    criterion = MaskDinoLoss(make_config(num_labels=3, train_num_points=points))
    outputs = random_output_set(2, 6, 3)
    outputs["auxiliary_outputs"] = [random_output_set(2, 6, 3) for _ in range(2)]
    outputs["encoder_proposal_outputs"] = random_output_set(2, 6, 3)
    targets = random_targets([2, 1], 3)
    torch.manual_seed(5)
    criterion(outputs, targets)
    after = torch.rand(1)
    torch.manual_seed(5)
    for _ in range(4):
        torch.rand(1, points, 2), torch.rand(1, points, 2), torch.rand(3, 3 * points, 2), torch.rand(3, 5, 2)
    torch.testing.assert_close(after, torch.rand(1))


def test_forward_with_uneven_and_empty_targets_backpropagates():
    torch.manual_seed(0)
    config = make_config(num_labels=3, num_denoising=6)
    criterion = MaskDinoLoss(config)
    outputs = random_output_set(3, 5, 3, requires_grad=True)
    outputs["auxiliary_outputs"] = [random_output_set(3, 5, 3, requires_grad=True) for _ in range(2)]
    outputs["encoder_proposal_outputs"] = random_output_set(3, 5, 3, requires_grad=True)
    targets = random_targets([0, 3, 1], 3)
    losses = criterion(outputs, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert outputs["masks_queries_logits"].grad[1].abs().sum() > 0
    # the image without targets still gets a classification gradient ("no object" everywhere)
    assert outputs["class_queries_logits"].grad[0].abs().sum() > 0
    # no denoising group was built: the `_dn` keys are zeros
    dn_keys = [k for k in losses if "_dn" in k]
    assert dn_keys and all(losses[k].item() == 0 for k in dn_keys)

    # a batch without any target: only the classification loss is non-zero, and it is finite (num_masks >= 1)
    for output in [outputs, *outputs["auxiliary_outputs"], outputs["encoder_proposal_outputs"]]:
        for value in output.values():
            if isinstance(value, torch.Tensor):
                value.grad = None
    matchings = record_matchings(criterion)
    losses = criterion(outputs, random_targets([0, 0, 0], 3))
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_ce"] > 0 and losses["loss_mask"] == 0 and losses["loss_bbox"] == 0
    sum(losses.values()).backward()
    assert all(queries.tolist() == [] for queries, _ in matchings[0])


def test_half_precision_outputs_are_matched_and_trained_in_float32():
    torch.manual_seed(0)
    criterion = MaskDinoLoss(make_config(num_labels=3))
    matchings = record_matchings(criterion)
    outputs = random_output_set(2, 6, 3)
    outputs["auxiliary_outputs"] = []
    outputs["encoder_proposal_outputs"] = None
    half = {key: value.bfloat16() for key, value in outputs.items() if isinstance(value, torch.Tensor)}
    rounded = {key: value.float() for key, value in half.items()}
    targets = random_targets([2, 3], 3)
    torch.manual_seed(1)
    half_losses = criterion({**outputs, **half}, targets)
    torch.manual_seed(1)
    float_losses = criterion({**outputs, **rounded}, targets)
    half_matching, float_matching = matchings
    for (q1, t1), (q2, t2) in zip(half_matching, float_matching, strict=True):
        assert torch.equal(q1, q2) and torch.equal(t1, t2)
    for key, value in half_losses.items():
        assert value.dtype == torch.float32, key
        torch.testing.assert_close(value, float_losses[key], rtol=1e-2, atol=1e-2)


def test_get_num_masks_clamps():
    criterion = MaskDinoLoss(make_config())
    assert criterion.get_num_masks([{"labels": torch.zeros(0)}], torch.device("cpu")).item() == 1.0
    assert criterion.get_num_masks([{"labels": torch.zeros(2)}, {"labels": torch.zeros(3)}], "cpu").item() == 5.0


def _num_masks_worker(rank, world_size, port, results):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        criterion = MaskDinoLoss(make_config())
        targets = [{"labels": torch.zeros(3 if rank == 0 else 1)}]
        results[rank] = criterion.get_num_masks(targets, torch.device("cpu")).item()
    finally:
        dist.destroy_process_group()


def test_get_num_masks_averages_across_processes():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        results = manager.dict()
        # fork: the children inherit the imported modules (spawn would re-import transformers in each)
        mp.start_processes(_num_masks_worker, args=(2, port, results), nprocs=2, join=True, start_method="fork")
        assert dict(results) == {0: 2.0, 1: 2.0}


# ---- Denoising queries ----


def test_denoising_layout_hand_worked():
    # 2 images with 1 and 3 targets, budget 7: 7 // 3 = 2 groups of 3 slots, 6 denoising queries
    embedding = nn.Embedding(5, 4)
    targets = [
        {"labels": torch.tensor([4]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])},
        {
            "labels": torch.tensor([1, 0, 2]),
            "boxes": torch.tensor([[0.1, 0.2, 0.1, 0.1], [0.3, 0.4, 0.2, 0.2], [0.6, 0.7, 0.3, 0.3]]),
        },
    ]
    content, boxes, attention_mask, meta = build_denoising_queries(
        targets, num_queries=2, num_labels=5, num_denoising=7, label_noise_ratio=0.0, box_noise_scale=0.0,
        label_embedding=embedding, hidden_dim=4,
    )  # fmt: skip
    assert meta["num_denoising_groups"] == 2
    assert meta["max_targets_per_image"] == 3
    assert meta["num_denoising_queries"] == 6
    assert content.shape == (2, 6, 4) and boxes.shape == (2, 6, 4) and attention_mask.shape == (8, 8)

    # queries g * 3 + t reconstruct target t; image 0's slots 1, 2 (and 4, 5) are padding
    assert meta["noised_labels"].tolist() == [[4, -1, -1, 4, -1, -1], [1, 0, 2, 1, 0, 2]]
    torch.testing.assert_close(content[0, [0, 3]], embedding.weight[[4, 4]])
    torch.testing.assert_close(content[0, [1, 2, 4, 5]], torch.zeros(4, 4))
    torch.testing.assert_close(content[1], embedding.weight[[1, 0, 2, 1, 0, 2]])
    torch.testing.assert_close(boxes[0, [0, 3]], inverse_sigmoid(targets[0]["boxes"]).repeat(2, 1))
    torch.testing.assert_close(boxes[0, [1, 2, 4, 5]], torch.zeros(4, 4))
    torch.testing.assert_close(boxes[1], inverse_sigmoid(targets[1]["boxes"]).repeat(2, 1))

    [(queries0, targets0), (queries1, targets1)] = meta["matching_indices"]
    assert queries0.tolist() == [0, 3] and targets0.tolist() == [0, 0]
    assert queries1.tolist() == [0, 1, 2, 3, 4, 5] and targets1.tolist() == [0, 1, 2, 0, 1, 2]

    blocked = [
        # dn group 0 | dn group 1 | matching
        [0, 0, 0, 1, 1, 1, 0, 0],
        [0, 0, 0, 1, 1, 1, 0, 0],
        [0, 0, 0, 1, 1, 1, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 1, 0, 0],
    ]
    assert attention_mask.dtype == torch.bool
    assert attention_mask.int().tolist() == blocked


def test_denoising_returns_none_without_groups():
    embedding = nn.Embedding(3, 8)
    two_targets = {"labels": torch.tensor([0, 1]), "boxes": torch.rand(2, 4)}
    no_target = {"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}
    for targets, budget in (([two_targets], 0), ([no_target, no_target], 10), ([two_targets, no_target], 1)):
        state = torch.get_rng_state()
        assert build_denoising_queries(targets, 5, 3, budget, 0.5, 1.0, embedding, 8) == (None, None, None, None)
        assert torch.equal(state, torch.get_rng_state())  # nothing drawn
    # an image without targets next to one with targets: only padding slots for it
    _, _, _, meta = build_denoising_queries([no_target, two_targets], 5, 3, 10, 0.5, 1.0, embedding, 8)
    assert meta["num_denoising_groups"] == 5
    assert (meta["noised_labels"][0] == -1).all()
    assert meta["matching_indices"][0][0].numel() == 0


def test_denoising_draws_in_the_original_order():
    # flat order group -> image -> target: rand(G * T) for the flips, randint for the new labels, rand(G * T, 4)
    embedding = nn.Embedding(6, 4)
    targets = [
        {"labels": torch.tensor([1, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.5, 0.3, 0.4]])},
        {"labels": torch.tensor([5]), "boxes": torch.tensor([[0.5, 0.5, 0.5, 0.5]])},
    ]
    torch.manual_seed(0)
    _, _, _, meta = build_denoising_queries(targets, 3, 6, 6, 0.8, 0.4, embedding, 4)
    torch.manual_seed(0)
    labels = torch.tensor([1, 2, 5]).repeat(3)
    boxes = torch.cat([t["boxes"] for t in targets]).repeat(3, 1)
    flipped = torch.nonzero(torch.rand(9) < 0.4).view(-1)
    labels[flipped] = torch.randint(0, 6, flipped.shape)
    scale = torch.cat([boxes[:, 2:] / 2, boxes[:, 2:]], 1)
    boxes = (boxes + (torch.rand(9, 4) * 2 - 1) * scale * 0.4).clamp(0, 1)
    # 3 groups of 2 slots: (image, query) of each flat entry
    slots = [(0, 0), (0, 1), (1, 0), (0, 2), (0, 3), (1, 2), (0, 4), (0, 5), (1, 4)]
    for n, (image, query) in enumerate(slots):
        assert meta["noised_labels"][image, query] == labels[n]
        torch.testing.assert_close(meta["noised_boxes"][image, query], boxes[n])


def test_denoising_noise_statistics():
    torch.manual_seed(0)
    num_labels, num_targets = 10, 50
    centers = torch.rand(2 * num_targets, 2) * 0.4 + 0.3
    sizes = torch.rand(2 * num_targets, 2) * 0.2 + 0.05
    gt_boxes = torch.cat([centers, sizes], 1)
    gt_labels = torch.randint(0, num_labels, (2 * num_targets,))
    targets = [
        {"labels": gt_labels[:num_targets], "boxes": gt_boxes[:num_targets]},
        {"labels": gt_labels[num_targets:], "boxes": gt_boxes[num_targets:]},
    ]
    ratio, scale = 0.5, 0.4
    _, unsigmoided, _, meta = build_denoising_queries(
        targets, 10, num_labels, 20000, ratio, scale, nn.Embedding(num_labels, 4), 4
    )
    groups = meta["num_denoising_groups"]
    assert groups == 400
    labels = meta["noised_labels"].view(2, groups, num_targets).transpose(0, 1).reshape(groups, -1)
    boxes = meta["noised_boxes"].view(2, groups, num_targets, 4).transpose(0, 1).reshape(groups, -1, 4)
    torch.testing.assert_close(unsigmoided.sigmoid(), meta["noised_boxes"], atol=1e-5, rtol=1e-5)

    # a label is redrawn with probability ratio / 2, uniformly, so it changes with probability ratio / 2 * (1 - 1/C)
    changed = (labels != gt_labels).float().mean().item()
    assert changed == pytest.approx(ratio / 2 * (1 - 1 / num_labels), abs=0.01)
    new_labels = labels[labels != gt_labels]
    counts = torch.bincount(new_labels, minlength=num_labels).float()
    assert (counts / counts.mean() - 1).abs().max() < 0.15

    # centre shift uniform in +-size/2 * scale, size change uniform in +-size * scale (no clamping here)
    bounds = torch.cat([gt_boxes[:, 2:] / 2, gt_boxes[:, 2:]], 1) * scale
    relative = (boxes - gt_boxes) / bounds  # groups, targets, 4: uniform in [-1, 1]
    assert relative.abs().max() <= 1 + 1e-4
    assert relative.abs().max() > 0.99
    assert relative.mean().item() == pytest.approx(0.0, abs=0.01)
    assert relative.pow(2).mean().item() == pytest.approx(1 / 3, abs=0.01)

    # boxes are clamped to [0, 1]
    edge = [{"labels": torch.tensor([0]), "boxes": torch.tensor([[0.02, 0.98, 0.9, 0.9]])}]
    _, _, _, meta = build_denoising_queries(edge, 1, 2, 500, 0.0, 1.0, nn.Embedding(2, 4), 4)
    assert meta["noised_boxes"].min() >= 0 and meta["noised_boxes"].max() <= 1
    assert (meta["noised_boxes"] == 0).any() and (meta["noised_boxes"] == 1).any()


def test_denoising_losses_keys_normalisation_and_fixed_assignment():
    torch.manual_seed(0)
    num_queries, num_labels = 4, 3
    targets = random_targets([1, 2], num_labels)
    embedding = nn.Embedding(num_labels, 8)
    _, _, _, meta = build_denoising_queries(targets, num_queries, num_labels, 5, 0.0, 0.0, embedding, 8)
    groups, num_dn = meta["num_denoising_groups"], meta["num_denoising_queries"]
    assert (groups, num_dn) == (2, 4)

    def with_denoising(two_stage):
        outputs = random_output_set(2, num_queries, num_labels)
        outputs["auxiliary_outputs"] = [random_output_set(2, num_queries, num_labels) for _ in range(2)]
        outputs["encoder_proposal_outputs"] = random_output_set(2, num_queries, num_labels) if two_stage else None
        outputs["denoising_outputs"] = random_output_set(2, num_dn, num_labels)
        outputs["denoising_outputs"]["auxiliary_outputs"] = [
            random_output_set(2, num_dn, num_labels) for _ in range(2)
        ]
        return outputs

    names = ["loss_ce", "loss_mask", "loss_dice", "loss_bbox", "loss_giou"]
    criterion = MaskDinoLoss(make_config(num_labels=num_labels, num_denoising=5))
    outputs = with_denoising(two_stage=True)
    losses = criterion(outputs, targets, meta)
    assert {k for k in losses if "_dn" in k} == {f"{n}_dn{s}" for n in names for s in ("", "_0", "_1")}
    # fixed assignment and num_masks * groups normalisation
    dn = outputs["denoising_outputs"]
    assignment = meta["matching_indices"]
    pred = torch.cat([dn["pred_boxes"][i, q] for i, (q, _) in enumerate(assignment)])
    gt = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, assignment)])
    torch.testing.assert_close(losses["loss_bbox_dn"], 5.0 * (pred - gt).abs().sum() / (3 * groups))
    # the denoising queries are never Hungarian-matched: final, aux.0, aux.1 and the encoder proposals only
    matchings = record_matchings(criterion)
    criterion(outputs, targets, meta)
    assert len(matchings) == 4

    # without encoder proposals the initial prediction's denoising part is not supervised (no `_dn_0`)
    losses = criterion(with_denoising(two_stage=False), targets, meta)
    assert {k for k in losses if "_dn" in k} == {f"{n}_dn{s}" for n in names for s in ("", "_1")}
    # box-only denoising (the original's DN "standard")
    criterion = MaskDinoLoss(make_config(num_labels=num_labels, num_denoising=5, denoise_masks=False))
    losses = criterion(with_denoising(two_stage=True), targets, meta)
    assert {k for k in losses if "_dn" in k} == {
        f"{n}_dn{s}" for n in ("loss_ce", "loss_bbox", "loss_giou") for s in ("", "_0", "_1")
    }


class TinyDenoisingModel(nn.Module):
    """Class, box and mask heads applied to denoising queries only (content + anchors)."""

    def __init__(self, num_labels, hidden_dim=32, mask_dim=16, height=8, width=8):
        super().__init__()
        self.label_embedding = nn.Embedding(num_labels, hidden_dim)
        self.anchor_projection = nn.Linear(4, hidden_dim)
        self.body = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim))
        self.class_head = nn.Linear(hidden_dim, num_labels)
        self.box_head = nn.Linear(hidden_dim, 4)
        self.mask_head = nn.Linear(hidden_dim, mask_dim)
        self.pixel_features = nn.Parameter(torch.randn(mask_dim, height, width))

    def forward(self, content, boxes_unsigmoided):
        hidden = self.body(content + self.anchor_projection(boxes_unsigmoided.sigmoid()))
        return {
            "class_queries_logits": self.class_head(hidden),
            "pred_boxes": (self.box_head(hidden) + boxes_unsigmoided).sigmoid(),
            "masks_queries_logits": torch.einsum("bqc,chw->bqhw", self.mask_head(hidden), self.pixel_features),
        }


def test_denoising_only_overfit_decreases_the_loss():
    torch.manual_seed(0)
    num_labels = 3
    config = make_config(num_labels=num_labels, num_denoising=8, train_num_points=32, use_auxiliary_loss=False)
    criterion = MaskDinoLoss(config)
    model = TinyDenoisingModel(num_labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    targets = random_targets([2, 1], num_labels)
    no_matching = {
        "class_queries_logits": torch.zeros(2, 1, num_labels),
        "masks_queries_logits": torch.zeros(2, 1, 8, 8),
        "pred_boxes": torch.full((2, 1, 4), 0.5),
        "encoder_proposal_outputs": None,
    }
    history = []
    for _ in range(150):
        content, boxes, _, meta = build_denoising_queries(
            targets, 1, num_labels, config.num_denoising, 0.4, 0.4, model.label_embedding, 32
        )
        losses = criterion({**no_matching, "denoising_outputs": model(content, boxes)}, targets, meta)
        loss = sum(value for key, value in losses.items() if "_dn" in key)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    first, last = sum(history[:10]) / 10, sum(history[-10:]) / 10
    # the class, mask and dice parts fall steadily; the boxes only slowly, as they must be denoised from fresh noise
    assert last < first / 2, (first, last)


# ---- The criterion against the original's losses, from the reference outputs (no model needed) ----


def _reference_config(variant, **kwargs):
    import yaml

    with open(REFERENCE_DIR / variant / "config_loss.yaml") as f:
        model_config = yaml.safe_load(f)["MODEL"]
    maskdino = model_config["MaskDINO"]
    with open(REFERENCE_DIR / variant / "metadata.json") as f:
        metadata = json.load(f)
    return MaskDinoConfig(
        num_labels=model_config["SEM_SEG_HEAD"]["NUM_CLASSES"],
        decoder_layers=maskdino["DEC_LAYERS"],
        train_num_points=maskdino["TRAIN_NUM_POINTS"],
        num_denoising=0,
        use_semantic_cross_entropy=bool(
            maskdino["TEST"]["SEMANTIC_ON"] and maskdino["SEMANTIC_CE_LOSS"] and not maskdino["TEST"]["PANOPTIC_ON"]
        ),
        stuff_label_ids=metadata.get("stuff_contiguous_ids", []),
        # the original's PANO_BOX_LOSS=True leaves stuff boxes out; False (the reference) supervises every box
        supervise_stuff_boxes=not maskdino["PANO_BOX_LOSS"],
        init_queries_from_encoder=maskdino["TWO_STAGE"],
        mask_enhanced_box_init="none",
        **kwargs,
    )


@pytest.mark.parametrize("variant", REFERENCE_VARIANTS)
def test_criterion_reproduces_reference_losses_from_stored_outputs(variant):
    """The stored eval outputs equal the training outputs (dropout 0, no denoising), except that the masks of the
    auxiliary sets are not stored: aux.0's are the encoder proposals' (same queries) with query selection, the
    others are replaced by zeros so that the random draws stay aligned. Every loss computable from the stored
    tensors must match the original's (bitwise up to float rounding: the draws are reproduced)."""
    outputs_file = load_file(REFERENCE_DIR / variant / "outputs.safetensors")
    target_file = load_file(REFERENCE_DIR / variant / "targets.safetensors")
    with open(REFERENCE_DIR / variant / "losses.json") as f:
        reference = json.load(f)["weighted_losses"]["num_points_200000_seed0"]
    config = _reference_config(variant)
    assert config.train_num_points == 200000
    two_stage = config.init_queries_from_encoder

    def output_set(prefix, masks=None):
        return {
            "class_queries_logits": outputs_file[prefix + "pred_logits"],
            "masks_queries_logits": outputs_file.get(prefix + "pred_masks", masks),
            "pred_boxes": outputs_file[prefix + "pred_boxes"],
        }

    placeholder_masks = torch.zeros_like(outputs_file["decoder.pred_masks"])
    initial_masks = outputs_file["decoder.interm.pred_masks"] if two_stage else placeholder_masks
    outputs = output_set("decoder.")
    outputs["auxiliary_outputs"] = [output_set("decoder.aux.0.", initial_masks)] + [
        output_set(f"decoder.aux.{i}.", placeholder_masks) for i in range(1, config.decoder_layers)
    ]
    outputs["encoder_proposal_outputs"] = output_set("decoder.interm.") if two_stage else None
    targets = [
        {
            "labels": target_file["criterion.labels"],
            "masks": target_file["criterion.masks_padded"].float(),
            "boxes": target_file["criterion.boxes_cxcywh"],
        }
    ]
    criterion = MaskDinoLoss(config)
    matchings = record_matchings(criterion)
    torch.manual_seed(reference["torch_seed"])
    losses = criterion(outputs, targets)
    assert set(losses) == set(reference["losses"])
    # matcher calls: final, then each auxiliary set, then the encoder proposals
    names = ["final"] + [f"aux.{i}" for i in range(config.decoder_layers)] + (["interm"] if two_stage else [])
    matching = dict(zip(names, matchings, strict=True))

    exact_sets = ["", "_interm", "_0"] if two_stage else [""]
    for suffix in exact_sets:
        for name in ("loss_ce", "loss_mask", "loss_dice", "loss_bbox", "loss_giou"):
            key = name + suffix
            assert losses[key].item() == pytest.approx(reference["losses"][key], rel=1e-5), key
    for name in ["final", "interm"] + (["aux.0"] if two_stage else []):
        if name in reference["matching_src_tgt"]:
            got = [[int(i) for i in index] for index in matching[name][0]]
            assert got == reference["matching_src_tgt"][name], name

    # the other sets: class and box losses from the reference matching (they don't depend on the points)
    num_masks = criterion.get_num_masks(targets, torch.device("cpu"))
    first_inexact = 1 if two_stage else 0
    for i in range(first_inexact, config.decoder_layers):
        queries, target_indices = reference["matching_src_tgt"][f"aux.{i}"]
        indices = [(torch.tensor(queries), torch.tensor(target_indices))]
        aux = outputs["auxiliary_outputs"][i]
        unweighted = criterion.loss_labels(aux["class_queries_logits"], targets, indices, num_masks)
        unweighted.update(criterion.loss_boxes(aux["pred_boxes"], targets, indices, num_masks))
        for name, value in unweighted.items():
            expected = reference["losses"][f"{name}_{i}"] / criterion.weight_dict[name]
            assert value.item() == pytest.approx(expected, rel=1e-5), f"{name}_{i}"


def test_matched_target_points_equal_sampling_each_pairs_own_mask():
    # Each target is sampled once for all its pairs (denoising repeats every target); the values must be those of
    # grid_sample on a per-pair copy of the target mask, zero-padded at the bottom/right to the batch's largest size.
    generator = torch.Generator().manual_seed(0)
    same = [{"masks": torch.rand(3, 8, 10, generator=generator)}, {"masks": torch.rand(4, 8, 10, generator=generator)}]
    mixed = [same[0], {"masks": torch.rand(4, 6, 12, generator=generator)}]
    indices = [
        (torch.tensor([5, 1, 9]), torch.tensor([2, 0, 2])),
        (torch.tensor([0, 3, 7, 8]), torch.tensor([3, 3, 1, 3])),
    ]
    grid = torch.rand(7, 1, 50, 2, generator=generator) * 2.2 - 1.1  # some points outside: zero padding
    for targets in (same, mixed):
        height = max(target["masks"].shape[-2] for target in targets)
        width = max(target["masks"].shape[-1] for target in targets)
        pair_masks = torch.cat(
            [
                nn.functional.pad(t["masks"], (0, width - t["masks"].shape[-1], 0, height - t["masks"].shape[-2]))[i]
                for t, (_, i) in zip(targets, indices)
            ]
        )
        expected = nn.functional.grid_sample(pair_masks[:, None], grid, align_corners=False)[:, 0, 0]
        points = MaskDinoLoss._matched_target_points(targets, indices, grid)
        torch.testing.assert_close(points, expected, rtol=0, atol=0)


def test_mask_losses_from_the_logits_factors_equal_those_from_the_logits():
    # The model passes each set's mask embeddings and the mask features, so that the backward pass works on the
    # matched rows only: same losses and gradients as from the dense mask logits.
    criterion = MaskDinoLoss(MaskDinoConfig(train_num_points=200))
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(2, 12, 8, generator=generator, requires_grad=True)
    features = torch.randn(2, 8, 16, 20, generator=generator).to(memory_format=torch.channels_last).requires_grad_()
    targets = [{"masks": (torch.rand(n, 64, 80, generator=generator) > 0.5).float()} for n in (3, 2)]
    indices = [(torch.tensor([1, 4, 7, 9]), torch.tensor([2, 0, 2, 1])), (torch.tensor([0, 11]), torch.tensor([1, 0]))]
    results = []
    for factors in (None, (embeddings, features)):
        logits = torch.einsum("bqc,bchw->bqhw", embeddings, features)
        torch.manual_seed(0)
        losses = criterion.loss_masks(logits, targets, indices, torch.tensor(6.0), *(factors or ()))
        gradients = torch.autograd.grad(losses["loss_mask"] + losses["loss_dice"], (embeddings, features))
        results.append((losses["loss_mask"], losses["loss_dice"], *gradients))
    for dense, factored in zip(*results):
        torch.testing.assert_close(factored, dense, rtol=1e-5, atol=1e-7)
