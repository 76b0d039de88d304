# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Metrics: PQ on hand-worked cases (matching threshold, void handling), mIoU as the `evaluate` library defines
it, COCO AP, perfect predictions scoring 1 everywhere, and merging states across processes; crowd regions and
box-only ground truth; PQ and mIoU against torchmetrics."""

import math
import pickle

import numpy as np
import pytest
import torch
from training_fixtures import perfect_outputs

from transformers_maskdino import MaskDinoImageProcessor
from transformers_maskdino.training.evaluation import (
    GroundTruth,
    SegmentationEvaluator,
    coco_results,
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


# ------------------------------------------------------------------------------------------------------ crowd, boxes


def test_crowd_segments_are_neither_matched_nor_missed_and_excuse_predictions_in_them():
    # ground truth: a thing of class 0, a crowd region of class 0, stuff elsewhere
    thing, crowd = box_mask(40, 40, 0, 0, 10, 10), box_mask(40, 40, 20, 20, 30, 30)
    masks = np.stack([thing, crowd, ~(thing | crowd)])
    labels = np.array([0, 0, 2])
    # predictions: the stuff, and a class-0 segment on the crowd region only
    predicted = np.where(crowd, 2, 1)
    predicted[thing] = 1
    stats = panoptic_matching(predicted, {1: 2, 2: 0}, masks, labels, NUM_LABELS, ground_truth_crowd=[0, 1, 0])
    # the stuff matches; the thing is missed (fn), the crowd is not; the prediction on the crowd region of its own
    # class is not a false positive
    assert (
        stats["tp"].tolist() == [0, 0, 1] and stats["fn"].tolist() == [1, 0, 0] and stats["fp"].tolist() == [0, 0, 0]
    )
    # without the crowd flag the same prediction matches it
    stats = panoptic_matching(predicted, {1: 2, 2: 0}, masks, labels, NUM_LABELS)
    assert stats["tp"][0] == 1


def test_crowd_objects_and_box_only_ground_truth_in_coco_ap(processor):
    # one box-only object and one crowd region; the model finds the object and also fires on the crowd
    height = width = 32
    ground_truth = GroundTruth(
        labels=np.array([0, 0]),
        boxes=np.array([[2.0, 2.0, 10.0, 10.0], [16.0, 16.0, 12.0, 12.0]]),
        iscrowd=np.array([False, True]),
        size=(height, width),
    )
    outputs = perfect_outputs(
        np.stack([box_mask(height, width, 2, 2, 12, 12), box_mask(height, width, 16, 16, 28, 28)]),
        np.array([0, 0]),
        num_labels=NUM_LABELS,
    )
    evaluator = SegmentationEvaluator(processor, NUM_LABELS, STUFF, tasks=("detection",))
    evaluator.add(outputs, [ground_truth], image_ids=[42])
    metrics = evaluator.compute()
    # the detection on the crowd region is ignored, as COCOeval ignores it: AP 1, not a false positive
    assert metrics["box_AP"] == pytest.approx(1.0) and "mask_AP" not in metrics
    results = coco_results(evaluator.instance_records, {0: 5, 1: 6, 2: 9})
    assert {result["image_id"] for result in results} == {42}
    # the dataset's own ids of the thing classes (no score threshold: low-score detections of class 1 are kept)
    assert {result["category_id"] for result in results} == {5, 6}
    assert max(results, key=lambda result: result["score"])["category_id"] == 5
    assert all("segmentation" not in result for result in results)
    # instance segmentation of box-only ground truth: box AP only, mask AP is not defined
    evaluator = SegmentationEvaluator(processor, NUM_LABELS, STUFF, tasks=("instance",))
    evaluator.add(outputs, [ground_truth])
    metrics = evaluator.compute()
    assert math.isnan(metrics["mask_AP"]) and metrics["box_AP"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="both report box AP"):
        SegmentationEvaluator(processor, NUM_LABELS, STUFF, tasks=("instance", "detection"))
    with pytest.raises(ValueError, match="PQ and mIoU need masks"):
        SegmentationEvaluator(processor, NUM_LABELS, STUFF, tasks=("panoptic",)).add(outputs, [ground_truth])


# ------------------------------------------------------------------------------------------------------ torchmetrics
# Our PQ and mIoU against torchmetrics' PanopticQuality and MeanIoU on the same predictions. The definitions agree
# where the cases are shared: predictions that cover every pixel, one segment per stuff class, no crowd, no ignored
# pixels, and (mIoU) a single image. Where they differ, the tests below state how.


def random_panoptic_case(rng, height=24, width=24, num_things=3):
    """A ground truth (things on a two-class stuff background) and a prediction covering every pixel that shifts,
    drops, relabels and adds segments at random."""
    stuff = np.where(np.arange(height)[:, None] < rng.integers(6, 18), 2, 3).repeat(width, 1)
    labels_map = stuff.copy()
    instance_map = np.zeros((height, width), dtype=np.int64)
    for instance in range(1, num_things + 1):
        top, left = rng.integers(0, height - 6), rng.integers(0, width - 6)
        size = rng.integers(4, 8)
        labels_map[top : top + size, left : left + size] = rng.integers(0, 2)
        instance_map[top : top + size, left : left + size] = instance
    predicted_labels, predicted_instances = labels_map.copy(), instance_map.copy()
    shift = rng.integers(-2, 3, size=2)
    predicted_instances = np.roll(predicted_instances, shift, axis=(0, 1))
    predicted_labels = np.where(predicted_instances > 0, np.roll(labels_map, shift, axis=(0, 1)), stuff)
    if rng.random() < 0.5:  # relabel one instance
        chosen = predicted_instances == rng.integers(1, num_things + 1)
        predicted_labels[chosen] = 1 - predicted_labels[chosen] if predicted_labels[chosen].max() < 2 else 0
    if rng.random() < 0.5:  # a spurious thing
        predicted_labels[:4, :4], predicted_instances[:4, :4] = 1, num_things + 1
    # stuff pixels carry instance 0; a thing's pixels its instance id
    predicted_instances = np.where(predicted_labels >= 2, 0, predicted_instances)
    instance_map = np.where(labels_map >= 2, 0, instance_map)
    return (labels_map, instance_map), (predicted_labels, predicted_instances)


def as_segments(labels_map, instance_map):
    """Segment map (ids from 1) and `{segment id: class}` of a (class, instance) pixel pair map."""
    pairs = sorted({(int(c), int(i)) for c, i in zip(labels_map.ravel(), instance_map.ravel())})
    segment_map = np.zeros(labels_map.shape, dtype=np.int64)
    classes = {}
    for segment_id, (category, instance) in enumerate(pairs, start=1):
        segment_map[(labels_map == category) & (instance_map == instance)] = segment_id
        classes[segment_id] = category
    return segment_map, classes


def test_pq_agrees_with_torchmetrics_panoptic_quality():
    from torchmetrics.detection import PanopticQuality

    rng = np.random.default_rng(0)
    things, stuffs = {0, 1}, {2, 3}
    metric = PanopticQuality(things=things, stuffs=stuffs, return_per_class=False, return_sq_and_rq=True)
    stats = {key: np.zeros(4, dtype=np.float64) for key in ("tp", "fp", "fn", "iou")}
    for _ in range(12):
        (labels_map, instance_map), (predicted_labels, predicted_instances) = random_panoptic_case(rng)
        ground_truth_map, ground_truth_classes = as_segments(labels_map, instance_map)
        predicted_map, predicted_classes = as_segments(predicted_labels, predicted_instances)
        ids = sorted(ground_truth_classes)
        image_stats = panoptic_matching(
            predicted_map,
            predicted_classes,
            ground_truth_map[None] == np.array(ids)[:, None, None],
            np.array([ground_truth_classes[i] for i in ids]),
            num_labels=4,
        )
        for key in stats:
            stats[key] += image_stats[key]
        metric.update(
            torch.from_numpy(np.stack([predicted_labels, predicted_instances], -1))[None],
            torch.from_numpy(np.stack([labels_map, instance_map], -1))[None],
        )
    ours = panoptic_quality(stats, stuff_label_ids=[2, 3])
    assert stats["tp"].sum() > 0 and stats["fp"].sum() > 0 and stats["fn"].sum() > 0  # the cases are not trivial
    theirs = metric.compute().tolist()
    np.testing.assert_allclose([ours["PQ"], ours["SQ"], ours["RQ"]], theirs, atol=1e-6)


def test_pq_differs_from_torchmetrics_on_unpredicted_ground_truth():
    """A ground-truth segment left (mostly) unpredicted is a false negative for us, as in the COCO panoptic
    evaluation (panopticapi); torchmetrics leaves it out when its pixels are "void" in the prediction."""
    from torchmetrics.detection import PanopticQuality

    labels_map = np.full((20, 20), 2)
    labels_map[:8, :8] = 0
    instance_map = np.where(labels_map == 0, 1, 0)
    # the prediction leaves the thing unpredicted (category 7: unknown, torchmetrics' void) and gets the stuff
    predicted_labels = np.where(labels_map == 0, 7, 2)
    metric = PanopticQuality(things={0}, stuffs={2}, allow_unknown_preds_category=True)
    metric.update(
        torch.from_numpy(np.stack([predicted_labels, np.zeros_like(instance_map)], -1))[None],
        torch.from_numpy(np.stack([labels_map, instance_map], -1))[None],
    )
    ground_truth = np.stack([labels_map == 0, labels_map == 2])
    stats = panoptic_matching(np.where(labels_map == 2, 1, 0), {1: 2}, ground_truth, np.array([0, 2]), num_labels=3)
    ours = panoptic_quality(stats, stuff_label_ids=[2])
    # stuff matched exactly (PQ 1), the thing missed (PQ 0): our mean over both classes is 0.5 ...
    assert stats["fn"][0] == 1 and ours["PQ"] == pytest.approx(0.5)
    # ... torchmetrics drops the missed thing, so only the stuff class counts
    assert float(metric.compute()) == pytest.approx(1.0)


def random_semantic_case(rng, num_classes=4, height=16, width=16):
    target = rng.integers(0, num_classes, size=(height, width))
    prediction = np.where(rng.random((height, width)) < 0.7, target, rng.integers(0, num_classes, (height, width)))
    return prediction, target


def test_miou_agrees_with_torchmetrics_mean_iou_on_one_image():
    from torchmetrics.segmentation import MeanIoU

    rng = np.random.default_rng(1)
    for _ in range(5):
        prediction, target = random_semantic_case(rng)
        prediction[prediction == 3] = 2  # class 3 absent from the prediction, present in the target
        ours = mean_iou(semantic_areas(prediction, target, num_labels=5, ignore_index=255))
        metric = MeanIoU(num_classes=5, input_format="index")  # class 4: in neither, left out by both
        metric.update(torch.from_numpy(prediction)[None], torch.from_numpy(target)[None])
        assert ours["mIoU"] == pytest.approx(float(metric.compute()), abs=1e-6)


def test_miou_over_a_dataset_sums_areas_where_torchmetrics_averages_images():
    """Over several images, our mIoU (the `evaluate` library's `mean_iou`) sums intersections and unions over the
    dataset before dividing; torchmetrics' `MeanIoU` averages the per-image IoUs of the classes present in each
    image. Both are checked against their definition on the same predictions."""
    from torchmetrics.segmentation import MeanIoU

    rng = np.random.default_rng(2)
    metric = MeanIoU(num_classes=4, input_format="index")
    totals = {key: np.zeros(4, dtype=np.int64) for key in ("intersection", "predicted_area", "label_area")}
    per_image_ious = []
    for size in (8, 16, 32):  # images of different sizes weigh differently in the sums
        prediction, target = random_semantic_case(rng, height=size, width=size)
        areas = semantic_areas(prediction, target, num_labels=4, ignore_index=255)
        for key in totals:
            totals[key] += areas[key]
        union = areas["predicted_area"] + areas["label_area"] - areas["intersection"]
        per_image_ious.extend((areas["intersection"] / union)[union > 0])
        metric.update(torch.from_numpy(prediction)[None], torch.from_numpy(target)[None])
    union = totals["predicted_area"] + totals["label_area"] - totals["intersection"]
    assert mean_iou(totals)["mIoU"] == pytest.approx(float(np.mean(totals["intersection"] / union)))
    assert float(metric.compute()) == pytest.approx(float(np.mean(per_image_ious)), abs=1e-6)
    assert abs(mean_iou(totals)["mIoU"] - float(metric.compute())) > 1e-4
