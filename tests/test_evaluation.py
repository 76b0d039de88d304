# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Metrics: PQ on hand-worked cases (matching threshold, void handling), mIoU as the `evaluate` library defines
it, COCO AP, perfect predictions scoring 1 everywhere, and merging states across processes."""

import math
import pickle

import numpy as np
import pytest
import torch
from training_fixtures import perfect_outputs

from transformers_maskdino import MaskDinoImageProcessor
from transformers_maskdino.training.evaluation import (
    SegmentationEvaluator,
    mean_iou,
    panoptic_matching,
    panoptic_quality,
    semantic_areas,
)

NUM_LABELS = 3  # 0, 1 things; 2 stuff
STUFF = [2]


def box_mask(height, width, top, left, bottom, right):
    mask = np.zeros((height, width), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


# ------------------------------------------------------------------------------------------------------ PQ


def test_pq_of_a_match_a_false_positive_and_a_miss():
    # ground truth: a 10x10 thing of class 0 and a 10x10 thing of class 1; the rest is stuff (class 2)
    thing_a, thing_b = box_mask(40, 40, 0, 0, 10, 10), box_mask(40, 40, 20, 20, 30, 30)
    stuff = ~(thing_a | thing_b)
    masks = np.stack([thing_a, thing_b, stuff])
    labels = np.array([0, 1, 2])
    predicted = np.zeros((40, 40), dtype=np.int64)
    predicted[stuff] = 3
    predicted[0:10, 0:8] = 1  # class 0, IoU 80/100 with thing_a
    predicted[20:30, 20:30] = 2  # the right place but class 0: no match for thing_b, a false positive for class 0
    stats = panoptic_matching(predicted, {1: 0, 2: 0, 3: 2}, masks, labels, NUM_LABELS)
    assert stats["tp"].tolist() == [1, 0, 1]
    assert stats["fp"].tolist() == [1, 0, 0]
    assert stats["fn"].tolist() == [0, 1, 0]
    np.testing.assert_allclose(stats["iou"], [0.8, 0.0, 1.0])
    result = panoptic_quality(stats, STUFF)
    # class 0: 0.8 / (1 + 0.5); class 1: 0 / (0.5); class 2: 1
    np.testing.assert_allclose(result["PQ"], np.mean([0.8 / 1.5, 0.0, 1.0]))
    np.testing.assert_allclose(result["PQ_th"], np.mean([0.8 / 1.5, 0.0]))
    np.testing.assert_allclose(result["PQ_st"], 1.0)
    np.testing.assert_allclose(result["SQ"], np.mean([0.8, 0.0, 1.0]))
    np.testing.assert_allclose(result["RQ"], np.mean([1 / 1.5, 0.0, 1.0]))


def test_pq_needs_an_iou_above_one_half():
    ground_truth = box_mask(20, 20, 0, 0, 10, 10)
    predicted = np.zeros((20, 20), dtype=np.int64)
    predicted[0:10, 0:5] = 1  # IoU exactly 0.5: not a match
    stats = panoptic_matching(predicted, {1: 0}, ground_truth[None], np.array([0]), NUM_LABELS)
    assert (stats["tp"][0], stats["fp"][0], stats["fn"][0]) == (0, 1, 1)
    predicted[0:10, 5] = 1  # IoU 0.6
    stats = panoptic_matching(predicted, {1: 0}, ground_truth[None], np.array([0]), NUM_LABELS)
    assert (stats["tp"][0], stats["fp"][0], stats["fn"][0]) == (1, 0, 0)
    np.testing.assert_allclose(stats["iou"][0], 0.6)


def test_void_pixels_leave_the_union_and_spare_false_positives():
    # ground truth covers the left half; the right half is void (no segment)
    ground_truth = box_mask(10, 20, 0, 0, 10, 10)
    predicted = np.zeros((10, 20), dtype=np.int64)
    predicted[:, 0:14] = 1  # covers the thing and 40 void pixels: IoU = 100 / (140 - 40) = 1
    predicted[:, 16:20] = 2  # entirely in void: not a false positive
    stats = panoptic_matching(predicted, {1: 0, 2: 1}, ground_truth[None], np.array([0]), NUM_LABELS)
    assert stats["tp"][0] == 1 and stats["fp"].sum() == 0
    np.testing.assert_allclose(stats["iou"][0], 1.0)


def test_pq_is_nan_without_any_segment():
    stats = {key: np.zeros(NUM_LABELS) for key in ("tp", "fp", "fn", "iou")}
    assert all(math.isnan(value) for value in panoptic_quality(stats, STUFF).values())


# ------------------------------------------------------------------------------------------------------ mIoU


def test_mean_iou_as_the_evaluate_library_defines_it():
    ground_truth = np.array([[0, 0, 1, 1], [0, 0, 1, 255]])
    predicted = np.array([[0, 1, 1, 1], [0, 0, 2, 2]])
    areas = semantic_areas(predicted, ground_truth, NUM_LABELS, ignore_index=255)
    assert areas["intersection"].tolist() == [3, 2, 0]
    assert areas["label_area"].tolist() == [4, 3, 0]
    assert areas["predicted_area"].tolist() == [3, 3, 1]  # the ignored pixel is not counted
    result = mean_iou(areas)
    # class 0: 3 / 4; class 1: 2 / 4; class 2: 0 / 1 (predicted but absent: IoU 0, counted)
    np.testing.assert_allclose(result["mIoU"], np.mean([3 / 4, 2 / 4, 0.0]))
    # accuracy of class 2 is 0 / 0: left out
    np.testing.assert_allclose(result["mean_accuracy"], np.mean([3 / 4, 2 / 3]))
    np.testing.assert_allclose(result["overall_accuracy"], 5 / 7)


def test_classes_absent_from_both_are_left_out_of_the_mean():
    areas = semantic_areas(np.zeros((2, 2), int), np.zeros((2, 2), int), NUM_LABELS, ignore_index=255)
    assert mean_iou(areas)["mIoU"] == 1.0


# ------------------------------------------------------------------------------------------------------ evaluator


def ground_truth_scene(height=32, width=48):
    """Two things and the stuff around them; stuff is one segment per class and image, as panoptic post-processing
    fuses it."""
    first = box_mask(height, width, 4, 4, 14, 16)
    second = box_mask(height, width, 18, 26, 30, 44)
    return np.stack([first, second, ~(first | second)]), np.array([0, 1, 2])


@pytest.fixture
def processor():
    return MaskDinoImageProcessor(stuff_label_ids=STUFF)


def test_perfect_predictions_score_one_everywhere(processor):
    masks, labels = ground_truth_scene()
    evaluator = SegmentationEvaluator(processor, NUM_LABELS)
    evaluator.add(perfect_outputs(masks, labels), [(masks, labels)])
    metrics = evaluator.compute()
    for name in ("PQ", "SQ", "RQ", "PQ_th", "PQ_st", "mIoU", "mean_accuracy", "overall_accuracy"):
        assert metrics[name] == pytest.approx(1.0), name
    for name in ("mask_AP", "mask_AP50", "mask_AP75", "box_AP", "box_AP50", "box_AP75"):
        assert metrics[name] == pytest.approx(1.0), name


def test_wrong_classes_score_zero(processor):
    masks, labels = ground_truth_scene()
    evaluator = SegmentationEvaluator(processor, NUM_LABELS)
    swapped = np.array([1, 0, 2])  # the two things are predicted as each other
    evaluator.add(perfect_outputs(masks, swapped), [(masks, labels)])
    metrics = evaluator.compute()
    assert metrics["PQ_th"] == 0.0 and metrics["PQ_st"] == 1.0
    # every query also yields (query, class) pairs for the other classes at a probability of ~1e-9, so each thing is
    # found once at the bottom of the ranking, behind one confident false positive: precision 1/2 at every recall
    assert metrics["mask_AP"] == pytest.approx(0.5) and metrics["box_AP"] == pytest.approx(0.5)
    # per class: 0 and 1 have IoU 0, stuff 1
    assert metrics["mIoU"] == pytest.approx(1 / 3)


def test_states_of_several_processes_merge_into_the_single_process_result(processor):
    masks, labels = ground_truth_scene()
    good = perfect_outputs(masks, labels)
    bad = perfect_outputs(masks, np.array([1, 0, 2]))
    single = SegmentationEvaluator(processor, NUM_LABELS)
    first, second = SegmentationEvaluator(processor, NUM_LABELS), SegmentationEvaluator(processor, NUM_LABELS)
    for evaluator, outputs in ((single, good), (single, bad), (first, good), (second, bad)):
        evaluator.add(outputs, [(masks, labels)])
    merged = SegmentationEvaluator(processor, NUM_LABELS)
    merged.merge([first.state(), second.state()])
    assert merged.num_images == 2
    expected, actual = single.compute(), merged.compute()
    assert expected.keys() == actual.keys()
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], err_msg=name)
    assert 0 < expected["PQ"] < 1 and 0 < expected["mask_AP"] < 1


def test_gathered_image_states_accumulate_into_the_batch_result(processor):
    """A distributed loop gathers `image_states` per image and drops repeated ones before `accumulate`."""
    masks, labels = ground_truth_scene()
    good = perfect_outputs(masks, labels)
    bad = perfect_outputs(masks, np.array([1, 0, 2]))
    batch = {key: torch.cat([good[key], bad[key]]) for key in good}
    single = SegmentationEvaluator(processor, NUM_LABELS)
    single.add(batch, [(masks, labels), (masks, labels)])
    gathering = SegmentationEvaluator(processor, NUM_LABELS)
    states = gathering.image_states(batch, [(masks, labels), (masks, labels)])
    assert len(states) == 2 and all(state["num_images"] == 1 for state in states)
    assert gathering.num_images == 0  # nothing is added until accumulated
    gathered = pickle.loads(pickle.dumps(states))  # what gather_object sends
    gathering.accumulate(gathered)
    assert gathering.num_images == 2
    expected, actual = single.compute(), gathering.compute()
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], err_msg=name)
    # the same image twice counts twice: deduplication is the gathering loop's job
    gathering.accumulate(gathered[:1])
    assert gathering.num_images == 3 and gathering.compute()["PQ"] > expected["PQ"]


def test_metric_tasks_select_the_keys(processor):
    masks, labels = ground_truth_scene()
    evaluator = SegmentationEvaluator(processor, NUM_LABELS, tasks=("semantic",))
    evaluator.add(perfect_outputs(masks, labels), [(masks, labels)])
    assert set(evaluator.compute()) == {"mIoU", "mean_accuracy", "overall_accuracy"}
    with pytest.raises(ValueError, match="Unknown metric tasks"):
        SegmentationEvaluator(processor, NUM_LABELS, tasks=("depth",))


def test_ground_truth_must_have_the_output_size(processor):
    masks, labels = ground_truth_scene()
    evaluator = SegmentationEvaluator(processor, NUM_LABELS)
    with pytest.raises(ValueError, match="output size"):
        evaluator.add(perfect_outputs(masks, labels), [(masks, labels)], target_sizes=[(16, 24)])
