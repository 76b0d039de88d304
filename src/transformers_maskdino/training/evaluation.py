# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Segmentation metrics for Mask DINO outputs: panoptic quality (PQ, SQ, RQ), COCO mask and box AP (pycocotools), and
mean IoU, accumulated image by image from model outputs and ground-truth segments.

- **PQ** follows Kirillov et al. (2019) and the COCO panoptic evaluation's conventions: a predicted and a ground-truth
  segment of the same class match when their IoU exceeds 0.5; pixels covered by no ground-truth segment are void,
  so they are left out of the IoU's union, and a prediction that lies mostly (> 50%) in void is not a false positive.
  PQ, SQ and RQ are averaged over the classes that occur (in the ground truth or the predictions); `PQ_th` / `PQ_st`
  over things / stuff.
- **AP** is COCO's (`pycocotools.cocoeval.COCOeval`), over the thing classes, with the instance post-processing's
  `detections_per_image` detections and their box-head boxes for box AP.
- **mIoU** is the definition of the `evaluate` library's `mean_iou` metric: per class, intersection and union are
  summed over the whole dataset; the mean is over classes whose union is not empty. It is computed here because
  `evaluate.load("mean_iou")` fetches its script from the Hugging Face Hub, which offline runs cannot reach.

All values are fractions in [0, 1] (not percentages); a metric with nothing to measure is `nan`.

