# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Training helpers shared by the fine-tuning examples: turning dataset rows into model inputs, collating them into
batches, the original's optimizer settings, and loading ImageNet backbone weights into a Mask DINO model.

The dataset format is the one of [`transformers_maskdino.training.synthetic_data`]: an `image`, a `panoptic_map` of segment
ids with its `segments_info` (`id`, `category_id`, `isthing`), and a `semantic_map` of class ids.
"""

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers.image_utils import SizeDict

from ..image_processing_pil_maskdino import resize_label_map

# "detection": the instance targets (box-only objects welcome), evaluated by the box AP of object detection
TASKS = ("panoptic", "instance", "semantic", "detection")
# The original's solver: AdamW, lr 1e-4, weight decay 0.05 (none on norms and embeddings), backbone lr x 0.1, and
# the gradient norm of the whole model clipped to 0.01.
DEFAULT_LEARNING_RATE = 1e-4
DEFAULT_WEIGHT_DECAY = 0.05
DEFAULT_BACKBONE_LEARNING_RATE_MULTIPLIER = 0.1
DEFAULT_MAX_GRAD_NORM = 0.01
SEMANTIC_IGNORE_INDEX = 255


# ---------------------------------------------------------------------------------------------------------- targets


def segment_class_mapping(segments_info: Iterable[Mapping[str, Any]], things_only: bool = False) -> dict[int, int]:
    """`{segment id: class id}` of an image's segments; with `things_only`, stuff segments are left out."""
    return {
        int(segment["id"]): int(segment["category_id"])
        for segment in segments_info
        if not things_only or segment.get("isthing", True)
    }


def ground_truth_segments(
    task: str,
    panoptic_map: np.ndarray | None = None,
    segments_info: Sequence[Mapping[str, Any]] | None = None,
    semantic_map: np.ndarray | None = None,
    ignore_index: int = SEMANTIC_IGNORE_INDEX,
) -> tuple[np.ndarray, np.ndarray]:
    """
    Binary masks `(num_segments, height, width)` and class ids `(num_segments,)` of one image for `task`:
    every segment of the panoptic map (`"panoptic"`), its thing segments (`"instance"`), or one mask per class of
    the semantic map (`"semantic"`, pixels equal to `ignore_index` belong to none).
    """
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}, got {task!r}.")
    if task == "semantic":
        if semantic_map is None:
            raise ValueError("The semantic task needs a `semantic_map`.")
        classes = np.unique(semantic_map)
        classes = classes[classes != ignore_index]
        masks = semantic_map[None] == classes[:, None, None]
        return masks, classes.astype(np.int64)
    if panoptic_map is None or segments_info is None:
        raise ValueError(f"The {task} task needs a `panoptic_map` and its `segments_info`.")
    mapping = segment_class_mapping(segments_info, things_only=task == "instance")
    segment_ids = np.array(sorted(mapping), dtype=np.int64)
    masks = panoptic_map[None] == segment_ids[:, None, None]
    keep = masks.any(axis=(1, 2))
    labels = np.array([mapping[int(i)] for i in segment_ids], dtype=np.int64)
    return masks[keep], labels[keep]


def semantic_label_map(semantic_map, ignore_index: int = SEMANTIC_IGNORE_INDEX, do_reduce_labels: bool = False):
    """Class ids of a semantic map; with `do_reduce_labels` (ADE20K, where 0 is "unlabelled"), 0 becomes
    `ignore_index` and every other id is lowered by 1, as transformers' image processors reduce labels."""
    label_map = np.asarray(semantic_map).astype(np.int64)
    if label_map.ndim == 3:  # a label PNG saved as RGB holds its ids in every channel
        label_map = label_map[..., 0]
    if do_reduce_labels:
        label_map = np.where(label_map == 0, ignore_index, label_map - 1)
        label_map[label_map == ignore_index - 1] = ignore_index
    return label_map


def decode_panoptic_map(panoptic_map) -> np.ndarray:
    """Segment ids of a panoptic map: an RGB PNG of COCO panoptic holds `R + 256 G + 256^2 B`, a one-channel map
    the ids themselves."""
    array = np.asarray(panoptic_map)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., :3].astype(np.int64)
        return array[..., 0] + 256 * array[..., 1] + 256 * 256 * array[..., 2]
    return array.astype(np.int64)


def coco_objects_of_row(value) -> list[dict]:
    """The COCO objects of one dataset row: JSON text (the file readers' `objects`), a list of dicts, or the
    dict of lists `datasets` makes of a list of dicts (Hub detection datasets, whose class is `category`)."""
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, Mapping):
        keys = list(value)
        value = [dict(zip(keys, values)) for values in zip(*(value[key] for key in keys))]
    objects = []
    for obj in value or []:
        obj = dict(obj)
        if "category_id" not in obj and "category" in obj:
            obj["category_id"] = obj.pop("category")
        objects.append(obj)
    return objects


def _object_mask(obj: Mapping, size: tuple[int, int]) -> np.ndarray | None:
    """The mask of a COCO object at its image's size, or `None` for a box-only object."""
    from ..image_processing_pil_maskdino import coco_object_target

    mask, _ = coco_object_target(obj, size, size, f"annotation {obj.get('id', '(no id)')}")
    return mask


