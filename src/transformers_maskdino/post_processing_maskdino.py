# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Post-processing of [`MaskDinoForUniversalSegmentation`] outputs for semantic, instance and panoptic segmentation and
object detection, shared by both image-processor backends (it works on the model's torch tensors, whatever the
backend that prepared the inputs).
"""

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from transformers.image_processing_outputs import (
    SemanticSegmentationPostProcessorOutput,
)
from transformers.image_transforms import center_to_corners_format

# Queries upsampled at once by semantic post-processing; bounds memory at large output sizes.
SEMANTIC_QUERY_CHUNK_SIZE = 25


def binary_mask_to_rle(mask: torch.Tensor) -> list[int]:
    """
    Run-length encoding of a binary `(height, width)` mask in row-major order, as alternating run lengths starting
    with a run of zeros (the encoding of transformers' `binary_mask_to_rle`).
    """
    pixels = np.concatenate([[0], mask.flatten().cpu().numpy().astype(np.uint8), [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return runs.tolist()


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
        if len(size) != 2:
            raise ValueError(f"Each entry of `target_sizes` must be (height, width), got {size}.")
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


class MaskDinoPostProcessingMixin:
    """
    `post_process_semantic_segmentation`, `post_process_instance_segmentation`, `post_process_panoptic_segmentation`
    and `post_process_object_detection`, reproducing the original's inference. The checkpoint's inference settings
    (`object_mask_threshold`, `overlap_threshold`, `panoptic_temperature`, `detections_per_image`,
    `stuff_label_ids`, ...) are attributes of the image processor that mixes this in.
    """

    def _class_probabilities(self, class_logits: torch.Tensor) -> torch.Tensor:
        """`(..., num_labels)` probabilities: sigmoid of focal logits, or softmax without the "no object" column."""
        if self.use_semantic_cross_entropy:
            return class_logits.softmax(-1)[..., :-1]
        return class_logits.sigmoid()

    def _read_outputs(self, outputs) -> dict[str, Any]:
        class_logits = _output_field(outputs, "class_queries_logits")
        mask_logits = _output_field(outputs, "masks_queries_logits")
        if class_logits is None or mask_logits is None:
            raise ValueError(
                "The model outputs must have `class_queries_logits` and `masks_queries_logits` (a "
                "`MaskDinoForUniversalSegmentationOutput`)."
            )
        pred_boxes = _output_field(outputs, "pred_boxes")
        image_sizes = _output_field(outputs, "image_sizes")
        padded_image_sizes = _output_field(outputs, "padded_image_sizes")
        if (image_sizes is None) != (padded_image_sizes is None):
            raise ValueError("The outputs must carry both `image_sizes` and `padded_image_sizes`, or neither.")
        return {
            "class_logits": class_logits.float(),
            "mask_logits": mask_logits.float(),
            "pred_boxes": None if pred_boxes is None else pred_boxes.float(),
            "image_sizes": _as_size_list(image_sizes),
            "padded_image_sizes": _as_size_list(padded_image_sizes),
        }

    @staticmethod
    def _geometry(read: dict[str, Any], index: int, target_sizes) -> tuple[tuple | None, tuple | None, tuple]:
        """(valid input size, padded input size, output size) of image `index`; sizes are `None` when unknown."""
        if read["image_sizes"] is None:
            valid_size = padded_size = None
            default_output = tuple(read["mask_logits"].shape[-2:])
        else:
            valid_size = read["image_sizes"][index]
            padded_size = read["padded_image_sizes"][index]
            default_output = valid_size
        output_size = target_sizes[index] if target_sizes is not None else default_output
        return valid_size, padded_size, output_size

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

    @staticmethod
    def _boxes_to_output(
        boxes_cxcywh: torch.Tensor, valid_size: tuple | None, padded_size: tuple | None, output_size: tuple | None
    ) -> torch.Tensor:
        """
        Boxes `(n, 4)` from the box head (centre format, relative to the padded input) as corners in output pixels,
        not clipped (as the original). With `output_size=None`, relative to the valid image instead.
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
        **kwargs,
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
        read = self._read_outputs(outputs)
        batch_size = read["class_logits"].shape[0]
        target_sizes = _normalize_target_sizes(target_sizes, batch_size)
        results = []
        for index in range(batch_size):
            valid_size, padded_size, output_size = self._geometry(read, index, target_sizes)
            class_logits = read["class_logits"][index]
            if self.use_semantic_cross_entropy:
                class_probabilities = class_logits.softmax(-1)[..., :-1]
            else:
                class_probabilities = class_logits.sigmoid()
                if self.apply_panoptic_temperature:
                    class_probabilities = (class_probabilities / self.panoptic_temperature).softmax(-1)
            mask_logits = read["mask_logits"][index]
            if self.semantic_resize_mask_logits or padded_size is None:
                scores = self._semantic_scores(class_probabilities, mask_logits, valid_size, padded_size, output_size)
            else:
                # classes are combined at the padded input resolution; the score maps are cropped and resized after
                scores = self._semantic_scores(class_probabilities, mask_logits, padded_size, padded_size, padded_size)
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

    def _semantic_scores(self, class_probabilities, mask_logits, valid_size, padded_size, output_size) -> torch.Tensor:
        """`(num_labels, height, width)` scores, upsampling a few queries at a time to bound memory."""
        scores = None
        for start in range(0, mask_logits.shape[0], SEMANTIC_QUERY_CHUNK_SIZE):
            chunk = slice(start, start + SEMANTIC_QUERY_CHUNK_SIZE)
            mask_probabilities = self._resize_mask_logits(
                mask_logits[chunk], valid_size, padded_size, output_size
            ).sigmoid()
            partial = torch.einsum("qc,qhw->chw", class_probabilities[chunk], mask_probabilities)
            scores = partial if scores is None else scores + partial
        return scores

    def post_process_instance_segmentation(
        self,
        outputs,
        threshold: float | None = None,
        target_sizes: list[tuple[int, int]] | torch.Tensor | None = None,
        return_binary_maps: bool = False,
        return_coco_annotation: bool = False,
        mask_threshold: float = 0.5,
        top_k: int | None = None,
        **kwargs,
    ) -> list[dict[str, Any]]:
        """
        Instance segmentation from [`MaskDinoForUniversalSegmentation`] outputs, as the original's instance
        inference: the `top_k` best (query, class) pairs by class probability (stuff classes then left out), each
        scored by class probability x mean mask probability inside its binary mask; no overlap suppression.
        Instances are returned by descending score.

        Args:
            outputs ([`MaskDinoForUniversalSegmentationOutput`]):
                Raw model outputs.
            threshold (`float`, *optional*):
                Keep instances with a score at or above this. Defaults to none: all `top_k` are kept, as in the
                original.
            target_sizes (`list[tuple[int, int]]` or `torch.Tensor`, *optional*):
                `(height, width)` of each output. Defaults to the unpadded input size.
            return_binary_maps (`bool`, *optional*, defaults to `False`):
                Return `segmentation` as `(num_instances, height, width)` boolean masks, one per `segments_info` entry.
            return_coco_annotation (`bool`, *optional*, defaults to `False`):
                Return `segmentation` as a list with the run-length encoding of each instance's mask.
            mask_threshold (`float`, *optional*, defaults to 0.5):
                Mask probability above which a pixel belongs to the instance.
            top_k (`int`, *optional*):
                Number of (query, class) pairs considered; defaults to `detections_per_image`.
            kwargs:
                Ignored; accepts the arguments pipelines pass to every post-processor (`overlap_mask_area_threshold`).

        Returns:
            `list[dict]`: per image, `segmentation` (an int32 `(height, width)` map of segment ids with -1 for
            background, where higher-scored instances cover lower ones; or as set by `return_binary_maps` /
            `return_coco_annotation`) and `segments_info`, a list of `{"id", "label_id", "score", "bbox"}` with `bbox`
            `[x0, y0, x1, y1]` in output pixels from the box head.
        """
        if return_binary_maps and return_coco_annotation:
            raise ValueError("`return_binary_maps` and `return_coco_annotation` cannot both be True.")
        read = self._read_outputs(outputs)
        mask_logit_threshold = _logit(mask_threshold)
        top_k = self.detections_per_image if top_k is None else top_k
        batch_size = read["class_logits"].shape[0]
        target_sizes = _normalize_target_sizes(target_sizes, batch_size)
        results = []
        for index in range(batch_size):
            valid_size, padded_size, output_size = self._geometry(read, index, target_sizes)
            class_probabilities = self._class_probabilities(read["class_logits"][index])
            class_scores, labels, queries = self._select_detections(class_probabilities, top_k)
            mask_logits = self._resize_mask_logits(
                read["mask_logits"][index][queries], valid_size, padded_size, output_size
            )
            binary_masks = mask_logits > mask_logit_threshold
            mask_area = binary_masks.flatten(1).sum(1)
            mean_mask_probability = (mask_logits.sigmoid() * binary_masks).flatten(1).sum(1) / (mask_area + 1e-6)
            scores = class_scores * mean_mask_probability
            order = scores.argsort(descending=True, stable=True)
            if threshold is not None:
                order = order[scores[order] >= threshold]
            boxes = None
            if read["pred_boxes"] is not None:
                boxes = self._boxes_to_output(
                    read["pred_boxes"][index][queries[order]], valid_size, padded_size, output_size
                )
            segments_info = []
            for rank, position in enumerate(order.tolist()):
                segment = {"id": rank + 1, "label_id": int(labels[position]), "score": float(scores[position])}
                if boxes is not None:
                    segment["bbox"] = boxes[rank].tolist()
                segments_info.append(segment)
            instance_masks = binary_masks[order]
            if return_binary_maps:
                segmentation = instance_masks
            elif return_coco_annotation:
                segmentation = [binary_mask_to_rle(mask) for mask in instance_masks]
            else:
                segmentation = torch.full(output_size, -1, dtype=torch.int32, device=mask_logits.device)
                # paint from the lowest score up so that higher-scored instances end on top
                for rank in reversed(range(instance_masks.shape[0])):
                    segmentation[instance_masks[rank]] = rank + 1
            results.append({"segmentation": segmentation, "segments_info": segments_info})
        return results

    def post_process_panoptic_segmentation(
        self,
        outputs,
        threshold: float | None = None,
        overlap_mask_area_threshold: float | None = None,
        target_sizes: list[tuple[int, int]] | torch.Tensor | None = None,
        label_ids_to_fuse: set[int] | None = None,
        mask_threshold: float = 0.5,
        **kwargs,
    ) -> list[dict[str, Any]]:
        """
        Panoptic segmentation from [`MaskDinoForUniversalSegmentation`] outputs, as the original's panoptic
        inference: queries whose best sigmoid class probability exceeds `threshold` are kept, scored with the
        tempered softmax over their sigmoid probabilities, and every pixel goes to the kept query with the highest
        `score x mask probability`. A query becomes a segment if at least `overlap_mask_area_threshold` of its mask
        (probability >= `mask_threshold`) survives; segments of a class in `label_ids_to_fuse` are merged.

        Args:
            outputs ([`MaskDinoForUniversalSegmentationOutput`]):
                Raw model outputs.
            threshold (`float`, *optional*):
                Defaults to `object_mask_threshold`.
            overlap_mask_area_threshold (`float`, *optional*):
                Defaults to `overlap_threshold`.
            target_sizes (`list[tuple[int, int]]` or `torch.Tensor`, *optional*):
                `(height, width)` of each output. Defaults to the unpadded input size.
            label_ids_to_fuse (`set[int]`, *optional*):
                Classes with at most one segment per image. Defaults to `stuff_label_ids`.
            mask_threshold (`float`, *optional*, defaults to 0.5):
                Mask probability from which a pixel belongs to a query's mask.

        Returns:
            `list[dict]`: per image, `segmentation` (an int32 `(height, width)` map, 0 = no segment, segment ids from
            1 in query order) and `segments_info`, a list of `{"id", "label_id", "was_fused", "score"}`.
        """
        threshold = self.object_mask_threshold if threshold is None else threshold
        overlap_threshold = (
            self.overlap_threshold if overlap_mask_area_threshold is None else overlap_mask_area_threshold
        )
        fuse = set(self.stuff_label_ids if label_ids_to_fuse is None else label_ids_to_fuse)
        read = self._read_outputs(outputs)
        batch_size = read["class_logits"].shape[0]
        target_sizes = _normalize_target_sizes(target_sizes, batch_size)
        results = []
        for index in range(batch_size):
            valid_size, padded_size, output_size = self._geometry(read, index, target_sizes)
            class_logits = read["class_logits"][index]
            if self.use_semantic_cross_entropy:
                scores, labels = class_logits.softmax(-1).max(-1)
                keep = (labels != class_logits.shape[-1] - 1) & (scores > threshold)
            else:
                probabilities = class_logits.sigmoid()
                scores, labels = probabilities.max(-1)
                keep = scores > threshold
                if self.apply_panoptic_temperature:
                    scores, labels = (probabilities / self.panoptic_temperature).softmax(-1).max(-1)
            kept = keep.nonzero().flatten()
            segmentation = torch.zeros(output_size, dtype=torch.int32, device=class_logits.device)
            segments_info = []
            if kept.numel() > 0:
                mask_probabilities = self._resize_mask_logits(
                    read["mask_logits"][index][kept], valid_size, padded_size, output_size
                ).sigmoid()
                kept_scores, kept_labels = scores[kept], labels[kept]
                owner = (kept_scores[:, None, None] * mask_probabilities).argmax(0)
                fused_segment_ids: dict[int, int] = {}
                for k in range(kept.numel()):
                    label = int(kept_labels[k])
                    owned = owner == k
                    in_mask = mask_probabilities[k] >= mask_threshold
                    segment_pixels = owned & in_mask
                    owned_area, mask_area = int(owned.sum()), int(in_mask.sum())
                    if owned_area == 0 or mask_area == 0 or not segment_pixels.any():
                        continue
                    # kept at ratio >= threshold, as the original (Mask2Former's check_segment_validity needs >)
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
                        {
                            "id": segment_id,
                            "label_id": label,
                            "was_fused": label in fuse,
                            "score": float(kept_scores[k]),
                        }
                    )
            results.append({"segmentation": segmentation, "segments_info": segments_info})
        return results

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
            `list[dict]`: per image, `scores` `(n,)`, `labels` `(n,)` and `boxes` `(n, 4)` as `[x0, y0, x1, y1]`,
            by descending score.
        """
        read = self._read_outputs(outputs)
        if read["pred_boxes"] is None:
            raise ValueError("Object detection needs `pred_boxes` in the model outputs.")
        top_k = self.detections_per_image if top_k is None else top_k
        batch_size = read["class_logits"].shape[0]
        target_sizes = _normalize_target_sizes(target_sizes, batch_size)
        results = []
        for index in range(batch_size):
            valid_size, padded_size, _ = self._geometry(read, index, None)
            output_size = None if target_sizes is None else target_sizes[index]
            class_probabilities = self._class_probabilities(read["class_logits"][index])
            scores, labels, queries = self._select_detections(class_probabilities, top_k)
            keep = scores > threshold
            boxes = self._boxes_to_output(
                read["pred_boxes"][index][queries[keep]], valid_size, padded_size, output_size
            )
            results.append({"scores": scores[keep], "labels": labels[keep], "boxes": boxes})
        return results


__all__ = ["MaskDinoPostProcessingMixin", "binary_mask_to_rle"]
