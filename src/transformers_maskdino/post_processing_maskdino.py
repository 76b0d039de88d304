# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Post-processing of [`MaskDinoForUniversalSegmentation`] outputs for semantic, instance and panoptic segmentation and
object detection, shared by both image-processor backends (it works on the model's torch tensors, whatever the
backend that prepared the inputs). Signatures, segment ids and result keys follow Mask2Former's post-processors.
"""

import math
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.nn import functional as F
from transformers.image_processing_outputs import (
    SemanticSegmentationPostProcessorOutput,
)
from transformers.image_transforms import center_to_corners_format
from transformers.models.mask2former.image_processing_pil_mask2former import binary_mask_to_rle
from transformers.utils import logging

logger = logging.get_logger(__name__)

# Queries upsampled to the output size at once: bounds post-processing memory at large output sizes (a chunk holds
# `MASK_QUERY_CHUNK_SIZE x height x width` floats). 4 keeps a chunk's temporaries at 1333x800 (17 MB) under glibc's
# largest mmap threshold (32 MB), so that they are reused from the heap instead of being mapped and page-faulted
# afresh each time: at 800x1216 with 100 instances, 0.55 s instead of 1.0 s with 10.
MASK_QUERY_CHUNK_SIZE = 4
# Semantic scores are accumulated over bands of output rows of at most this many floats (`num_labels x rows x width`),
# so that a large output never holds every class's score map at once (unless the scores are asked for).
SEMANTIC_BAND_ELEMENTS = 2**24
# What transformers' pipelines pass as `threshold` when their caller gives none (tuned for softmax scores).
PIPELINE_DEFAULT_THRESHOLDS = {"instance": 0.9, "panoptic": 0.9, "detection": 0.5}


class _Predictions(NamedTuple):
    """The validated model outputs that post-processing reads; the per-image sizes are `None` when unknown."""

    class_logits: torch.Tensor
    mask_logits: torch.Tensor
    pred_boxes: torch.Tensor | None
    image_sizes: list[tuple[int, int]] | None
    padded_image_sizes: list[tuple[int, int]] | None
    from_pipeline: bool

    @property
    def batch_size(self) -> int:
        return self.class_logits.shape[0]

    def geometry(self, index: int, target_sizes) -> tuple[tuple | None, tuple | None, tuple]:
        """(valid input size, padded input size, output size) of image `index`."""
        if self.image_sizes is None:
            valid_size = padded_size = None
            default_output = tuple(self.mask_logits.shape[-2:])
        else:
            valid_size = self.image_sizes[index]
            padded_size = self.padded_image_sizes[index]
            default_output = valid_size
        output_size = target_sizes[index] if target_sizes is not None else default_output
        return valid_size, padded_size, output_size


def coco_rle(mask: torch.Tensor) -> dict:
    """
    COCO run-length encoding of a binary `(height, width)` mask as pycocotools writes it: `{"size": [height, width],
    "counts": str}` (column-major), what COCO results files and `pycocotools.mask.decode` take.
    """
    try:
        from pycocotools import mask as mask_utils
    except ImportError as error:
        raise ImportError(
            "`return_coco_rle=True` needs pycocotools: `pip install pycocotools` (or the package's `train` extra)."
        ) from error
    encoded = mask_utils.encode(np.asfortranarray(mask.cpu().numpy().astype(np.uint8)))
    encoded["counts"] = encoded["counts"].decode("ascii")
    return encoded


def _output_field(outputs, name: str):
    value = getattr(outputs, name, None)
    if value is None and isinstance(outputs, Mapping):
        value = outputs.get(name)
    return value


def _normalize_target_sizes(target_sizes, batch_size: int) -> list[tuple[int, int]] | None:
    if target_sizes is None:
        return None
    if isinstance(target_sizes, torch.Tensor):
        target_sizes = target_sizes.tolist()
    if len(target_sizes) != batch_size:
        raise ValueError(
            f"`target_sizes` has {len(target_sizes)} entries but the outputs hold {batch_size} images; pass one "
            "(height, width) per image."
        )
    sizes = []
    for size in target_sizes:
        if isinstance(size, torch.Tensor):
            size = size.tolist()
        if len(size) != 2 or min(int(size[0]), int(size[1])) < 1:
            raise ValueError(f"Each entry of `target_sizes` must be a positive (height, width), got {size}.")
        sizes.append((int(size[0]), int(size[1])))
    return sizes


def _as_size_list(sizes) -> list[tuple[int, int]] | None:
    if sizes is None:
        return None
    return [(int(height), int(width)) for height, width in torch.as_tensor(sizes).tolist()]


def _logit(probability: float) -> float:
    if not 0.0 < probability < 1.0:
        raise ValueError(f"`mask_threshold` is a probability and must be in (0, 1), got {probability}.")
    return math.log(probability / (1.0 - probability))


def _check_top_k(top_k) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"`top_k` must be a positive integer (how many (query, class) pairs to keep), got {top_k!r}.")
    return top_k


def _check_finite(name: str, tensor: torch.Tensor | None) -> None:
    if tensor is None or tensor.numel() == 0:
        return
    # one pass, 15x faster than `isfinite(tensor).all()` on mask logits: a NaN makes both extremes NaN
    extremes = torch.stack(torch.aminmax(tensor))
    if not torch.isfinite(extremes).all():
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(
            f"The model outputs' `{name}` has {bad} non-finite value(s) (NaN or inf); post-processing needs finite "
            "logits. Check the inputs (normalised pixels) and the weights, or run in float32 if this came from half "
            "precision."
        )


class MaskDinoPostProcessingMixin:
    """
    `post_process_semantic_segmentation`, `post_process_instance_segmentation`, `post_process_panoptic_segmentation`
    and `post_process_object_detection`, reproducing the original's inference with Mask2Former's signatures. The
    checkpoint's inference settings (`object_mask_threshold`, `overlap_threshold`, `panoptic_temperature`,
    `detections_per_image`, `stuff_label_ids`, ...) are attributes of the image processor that mixes this in.
    """

    def _query_probabilities(self, class_logits: torch.Tensor, tempered: bool = False) -> torch.Tensor:
        """
        `(..., num_labels)` class probabilities: the softmax without "no object" for cross-entropy models, else the
        sigmoid of the focal logits, with `tempered` the softmax of those divided by `panoptic_temperature` (when the
        checkpoint applies it).
        """
        if self.use_semantic_cross_entropy:
            return class_logits.softmax(-1)[..., :-1]
        probabilities = class_logits.sigmoid()
        if tempered and self.apply_panoptic_temperature:
            probabilities = (probabilities / self.panoptic_temperature).softmax(-1)
        return probabilities

    def _read_outputs(self, outputs, needs_boxes: bool = False) -> _Predictions:
        class_logits = _output_field(outputs, "class_queries_logits")
        mask_logits = _output_field(outputs, "masks_queries_logits")
        if class_logits is None or mask_logits is None:
            raise ValueError(
                "The model outputs must have `class_queries_logits` and `masks_queries_logits` (a "
                "`MaskDinoForUniversalSegmentationOutput`)."
            )
        pred_boxes = _output_field(outputs, "pred_boxes")
        if needs_boxes and pred_boxes is None:
            raise ValueError("Object detection needs `pred_boxes` in the model outputs.")
        image_sizes = _output_field(outputs, "image_sizes")
        padded_image_sizes = _output_field(outputs, "padded_image_sizes")
        if (image_sizes is None) != (padded_image_sizes is None):
            raise ValueError("The outputs must carry both `image_sizes` and `padded_image_sizes`, or neither.")
        if class_logits.dim() != 3 or mask_logits.dim() != 4:
            raise ValueError(
                "`class_queries_logits` must be (batch_size, num_queries, num_class_logits) and `masks_queries_logits` "
                f"(batch_size, num_queries, height, width), got {tuple(class_logits.shape)} and "
                f"{tuple(mask_logits.shape)}."
            )
        shapes = {"class_queries_logits": tuple(class_logits.shape[:2]), "masks_queries_logits": tuple(mask_logits.shape[:2])}
        if pred_boxes is not None:
            shapes["pred_boxes"] = tuple(pred_boxes.shape[:2])
        if image_sizes is not None:
            shapes["image_sizes"] = (len(image_sizes),)
            shapes["padded_image_sizes"] = (len(padded_image_sizes),)
        if len({shape[0] for shape in shapes.values()}) > 1 or len({s[1] for s in shapes.values() if len(s) > 1}) > 1:
            described = ", ".join(f"`{name}` {shape}" for name, shape in shapes.items())
            raise ValueError(
                f"The model outputs disagree on the batch size / number of queries: {described}; pass the outputs of "
                "one forward (the same images in every field)."
            )
        for name, tensor in (
            ("class_queries_logits", class_logits),
            ("masks_queries_logits", mask_logits),
            ("pred_boxes", pred_boxes),
        ):
            _check_finite(name, tensor)
        sizes = _as_size_list(image_sizes)
        if sizes is not None:
            for index, (height, width) in enumerate(sizes):
                if height < 1 or width < 1:
                    raise ValueError(
                        f"Image {index} has no valid pixels (valid size {height}x{width}): its `pixel_mask` is all "
                        "zeros. The pixel mask must be 1 on the image and 0 on the padding, as the image processor "
                        "makes it."
                    )
        return _Predictions(
            class_logits=class_logits.float(),
            mask_logits=mask_logits.float(),
            pred_boxes=None if pred_boxes is None else pred_boxes.float(),
            image_sizes=sizes,
            padded_image_sizes=_as_size_list(padded_image_sizes),
            # transformers' pipelines add `target_size` to the outputs they post-process
            from_pipeline=_output_field(outputs, "target_size") is not None,
        )

    def _warn_pipeline_default(self, predictions: _Predictions, task: str, threshold: float, dropped: int) -> None:
        """
        Pipelines pass their own default threshold, made for softmax scores, which the processor cannot tell from a
        threshold their caller chose; so it is kept, and a warning (once) says which threshold gives the checkpoint's
        own results, when that default left out predictions the checkpoint's threshold keeps.
        """
        if not predictions.from_pipeline or threshold != PIPELINE_DEFAULT_THRESHOLDS[task] or dropped == 0:
            return
        if getattr(self, "_warned_pipeline_default", False):
            return
        self._warned_pipeline_default = True
        pipeline_task = "object-detection" if task == "detection" else "image-segmentation"
        logger.warning(
            f"The {pipeline_task} pipeline's default threshold={threshold} (made for softmax scores) left out {dropped} "
            f"{task} prediction(s) that this Mask DINO checkpoint keeps: its scores are sigmoid probabilities and its "
            f"own score threshold is {self.object_mask_threshold} (the processor's `object_mask_threshold`). Pass "
            f"threshold={self.object_mask_threshold} to the pipeline call to get them."
        )

    @staticmethod
    def _resize_mask_logits(
        mask_logits: torch.Tensor, valid_size: tuple | None, padded_size: tuple | None, output_size: tuple
    ) -> torch.Tensor:
        """
        Mask logits `(num_masks, h, w)` at `output_size`: upsampled to the padded input, cropped to the valid image,
        then resized to the output size, all bilinear, as the original does. Without the input geometry the masks
        are taken to cover the image exactly and are resized directly.
        """
        if mask_logits.shape[0] == 0:
            return mask_logits.new_zeros((0, *output_size))
        masks = mask_logits[None]
        if padded_size is not None:
            if tuple(masks.shape[-2:]) != tuple(padded_size):
                masks = F.interpolate(masks, size=padded_size, mode="bilinear", align_corners=False)
            masks = masks[..., : valid_size[0], : valid_size[1]]
        if tuple(masks.shape[-2:]) != tuple(output_size):
            masks = F.interpolate(masks, size=output_size, mode="bilinear", align_corners=False)
        return masks[0]

    def _resized_mask_chunks(
        self, mask_logits: torch.Tensor, valid_size, padded_size, output_size
    ) -> Iterator[tuple[slice, torch.Tensor]]:
        """(queries, their mask logits at `output_size`), a few queries at a time: the same values as all at once."""
        for start in range(0, mask_logits.shape[0], MASK_QUERY_CHUNK_SIZE):
            queries = slice(start, start + MASK_QUERY_CHUNK_SIZE)
            yield queries, self._resize_mask_logits(mask_logits[queries], valid_size, padded_size, output_size)

    @staticmethod
    def _boxes_to_output(
        boxes_cxcywh: torch.Tensor, valid_size: tuple | None, padded_size: tuple | None, output_size: tuple | None
    ) -> torch.Tensor:
        """
        Boxes `(n, 4)` from the box head (centre format, relative to the padded input) as corners
        `(x_min, y_min, x_max, y_max)` in output pixels, not clipped (as the original). With `output_size=None`,
        relative to the valid image instead.
        """
        boxes = center_to_corners_format(boxes_cxcywh)
        # relative to the padded input -> relative to the valid image
        scale_x = 1.0 if padded_size is None else padded_size[1] / valid_size[1]
        scale_y = 1.0 if padded_size is None else padded_size[0] / valid_size[0]
        if output_size is not None:
            scale_x, scale_y = scale_x * output_size[1], scale_y * output_size[0]
        scale = torch.tensor([scale_x, scale_y, scale_x, scale_y], dtype=boxes.dtype, device=boxes.device)
        return boxes * scale

    def _select_detections(
        self, class_probabilities: torch.Tensor, top_k: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Top `top_k` (query, class) pairs of one image by class probability (a query can come with several classes),
        then without the stuff classes. Returns scores, labels and query indices, by descending score.
        """
        num_queries, num_labels = class_probabilities.shape
        scores, flat_indices = class_probabilities.flatten().topk(min(top_k, num_queries * num_labels))
        labels = flat_indices % num_labels
        queries = flat_indices // num_labels
        if self.stuff_label_ids:
            stuff = torch.tensor(self.stuff_label_ids, device=labels.device)
            is_thing = ~torch.isin(labels, stuff)
            scores, labels, queries = scores[is_thing], labels[is_thing], queries[is_thing]
        return scores, labels, queries

    def post_process_semantic_segmentation(
        self,
        outputs,
        target_sizes: list[tuple[int, int]] | torch.Tensor | None = None,
        return_segmentation_scores: bool = False,
    ) -> "list[torch.Tensor] | list[SemanticSegmentationPostProcessorOutput]":
        """
        Semantic segmentation maps from [`MaskDinoForUniversalSegmentation`] outputs: per-class scores
        `sum_q p(class | q) * sigmoid(mask_q)`, where `p` is the softmax without "no object" for cross-entropy models
        and, for sigmoid models, the softmax of the sigmoid probabilities divided by `panoptic_temperature`.

        Args:
            outputs ([`MaskDinoForUniversalSegmentationOutput`]):
                Raw model outputs.
            target_sizes (`list[tuple[int, int]]` or `torch.Tensor`, *optional*):
                `(height, width)` of each output map, e.g. the original image sizes. Defaults to the unpadded input
                size.
            return_segmentation_scores (`bool`, *optional*, defaults to `False`):
                Also return the `(num_labels, height, width)` scores.

        Returns:
            `list[torch.Tensor]`: `(height, width)` class-id maps, or with `return_segmentation_scores=True` a list of
            [`SemanticSegmentationPostProcessorOutput`] with `segmentation` and `segmentation_scores`.
        """
        predictions = self._read_outputs(outputs)
        target_sizes = _normalize_target_sizes(target_sizes, predictions.batch_size)
        results = []
        for index in range(predictions.batch_size):
            valid_size, padded_size, output_size = predictions.geometry(index, target_sizes)
            class_probabilities = self._query_probabilities(predictions.class_logits[index], tempered=True)
            mask_logits = predictions.mask_logits[index]
            if self.semantic_resize_mask_logits or padded_size is None:
                segmentation, scores = self._semantic_segmentation(
                    class_probabilities, mask_logits, valid_size, padded_size, output_size, return_segmentation_scores
                )
            else:
                # classes are combined at the padded input resolution; the score maps are cropped and resized after
                _, scores = self._semantic_segmentation(
                    class_probabilities, mask_logits, padded_size, padded_size, padded_size, True
                )
                scores = self._resize_mask_logits(scores, valid_size, padded_size, output_size)
                segmentation = scores.argmax(0)
            if return_segmentation_scores:
                results.append(
                    SemanticSegmentationPostProcessorOutput(
                        data={"segmentation": segmentation, "segmentation_scores": scores}
                    )
                )
            else:
                results.append(segmentation)
        return results

    def _semantic_segmentation(
        self, class_probabilities, mask_logits, valid_size, padded_size, output_size, return_scores: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        The `(height, width)` argmax of the `(num_labels, height, width)` scores (returned with `return_scores`).
        Without the scores, a large output is done in bands of rows, each band upsampling the masks again: the same
        values, without every class's score map at the output size at once.
        """
        height, width = output_size
        num_labels = class_probabilities.shape[-1]
        band_rows = height if return_scores else max(1, SEMANTIC_BAND_ELEMENTS // (num_labels * width))
        segmentation = torch.empty(output_size, dtype=torch.long, device=mask_logits.device)
        scores = None
        for top in range(0, height, band_rows):
            band = slice(top, top + band_rows)
            scores = None
            for queries, chunk_logits in self._resized_mask_chunks(mask_logits, valid_size, padded_size, output_size):
                partial = torch.einsum("qc,qhw->chw", class_probabilities[queries], chunk_logits[:, band].sigmoid())
                scores = partial if scores is None else scores + partial
            segmentation[band] = scores.argmax(0)
        return segmentation, scores if return_scores else None

    def post_process_instance_segmentation(
        self,
        outputs,
        threshold: float | None = None,
        mask_threshold: float = 0.5,
        overlap_mask_area_threshold: float | None = None,
        target_sizes: list[tuple[int, int]] | torch.Tensor | None = None,
        return_coco_annotation: bool = False,
        return_binary_maps: bool = False,
        return_coco_rle: bool = False,
        top_k: int | None = None,
    ) -> list[dict[str, Any]]:
        """
        Instance segmentation from [`MaskDinoForUniversalSegmentation`] outputs, as the original's instance
        inference: the `top_k` best (query, class) pairs by class probability (stuff classes then left out), each
        scored by class probability x mean mask probability inside its binary mask; no overlap suppression.
        Instances are returned by descending score. The arguments are Mask2Former's, in its order.

        Args:
            outputs ([`MaskDinoForUniversalSegmentationOutput`]):
                Raw model outputs.
            threshold (`float`, *optional*):
                Keep instances with a score at or above this. Defaults to none: all `top_k` are kept, as in the
                original.
            mask_threshold (`float`, *optional*, defaults to 0.5):
                Mask probability above which a pixel belongs to the instance.
            overlap_mask_area_threshold (`float`, *optional*):
                Accepted for Mask2Former's signature (pipelines pass it); unused, as Mask2Former's instance
                post-processing leaves it unused: instances are not suppressed by overlap.
            target_sizes (`list[tuple[int, int]]` or `torch.Tensor`, *optional*):
                `(height, width)` of each output. Defaults to the unpadded input size.
            return_coco_annotation (`bool`, *optional*, defaults to `False`):
                Return `segmentation` as a list with transformers' run-length encoding (`binary_mask_to_rle`:
                1-based start / length pairs, row-major) of each instance's mask.
            return_binary_maps (`bool`, *optional*, defaults to `False`):
                Return `segmentation` as `(num_instances, height, width)` boolean masks, row `i` for segment id `i`.
            return_coco_rle (`bool`, *optional*, defaults to `False`):
                Return `segmentation` as a list with each instance's COCO RLE as pycocotools makes it (`{"size",
                "counts"}`, for COCO results files and `pycocotools.mask.decode`). Needs pycocotools.
            top_k (`int`, *optional*):
                Number of (query, class) pairs considered; defaults to `detections_per_image`.

        Returns:
            `list[dict]`: per image, `segmentation` (an int32 `(height, width)` map of segment ids, -1 for background,
            where higher-scored instances cover lower ones; or as set by `return_binary_maps` /
            `return_coco_annotation` / `return_coco_rle`) and `segments_info`, a list of `{"id", "label_id",
            "was_fused", "score", "box_xyxy"}`: ids from 0 by descending score, and `box_xyxy` the box head's
            `[x_min, y_min, x_max, y_max]` in output pixels (when the outputs have `pred_boxes`).
        """
        if sum(map(bool, (return_binary_maps, return_coco_annotation, return_coco_rle))) > 1:
            raise ValueError(
                "Set at most one of `return_binary_maps`, `return_coco_annotation` and `return_coco_rle`."
            )
        predictions = self._read_outputs(outputs)
        mask_logit_threshold = _logit(mask_threshold)
        top_k = _check_top_k(self.detections_per_image if top_k is None else top_k)
        target_sizes = _normalize_target_sizes(target_sizes, predictions.batch_size)
        results = []
        for index in range(predictions.batch_size):
            valid_size, padded_size, output_size = predictions.geometry(index, target_sizes)
            class_probabilities = self._query_probabilities(predictions.class_logits[index])
            class_scores, labels, queries = self._select_detections(class_probabilities, top_k)
            mask_logits = predictions.mask_logits[index][queries]
            binary_masks = torch.empty((len(queries), *output_size), dtype=torch.bool, device=mask_logits.device)
            mean_mask_probability = class_scores.new_empty(len(queries))
            for chunk, chunk_logits in self._resized_mask_chunks(mask_logits, valid_size, padded_size, output_size):
                chunk_masks = chunk_logits > mask_logit_threshold
                # int32: a boolean sum would first copy the masks to int64 (3x the time)
                mask_area = chunk_masks.flatten(1).sum(1, dtype=torch.int32)
                # the probabilities inside the masks, 0 outside (sigmoid(-inf)): the values of `sigmoid * masks`
                masked_probabilities = F.threshold(chunk_logits, mask_logit_threshold, -math.inf).sigmoid_()
                mean_mask_probability[chunk] = masked_probabilities.flatten(1).sum(1) / (mask_area + 1e-6)
                binary_masks[chunk] = chunk_masks
            scores = class_scores * mean_mask_probability
            order = scores.argsort(descending=True, stable=True)
            if threshold is not None:
                kept = scores[order] >= threshold
                dropped = int((scores[order][~kept] >= self.object_mask_threshold).sum())
                self._warn_pipeline_default(predictions, "instance", threshold, dropped)
                order = order[kept]
            boxes = None
            if predictions.pred_boxes is not None:
                boxes = self._boxes_to_output(
                    predictions.pred_boxes[index][queries[order]], valid_size, padded_size, output_size
                )
            positions = order.tolist()
            segments_info = []
            for rank, position in enumerate(positions):
                segment = {
                    "id": rank,
                    "label_id": int(labels[position]),
                    "was_fused": False,
                    "score": float(scores[position]),
                }
                if boxes is not None:
                    segment["box_xyxy"] = boxes[rank].tolist()
                segments_info.append(segment)
            if return_binary_maps:
                segmentation = binary_masks[order]
            elif return_coco_annotation:
                segmentation = [[int(run) for run in binary_mask_to_rle(binary_masks[i].cpu())] for i in positions]
            elif return_coco_rle:
                segmentation = [coco_rle(binary_masks[i]) for i in positions]
            else:
                segmentation = torch.full(output_size, -1, dtype=torch.int32, device=mask_logits.device)
                # paint from the lowest score up so that higher-scored instances end on top; the masks are read in
                # place (reordering would copy all of them)
                for rank in reversed(range(len(positions))):
                    segmentation[binary_masks[positions[rank]]] = rank
            results.append({"segmentation": segmentation, "segments_info": segments_info})
        return results

    def post_process_panoptic_segmentation(
        self,
        outputs,
        threshold: float | None = None,
        mask_threshold: float = 0.5,
        overlap_mask_area_threshold: float | None = None,
        label_ids_to_fuse: set[int] | None = None,
        target_sizes: list[tuple[int, int]] | torch.Tensor | None = None,
    ) -> list[dict[str, Any]]:
        """
        Panoptic segmentation from [`MaskDinoForUniversalSegmentation`] outputs, as the original's panoptic
        inference: queries whose best class probability exceeds `threshold` are kept, scored with the tempered
        softmax over their sigmoid probabilities, and every pixel goes to the kept query with the highest
        `score x mask probability`. A query becomes a segment if at least `overlap_mask_area_threshold` of its mask
        (probability >= `mask_threshold`) survives; segments of a class in `label_ids_to_fuse` are merged. The
        arguments are Mask2Former's, in its order.

        Args:
            outputs ([`MaskDinoForUniversalSegmentationOutput`]):
                Raw model outputs.
            threshold (`float`, *optional*):
                Defaults to `object_mask_threshold`.
            mask_threshold (`float`, *optional*, defaults to 0.5):
                Mask probability from which a pixel belongs to a query's mask.
            overlap_mask_area_threshold (`float`, *optional*):
                Defaults to `overlap_threshold`. (The original keeps a segment at `>=` this; Mask2Former at `>`.)
            label_ids_to_fuse (`set[int]`, *optional*):
                Classes with at most one segment per image. Defaults to `stuff_label_ids`.
            target_sizes (`list[tuple[int, int]]` or `torch.Tensor`, *optional*):
                `(height, width)` of each output. Defaults to the unpadded input size.

        Returns:
            `list[dict]`: per image, `segmentation` (an int32 `(height, width)` map, 0 = no segment, segment ids from
            1 in query order, as Mask2Former) and `segments_info`, a list of `{"id", "label_id", "was_fused",
            "score"}`.
        """
        threshold = self.object_mask_threshold if threshold is None else threshold
        overlap_threshold = (
            self.overlap_threshold if overlap_mask_area_threshold is None else overlap_mask_area_threshold
        )
        fuse = set(self.stuff_label_ids if label_ids_to_fuse is None else label_ids_to_fuse)
        predictions = self._read_outputs(outputs)
        target_sizes = _normalize_target_sizes(target_sizes, predictions.batch_size)
        results = []
        for index in range(predictions.batch_size):
            valid_size, padded_size, output_size = predictions.geometry(index, target_sizes)
            class_logits = predictions.class_logits[index]
            if self.use_semantic_cross_entropy:
                best_probabilities, labels = class_logits.softmax(-1).max(-1)
                keep = (labels != class_logits.shape[-1] - 1) & (best_probabilities > threshold)
                scores = best_probabilities
            else:
                best_probabilities, labels = class_logits.sigmoid().max(-1)
                keep = best_probabilities > threshold
                scores, labels = self._query_probabilities(class_logits, tempered=True).max(-1)
            candidates = (best_probabilities > self.object_mask_threshold) & ~keep
            self._warn_pipeline_default(predictions, "panoptic", threshold, int(candidates.sum()))
            kept = keep.nonzero().flatten()
            segmentation = torch.zeros(output_size, dtype=torch.int32, device=class_logits.device)
            segments_info = []
            if kept.numel() > 0:
                owner, in_masks = self._panoptic_owners(
                    scores[kept], predictions.mask_logits[index][kept], mask_threshold, valid_size, padded_size,
                    output_size,
                )
                segments_info = self._panoptic_segments(
                    segmentation, owner, in_masks, scores[kept], labels[kept], overlap_threshold, fuse
                )
            results.append({"segmentation": segmentation, "segments_info": segments_info})
        return results

    def _panoptic_owners(self, kept_scores, mask_logits, mask_threshold, valid_size, padded_size, output_size):
        """
        For each pixel the kept query with the highest `score x mask probability` (the first on ties, as `argmax`),
        and each query's `(height, width)` mask (probability >= `mask_threshold`), a few queries at a time.
        """
        best = torch.full(output_size, -math.inf, device=mask_logits.device)
        owner = torch.zeros(output_size, dtype=torch.long, device=mask_logits.device)
        in_masks = torch.empty((len(kept_scores), *output_size), dtype=torch.bool, device=mask_logits.device)
        for queries, chunk_logits in self._resized_mask_chunks(mask_logits, valid_size, padded_size, output_size):
            mask_probabilities = chunk_logits.sigmoid()
            in_masks[queries] = mask_probabilities >= mask_threshold
            chunk_best, chunk_owner = (kept_scores[queries, None, None] * mask_probabilities).max(0)
            better = chunk_best > best
            owner[better] = chunk_owner[better] + queries.start
            best = torch.where(better, chunk_best, best)
        return owner, in_masks

    @staticmethod
    def _panoptic_segments(segmentation, owner, in_masks, kept_scores, kept_labels, overlap_threshold, fuse):
        """Paints the valid segments into `segmentation` and returns their `segments_info`."""
        segments_info = []
        fused_segment_ids: dict[int, int] = {}
        for k in range(len(kept_scores)):
            label = int(kept_labels[k])
            owned = owner == k
            segment_pixels = owned & in_masks[k]
            owned_area, mask_area = int(owned.sum(dtype=torch.int32)), int(in_masks[k].sum(dtype=torch.int32))
            if owned_area == 0 or mask_area == 0 or not segment_pixels.any():
                continue
            # `>=` as the original (Mask2Former's `check_segment_validity` keeps `>` only)
            if owned_area / mask_area < overlap_threshold:
                continue
            if label in fuse and label in fused_segment_ids:
                segmentation[segment_pixels] = fused_segment_ids[label]
                continue
            segment_id = len(segments_info) + 1
            if label in fuse:
                fused_segment_ids[label] = segment_id
            segmentation[segment_pixels] = segment_id
            segments_info.append(
                {"id": segment_id, "label_id": label, "was_fused": label in fuse, "score": float(kept_scores[k])}
            )
        return segments_info

    def post_process_object_detection(
        self,
        outputs,
        threshold: float = 0.5,
        target_sizes: list[tuple[int, int]] | torch.Tensor | None = None,
        top_k: int | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """
        Object detection from the box head of [`MaskDinoForUniversalSegmentation`]: the `top_k` best (query, class)
        pairs by class probability (stuff classes then left out, as for instance segmentation), above `threshold`.

        Args:
            outputs ([`MaskDinoForUniversalSegmentationOutput`]):
                Raw model outputs.
            threshold (`float`, *optional*, defaults to 0.5):
                Keep detections whose class probability is above this.
            target_sizes (`list[tuple[int, int]]` or `torch.Tensor` of shape `(batch_size, 2)`, *optional*):
                `(height, width)` of each image to express boxes in. If unset, boxes are relative (0..1) to the
                unpadded input image.
            top_k (`int`, *optional*):
                Number of (query, class) pairs considered; defaults to `detections_per_image`.

        Returns:
            `list[dict]`: per image, `scores` `(n,)`, `labels` `(n,)` and `boxes` `(n, 4)` as `(x_min, y_min, x_max,
            y_max)` corners (transformers' detection convention), by descending score.
        """
        predictions = self._read_outputs(outputs, needs_boxes=True)
        top_k = _check_top_k(self.detections_per_image if top_k is None else top_k)
        target_sizes = _normalize_target_sizes(target_sizes, predictions.batch_size)
        results = []
        for index in range(predictions.batch_size):
            valid_size, padded_size, _ = predictions.geometry(index, None)
            output_size = None if target_sizes is None else target_sizes[index]
            class_probabilities = self._query_probabilities(predictions.class_logits[index])
            scores, labels, queries = self._select_detections(class_probabilities, top_k)
            keep = scores > threshold
            dropped = int((scores[~keep] > self.object_mask_threshold).sum())
            self._warn_pipeline_default(predictions, "detection", threshold, dropped)
            boxes = self._boxes_to_output(
                predictions.pred_boxes[index][queries[keep]], valid_size, padded_size, output_size
            )
            results.append({"scores": scores[keep], "labels": labels[keep], "boxes": boxes})
        return results


__all__ = ["MaskDinoPostProcessingMixin", "binary_mask_to_rle", "coco_rle"]