The accumulated state is made of NumPy arrays and lists of plain records, so evaluators of several processes can be
merged (`state()` on each, `merge()` the gathered states, then `compute()`), or each image's share can be gathered
(`image_states()` on each process's batch, `accumulate()` the gathered ones), which lets a distributed loop drop
the images its sampler repeated.
"""

import contextlib
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

PQ_MATCH_IOU = 0.5
VOID_FRACTION_FOR_FALSE_POSITIVE = 0.5
METRIC_TASKS = ("panoptic", "instance", "semantic", "detection")
# What a dataset annotated for each task can be scored on (panoptic ground truth gives instance and semantic too).
METRIC_TASKS_FOR_DATASET_TASK = {
    "panoptic": ("panoptic", "instance", "semantic"),
    "instance": ("instance",),
    "semantic": ("semantic",),
    "detection": ("detection",),
}


@dataclass
class GroundTruth:
    """
    Ground truth of one image for [`SegmentationEvaluator`], at the output size. `(masks, labels)` tuples are read
    as a `GroundTruth` with masks only.

    Args:
        labels (`np.ndarray` of shape `(num_objects,)`): class ids.
        masks (`np.ndarray` of shape `(num_objects, height, width)`, *optional*): binary masks; the rows of
            box-only objects (`has_masks` False) are ignored. PQ and mIoU need every object's mask.
        has_masks (`np.ndarray` of shape `(num_objects,)`, *optional*): which objects have a mask (all by default).
        boxes (`np.ndarray` of shape `(num_objects, 4)`, *optional*): COCO `[x, y, width, height]` in pixels; by
            default each mask's bounding box.
        areas (`np.ndarray` of shape `(num_objects,)`, *optional*): COCO `area`s (COCOeval's small / medium / large
            ranges); by default each mask's pixel count, or each box's area.
        iscrowd (`np.ndarray` of shape `(num_objects,)`, *optional*): crowd regions, evaluated as COCO does: a
            detection matched to one is neither a true nor a false positive (AP), and a predicted segment lying
            mostly in void or in a crowd region of its class is not a false positive (PQ).
        size (`tuple[int, int]`, *optional*): `(height, width)`; needed when there are no masks.
    """

    labels: Any
    masks: Any = None
    has_masks: Any = None
    boxes: Any = None
    areas: Any = None
    iscrowd: Any = None
    size: tuple[int, int] | None = None

    def __post_init__(self):
        self.labels = _to_numpy(self.labels).astype(np.int64).reshape(-1)
        count = self.labels.shape[0]
        if self.masks is not None:
            self.masks = _to_numpy(self.masks).astype(bool)
            self.size = tuple(int(s) for s in self.masks.shape[-2:])
        if self.size is None:
            raise ValueError("A ground truth without masks needs its `size` (height, width).")
        if self.masks is None:
            self.masks = np.zeros((count, *self.size), dtype=bool)
            default_has_masks = np.zeros(count, dtype=bool)
        else:
            default_has_masks = np.ones(count, dtype=bool)
        self.has_masks = default_has_masks if self.has_masks is None else _to_numpy(self.has_masks).astype(bool)
        self.iscrowd = np.zeros(count, bool) if self.iscrowd is None else _to_numpy(self.iscrowd).astype(bool)
        if self.boxes is None:
            if not self.has_masks.all():
                raise ValueError("Box-only ground-truth objects (`has_masks` False) need their `boxes`.")
            self.boxes = np.array([_mask_bbox(mask) for mask in self.masks], dtype=np.float64).reshape(-1, 4)
        self.boxes = _to_numpy(self.boxes).astype(np.float64).reshape(-1, 4)
        if self.areas is None:
            self.areas = np.where(self.has_masks, self.masks.sum(axis=(1, 2)), self.boxes[:, 2] * self.boxes[:, 3])
        self.areas = _to_numpy(self.areas).astype(np.float64).reshape(-1)
        for name in ("masks", "has_masks", "boxes", "areas", "iscrowd"):
            if len(getattr(self, name)) != count:
                raise ValueError(f"Ground truth has {count} labels but {len(getattr(self, name))} {name}.")


def _as_ground_truth(item) -> GroundTruth:
    if isinstance(item, GroundTruth):
        return item
    masks, labels = item
    return GroundTruth(labels=labels, masks=masks)


def _to_numpy(array) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


# ---------------------------------------------------------------------------------------------------------- PQ


def panoptic_matching(
    predicted_map: np.ndarray,
    predicted_labels: Mapping[int, int],
    ground_truth_masks: np.ndarray,
    ground_truth_labels: np.ndarray,
    num_labels: int,
    ground_truth_crowd: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """
    Per-class true positives, false positives, false negatives and summed IoU of the matched pairs for one image.
    Crowd segments are treated as the COCO panoptic evaluation (panopticapi's `pq_compute`) treats them: they are
    never matched nor missed, and an unmatched prediction whose area lies mostly (> 50%) in void or in crowd regions
    of its own class is not a false positive.

    Args:
        predicted_map (`np.ndarray` of shape `(height, width)`):
            Predicted segment id per pixel (0 = no segment), as returned by panoptic post-processing.
        predicted_labels (`Mapping[int, int]`):
            Class of every predicted segment id.
        ground_truth_masks (`np.ndarray` of shape `(num_segments, height, width)`):
            Non-overlapping binary masks of the ground-truth segments; pixels in none of them are void.
        ground_truth_labels (`np.ndarray` of shape `(num_segments,)`):
            Their classes.
        num_labels (`int`):
            Number of classes.
        ground_truth_crowd (`np.ndarray` of shape `(num_segments,)`, *optional*):
            Which ground-truth segments are crowd regions (`iscrowd`).

    Returns:
        `dict` with `tp`, `fp`, `fn` (int64) and `iou` (float64) arrays of shape `(num_labels,)`.
    """
    stats = {
        "tp": np.zeros(num_labels, dtype=np.int64),
        "fp": np.zeros(num_labels, dtype=np.int64),
        "fn": np.zeros(num_labels, dtype=np.int64),
        "iou": np.zeros(num_labels, dtype=np.float64),
    }
    num_ground_truth = len(ground_truth_labels)
    # ground-truth index + 1 per pixel, 0 = void
    ground_truth_map = np.zeros(predicted_map.shape, dtype=np.int64)
    for index, mask in enumerate(ground_truth_masks):
        ground_truth_map[mask.astype(bool)] = index + 1
    predicted_ids = sorted(int(i) for i in predicted_labels)
    predicted_index = np.zeros(int(predicted_map.max(initial=0)) + 1, dtype=np.int64)
    for position, segment_id in enumerate(predicted_ids):
        if segment_id < predicted_index.shape[0]:
            predicted_index[segment_id] = position + 1
    # predicted segment position + 1 per pixel, 0 = no prediction
    prediction_positions = predicted_index[predicted_map.astype(np.int64)]

    num_predictions = len(predicted_ids)
    joint = np.bincount(
        (ground_truth_map * (num_predictions + 1) + prediction_positions).ravel(),
        minlength=(num_ground_truth + 1) * (num_predictions + 1),
    ).reshape(num_ground_truth + 1, num_predictions + 1)
    ground_truth_areas = joint.sum(1)
    prediction_areas = joint.sum(0)
    prediction_void = joint[0]

    is_crowd = np.zeros(num_ground_truth, bool) if ground_truth_crowd is None else np.asarray(ground_truth_crowd, bool)
    matched_ground_truth, matched_predictions = set(), set()
    for g in range(1, num_ground_truth + 1):
        label = int(ground_truth_labels[g - 1])
        if is_crowd[g - 1]:
            continue
        for p in np.flatnonzero(joint[g]):
            if p == 0 or int(predicted_labels[predicted_ids[p - 1]]) != label:
                continue
            intersection = joint[g, p]
            union = ground_truth_areas[g] + prediction_areas[p] - intersection - prediction_void[p]
            iou = intersection / union
            if iou > PQ_MATCH_IOU:
                # segments do not overlap, so an IoU above 0.5 can only be reached by one pair
                matched_ground_truth.add(g)
                matched_predictions.add(p)
                stats["tp"][label] += 1
                stats["iou"][label] += iou
    for g in range(1, num_ground_truth + 1):
        if g not in matched_ground_truth and not is_crowd[g - 1]:
            stats["fn"][int(ground_truth_labels[g - 1])] += 1
    for p in range(1, num_predictions + 1):
        if p in matched_predictions or prediction_areas[p] == 0:
            continue
        label = int(predicted_labels[predicted_ids[p - 1]])
        crowd_of_label = [g + 1 for g in np.flatnonzero(is_crowd) if int(ground_truth_labels[g]) == label]
        ignored = prediction_void[p] + joint[crowd_of_label, p].sum()
        if ignored / prediction_areas[p] > VOID_FRACTION_FOR_FALSE_POSITIVE:
            continue
        stats["fp"][label] += 1
    return stats


def panoptic_quality(stats: Mapping[str, np.ndarray], stuff_label_ids: Iterable[int] = ()) -> dict[str, float]:
    """PQ, SQ, RQ over all classes that occur, and PQ / SQ / RQ over things (`_th`) and stuff (`_st`)."""
    tp, fp, fn, iou = (np.asarray(stats[key], dtype=np.float64) for key in ("tp", "fp", "fn", "iou"))
    denominator = tp + 0.5 * fp + 0.5 * fn
    occurs = denominator > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        pq = np.where(occurs, iou / denominator, 0.0)
        sq = np.where(tp > 0, iou / np.maximum(tp, 1), 0.0)
        rq = np.where(occurs, tp / denominator, 0.0)
    is_stuff = np.zeros(tp.shape[0], dtype=bool)
    is_stuff[[i for i in stuff_label_ids if 0 <= i < tp.shape[0]]] = True
    results = {}
    for suffix, selection in (("", occurs), ("_th", occurs & ~is_stuff), ("_st", occurs & is_stuff)):
        for name, values in (("PQ", pq), ("SQ", sq), ("RQ", rq)):
            results[name + suffix] = float(values[selection].mean()) if selection.any() else math.nan
    return results


# ---------------------------------------------------------------------------------------------------------- mIoU


def semantic_areas(
    predicted_map: np.ndarray, ground_truth_map: np.ndarray, num_labels: int, ignore_index: int
) -> dict[str, np.ndarray]:
    """Per-class intersection, predicted area and ground-truth area of one image (ignored pixels left out)."""
    valid = (ground_truth_map != ignore_index) & (ground_truth_map >= 0) & (ground_truth_map < num_labels)
    predicted = predicted_map[valid].astype(np.int64)
    actual = ground_truth_map[valid].astype(np.int64)
    return {
        "intersection": np.bincount(actual[predicted == actual], minlength=num_labels)[:num_labels],
        "predicted_area": np.bincount(predicted[(predicted >= 0) & (predicted < num_labels)], minlength=num_labels)[
            :num_labels
        ],
        "label_area": np.bincount(actual, minlength=num_labels)[:num_labels],
    }


def mean_iou(areas: Mapping[str, np.ndarray]) -> dict[str, float]:
    """`mean_iou`, `mean_accuracy` and `overall_accuracy` as the `evaluate` library's `mean_iou` defines them."""
    intersection = np.asarray(areas["intersection"], dtype=np.float64)
    label_area = np.asarray(areas["label_area"], dtype=np.float64)
    union = np.asarray(areas["predicted_area"], dtype=np.float64) + label_area - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = intersection / union
        accuracy = intersection / label_area
    return {
        "mIoU": float(np.nanmean(iou)) if np.isfinite(iou).any() else math.nan,
        "mean_accuracy": float(np.nanmean(accuracy)) if np.isfinite(accuracy).any() else math.nan,
        "overall_accuracy": float(intersection.sum() / label_area.sum()) if label_area.sum() > 0 else math.nan,
    }


# ---------------------------------------------------------------------------------------------------------- COCO AP


def _coco_mask(mask: np.ndarray) -> dict:
    from pycocotools import mask as coco_mask

    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")  # str, so that records pickle and serialise as JSON
    return rle


def _mask_bbox(mask: np.ndarray) -> list[float]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


COCO_STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")


def coco_average_precision(
    image_records: Sequence[Mapping[str, Any]], thing_label_ids: Sequence[int]
) -> dict[str, float]:
    """
    COCO mask (`mask_AP*`) and box (`box_AP*`) average precision of per-image records `{"height", "width",
    "ground_truth": [...], "detections": [...]}` (see [`SegmentationEvaluator`]). Ground-truth objects with
    `iscrowd=1` are crowd regions, as in COCO. Mask AP is `nan` when a ground-truth object or a detection has no mask
    (box-only detection data; box AP is still computed).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    results = {f"{kind}_{name}": math.nan for kind in ("mask", "box") for name in COCO_STAT_NAMES}
    images, annotations, detections = [], [], []
    for image_id, record in enumerate(image_records, start=1):
        images.append({"id": image_id, "height": record["height"], "width": record["width"]})
        for annotation in record["ground_truth"]:
            annotations.append(
                {
                    **annotation,
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "iscrowd": annotation.get("iscrowd", 0),
                }
            )
        for detection in record["detections"]:
            detections.append({**detection, "image_id": image_id})
    if not annotations:
        return results
    with_masks = all("segmentation" in item for item in annotations + detections)
    ground_truth = COCO()
    ground_truth.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": int(i)} for i in thing_label_ids],
    }
    # pycocotools reports on stdout; library code stays quiet
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
        for kind, iou_type in (("mask", "segm"), ("box", "bbox")):
            if kind == "mask" and not with_masks:
                continue
            if not detections:
                results.update({f"{kind}_{name}": 0.0 for name in COCO_STAT_NAMES})
                continue
            predictions = ground_truth.loadRes([dict(d) for d in detections])
            evaluator = COCOeval(ground_truth, predictions, iouType=iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            for name, value in zip(COCO_STAT_NAMES, evaluator.stats[:6]):
                # COCO's -1 means "no ground truth of this kind"
                results[f"{kind}_{name}"] = float(value) if value >= 0 else math.nan
    return results


def coco_results(
    image_records: Sequence[Mapping[str, Any]], dataset_category_ids: Mapping[int, int] | None = None
) -> list[dict]:
    """
    The detections of per-image records as a COCO results list (`image_id`, `category_id`, `bbox` `[x, y, width,
    height]`, `score`, and `segmentation` as RLE when there is a mask), the format of the COCO evaluation server and
    of pycocotools' `COCO.loadRes`. Image ids are the records' `image_id`s (the dataset's own); category ids are
    mapped back to the dataset's own with `dataset_category_ids` (`{label id: dataset id}`).
    """
    results = []
    for position, record in enumerate(image_records, start=1):
        image_id = record.get("image_id", position)
        for detection in record["detections"]:
            label = int(detection["category_id"])
            category_id = int(dataset_category_ids[label]) if dataset_category_ids else label
            result = {
                "image_id": int(image_id),
                "category_id": category_id,
                "bbox": [float(v) for v in detection["bbox"]],
                "score": float(detection["score"]),
            }
            if "segmentation" in detection:
                result["segmentation"] = dict(detection["segmentation"])
            results.append(result)
    return results


# ---------------------------------------------------------------------------------------------------------- evaluator


class SegmentationEvaluator:
    """
    Accumulates PQ, COCO AP and mIoU over batches of [`MaskDinoForUniversalSegmentation`] outputs.

    Args:
        image_processor ([`MaskDinoImageProcessor`]):
            Post-processes the outputs (its `stuff_label_ids` and inference settings apply).
        num_labels (`int`):
            Number of classes.
        stuff_label_ids (`Iterable[int]`, *optional*):
            Stuff classes (no AP; `PQ_st`). Defaults to the processor's.
        tasks (`Iterable[str]`, *optional*, defaults to all four):
            Which of `"panoptic"` (PQ), `"instance"` (mask and box AP of the instance post-processing), `"semantic"`
            (mIoU) and `"detection"` (box AP of `post_process_object_detection`, for box-trained models) to compute.
            `"instance"` and `"detection"` both report `box_AP*`, so they are not computed together.
        ignore_index (`int`, *optional*, defaults to 255):
            Class value of void pixels in the semantic ground truth built from the segments.
    """

    def __init__(
        self,
        image_processor,
        num_labels: int,
        stuff_label_ids: Iterable[int] | None = None,
        tasks: Iterable[str] = METRIC_TASKS[:3],
        ignore_index: int = 255,
    ):
        self.image_processor = image_processor
        self.num_labels = num_labels
        self.stuff_label_ids = sorted(
            int(i) for i in (image_processor.stuff_label_ids if stuff_label_ids is None else stuff_label_ids)
        )
        self.tasks = tuple(tasks)
        unknown = [task for task in self.tasks if task not in METRIC_TASKS]
        if unknown:
            raise ValueError(f"Unknown metric tasks {unknown}; expected some of {METRIC_TASKS}.")
        if "instance" in self.tasks and "detection" in self.tasks:
            raise ValueError("The `instance` and `detection` tasks both report box AP: evaluate one of them.")
        self.ignore_index = ignore_index
        self.reset()

    @property
    def thing_label_ids(self) -> list[int]:
        return [i for i in range(self.num_labels) if i not in self.stuff_label_ids]

    def reset(self) -> None:
        self.panoptic_stats = {
            key: np.zeros(self.num_labels, dtype=np.float64 if key == "iou" else np.int64)
            for key in ("tp", "fp", "fn", "iou")
        }
        self.semantic_stats = {
            key: np.zeros(self.num_labels, dtype=np.int64) for key in ("intersection", "predicted_area", "label_area")
        }
        self.instance_records: list[dict] = []
        self.num_images = 0

    def add(
        self,
        outputs,
        ground_truth: Sequence[tuple[Any, Any] | GroundTruth],
        target_sizes: Sequence[tuple[int, int]] | None = None,
        image_ids: Sequence[int] | None = None,
    ) -> None:
        """
        Add one batch.

        Args:
            outputs ([`MaskDinoForUniversalSegmentationOutput`] or `dict`):
                Model outputs of the batch (at least `class_queries_logits`, `masks_queries_logits`, `pred_boxes`,
                and preferably `image_sizes` / `padded_image_sizes`).
            ground_truth (`Sequence[tuple | GroundTruth]`):
                Per image, `(masks, labels)`: non-overlapping binary masks `(num_segments, height, width)` at the
                output size and their classes (every segment for PQ and mIoU; thing classes are used for AP), or a
                [`GroundTruth`] (crowd regions, box-only objects, COCO areas).
            target_sizes (`Sequence[tuple[int, int]]`, *optional*):
                Output size per image; defaults to each ground truth's size.
            image_ids (`Sequence[int]`, *optional*):
                The dataset's id of each image, kept for [`coco_results`].
        """
        self.accumulate(self.image_states(outputs, ground_truth, target_sizes, image_ids))

    def image_states(
        self,
        outputs,
        ground_truth: Sequence[tuple[Any, Any] | GroundTruth],
        target_sizes: Sequence[tuple[int, int]] | None = None,
        image_ids: Sequence[int] | None = None,
    ) -> list[dict]:
        """
        What each image of a batch adds to the metrics, without adding it: one small picklable state per image, in
        the format of [`state`]. Distributed evaluation gathers these per image (so that samples a sampler repeated
        can be dropped) and [`accumulate`]s them. Arguments as in [`add`].
        """
        ground_truth = [_as_ground_truth(item) for item in ground_truth]
        if target_sizes is None:
            target_sizes = [item.size for item in ground_truth]
        target_sizes = [(int(h), int(w)) for h, w in target_sizes]
        processor = self.image_processor
        panoptic = instance = semantic = None
        if "panoptic" in self.tasks:
            panoptic = processor.post_process_panoptic_segmentation(outputs, target_sizes=target_sizes)
        if "instance" in self.tasks:
            instance = processor.post_process_instance_segmentation(
                outputs, target_sizes=target_sizes, return_binary_maps=True
            )
        if "semantic" in self.tasks:
            semantic = processor.post_process_semantic_segmentation(outputs, target_sizes=target_sizes)
        detection = None
        if "detection" in self.tasks:
            # every detection counts for AP, as for instance segmentation: no score threshold
            detection = processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=target_sizes)

        states = []
        for index, item in enumerate(ground_truth):
            masks, labels = item.masks, item.labels
            height, width = target_sizes[index]
            if masks.shape[-2:] != (height, width):
                raise ValueError(
                    f"Ground-truth masks of image {index} are {masks.shape[-2:]} but the output size is {(height, width)}."
                )
            if (panoptic is not None or semantic is not None) and not item.has_masks.all():
                raise ValueError(
                    f"Image {index} has box-only ground truth: PQ and mIoU need masks; evaluate the `detection` task."
                )
            state = {"panoptic_stats": None, "semantic_stats": None, "instance_records": [], "num_images": 1}
            if panoptic is not None:
                result = panoptic[index]
                state["panoptic_stats"] = panoptic_matching(
                    _to_numpy(result["segmentation"]),
                    {info["id"]: info["label_id"] for info in result["segments_info"]},
                    masks,
                    labels,
                    self.num_labels,
                    ground_truth_crowd=item.iscrowd,
                )
            if semantic is not None:
                ground_truth_map = np.full((height, width), self.ignore_index, dtype=np.int64)
                for mask, label in zip(masks, labels):
                    ground_truth_map[mask] = label
                state["semantic_stats"] = semantic_areas(
                    _to_numpy(semantic[index]), ground_truth_map, self.num_labels, self.ignore_index
                )
            if instance is not None or detection is not None:
                record = {"height": height, "width": width, "ground_truth": self._coco_ground_truth(item)}
                if image_ids is not None:
                    record["image_id"] = int(image_ids[index])
                if instance is not None:
                    record["detections"] = self._instance_detections(instance[index])
                else:
                    record["detections"] = self._box_detections(detection[index])
                state["instance_records"].append(record)
            states.append(state)
        return states

    def _coco_ground_truth(self, item: GroundTruth) -> list[dict]:
        """COCO ground-truth objects of the thing classes (a segmentation only where there is a mask)."""
        objects = []
        for position, label in enumerate(item.labels):
            if int(label) in self.stuff_label_ids:
                continue
            annotation = {
                "category_id": int(label),
                "area": float(item.areas[position]),
                "bbox": [float(v) for v in item.boxes[position]],
                "iscrowd": int(item.iscrowd[position]),
            }
            if item.has_masks[position]:
                annotation["segmentation"] = _coco_mask(item.masks[position])
            objects.append(annotation)
        return objects

    @staticmethod
    def _box_detections(result: Mapping) -> list[dict]:
        return [
            {"category_id": int(label), "score": float(score), "bbox": [x0, y0, x1 - x0, y1 - y0]}
            for score, label, (x0, y0, x1, y1) in zip(
                _to_numpy(result["scores"]).tolist(),
                _to_numpy(result["labels"]).tolist(),
                _to_numpy(result["boxes"]).tolist(),
            )
        ]

    def _instance_detections(self, result: Mapping) -> list[dict]:
        detections = []
        predicted_masks = _to_numpy(result["segmentation"]).astype(bool)
        for info, mask in zip(result["segments_info"], predicted_masks):
            detection = {
                "category_id": int(info["label_id"]),
                "score": float(info["score"]),
                "segmentation": _coco_mask(mask),
            }
            if "box_xyxy" in info:
                x0, y0, x1, y1 = info["box_xyxy"]
                detection["bbox"] = [x0, y0, x1 - x0, y1 - y0]
            else:
                detection["bbox"] = _mask_bbox(mask)
            detections.append(detection)
        return detections

    def state(self) -> dict:
        """Picklable accumulated state, to gather across processes and [`merge`]."""
        return {
            "panoptic_stats": self.panoptic_stats,
            "semantic_stats": self.semantic_stats,
            "instance_records": self.instance_records,
            "num_images": self.num_images,
        }

    def merge(self, states: Iterable[Mapping]) -> None:
        """Replace the accumulated state by the sum of `states` (e.g. gathered from every process)."""
        self.reset()
        self.accumulate(states)

    def accumulate(self, states: Iterable[Mapping]) -> None:
        """Add `states` (from [`state`] or [`image_states`]) to the accumulated state."""
        for state in states:
            for name, totals in (("panoptic_stats", self.panoptic_stats), ("semantic_stats", self.semantic_stats)):
                if state[name] is not None:
                    for key in totals:
                        totals[key] += state[name][key]
            self.instance_records.extend(state["instance_records"])
            self.num_images += state["num_images"]

    def compute(self) -> dict[str, float]:
        """The metrics of everything added so far (see the module docstring)."""
        results: dict[str, float] = {}
        if "panoptic" in self.tasks:
            results.update(panoptic_quality(self.panoptic_stats, self.stuff_label_ids))
        if "instance" in self.tasks:
            results.update(coco_average_precision(self.instance_records, self.thing_label_ids))
        if "detection" in self.tasks:
            box_metrics = coco_average_precision(self.instance_records, self.thing_label_ids)
            results.update({key: value for key, value in box_metrics.items() if key.startswith("box_")})
        if "semantic" in self.tasks:
            results.update(mean_iou(self.semantic_stats))
        return results


__all__ = [
    "GroundTruth",
    "SegmentationEvaluator",
    "coco_average_precision",
    "coco_results",
    "mean_iou",
    "panoptic_matching",
    "panoptic_quality",
    "semantic_areas",
]