def _with_mask(obj: Mapping, mask: np.ndarray | None) -> dict:
    from pycocotools import mask as coco_mask

    obj = dict(obj)
    if mask is not None:
        rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        obj["segmentation"] = {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}
    return obj


def flip_coco_objects(objects: Sequence[Mapping], size: tuple[int, int]) -> list[dict]:
    """COCO objects of an image of `size` `(height, width)` flipped left to right (polygons, RLE and boxes)."""
    width = size[1]
    flipped = []
    for obj in objects:
        obj = dict(obj)
        segmentation = obj.get("segmentation")
        if isinstance(segmentation, list) and segmentation:
            obj["segmentation"] = [
                [width - value if position % 2 == 0 else value for position, value in enumerate(polygon)]
                for polygon in segmentation
            ]
        elif isinstance(segmentation, Mapping):
            obj = _with_mask(obj, _object_mask(obj, size)[:, ::-1])
        if obj.get("bbox") is not None:
            x, y, box_width, box_height = obj["bbox"]
            obj["bbox"] = [width - x - box_width, y, box_width, box_height]
        flipped.append(obj)
    return flipped


def rescale_and_crop_coco_objects(
    objects: Sequence[Mapping], size: tuple[int, int], new_size: tuple[int, int], window: tuple[slice, slice]
) -> list[dict]:
    """COCO objects of an image of `size` after resizing it to `new_size` and cropping `window` out of it: masks
    (as RLE of the window) with nearest-neighbour sampling, as label maps are resized, and boxes scaled and clipped
    to the window."""
    scale_y, scale_x = new_size[0] / size[0], new_size[1] / size[1]
    rows, cols = window
    top, left = rows.start, cols.start
    bottom, right = min(rows.stop, new_size[0]), min(cols.stop, new_size[1])
    transformed = []
    for obj in objects:
        mask = _object_mask(obj, size)
        obj = dict(obj)
        if mask is not None:
            obj = _with_mask(obj, resize_label_map(mask, new_size)[window])
        if obj.get("bbox") is not None:
            x, y, box_width, box_height = obj["bbox"]
            x0, x1 = np.clip([x * scale_x, (x + box_width) * scale_x], left, right) - left
            y0, y1 = np.clip([y * scale_y, (y + box_height) * scale_y], top, bottom) - top
            obj["bbox"] = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
        transformed.append(obj)
    return transformed


def ground_truth_of_row(
    row: Mapping[str, Any],
    task: str,
    ignore_index: int = SEMANTIC_IGNORE_INDEX,
    do_reduce_labels: bool = False,
    image_column: str = "image",
    panoptic_map_column: str = "panoptic_map",
    segments_info_column: str = "segments_info",
    semantic_map_column: str = "semantic_map",
    objects_column: str = "objects",
):
    """
    The ground truth of one dataset row at its image's original size, for [`SegmentationEvaluator`]: a
    [`GroundTruth`] of the row's COCO objects (masks where they have one, boxes, COCO areas, crowd flags) or
    panoptic segments (crowd flags), or `(masks, labels)` of its semantic classes (`task="semantic"`). A panoptic
    annotation gives every segment for the panoptic task (PQ and mIoU use them all, AP the things) and its thing
    segments for the instance and detection tasks.
    """
    from .evaluation import GroundTruth

    if task == "semantic":
        semantic_map = semantic_label_map(row[semantic_map_column], ignore_index, do_reduce_labels)
        return ground_truth_segments("semantic", semantic_map=semantic_map, ignore_index=ignore_index)
    if objects_column in row and row[objects_column] is not None:
        return _objects_ground_truth(coco_objects_of_row(row[objects_column]), _image_size(row[image_column]))
    panoptic_map = decode_panoptic_map(row[panoptic_map_column])
    segments = row[segments_info_column]
    segment_task = "panoptic" if task == "panoptic" else "instance"
    masks, labels = ground_truth_segments(segment_task, panoptic_map=panoptic_map, segments_info=segments)
    # ground_truth_segments keeps the segments present in the map, by id
    present = sorted(segment_class_mapping(segments, things_only=segment_task == "instance"))
    present = [i for i in present if (panoptic_map == i).any()]
    crowd_ids = {int(s["id"]) for s in segments if s.get("iscrowd", False)}
    return GroundTruth(labels=labels, masks=masks, iscrowd=np.array([i in crowd_ids for i in present], dtype=bool))


def _image_size(image) -> tuple[int, int]:
    if hasattr(image, "size") and not isinstance(image, np.ndarray):
        return image.size[1], image.size[0]  # PIL: (width, height)
    return tuple(np.asarray(image).shape[:2])


