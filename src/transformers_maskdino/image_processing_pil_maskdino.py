# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Image processor for Mask DINO on the PIL/NumPy backend: test-time resizing, normalisation and padding, and
training targets. Post-processing, shared with the torchvision backend, is in `post_processing_maskdino`."""

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from torch.nn import functional as F
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_utils import BatchFeature, get_size_dict
from transformers.image_utils import (
    ChannelDimension,
    ImageInput,
    PILImageResampling,
    SizeDict,
)
from transformers.processing_utils import ImagesKwargs, Unpack
from transformers.utils import TensorType, logging

from .post_processing_maskdino import MaskDinoPostProcessingMixin
from .remote_code import sync_remote_code

logger = logging.get_logger(__name__)

# ImageNet statistics of the original detectron2 configs, on the 0..255 scale (`MODEL.PIXEL_MEAN` / `PIXEL_STD`).
MASKDINO_PIXEL_MEAN = (123.675, 116.28, 103.53)
MASKDINO_PIXEL_STD = (58.395, 57.12, 57.375)

class MaskDinoImageProcessorKwargs(ImagesKwargs, total=False):
    r"""
    size_divisor (`int`, *optional*, defaults to 32):
        Images are zero-padded at the bottom and right to the largest height and width in the batch, rounded up to a
        multiple of this number.
    ignore_index (`int`, *optional*):
        Value of segmentation-map pixels that belong to no target (no mask is made for it).
    do_reduce_labels (`bool`, *optional*, defaults to `False`):
        Subtract 1 from every semantic label and turn label 0 into `ignore_index` (datasets such as ADE20K where 0
        is "background" and not a class). Requires `ignore_index`.
    use_semantic_cross_entropy (`bool`, *optional*, defaults to `False`):
        Post-processing: the model classifies with a softmax over `num_labels + 1` logits whose last one is "no
        object" (the original's semantic models), instead of sigmoid (focal) logits over `num_labels` classes.
    object_mask_threshold (`float`, *optional*, defaults to 0.25):
        Panoptic post-processing: queries whose best class probability is at or below this are dropped.
    overlap_threshold (`float`, *optional*, defaults to 0.8):
        Panoptic post-processing: a segment is kept when its visible area is at least this fraction of its mask.
    panoptic_temperature (`float`, *optional*, defaults to 0.06):
        Temperature of the softmax over sigmoid class probabilities used by panoptic and semantic post-processing
        of sigmoid (focal) models.
    apply_panoptic_temperature (`bool`, *optional*, defaults to `True`):
        Whether that tempered softmax is applied (the original's `PANO_TRANSFORM_EVAL`).
    detections_per_image (`int`, *optional*, defaults to 100):
        Instance post-processing and object detection keep this many (query, class) pairs per image.
    stuff_label_ids (`list[int]`, *optional*, defaults to `[]`):
        "Stuff" classes: panoptic post-processing merges their segments into one per class, and instance
        post-processing and object detection leave them out.
    semantic_resize_mask_logits (`bool`, *optional*, defaults to `True`):
        Semantic post-processing: resize the mask logits to the output size before combining them with the class
        probabilities (the original's `SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE`). When `False`, as in the original's
        semantic-only checkpoints, the class scores are computed at the padded input size, then cropped and resized.
    """

    size_divisor: int
    ignore_index: int | None
    do_reduce_labels: bool
    use_semantic_cross_entropy: bool
    object_mask_threshold: float | int
    overlap_threshold: float | int
    panoptic_temperature: float | int
    apply_panoptic_temperature: bool
    detections_per_image: int
    stuff_label_ids: list[int]
    semantic_resize_mask_logits: bool


def get_resize_output_size(
    image_size: tuple[int, int], shortest_edge: int, longest_edge: int | None
) -> tuple[int, int]:
    """
    Output `(height, width)` of the test-time resize of the original Mask DINO (detectron2's `ResizeShortestEdge`):
    the shorter side becomes `shortest_edge`, unless the longer side would then exceed `longest_edge`, in which case
    the longer side becomes `longest_edge`. Both sides are rounded to the nearest integer at the end.
    """
    height, width = image_size
    scale = shortest_edge / min(height, width)
    # the shorter side is set exactly (not recomputed as side * scale) so that rounding matches the original
    if height < width:
        new_height, new_width = float(shortest_edge), width * scale
    else:
        new_height, new_width = height * scale, float(shortest_edge)
    if longest_edge is not None and max(new_height, new_width) > longest_edge:
        rescale = longest_edge / max(new_height, new_width)
        new_height, new_width = new_height * rescale, new_width * rescale
    return int(new_height + 0.5), int(new_width + 0.5)


def resize_label_map(label_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """
    Nearest-neighbour resize of a 2-d integer map, sampling at pixel centres like PIL's NEAREST filter. Done in
    NumPy so that any integer dtype (instance ids often exceed PIL's 8/16-bit modes) keeps its values.
    """
    height, width = label_map.shape
    new_height, new_width = size
    if (height, width) == (new_height, new_width):
        return label_map
    rows = np.minimum(((np.arange(new_height) + 0.5) * (height / new_height)).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(new_width) + 0.5) * (width / new_width)).astype(np.int64), width - 1)
    return label_map[rows[:, None], cols[None, :]]


def convert_segmentation_map_to_binary_masks(
    segmentation_map: np.ndarray,
    instance_id_to_semantic_id: Mapping[int, int] | None = None,
    ignore_index: int | None = None,
    do_reduce_labels: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """
    One binary mask per distinct value of `segmentation_map` (except `ignore_index`), and its class.

    Args:
        segmentation_map (`np.ndarray` of shape `(height, width)`):
            Semantic map (values are class ids) or instance map (values are instance ids).
        instance_id_to_semantic_id (`Mapping[int, int]`, *optional*):
            For instance maps: the class of every instance id. Without it, values are class ids.
        ignore_index (`int`, *optional*):
            Value that gets no mask.
        do_reduce_labels (`bool`, *optional*, defaults to `False`):
            Semantic maps only: labels are shifted down by one and 0 becomes `ignore_index`.

    Returns:
        `tuple[np.ndarray, np.ndarray]`: float32 masks of shape `(num_masks, height, width)` and int64 class ids of
        shape `(num_masks,)`.
    """
    if do_reduce_labels:
        if ignore_index is None:
            raise ValueError("`do_reduce_labels=True` needs `ignore_index`, the value that label 0 is turned into.")
        if instance_id_to_semantic_id is not None:
            raise ValueError(
                "`do_reduce_labels=True` applies to semantic maps; with `instance_id_to_semantic_id`, give the "
                "classes you want in the mapping instead."
            )
        segmentation_map = np.where(segmentation_map == 0, ignore_index, segmentation_map - 1)

    values = np.unique(segmentation_map)
    if ignore_index is not None:
        values = values[values != ignore_index]

    masks = (segmentation_map[None] == values[:, None, None]).astype(np.float32)
    if instance_id_to_semantic_id is None:
        labels = values.astype(np.int64)
    else:
        missing = [int(v) for v in values if int(v) not in instance_id_to_semantic_id]
        if missing:
            raise ValueError(
                f"Instance ids {missing} occur in the instance map but not in `instance_id_to_semantic_id` "
                f"(which has {sorted(int(k) for k in instance_id_to_semantic_id)}). Map every instance id to its "
                "class, or set `ignore_index` to the background value."
            )
        labels = np.array([instance_id_to_semantic_id[int(v)] for v in values], dtype=np.int64)
    return masks, labels


@dataclass
class CocoObjectTargets:
    """Training targets of one image's COCO objects (see [`coco_objects_to_binary_masks`])."""

    masks: np.ndarray  # (num_objects, height, width) float32; all zeros where `has_masks` is False
    labels: np.ndarray  # (num_objects,) int64 category ids
    boxes: np.ndarray  # (num_objects, 4) float32 (center_x, center_y, width, height) relative to the image
    has_masks: np.ndarray  # (num_objects,) bool: False for box-only objects (class and box losses only)


def _describe_coco_object(obj: Mapping, index: int, image_id: Any = None) -> str:
    """`"annotation 7 (id 1234) of image 42"`, for error messages."""
    where = f"annotation {index}" + (f" (id {obj['id']})" if isinstance(obj, Mapping) and "id" in obj else "")
    return where + (f" of image {image_id}" if image_id is not None else "")


def _coco_mask_api():
    """pycocotools' mask module (rasterises polygons, decodes RLE); an optional dependency."""
    try:
        from pycocotools import mask as coco_mask
    except ImportError as error:
        raise ImportError(
            "COCO-style `annotations` need pycocotools to rasterise polygons and decode RLE: `pip install pycocotools`."
        ) from error
    return coco_mask


def _coco_rle_mask(rle: Mapping, original_size: tuple[int, int], resized_size: tuple[int, int], where: str):
    """An RLE mask, decoded at the original size and resized with nearest-neighbour sampling."""
    coco_mask = _coco_mask_api()
    if "counts" not in rle or "size" not in rle:
        raise ValueError(f"RLE segmentation of {where} needs `counts` and `size`.")
    if tuple(rle["size"]) != tuple(original_size):
        raise ValueError(
            f"RLE segmentation of {where} has size {list(rle['size'])}, but the image is "
            f"{original_size[0]}x{original_size[1]}."
        )
    if isinstance(rle["counts"], list):  # uncompressed RLE
        rle = coco_mask.frPyObjects(rle, *original_size)
    return resize_label_map(coco_mask.decode(rle).astype(np.uint8), resized_size)


def _coco_polygon_mask(polygons: Sequence, original_size: tuple[int, int], resized_size: tuple[int, int], where: str):
    """Polygons scaled to the resized image and rasterised there, as detectron2 transforms them."""
    coco_mask = _coco_mask_api()
    height, width = resized_size
    scale_x, scale_y = width / original_size[1], height / original_size[0]
    scaled = []
    for polygon in polygons:
        coordinates = np.asarray(polygon, dtype=np.float64).reshape(-1)
        if coordinates.size % 2:
            raise ValueError(
                f"Polygon of {where} has an odd number of coordinates ({coordinates.size}); expected "
                "[x0, y0, x1, y1, ...]."
            )
        if coordinates.size < 6:
            continue  # fewer than 3 points enclose no area
        coordinates[0::2] *= scale_x
        coordinates[1::2] *= scale_y
        scaled.append(coordinates.tolist())
    if not scaled:
        return np.zeros((height, width), dtype=np.uint8)
    return coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(scaled, height, width))).astype(np.uint8)


def _coco_relative_box(bbox: Any, original_size: tuple[int, int], where: str) -> np.ndarray:
    """COCO `[x, y, width, height]` in pixels to (center_x, center_y, width, height) relative to the image."""
    box = np.asarray(bbox, dtype=np.float64).reshape(-1)
    if box.size != 4 or not np.isfinite(box).all() or box[2] < 0 or box[3] < 0:
        raise ValueError(f"`bbox` of {where} must be [x, y, width, height] with width, height >= 0, got {bbox}.")
    height, width = original_size
    # clipped to the image, as detectron2 clips boxes
    x0, y0 = np.clip(box[0], 0, width), np.clip(box[1], 0, height)
    x1, y1 = np.clip(box[0] + box[2], 0, width), np.clip(box[1] + box[3], 0, height)
    return np.array([(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height])


def coco_object_target(
    obj: Mapping[str, Any], original_size: tuple[int, int], resized_size: tuple[int, int], where: str
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """
    Mask (at `resized_size`) and relative box of one COCO object; `None` for what it does not have. An object
    needs a `segmentation` (polygons or RLE), a `bbox`, or both.
    """
    if "category_id" not in obj or ("segmentation" not in obj and "bbox" not in obj):
        raise ValueError(
            f"COCO {where} needs `category_id` and `segmentation` (polygons or RLE), or `category_id` and `bbox` "
            f"(box-only); it has keys {sorted(obj)}."
        )
    mask = box = None
    segmentation = obj.get("segmentation")
    if isinstance(segmentation, Mapping):
        mask = _coco_rle_mask(segmentation, original_size, resized_size, where)
    elif isinstance(segmentation, list) and segmentation:
        mask = _coco_polygon_mask(segmentation, original_size, resized_size, where)
    elif segmentation not in (None, []):
        raise ValueError(
            f"`segmentation` of {where} must be a list of polygons or an RLE dict, got {type(segmentation).__name__}."
        )
    if obj.get("bbox") is not None:
        box = _coco_relative_box(obj["bbox"], original_size, where)
    return mask, box


def coco_objects_to_binary_masks(
    objects: Sequence[Mapping[str, Any]],
    original_size: tuple[int, int],
    resized_size: tuple[int, int],
    image_id: Any = None,
) -> CocoObjectTargets:
    """
    Training targets of one image's COCO object annotations, with masks at the resized image size.

    Polygons are scaled to the resized image and rasterised there (as detectron2 transforms them); RLE masks are
    decoded at the original size and resized with nearest-neighbour sampling. An object with a `bbox` and no
    `segmentation` is a box-only object: it gets an empty mask and `has_masks=False`, so that the model trains its
    class and box heads on it and skips the mask losses. Crowd objects (`iscrowd=1`) are ignored in training, and
    objects left empty by the resize are dropped, as the original's dataset mappers do. Errors name the object's
    position, its `id` and `image_id`.

    Returns:
        [`CocoObjectTargets`]: masks, `category_id`s, boxes and the has-mask flags.
    """
    height, width = resized_size
    masks, labels, boxes, has_masks = [], [], [], []
    for index, obj in enumerate(objects):
        where = _describe_coco_object(obj, index, image_id)
        if not isinstance(obj, Mapping):
            raise ValueError(f"Each COCO annotation must be a dict, got {type(obj).__name__} at {where}.")
        if obj.get("iscrowd", 0):
            continue
        mask, box = coco_object_target(obj, original_size, resized_size, where)
        if mask is not None:
            if not mask.any():
                continue
            # the box of a masked object is its mask's, as for segmentation maps (the model derives it)
            box = np.zeros(4) if box is None else box
        elif box[2] <= 0 or box[3] <= 0:
            continue
        masks.append(np.zeros((height, width), np.float32) if mask is None else mask.astype(np.float32))
        labels.append(int(obj["category_id"]))
        boxes.append(box)
        has_masks.append(mask is not None)
    if not labels:
        return CocoObjectTargets(
            masks=np.zeros((0, height, width), dtype=np.float32),
            labels=np.zeros((0,), dtype=np.int64),
            boxes=np.zeros((0, 4), dtype=np.float32),
            has_masks=np.zeros((0,), dtype=bool),
        )
    return CocoObjectTargets(
        masks=np.stack(masks),
        labels=np.array(labels, dtype=np.int64),
        boxes=np.stack(boxes).astype(np.float32),
        has_masks=np.array(has_masks, dtype=bool),
    )


class MaskDinoImageProcessorPil(MaskDinoPostProcessingMixin, PilBackend):
    r"""
    Image processor for Mask DINO on the PIL/NumPy backend.

    Preprocessing follows the original's test-time pipeline: resize so that the shorter side is `shortest_edge`
    (capped so the longer side stays within `longest_edge`, with PIL bilinear resampling for uint8 images),
    normalise with the ImageNet mean and standard deviation on the 0..255 scale, and zero-pad at the bottom and
    right to the batch's largest size rounded up to a multiple of `size_divisor`. `pixel_mask` marks valid pixels
    with 1. Images can be PIL images, NumPy arrays or torch tensors, grayscale, RGB or RGBA, channels first or
    last; float images are expected on the 0..255 scale.

    Training targets (`mask_labels`, `class_labels`, one entry per image as in Mask2Former) come from semantic
    maps, instance maps with `instance_id_to_semantic_id`, or COCO-style annotations with polygon or RLE
    segmentations.

    Post-processing reproduces the original's inference: `post_process_semantic_segmentation`,
    `post_process_instance_segmentation`, `post_process_panoptic_segmentation` and `post_process_object_detection`.
    The inference settings of a checkpoint (`object_mask_threshold`, `overlap_threshold`, `panoptic_temperature`,
    `detections_per_image`, `stuff_label_ids`, ...) are attributes of the processor and serve as defaults when a
    caller passes none.
    """

    valid_kwargs = MaskDinoImageProcessorKwargs
    model_input_names = ["pixel_values", "pixel_mask"]
    resample = PILImageResampling.BILINEAR
    size = {"shortest_edge": 800, "longest_edge": 1333}
    default_to_square = False
    do_resize = True
    # The statistics below are on the 0..255 scale, as in the original, so pixels are not rescaled first.
    do_rescale = False
    rescale_factor = 1 / 255
    do_normalize = True
    image_mean = list(MASKDINO_PIXEL_MEAN)
    image_std = list(MASKDINO_PIXEL_STD)
    do_convert_rgb = True
    do_pad = True
    size_divisor = 32
    ignore_index = None
    do_reduce_labels = False
    use_semantic_cross_entropy = False
    object_mask_threshold = 0.25
    overlap_threshold = 0.8
    panoptic_temperature = 0.06
    apply_panoptic_temperature = True
    detections_per_image = 100
    stuff_label_ids = []
    semantic_resize_mask_logits = True

    def __init__(self, **kwargs: Unpack[MaskDinoImageProcessorKwargs]) -> None:
        size = kwargs.pop("size", None)
        if size is not None:
            kwargs["size"] = get_size_dict(size, default_to_square=False)
        super().__init__(**kwargs)
        self.stuff_label_ids = [int(label) for label in self.stuff_label_ids]

    # ------------------------------------------------------------------------------------------------ inputs

    def process_image(
        self,
        image: ImageInput,
        do_convert_rgb: bool | None = None,
        input_data_format: str | ChannelDimension | None = None,
        **kwargs,
    ) -> np.ndarray:
        """
        Convert one image to a `(3, height, width)` array, uint8 when the input is uint8 (so it is resized with PIL
        like the original) and float32 otherwise.
        """
        if isinstance(image, PIL.Image.Image):
            if image.mode != "RGB":
                if not do_convert_rgb:
                    raise ValueError(
                        f"Got a PIL image in mode {image.mode!r} with `do_convert_rgb=False`; Mask DINO needs RGB "
                        "images. Convert it or leave `do_convert_rgb=True`."
                    )
                image = image.convert("RGB")
            return np.array(image).transpose(2, 0, 1)
        if isinstance(image, torch.Tensor):
            image = image.detach().cpu()
            if image.is_floating_point() and image.dtype != torch.float32:
                image = image.float()
            image = image.numpy()
        if not isinstance(image, np.ndarray):
            raise ValueError(
                f"Unsupported image type {type(image).__name__}: expected a PIL image, a NumPy array or a torch tensor "
                "(or a list of them)."
            )
        if image.dtype.kind not in "uif":
            raise ValueError(
                f"Unsupported image dtype {image.dtype}: expected uint8 (0..255) or a float/integer array on the "
                "0..255 scale."
            )
        if image.ndim == 2:
            image = image[None]
        elif image.ndim == 3:
            channel_axis = self._find_channel_axis(image.shape, input_data_format)
            if channel_axis == 2:
                image = image.transpose(2, 0, 1)
        else:
            raise ValueError(
                f"Each image must have 2 dimensions (height, width) or 3 (channels first or last), got shape "
                f"{tuple(image.shape)}."
            )
        num_channels, height, width = image.shape
        if height == 0 or width == 0:
            raise ValueError(f"Got an empty image of shape {tuple(image.shape)}.")
        if num_channels != 3:
            if not do_convert_rgb:
                raise ValueError(
                    f"Got an image with {num_channels} channel(s) with `do_convert_rgb=False`; Mask DINO needs 3 (RGB)."
                )
            # grayscale is replicated, alpha is dropped, as PIL's convert("RGB") does
            image = np.repeat(image, 3, axis=0) if num_channels == 1 else image[:3]
        if image.dtype.kind == "f":
            if not np.isfinite(image).all():
                raise ValueError("The image contains NaN or infinite values.")
            if image.size and image.max() <= 1.0 and not self.do_rescale:
                logger.warning_once(
                    "A float image has all values <= 1, but Mask DINO expects pixel values on the 0..255 scale. "
                    "Multiply it by 255 (or pass `do_rescale=True, rescale_factor=255`)."
                )
            return image.astype(np.float32, copy=False)
        if image.dtype != np.uint8:
            return image.astype(np.float32)
        return image

    @staticmethod
    def _find_channel_axis(shape: tuple[int, ...], input_data_format: str | ChannelDimension | None) -> int:
        if input_data_format is not None:
            input_data_format = ChannelDimension(input_data_format)
            if input_data_format == ChannelDimension.FIRST:
                channel_axis = 0
            elif input_data_format == ChannelDimension.LAST:
                channel_axis = 2
            else:
                raise ValueError(
                    f"`input_data_format` must be 'channels_first' or 'channels_last', got {input_data_format}."
                )
            if shape[channel_axis] not in (1, 3, 4):
                raise ValueError(
                    f"Image of shape {shape} with `input_data_format={input_data_format.value}` has "
                    f"{shape[channel_axis]} channels; expected 1 (grayscale), 3 (RGB) or 4 (RGBA)."
                )
            return channel_axis
        # prefer RGB, then RGBA, then grayscale when both ends could hold channels, e.g. a (4, 6, 3) array
        preference = {3: 0, 4: 1, 1: 2}
        first, last = preference.get(shape[0]), preference.get(shape[2])
        if first is not None or last is not None:
            if first is not None and last is not None and first == last:
                logger.warning_once(
                    f"Cannot tell the channel dimension of an image of shape {shape}; assuming channels first. Pass "
                    "`input_data_format` to choose."
                )
                return 0
            if last is None or (first is not None and first < last):
                return 0
            return 2
        raise ValueError(
            f"Cannot find the channel dimension of an image of shape {shape}: expected (channels, height, width) or "
            "(height, width, channels) with 1 (grayscale), 3 (RGB) or 4 (RGBA) channels."
        )

    def _prepare_images_structure(self, images: ImageInput, expected_ndims: int = 3) -> list:
        """Flat list of single images from one image, a 4-d batch, or a (nested) list; strings are loaded."""
        expected = (
            "a PIL image, a NumPy array or torch tensor of shape (H, W), (C, H, W) or (H, W, C), a 4-d batch of "
            "those, a path or URL, or a list of them"
        )
        try:
            images = self.fetch_images(images)
        except TypeError as error:
            raise ValueError(f"Images must be {expected}; got {_describe(images)}.") from error
        if isinstance(images, (list, tuple)):
            flat = []
            for item in images:
                flat.extend(item if isinstance(item, (list, tuple)) else [item])
        else:
            flat = [images]
        if not flat:
            raise ValueError(f"Got no images; pass {expected}.")
        single_images = []
        for item in flat:
            ndim = getattr(item, "ndim", None)
            if isinstance(item, PIL.Image.Image) or ndim in (2, 3):
                single_images.append(item)
            elif ndim == 4:
                single_images.extend(list(item))
            else:
                raise ValueError(f"Images must be {expected}; got {_describe(item)}.")
        return single_images

    def _prepare_segmentation_map(self, segmentation_map) -> np.ndarray:
        if isinstance(segmentation_map, PIL.Image.Image):
            segmentation_map = np.array(segmentation_map)
        elif isinstance(segmentation_map, torch.Tensor):
            segmentation_map = segmentation_map.detach().cpu().numpy()
        if not isinstance(segmentation_map, np.ndarray):
            raise ValueError(
                f"Unsupported segmentation map type {type(segmentation_map).__name__}: expected a PIL image, a NumPy "
                "array or a torch tensor."
            )
        if segmentation_map.ndim == 3 and 1 in (segmentation_map.shape[0], segmentation_map.shape[2]):
            segmentation_map = segmentation_map.squeeze(0 if segmentation_map.shape[0] == 1 else 2)
        if segmentation_map.ndim != 2:
            raise ValueError(
                f"A segmentation map must be 2-d (height, width) with one integer id per pixel, got shape "
                f"{tuple(segmentation_map.shape)}."
            )
        if segmentation_map.dtype.kind == "f":
            if not np.array_equal(segmentation_map, np.round(segmentation_map)):
                raise ValueError("A segmentation map holds integer ids; got non-integer float values.")
        elif segmentation_map.dtype.kind not in "uib":
            raise ValueError(f"Unsupported segmentation map dtype {segmentation_map.dtype}: expected integers.")
        return segmentation_map.astype(np.int64)

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs):
        result = super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        sync_remote_code(save_directory)  # beside a config with `auto_map`, see there
        return result

    # ------------------------------------------------------------------------------------------------ preprocess

    def preprocess(
        self,
        images: ImageInput,
        segmentation_maps: ImageInput | None = None,
        instance_id_to_semantic_id: list[dict[int, int]] | dict[int, int] | None = None,
        annotations: list[dict[str, Any]] | dict[str, Any] | None = None,
        **kwargs: Unpack[MaskDinoImageProcessorKwargs],
    ) -> BatchFeature:
        r"""
        Preprocess images and, optionally, their training targets.

        Args:
            images (`ImageInput`):
                One image or a list of images (PIL, NumPy or torch; grayscale, RGB or RGBA; channels first or last;
                any sizes).
            segmentation_maps (`ImageInput`, *optional*):
                One 2-d integer map per image, the size of its image: class ids (semantic maps) or instance ids
                (with `instance_id_to_semantic_id`). Pixels equal to `ignore_index` get no mask.
            instance_id_to_semantic_id (`dict[int, int]` or `list[dict[int, int]]`, *optional*):
                Class of every instance id, for instance maps; one dict for all images or one per image.
            annotations (`dict` or `list[dict]`, *optional*):
                COCO-style annotations, one per image: `{"annotations": [{"category_id", "segmentation", "iscrowd"},
                ...]}` (or just the list of objects), with polygon (`[[x0, y0, x1, y1, ...], ...]`) or RLE
                (`{"size": [h, w], "counts": ...}`) segmentations. `category_id` must be the model's label id.
                Objects with a `bbox` and no `segmentation` are box-only: they add `target_boxes` and
                `target_has_masks` (see [`coco_objects_to_binary_masks`]), which the model takes with the labels.

        Returns:
            [`BatchFeature`]: `pixel_values` `(batch_size, 3, padded_height, padded_width)`, `pixel_mask`
            `(batch_size, padded_height, padded_width)` (1 = valid pixel) and, with targets, `mask_labels` (list of
            float tensors `(num_targets, padded_height, padded_width)`) and `class_labels` (list of int64 tensors
            `(num_targets,)`).
        """
        return super().preprocess(images, segmentation_maps, instance_id_to_semantic_id, annotations, **kwargs)

    def _preprocess_image_like_inputs(
        self,
        images: ImageInput,
        segmentation_maps: ImageInput | None,
        instance_id_to_semantic_id: list[dict[int, int]] | dict[int, int] | None,
        annotations: list[dict[str, Any]] | dict[str, Any] | None,
        do_convert_rgb: bool | None = None,
        input_data_format: str | ChannelDimension | None = None,
        **kwargs,
    ) -> BatchFeature:
        images = self._prepare_image_like_inputs(
            images, do_convert_rgb=do_convert_rgb, input_data_format=input_data_format
        )
        if segmentation_maps is not None and annotations is not None:
            raise ValueError("Pass either `segmentation_maps` or COCO `annotations` as targets, not both.")
        if segmentation_maps is not None:
            if not isinstance(segmentation_maps, (list, tuple)):
                # a 3-d array is a batch of maps when it has one map per image
                is_batch = getattr(segmentation_maps, "ndim", 0) == 3 and segmentation_maps.shape[0] == len(images) > 1
                segmentation_maps = list(segmentation_maps) if is_batch else [segmentation_maps]
            segmentation_maps = [self._prepare_segmentation_map(m) for m in segmentation_maps]
            if len(segmentation_maps) != len(images):
                raise ValueError(
                    f"Got {len(images)} images but {len(segmentation_maps)} segmentation maps; pass one map per image."
                )
        elif instance_id_to_semantic_id is not None:
            raise ValueError("`instance_id_to_semantic_id` is only used with `segmentation_maps` (instance maps).")
        if annotations is not None:
            if isinstance(annotations, Mapping):
                annotations = [annotations]
            if len(annotations) != len(images):
                raise ValueError(
                    f"Got {len(images)} images but {len(annotations)} annotations; pass one annotation per image."
                )
        if isinstance(instance_id_to_semantic_id, (list, tuple)) and len(instance_id_to_semantic_id) != len(images):
            raise ValueError(
                f"`instance_id_to_semantic_id` is a list of {len(instance_id_to_semantic_id)} dicts for "
                f"{len(images)} images; pass one dict per image or a single dict."
            )
        return self._preprocess(images, segmentation_maps, instance_id_to_semantic_id, annotations, **kwargs)

    def resize(
        self,
        image: np.ndarray,
        size: SizeDict,
        resample: PILImageResampling | None = None,
        **kwargs,
    ) -> np.ndarray:
        """
        Resize a `(channels, height, width)` image. `size` is `{"shortest_edge", "longest_edge"}` (the original's
        test-time resize, see [`get_resize_output_size`]) or `{"height", "width"}`. uint8 images are resized with
        PIL, as the original does; other images with torch interpolation of the same kind.
        """
        new_size = self._output_size(image.shape[-2:], size)
        if tuple(image.shape[-2:]) == new_size:
            return image
        resample = PILImageResampling(resample if resample is not None else self.resample)
        if image.dtype == np.uint8:
            pil_image = PIL.Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)))
            resized = pil_image.resize((new_size[1], new_size[0]), resample=resample)
            return np.array(resized).transpose(2, 0, 1)
        modes = {
            PILImageResampling.NEAREST: "nearest",
            PILImageResampling.BILINEAR: "bilinear",
            PILImageResampling.BICUBIC: "bicubic",
        }
        if resample not in modes:
            raise ValueError(
                f"Resampling {resample.name} is only available for uint8 images; float images support "
                f"{[m.name for m in modes]}."
            )
        mode = modes[resample]
        resized = F.interpolate(
            torch.from_numpy(np.ascontiguousarray(image))[None],
            size=new_size,
            mode=mode,
            align_corners=None if mode == "nearest" else False,
        )
        return resized[0].numpy()

    @staticmethod
    def _output_size(image_size: Iterable[int], size: SizeDict) -> tuple[int, int]:
        image_size = tuple(int(s) for s in image_size)
        if size.shortest_edge:
            return get_resize_output_size(image_size, size.shortest_edge, size.longest_edge)
        if size.height and size.width:
            return (size.height, size.width)
        raise ValueError(
            f"`size` must be {{'shortest_edge': int, 'longest_edge': int}} or {{'height': int, 'width': int}}, got {size}."
        )

    def _padded_size(
        self, image_sizes: list[tuple[int, int]], size_divisor: int | None, pad_size: SizeDict | None
    ) -> tuple[int, int]:
        if pad_size is not None:
            padded = (pad_size.height, pad_size.width)
            too_large = [s for s in image_sizes if s[0] > padded[0] or s[1] > padded[1]]
            if too_large:
                raise ValueError(f"`pad_size` {padded} is smaller than the (resized) image size(s) {too_large}.")
            return padded
        max_height = max(s[0] for s in image_sizes)
        max_width = max(s[1] for s in image_sizes)
        if size_divisor:
            max_height = math.ceil(max_height / size_divisor) * size_divisor
            max_width = math.ceil(max_width / size_divisor) * size_divisor
        return max_height, max_width

    def _preprocess(
        self,
        images: list[np.ndarray],
        segmentation_maps: list[np.ndarray] | None,
        instance_id_to_semantic_id: list[dict[int, int]] | dict[int, int] | None,
        annotations: list[Any] | None,
        do_resize: bool,
        size: SizeDict,
        resample: PILImageResampling | None,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean: float | Sequence[float],
        image_std: float | Sequence[float],
        do_pad: bool,
        pad_size: SizeDict | None,
        size_divisor: int | None,
        ignore_index: int | None,
        do_reduce_labels: bool,
        return_tensors: str | TensorType | None,
        **kwargs,
    ) -> BatchFeature:
        processed_images = []
        mask_labels, class_labels = [], []
        target_boxes, target_has_masks = [], []  # from COCO annotations only
        for index, image in enumerate(images):
            original_size = tuple(image.shape[-2:])
            if segmentation_maps is not None and tuple(segmentation_maps[index].shape) != original_size:
                raise ValueError(
                    f"Segmentation map {index} has shape {tuple(segmentation_maps[index].shape)} but its image is "
                    f"{original_size[0]}x{original_size[1]}."
                )
            if do_resize:
                image = self.resize(image, size=size, resample=resample)
            resized_size = tuple(image.shape[-2:])
            image = image.astype(np.float32)
            if do_rescale:
                image = self.rescale(image, rescale_factor)
            if do_normalize:
                image = self.normalize(image, image_mean, image_std)
            processed_images.append(image.astype(np.float32, copy=False))

            if segmentation_maps is not None:
                id_mapping = instance_id_to_semantic_id
                if isinstance(id_mapping, (list, tuple)):
                    id_mapping = id_mapping[index]
                label_map = resize_label_map(segmentation_maps[index], resized_size)
                masks, labels = convert_segmentation_map_to_binary_masks(
                    label_map, id_mapping, ignore_index=ignore_index, do_reduce_labels=do_reduce_labels
                )
            elif annotations is not None:
                annotation = annotations[index]
                objects = annotation.get("annotations", []) if isinstance(annotation, Mapping) else annotation
                if not isinstance(objects, (list, tuple)):
                    raise ValueError(
                        f"Annotation {index} must be a dict with an `annotations` list or a list of COCO objects, "
                        f"got {type(objects).__name__}."
                    )
                image_id = annotation.get("image_id") if isinstance(annotation, Mapping) else None
                objects = coco_objects_to_binary_masks(objects, original_size, resized_size, image_id=image_id)
                masks, labels = objects.masks, objects.labels
                target_boxes.append(objects.boxes)
                target_has_masks.append(objects.has_masks)
            else:
                continue
            mask_labels.append(masks)
            class_labels.append(labels)

        image_sizes = [tuple(image.shape[-2:]) for image in processed_images]
        padded_size = self._padded_size(image_sizes, size_divisor, pad_size) if do_pad else None
        pixel_values, pixel_masks = [], []
        for index, image in enumerate(processed_images):
            height, width = image_sizes[index]
            if padded_size is not None and (height, width) != padded_size:
                padded = np.zeros((image.shape[0], *padded_size), dtype=np.float32)
                padded[:, :height, :width] = image
                image = padded
                if mask_labels:
                    # target masks are padded with "not this object", as the original's criterion pads them
                    masks = np.zeros((mask_labels[index].shape[0], *padded_size), dtype=np.float32)
                    masks[:, :height, :width] = mask_labels[index]
                    mask_labels[index] = masks
            pixel_mask = np.zeros(image.shape[-2:], dtype=np.int64)
            pixel_mask[:height, :width] = 1
            pixel_values.append(image)
            pixel_masks.append(pixel_mask)

        encoded = BatchFeature(
            data={"pixel_values": pixel_values, "pixel_mask": pixel_masks}, tensor_type=return_tensors
        )
        if segmentation_maps is not None or annotations is not None:
            as_tensor = torch.from_numpy if return_tensors == "pt" else (lambda array: array)
            encoded["mask_labels"] = [as_tensor(masks) for masks in mask_labels]
            encoded["class_labels"] = [as_tensor(labels) for labels in class_labels]
        if annotations is not None:
            # boxes of box-only objects; the model takes the others' boxes from their masks
            encoded["target_boxes"] = [as_tensor(boxes) for boxes in target_boxes]
            encoded["target_has_masks"] = [as_tensor(flags) for flags in target_has_masks]
        return encoded


def _describe(value) -> str:
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_describe(v) for v in value[:3])
        return f"{type(value).__name__} of {len(value)} [{inner}{', ...' if len(value) > 3 else ''}]"
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {tuple(shape)}"
    return type(value).__name__


__all__ = ["MaskDinoImageProcessorPil"]