def _objects_ground_truth(objects: Sequence[Mapping], size: tuple[int, int]):
    from .evaluation import GroundTruth, _mask_bbox

    masks, labels, boxes, areas, iscrowd, has_masks = [], [], [], [], [], []
    for obj in objects:
        mask = _object_mask(obj, size)
        has_masks.append(mask is not None)
        mask = np.zeros(size, dtype=bool) if mask is None else mask.astype(bool)
        masks.append(mask)
        labels.append(int(obj["category_id"]))
        boxes.append([float(v) for v in obj["bbox"]] if obj.get("bbox") is not None else _mask_bbox(mask))
        default_area = float(mask.sum()) if has_masks[-1] else boxes[-1][2] * boxes[-1][3]
        areas.append(float(obj.get("area", default_area)))
        iscrowd.append(bool(obj.get("iscrowd", 0)))
    return GroundTruth(
        labels=np.array(labels, dtype=np.int64),
        masks=np.stack(masks) if masks else np.zeros((0, *size), dtype=bool),
        has_masks=np.array(has_masks, dtype=bool),
        boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4),
        areas=np.array(areas, dtype=np.float64),
        iscrowd=np.array(iscrowd, dtype=bool),
    )


@dataclass
class SegmentationTransform:
    """
    Turns a batch of dataset rows (as `datasets.Dataset.with_transform` passes it: a dict of column lists) into
    model inputs: per example `pixel_values`, `pixel_mask`, `mask_labels` and `class_labels` made by the image
    processor, after a random horizontal flip when `flip_probability > 0` and large-scale jitter when
    `large_scale_jitter_size` is set.

    Rows hold their targets in one of three ways:

    - a `panoptic_map` of segment ids (an RGB COCO panoptic PNG is decoded as `R + 256 G + 256^2 B`) with its
      `segments_info` (`id`, `category_id`, `isthing`, optionally `iscrowd`: crowd segments are ignored in training);
    - a `semantic_map` of class ids (`--task semantic`);
    - COCO `objects` (the file readers' JSON text, or a list of COCO annotation dicts): polygon or RLE masks, or
      boxes alone (detection data). Such rows also give `target_boxes` and `target_has_masks` (see the model's
      forward): box-only objects train the class and box heads and skip the mask losses.

    Args:
        image_processor ([`MaskDinoImageProcessor`]):
            Resizes, normalises and pads, and builds the target masks at the padded size.
        task (`str`, *optional*, defaults to `"panoptic"`):
            Which targets to train on: panoptic segments, instance (thing) segments, or semantic classes
            (`"detection"`: as `"instance"`).
        flip_probability (`float`, *optional*, defaults to 0.0):
            Probability of flipping an image and its maps left to right (training augmentation).
        large_scale_jitter_size (`int`, *optional*):
            The original's COCO training augmentation (detectron2's `ResizeScale` + `FixedSizeCrop`, 1024 in the
            released configs): scale each image to fit a square of side `large_scale_jitter_size * s`, with `s`
            drawn uniformly from `large_scale_jitter_scales`, then keep a random window of at most
            `large_scale_jitter_size` pixels a side. The image processor's own resize is then skipped. Unlike the
            original, the window is not padded to the full square with gray: the collator pads a batch to its
            largest image, and `pixel_mask` marks the padding.
        large_scale_jitter_scales (`tuple[float, float]`, *optional*, defaults to `(0.1, 2.0)`):
            Range of the jitter's scale `s`.
        seed (`int`, *optional*, defaults to 0):
            Seed of the flips and the jitter. With a `sample_index` column (the examples add one), each row's draws
            come from `numpy.random.default_rng([seed, epoch, sample_index])`, so that they do not depend on what
            was drawn before: a run resumed from a checkpoint (which skips the batches already trained on) sees the
            same augmented images as the run it continues. Set `epoch` at the start of every epoch. Without the
            column, one generator seeded with `seed` serves every row in turn.
        ignore_index (`int`, *optional*, defaults to 255):
            Semantic-map value of unlabelled pixels.
        do_reduce_labels (`bool`, *optional*, defaults to `False`):
            Semantic maps whose 0 means "unlabelled" (ADE20K): 0 becomes `ignore_index`, every other class id - 1.
        image_column, panoptic_map_column, segments_info_column, semantic_map_column, objects_column (`str`):
            Column names of the dataset.
    """

    image_processor: Any
    task: str = "panoptic"
    flip_probability: float = 0.0
    large_scale_jitter_size: int | None = None
    large_scale_jitter_scales: tuple[float, float] = (0.1, 2.0)
    seed: int = 0
    ignore_index: int = SEMANTIC_IGNORE_INDEX
    do_reduce_labels: bool = False
    image_column: str = "image"
    panoptic_map_column: str = "panoptic_map"
    segments_info_column: str = "segments_info"
    semantic_map_column: str = "semantic_map"
    objects_column: str = "objects"
    sample_index_column: str = "sample_index"
    epoch: int = 0
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"`task` must be one of {TASKS}, got {self.task!r}.")
        if self.large_scale_jitter_size is not None and self.large_scale_jitter_size < 1:
            raise ValueError(
                f"`large_scale_jitter_size` must be a positive side length, got {self.large_scale_jitter_size}."
            )
        scales = tuple(self.large_scale_jitter_scales)
        if len(scales) != 2 or not 0 < scales[0] <= scales[1]:
            raise ValueError(
                "`large_scale_jitter_scales` must be (min, max) with 0 < min <= max, "
                f"got {self.large_scale_jitter_scales}."
            )
        self._rng = np.random.default_rng(self.seed)

    def jitter_geometry(
        self, height: int, width: int, rng: np.random.Generator | None = None
    ) -> tuple[tuple[int, int], tuple[slice, slice]]:
        """A random large-scale jitter of an image of `height` x `width`: the size to resize it to and the window
        to keep (see the class docstring)."""
        rng = self._rng if rng is None else rng
        size = self.large_scale_jitter_size
        factor = rng.uniform(*self.large_scale_jitter_scales) * size / max(height, width)
        new_height, new_width = max(1, round(height * factor)), max(1, round(width * factor))
        top = round(rng.uniform() * max(new_height - size, 0))
        left = round(rng.uniform() * max(new_width - size, 0))
        return (new_height, new_width), (slice(top, top + size), slice(left, left + size))

    def _resize_image(self, image: np.ndarray, new_size: tuple[int, int]) -> np.ndarray:
        channels_first = np.ascontiguousarray(image.transpose(2, 0, 1))
        if self.image_processor.backend == "torchvision":  # that backend resizes tensors
            channels_first = torch.from_numpy(channels_first)
        resized = self.image_processor.resize(channels_first, size=SizeDict(height=new_size[0], width=new_size[1]))
        return np.asarray(resized).transpose(1, 2, 0)

    def large_scale_jitter(
        self, image: np.ndarray, label_map: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Randomly rescale a `(height, width, channels)` image and its label map and crop a window of at most
        `large_scale_jitter_size` a side, the same way for both (see the class docstring)."""
        new_size, window = self.jitter_geometry(*label_map.shape, rng=rng)
        return self._resize_image(image, new_size)[window], resize_label_map(label_map, new_size)[window]

    def _label_map_targets(self, batch: Mapping[str, list], index: int) -> tuple[np.ndarray, dict | None, int]:
        """The label map of a row, the segment-to-class mapping (`None` for semantic maps) and its ignored value."""
        if self.task == "semantic":
            label_map = semantic_label_map(
                batch[self.semantic_map_column][index], self.ignore_index, self.do_reduce_labels
            )
            return label_map, None, self.ignore_index
        label_map = decode_panoptic_map(batch[self.panoptic_map_column][index])
        # crowd segments are ignored in training, as the original's COCO panoptic mapper ignores them
        segments = [s for s in batch[self.segments_info_column][index] if not s.get("iscrowd", False)]
        mapping = segment_class_mapping(segments, things_only=self.task != "panoptic")
        # segment id 0 is "no segment"; in the instance task, stuff segments become "no segment" too
        label_map = np.where(np.isin(label_map, list(mapping)), label_map, 0)
        return label_map, mapping, 0

    def _row_rng(self, batch: Mapping[str, list], index: int) -> np.random.Generator:
        if self.sample_index_column in batch:
            return np.random.default_rng([self.seed, self.epoch, int(batch[self.sample_index_column][index])])
        return self._rng

    def _encode_objects(self, image: np.ndarray, objects: list[dict], rng: np.random.Generator):
        size = image.shape[:2]
        if self.flip_probability > 0 and rng.random() < self.flip_probability:
            image, objects = image[:, ::-1], flip_coco_objects(objects, size)
        if self.large_scale_jitter_size is not None:
            new_size, window = self.jitter_geometry(*size, rng=rng)
            image = self._resize_image(image, new_size)[window]
            objects = rescale_and_crop_coco_objects(objects, size, new_size, window)
        return self.image_processor(
            images=np.ascontiguousarray(image),
            annotations={"annotations": objects},
            do_resize=self.large_scale_jitter_size is None,
            return_tensors="pt",
        )

    def _encode_label_map(self, image: np.ndarray, batch: Mapping[str, list], index: int, rng: np.random.Generator):
        label_map, mapping, ignore_index = self._label_map_targets(batch, index)
        if self.flip_probability > 0 and rng.random() < self.flip_probability:
            image, label_map = image[:, ::-1], label_map[:, ::-1]
        if self.large_scale_jitter_size is not None:
            image, label_map = self.large_scale_jitter(image, label_map, rng)
        return self.image_processor(
            images=np.ascontiguousarray(image),
            segmentation_maps=np.ascontiguousarray(label_map),
            instance_id_to_semantic_id=mapping,
            ignore_index=ignore_index,
            do_resize=self.large_scale_jitter_size is None,
            return_tensors="pt",
        )

    def __call__(self, batch: Mapping[str, list]) -> dict[str, list]:
        uses_objects = self.task != "semantic" and self.objects_column in batch
        keys = ["pixel_values", "pixel_mask", "mask_labels", "class_labels"]
        if uses_objects:
            keys += ["target_boxes", "target_has_masks"]
        outputs: dict[str, list] = {key: [] for key in keys}
        for index, image in enumerate(batch[self.image_column]):
            image = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
            if not image.flags.writeable:  # Pillow's and Arrow's arrays are read-only views: torch warns on wrapping one
                image = image.copy()
            rng = self._row_rng(batch, index)
            if uses_objects:
                objects = coco_objects_of_row(batch[self.objects_column][index])
                encoded = self._encode_objects(image, objects, rng)
            else:
                encoded = self._encode_label_map(image, batch, index, rng)
            for key in keys:
                outputs[key].append(encoded[key][0])
        return outputs


def collate_segmentation_batch(examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """
    Stack examples made by [`SegmentationTransform`] into a batch, zero-padding pixels, pixel masks and target masks
    at the bottom/right to the largest size in the batch. Targets stay lists (one tensor per image), because images
    have different numbers of segments.
    """
    height = max(example["pixel_values"].shape[-2] for example in examples)
    width = max(example["pixel_values"].shape[-1] for example in examples)

    def pad(tensor: torch.Tensor) -> torch.Tensor:
        return nn.functional.pad(tensor, (0, width - tensor.shape[-1], 0, height - tensor.shape[-2]))

    batch = {
        "pixel_values": torch.stack([pad(example["pixel_values"]) for example in examples]),
        "pixel_mask": torch.stack([pad(example["pixel_mask"]) for example in examples]),
    }
    if "mask_labels" in examples[0]:
        batch["mask_labels"] = [pad(example["mask_labels"]) for example in examples]
        batch["class_labels"] = [example["class_labels"] for example in examples]
    for key in ("target_boxes", "target_has_masks"):
        if key in examples[0]:
            batch[key] = [example[key] for example in examples]
    return batch


# ---------------------------------------------------------------------------------------------------------- data


def load_segmentation_dataset(
    name_or_path: str,
    config_name: str | None = None,
    train_split: str = "train",
    eval_split: str = "validation",
    validation_fraction: float = 0.1,
    seed: int = 0,
):
    """
    A `DatasetDict` with `"train"` and `"validation"` splits from a directory written by `save_to_disk`
    (`load_from_disk`) or anything `load_dataset` accepts (a Hub dataset name, a local dataset script or data
    directory). Without `eval_split`, `validation_fraction` of the training split is held out.
    """
    from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

    path = Path(name_or_path)
    saved_to_disk = path.is_dir() and any((path / name).is_file() for name in ("dataset_dict.json", "state.json"))
    loaded = load_from_disk(str(path)) if saved_to_disk else load_dataset(name_or_path, config_name)
    if isinstance(loaded, Dataset):
        loaded = DatasetDict({train_split: loaded})
    if train_split not in loaded:
        raise ValueError(f"The dataset has no split {train_split!r}; it has {sorted(loaded)}.")
    if eval_split in loaded:
        return DatasetDict({"train": loaded[train_split], "validation": loaded[eval_split]})
    if not 0 < validation_fraction < 1:
        raise ValueError(
            f"The dataset has no split {eval_split!r} and `validation_fraction` ({validation_fraction}) cannot make one."
        )
    split = loaded[train_split].train_test_split(test_size=validation_fraction, seed=seed)
    return DatasetDict({"train": split["train"], "validation": split["test"]})


# ---------------------------------------------------------------------------------------------------------- labels


def dataset_label_names(dataset, segments_info_column: str = "segments_info") -> list[str] | None:
    """Class names of a dataset whose `segments_info.category_id` is a `ClassLabel`, else `None`."""
    feature = dataset.features.get(segments_info_column)
    # `[{...}]` in datasets < 4, `List({...})` from datasets 4
    inner = feature[0] if isinstance(feature, list) else getattr(feature, "feature", None)
    category = inner.get("category_id") if isinstance(inner, Mapping) else None
    return list(category.names) if hasattr(category, "names") else None


def dataset_stuff_label_ids(dataset, segments_info_column: str = "segments_info") -> list[int]:
    """Classes that occur as non-thing (`isthing=False`) segments in a dataset."""
    stuff = set()
    for segments in dataset.select_columns([segments_info_column])[segments_info_column]:
        stuff.update(int(s["category_id"]) for s in segments if not s.get("isthing", True))
    return sorted(stuff)


# ---------------------------------------------------------------------------------------------------------- model


def build_model_and_image_processor(
    id2label: Mapping[int, str],
    stuff_label_ids: Sequence[int],
    model_name_or_path: str | None = None,
    config_name: str | None = None,
    backbone_checkpoint: str | None = None,
    image_processor_name: str | None = None,
    shortest_edge: int | None = None,
    longest_edge: int | None = None,
    dataset_category_ids: Mapping[int, int] | None = None,
):
    """
    A [`MaskDinoForUniversalSegmentation`] for a dataset's labels and its [`MaskDinoImageProcessor`].

    With `model_name_or_path` (a checkpoint directory or Hub id), the checkpoint is fine-tuned: a different label set
    re-initialises the class head and the denoising label embeddings (`ignore_mismatched_sizes=True`), everything
    else is loaded. Otherwise a model is built from scratch from `config_name` (a `config.json` file or directory),
    with ImageNet backbone weights from `backbone_checkpoint` if given (see [`load_backbone_weights`]).

    The processor comes from `image_processor_name`, else the checkpoint, else the defaults (the original's 800 /
    1333 test size); `shortest_edge` / `longest_edge` override its size and `stuff_label_ids` its stuff classes.
    `dataset_category_ids` (`{label id: the dataset's own category id}`, for COCO files whose ids are not 0..N-1)
    is kept in the config as `dataset_category_ids`, so that results can be written with the dataset's ids.

    Returns:
        `tuple`: the model, the image processor, and a [`BackboneLoadingInfo`] (or `None` without
        `backbone_checkpoint`).
    """
    from ..configuration_maskdino import MaskDinoConfig
    from ..image_processing_pil_maskdino import (
        MaskDinoImageProcessorPil as MaskDinoImageProcessor,
    )
    from ..modeling_maskdino import MaskDinoForUniversalSegmentation

    id2label = {int(index): str(name) for index, name in id2label.items()}
    label2id = {name: index for index, name in id2label.items()}
    stuff_label_ids = [int(i) for i in stuff_label_ids]
    backbone_info = None
    if model_name_or_path is not None:
        model = MaskDinoForUniversalSegmentation.from_pretrained(
            model_name_or_path,
            id2label=id2label,
            label2id=label2id,
            stuff_label_ids=stuff_label_ids,
            ignore_mismatched_sizes=True,
        )
        # the label kwargs are set after the config's own checks ran
        model.config.validate()
    elif config_name is not None:
        config = MaskDinoConfig.from_pretrained(
            config_name, id2label=id2label, label2id=label2id, stuff_label_ids=stuff_label_ids
        )
        config.validate()
        model = MaskDinoForUniversalSegmentation(config)
        if backbone_checkpoint is not None:
            backbone_info = load_backbone_weights(model, backbone_checkpoint)
    else:
        raise ValueError("Give `model_name_or_path` (fine-tune a checkpoint) or `config_name` (train from scratch).")

    # a checkpoint's mapping belongs to its own dataset: replaced, or dropped
    model.config.dataset_category_ids = (
        {int(label): int(category) for label, category in dataset_category_ids.items()}
        if dataset_category_ids
        else None
    )
    processor_source = image_processor_name or model_name_or_path
    if processor_source is not None:
        image_processor = MaskDinoImageProcessor.from_pretrained(processor_source)
    else:
        image_processor = MaskDinoImageProcessor()
    image_processor.stuff_label_ids = stuff_label_ids
    if shortest_edge is not None or longest_edge is not None:
        shortest = shortest_edge or image_processor.size["shortest_edge"]
        longest = longest_edge or max(image_processor.size.get("longest_edge") or 0, shortest)
        image_processor.size = {"shortest_edge": shortest, "longest_edge": longest}
    return model, image_processor, backbone_info


# ---------------------------------------------------------------------------------------------------------- optimizer


def _is_backbone_parameter(name: str) -> bool:
    return name.startswith(("model.backbone.", "backbone."))


def optimizer_parameter_groups(
    model: nn.Module,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
    backbone_learning_rate_multiplier: float = DEFAULT_BACKBONE_LEARNING_RATE_MULTIPLIER,
) -> list[dict]:
    """
    AdamW parameter groups with the original's rules: the backbone learns at `learning_rate *
    backbone_learning_rate_multiplier`; normalisation layers, embeddings (and Swin's position tables) get no weight
    decay. Parameters that do not require gradients are left out.
    """
    no_decay_types = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d, nn.Embedding)
    no_decay = set()
    for module_name, module in model.named_modules():
        if isinstance(module, no_decay_types):
            no_decay.update(
                f"{module_name}.{name}" if module_name else name for name, _ in module.named_parameters(recurse=False)
            )
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        # Swin's relative position tables and absolute position embeddings are embeddings too
        decays = (
            name not in no_decay and "relative_position_bias_table" not in name and "position_embeddings" not in name
        )
        groups.setdefault((_is_backbone_parameter(name), decays), []).append(parameter)
    return [
        {
            "params": parameters,
            "lr": learning_rate * (backbone_learning_rate_multiplier if in_backbone else 1.0),
            "weight_decay": weight_decay if decays else 0.0,
        }
        for (in_backbone, decays), parameters in sorted(groups.items())
    ]


def build_optimizer(
    model: nn.Module,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
    backbone_learning_rate_multiplier: float = DEFAULT_BACKBONE_LEARNING_RATE_MULTIPLIER,
) -> torch.optim.AdamW:
    """AdamW over [`optimizer_parameter_groups`]."""
    groups = optimizer_parameter_groups(model, learning_rate, weight_decay, backbone_learning_rate_multiplier)
    return torch.optim.AdamW(groups, lr=learning_rate, weight_decay=weight_decay)


def ground_truth_at_input_size(
    mask_labels: list[torch.Tensor],
    class_labels: list[torch.Tensor],
    image_sizes: torch.Tensor,
    target_boxes: list[torch.Tensor] | None = None,
    target_has_masks: list[torch.Tensor] | None = None,
) -> list:
    """
    The targets of a collated batch as [`SegmentationEvaluator`] takes them, for metrics at the processor's input
    resolution: per image, its binary masks cropped to its valid `(height, width)` in `image_sizes` (the model
    output's `image_sizes`), and its class labels; with `target_has_masks` (COCO objects), a [`GroundTruth`] that
    also has the boxes of box-only objects, in pixels.
    """
    from .evaluation import GroundTruth

    ground_truth = []
    for index, (masks, labels, (height, width)) in enumerate(zip(mask_labels, class_labels, image_sizes.tolist())):
        masks = masks[:, :height, :width] > 0.5
        if target_has_masks is None:
            ground_truth.append((masks, labels))
            continue
        has_masks = target_has_masks[index].bool().cpu()
        center_x, center_y, box_width, box_height = (
            target_boxes[index].float().cpu() * torch.tensor([width, height, width, height])
        ).unbind(-1)
        boxes = torch.stack([center_x - box_width / 2, center_y - box_height / 2, box_width, box_height], -1)
        mask_boxes = GroundTruth(labels=labels.cpu(), masks=masks.cpu()).boxes
        boxes = np.where(has_masks[:, None].numpy(), mask_boxes, boxes.numpy())
        ground_truth.append(GroundTruth(labels=labels.cpu(), masks=masks.cpu(), has_masks=has_masks, boxes=boxes))
    return ground_truth


def evaluation_loss(
    model: nn.Module,
    outputs,
    mask_labels: list[torch.Tensor],
    class_labels: list[torch.Tensor],
    target_boxes: list[torch.Tensor] | None = None,
    target_has_masks: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """
    Loss of an eval-mode forward without targets: the weighted losses of the final prediction and of the encoder
    proposals (the denoising terms are zero). Such a forward predicts masks for the last decoder layer only, which
    is what post-processing needs, so the auxiliary layers' losses are left out; passing the targets to the forward
    instead gives them too, at the cost of predicting every layer's masks.

    Args:
        model ([`MaskDinoForUniversalSegmentation`]):
            The (unwrapped) model that produced `outputs`; its criterion computes the loss.
        outputs ([`MaskDinoForUniversalSegmentationOutput`]):
            Outputs of `model(pixel_values, pixel_mask)` in eval mode.
        mask_labels, class_labels, target_boxes, target_has_masks (`list[torch.Tensor]`):
            Targets as the model takes them (the last two for COCO objects, see [`SegmentationTransform`]).
    """
    targets = model.build_targets(mask_labels, class_labels, outputs.image_sizes, target_boxes, target_has_masks)
    prediction_sets = {key: outputs[key] for key in ("class_queries_logits", "masks_queries_logits", "pred_boxes")}
    prediction_sets["encoder_proposal_outputs"] = outputs.get("encoder_proposal_outputs")
    return sum(model.criterion(prediction_sets, targets).values())


# ---------------------------------------------------------------------------------------------------------- backbone


@dataclass
class BackboneLoadingInfo:
    """What [`load_backbone_weights`] did: backbone tensors filled, backbone tensors left as they were, and
    checkpoint tensors that have no place in the backbone (classification heads, poolers, final norms)."""

    loaded_keys: list[str]
    missing_keys: list[str]
    unused_keys: list[str]


def _read_state_dict(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    path = Path(checkpoint)
    if path.is_dir():
        candidates = ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"]
        found = [path / name for name in candidates if (path / name).is_file()]
        if not found:
            raise FileNotFoundError(
                f"{path} holds none of {candidates}; pass a `save_pretrained` directory or a file."
            )
        path = found[0]
    if path.name.endswith(".safetensors.index.json"):
        from safetensors.torch import load_file

        shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
        state_dict = {}
        for shard in shards:
            state_dict.update(load_file(path.parent / shard))
        return state_dict
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    # training checkpoints often wrap the weights
    for key in ("state_dict", "model"):
        if isinstance(state_dict.get(key), Mapping):
            state_dict = state_dict[key]
    return dict(state_dict)


def _pretrained_backbone_state_dict(backbone: nn.Module, directory: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """
    Backbone tensors of a transformers `save_pretrained` directory, read by the backbone's own class so that
    transformers' key renames (checkpoints are saved in their original key format) and model prefixes apply.
    Returns the tensors the directory provides and the checkpoint keys with no place in the backbone.
    """
    from transformers import AutoConfig

    checkpoint_type = AutoConfig.from_pretrained(directory).model_type
    if checkpoint_type != backbone.config.model_type:
        raise ValueError(
            f"{directory} holds a {checkpoint_type!r} model but the backbone is {backbone.config.model_type!r}; build "
            "the Mask DINO config with a backbone config of the checkpoint's type."
        )
    # the concrete class, not AutoBackbone, whose from_pretrained looks names up on the Hub (transformers 5.23)
    loaded, loading_info = type(backbone).from_pretrained(
        directory, out_features=list(backbone.out_features), output_loading_info=True
    )
    state_dict = loaded.state_dict()
    # tensors the directory does not have were freshly initialised by from_pretrained: leave ours as they are
    for key in loading_info["missing_keys"]:
        state_dict.pop(key, None)
    return state_dict, sorted(loading_info["unexpected_keys"])


def _checkpoint_state_dict(backbone: nn.Module, checkpoint) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The tensors of `checkpoint` (a state dict, a `save_pretrained` directory or a state dict file) and the keys
    transformers already found no place for (directories only)."""
    if isinstance(checkpoint, Mapping):
        return dict(checkpoint), []
    if (Path(checkpoint) / "config.json").is_file():
        return _pretrained_backbone_state_dict(backbone, Path(checkpoint))
    return _read_state_dict(checkpoint), []


def _strip_prefix(key: str, drop: str, add: str) -> str | None:
    """`key` with the prefix `drop` replaced by `add`, or `None` if it does not start with `drop`."""
    return add + key[len(drop) :] if key.startswith(drop) else None


def _best_prefix_mapping(checkpoint_keys: Iterable[str], backbone_keys: set[str]) -> tuple[str, str]:
    """
    The `(drop, add)` prefix pair that lands the most checkpoint keys on backbone keys. Classification checkpoints
    nest the encoder under a model prefix (`resnet.`, `swin.`) and some backbones do too (SwinBackbone keeps a
    `swin.` submodule), so the candidates are the first key components of each side, and no prefix. Ties go to
    the sorted-first pair, so the choice is deterministic.
    """
    checkpoint_keys = list(checkpoint_keys)
    checkpoint_prefixes = {""} | {key.split(".", 1)[0] + "." for key in checkpoint_keys if "." in key}
    backbone_prefixes = {""} | {key.split(".", 1)[0] + "." for key in backbone_keys if "." in key}
    return max(
        sorted(itertools.product(checkpoint_prefixes, backbone_prefixes)),
        key=lambda pair: sum(_strip_prefix(key, *pair) in backbone_keys for key in checkpoint_keys),
    )


def _check_shapes(mapped: Mapping[str, torch.Tensor], backbone_state: Mapping[str, torch.Tensor]) -> None:
    mismatched = [
        f"{key}: checkpoint {tuple(tensor.shape)} vs backbone {tuple(backbone_state[key].shape)}"
        for key, tensor in mapped.items()
        if tuple(tensor.shape) != tuple(backbone_state[key].shape)
    ]
    if mismatched:
        raise ValueError(
            "The checkpoint does not match the backbone architecture (check the backbone config): "
            + "; ".join(mismatched)
        )


def load_backbone_weights(
    model: nn.Module, checkpoint: str | Path | Mapping[str, torch.Tensor]
) -> BackboneLoadingInfo:
    """
    Fill the backbone of a Mask DINO model (`model.model.backbone`, or `model.backbone` for [`MaskDinoModel`])
    with ImageNet weights, e.g. to train from scratch on a new dataset.

    `checkpoint` is a transformers `save_pretrained` directory (of `ResNetModel`, `ResNetForImageClassification`,
    `SwinModel`, `SwinForImageClassification`, their `...Backbone`, ...), a `.safetensors` / `.bin` / `.pth` state
    dict file, or a state dict. Keys may carry the classification model's prefix (`resnet.`, `swin.`, ...); the
    prefix is found by matching against the backbone's own keys. The backbone config must describe the same
    architecture as the checkpoint (e.g. `ResNetConfig.from_pretrained(directory, out_features=[...])`); a shape
    mismatch raises.

    Returns:
        [`BackboneLoadingInfo`]. Raises `ValueError` if no checkpoint tensor fits the backbone.
    """
    base = getattr(model, "model", model)
    backbone = getattr(base, "backbone", None)
    if backbone is None:
        raise ValueError(f"{type(model).__name__} has no `backbone` (expected a Mask DINO model).")
    state_dict, unused_by_transformers = _checkpoint_state_dict(backbone, checkpoint)
    backbone_state = backbone.state_dict()
    backbone_keys = set(backbone_state)
    # frozen batch norms (`freeze_backbone_batch_norm`) keep no update counter: nothing is lost by dropping it
    if not any(key.endswith("num_batches_tracked") for key in backbone_keys):
        state_dict = {key: value for key, value in state_dict.items() if not key.endswith("num_batches_tracked")}

    drop, add = _best_prefix_mapping(state_dict, backbone_keys)
    renamed = {key: _strip_prefix(key, drop, add) for key in state_dict}
    mapped = {renamed[key]: tensor for key, tensor in state_dict.items() if renamed[key] in backbone_keys}
    if not mapped:
        raise ValueError(
            f"No tensor of the checkpoint fits the backbone ({type(backbone).__name__}); e.g. the backbone expects "
            f"{sorted(backbone_keys)[:3]} and the checkpoint has {sorted(state_dict)[:3]}."
        )
    _check_shapes(mapped, backbone_state)
    backbone.load_state_dict(mapped, strict=False)
    return BackboneLoadingInfo(
        loaded_keys=sorted(mapped),
        missing_keys=sorted(backbone_keys - set(mapped)),
        unused_keys=sorted(unused_by_transformers + [key for key in state_dict if renamed[key] not in backbone_keys]),
    )


__all__ = [
    "DEFAULT_BACKBONE_LEARNING_RATE_MULTIPLIER",
    "DEFAULT_LEARNING_RATE",
    "DEFAULT_MAX_GRAD_NORM",
    "DEFAULT_WEIGHT_DECAY",
    "SEMANTIC_IGNORE_INDEX",
    "TASKS",
    "BackboneLoadingInfo",
    "SegmentationTransform",
    "build_model_and_image_processor",
    "build_optimizer",
    "coco_objects_of_row",
    "collate_segmentation_batch",
    "dataset_label_names",
    "dataset_stuff_label_ids",
    "decode_panoptic_map",
    "evaluation_loss",
    "flip_coco_objects",
    "ground_truth_at_input_size",
    "ground_truth_of_row",
    "ground_truth_segments",
    "load_backbone_weights",
    "load_segmentation_dataset",
    "optimizer_parameter_groups",
    "rescale_and_crop_coco_objects",
    "segment_class_mapping",
    "semantic_label_map",
]
