# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Image processor for Mask DINO on the PIL/NumPy backend, and what it shares with the torchvision backend
(`image_processing_maskdino`): the kwargs, the original's resize rule, input checks, training targets and padding
([`MaskDinoImageProcessingMixin`]). Post-processing, shared too, is in `post_processing_maskdino`."""

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
from torch.nn import functional as F
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_base import ImageProcessingMixin
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


# Adapted from
# transformers.models.mask2former.image_processing_pil_mask2former.convert_segmentation_map_to_binary_masks: an
# unmapped instance id, or `do_reduce_labels` with instance maps, is a clear error here (a KeyError or shifted classes
# there).
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


# Resampling of non-uint8 images: the original resizes them with `F.interpolate` (no antialiasing), both backends too.
FLOAT_IMAGE_INTERPOLATION = {
    PILImageResampling.NEAREST: "nearest",
    PILImageResampling.BILINEAR: "bilinear",
    PILImageResampling.BICUBIC: "bicubic",
}


def interpolate_float_images(images: torch.Tensor, size: tuple[int, int], resample) -> torch.Tensor:
    """
    Resize float `(channels, height, width)` or `(batch, channels, height, width)` images as the original resizes
    non-uint8 images (detectron2's `ResizeTransform`: `F.interpolate`, `align_corners=False`, no antialiasing).
    """
    resample = PILImageResampling(resample)
    if resample not in FLOAT_IMAGE_INTERPOLATION:
        raise ValueError(
            f"Resampling {resample.name} is only available for uint8 images; float images support "
            f"{[mode.name for mode in FLOAT_IMAGE_INTERPOLATION]}."
        )
    mode = FLOAT_IMAGE_INTERPOLATION[resample]
    batched = images if images.ndim == 4 else images[None]
    resized = F.interpolate(batched, size=size, mode=mode, align_corners=None if mode == "nearest" else False)
    return resized if images.ndim == 4 else resized[0]


def _pil_resize(image: np.ndarray, size: tuple[int, int], resample: PILImageResampling) -> np.ndarray:
    """A uint8 `(channels, height, width)` image resized with PIL, as the original resizes uint8 images. Other channel
    counts than 3 are resized band by band (PIL would premultiply the alpha of an RGBA image)."""
    height, width = size
    if image.shape[0] == 3:
        resized = PIL.Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).resize((width, height), resample)
        return np.array(resized).transpose(2, 0, 1)
    bands = [PIL.Image.fromarray(np.ascontiguousarray(band)).resize((width, height), resample) for band in image]
    return np.stack([np.array(band) for band in bands])


def _dtype_kind(image: np.ndarray | torch.Tensor) -> str:
    """NumPy's dtype kind ("u", "i", "f", "b", "c") of an array or a tensor."""
    if isinstance(image, np.ndarray):
        return image.dtype.kind
    if image.dtype == torch.bool:
        return "b"
    if image.is_complex():
        return "c"
    if image.is_floating_point():
        return "f"
    return "u" if image.dtype in (torch.uint8, torch.uint16, torch.uint32, torch.uint64) else "i"


def _as_float32(image: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    if isinstance(image, np.ndarray):
        return image.astype(np.float32, copy=False)
    return image.to(torch.float32)


def _pil_image_pixels(image: PIL.Image.Image, do_convert_rgb: bool) -> np.ndarray:
    """
    The pixel values of a PIL image as a `(height, width[, channels])` array. 16-bit (`I;16*`), 32-bit integer (`I`)
    and float (`F`) images keep their values, for the range rules of [`MaskDinoImageProcessingMixin`]: PIL's own
    `convert("RGB")` would clip them to 0..255 (a 16-bit image turns white). Other modes are converted with PIL, as
    the original reads images (`convert("RGB")`, which drops alpha).
    """
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        return np.array(image)
    if do_convert_rgb:
        return np.array(image.convert("RGB"))
    if image.mode in ("P", "PA"):
        raise ValueError(
            f"Got a palette image (PIL mode {image.mode!r}) with `do_convert_rgb=False`: it holds colour indices, not "
            "pixel values. Leave `do_convert_rgb=True` or convert it (`image.convert('RGB')`)."
        )
    return np.array(image.convert("L") if image.mode == "1" else image)


def _describe(value) -> str:
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_describe(v) for v in value[:3])
        return f"{type(value).__name__} of {len(value)} [{inner}{', ...' if len(value) > 3 else ''}]"
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {tuple(shape)}"
    return type(value).__name__


_EXPECTED_IMAGES = (
    "a PIL image, a NumPy array or torch tensor of shape (H, W), (C, H, W) or (H, W, C), a 4-d batch of those, a "
    "path or URL, or a list of them"
)


@dataclass
class TargetSources:
    """The training targets given for a batch, one entry per image (see [`MaskDinoImageProcessorPil.preprocess`])."""

    segmentation_maps: list[np.ndarray] | None
    instance_id_to_semantic_id: list[Mapping[int, int] | None]
    annotations: list[Any] | None


class MaskDinoImageProcessingMixin:
    r"""
    What both image-processor backends of Mask DINO share: the defaults, the checks of input images on top of the
    backend's own conversion, training targets, padding and the output. A backend class adds `resize` and
    `_resize_and_normalize` (the only steps whose kernels differ between PIL/NumPy and torchvision).

    Images may be PIL images, NumPy arrays or torch tensors, channels first or last, of any of these kinds:
    - uint8, on the 0..255 scale (resized with antialiased bilinear resampling, as the original does with PIL);
    - uint16 arrays and tensors and PIL `I;16` images: 16-bit data, rescaled to 0..255 (`x * 255 / 65535`);
    - other integer arrays and PIL `I` images, whose values must be within 0..255 (anything else is an error, never
      clipped), and float arrays and PIL `F` images, on the 0..255 scale (finite values only).

    With `do_convert_rgb=True` (the default) grayscale is replicated to RGB and a fourth (alpha) channel is dropped,
    as PIL's `convert("RGB")` does. With `do_convert_rgb=False` an image may have any number of channels, one per
    entry of `image_mean` / `image_std` (an RGB-D or multispectral model with `num_channels` to match).
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

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs):
        result = super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        sync_remote_code(save_directory)  # beside a config with `auto_map`, see there
        return result

    # ------------------------------------------------------------------------------------------------ inputs

    def fetch_images(self, image_url_or_urls):
        """Paths and URLs read with PIL in both backends (the same pixels). A local file is opened as it is (upright),
        not converted to RGB as transformers' `load_image` does, which would clip a 16-bit file to white."""
        if isinstance(image_url_or_urls, str) and os.path.isfile(image_url_or_urls):
            return PIL.ImageOps.exif_transpose(PIL.Image.open(image_url_or_urls))
        return ImageProcessingMixin.fetch_images(self, image_url_or_urls)

    def _prepare_images_structure(self, images: ImageInput, expected_ndims: int = 3) -> list:
        """Flat list of single images from one image, a 4-d batch, or a (nested) list; paths and URLs are loaded."""
        # Not `make_flat_list_of_images`: it takes neither (H, W) arrays nor lists that mix 2-d and 3-d images.
        try:
            images = self.fetch_images(images)
        except TypeError as error:
            raise ValueError(f"Images must be {_EXPECTED_IMAGES}; got {_describe(images)}.") from error
        items = images if isinstance(images, (list, tuple)) else [images]
        flat = [image for item in items for image in (item if isinstance(item, (list, tuple)) else [item])]
        if not flat:
            raise ValueError(f"Got no images; pass {_EXPECTED_IMAGES}.")
        single_images = []
        for item in flat:
            ndim = getattr(item, "ndim", None)
            if isinstance(item, PIL.Image.Image) or ndim in (2, 3):
                single_images.append(item)
            elif ndim == 4:
                single_images.extend(list(item))
            else:
                raise ValueError(f"Images must be {_EXPECTED_IMAGES}; got {_describe(item)}.")
        return single_images

    def process_image(
        self,
        image: ImageInput,
        do_convert_rgb: bool | None = None,
        input_data_format: str | ChannelDimension | None = None,
        num_channels: int | None = None,
        **kwargs,
    ) -> np.ndarray | torch.Tensor:
        """
        One image as a channels-first array of the backend (see the class docstring for what is accepted). uint8
        images stay uint8, so that they are resized like the original resizes them; anything else becomes float32
        on the 0..255 scale. `num_channels` is the channel count the statistics expect (`None`: any).
        """
        if isinstance(image, PIL.Image.Image):
            image, input_data_format = _pil_image_pixels(image, do_convert_rgb), ChannelDimension.LAST
        image = self._pixels_on_the_0_255_scale(image)
        if image.ndim == 3:
            input_data_format = self._channel_dimension(image, input_data_format, do_convert_rgb, num_channels)
        # the RGB conversion is ours (alpha dropped, not composited onto white as transformers' is)
        image = super().process_image(image, do_convert_rgb=False, input_data_format=input_data_format, **kwargs)
        return self._model_channels(image, do_convert_rgb, num_channels)

    def _pixels_on_the_0_255_scale(self, image: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        if isinstance(image, torch.Tensor):
            image = image.detach() if self.backend == "torchvision" else image.detach().cpu()
        elif not isinstance(image, np.ndarray):
            raise ValueError(f"Unsupported image type {type(image).__name__}: expected {_EXPECTED_IMAGES}.")
        kind = _dtype_kind(image)
        if kind not in "uif":
            raise ValueError(
                f"Unsupported image dtype {image.dtype}: expected uint8 (0..255), uint16 (16-bit, rescaled to "
                "0..255), or other integer or float values on the 0..255 scale."
            )
        if 0 in image.shape:
            raise ValueError(f"Got an empty image of shape {tuple(image.shape)}.")
        dtype = image.dtype
        if kind == "u" and dtype.itemsize == 1:
            return image
        if kind == "u" and dtype.itemsize == 2:
            return _as_float32(image) * (255 / 65535)
        image = _as_float32(image)  # exact for every integer up to 2**24, which is all that passes below
        low, high = float(image.min()), float(image.max())
        if kind == "f":
            if not (math.isfinite(low) and math.isfinite(high)):
                raise ValueError("The image contains NaN or infinite values.")
            if high <= 1.0 and not self.do_rescale:
                logger.warning_once(
                    "A float image has all values <= 1, but Mask DINO expects pixel values on the 0..255 scale. "
                    "Multiply it by 255 (or pass `do_rescale=True, rescale_factor=255`)."
                )
        elif low < 0 or high > 255:
            raise ValueError(
                f"An integer image of dtype {dtype} has values in "
                f"[{low:g}, {high:g}], outside 0..255. Pass 16-bit data as uint16 (or a PIL 'I;16' image), which is "
                "rescaled to 0..255, or scale the image to 0..255 yourself."
            )
        return image

    @staticmethod
    def _accepted_channels(do_convert_rgb: bool, num_channels: int | None) -> tuple[int, ...]:
        if do_convert_rgb or num_channels is None:
            return (1, 3, 4)
        return tuple(sorted({1, 3, 4, num_channels}))

    def _channel_dimension(self, image, input_data_format, do_convert_rgb: bool, num_channels: int | None):
        accepted = self._accepted_channels(do_convert_rgb, num_channels)
        names = "1 (grayscale), 3 (RGB) or 4 (RGBA)" if accepted == (1, 3, 4) else " or ".join(map(str, accepted))
        shape = tuple(image.shape)
        if input_data_format is None:
            # Not transformers' `infer_channel_dimension_format`, which takes channels first whenever both ends could
            # hold channels: a (1, 2, 3) or (4, 6, 3) array is far more likely a tiny RGB image than the reverse.
            preference = dict.fromkeys(count for count in (num_channels, 3, 4, 1) if count in accepted)
            rank = {count: index for index, count in enumerate(preference)}
            first, last = rank.get(shape[0]), rank.get(shape[2])
            if first is None and last is None:
                raise ValueError(
                    f"Cannot find the channel dimension of an image of shape {shape}: expected (channels, height, "
                    f"width) or (height, width, channels) with {names} channels, or pass `input_data_format`."
                )
            if first == last:
                logger.warning_once(
                    f"Cannot tell the channel dimension of an image of shape {shape}; assuming channels first. Pass "
                    "`input_data_format` to choose."
                )
            channels_first = last is None or (first is not None and first <= last)
            return ChannelDimension.FIRST if channels_first else ChannelDimension.LAST
        input_data_format = ChannelDimension(input_data_format)
        if input_data_format not in (ChannelDimension.FIRST, ChannelDimension.LAST):
            raise ValueError(
                f"`input_data_format` must be 'channels_first' or 'channels_last', got {input_data_format.value}."
            )
        channels = shape[0 if input_data_format == ChannelDimension.FIRST else 2]
        if channels not in accepted:
            raise ValueError(
                f"Image of shape {shape} with `input_data_format={input_data_format.value}` has {channels} channels; "
                f"expected {names}."
            )
        return input_data_format

    @staticmethod
    def _model_channels(image, do_convert_rgb: bool, num_channels: int | None):
        channels = image.shape[0]
        if do_convert_rgb:
            # as PIL's convert("RGB"): grayscale replicated, alpha dropped
            return image[[0, 0, 0]] if channels == 1 else image[:3]
        if num_channels is not None and channels != num_channels:
            raise ValueError(
                f"Got an image with {channels} channel(s) and `do_convert_rgb=False`, but `image_mean` and "
                f"`image_std` have {num_channels} values. Pass one mean and standard deviation per channel (for a "
                f"model with `num_channels={channels}`), or leave `do_convert_rgb=True` to get RGB."
            )
        return image

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

    def _target_sources(
        self, images: list, segmentation_maps, instance_id_to_semantic_id, annotations
    ) -> TargetSources | None:
        """Checks the targets against the images; `None` without targets."""
        if segmentation_maps is not None and annotations is not None:
            raise ValueError("Pass either `segmentation_maps` or COCO `annotations` as targets, not both.")
        if segmentation_maps is None and instance_id_to_semantic_id is not None:
            raise ValueError("`instance_id_to_semantic_id` is only used with `segmentation_maps` (instance maps).")
        if segmentation_maps is None and annotations is None:
            return None
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
            for index, (segmentation_map, image) in enumerate(zip(segmentation_maps, images)):
                if segmentation_map.shape != tuple(image.shape[-2:]):
                    raise ValueError(
                        f"Segmentation map {index} has shape {segmentation_map.shape} but its image is "
                        f"{image.shape[-2]}x{image.shape[-1]}."
                    )
        if annotations is not None:
            annotations = [annotations] if isinstance(annotations, Mapping) else list(annotations)
            if len(annotations) != len(images):
                raise ValueError(
                    f"Got {len(images)} images but {len(annotations)} annotations; pass one annotation per image."
                )
        if isinstance(instance_id_to_semantic_id, (list, tuple)):
            if len(instance_id_to_semantic_id) != len(images):
                raise ValueError(
                    f"`instance_id_to_semantic_id` is a list of {len(instance_id_to_semantic_id)} dicts for "
                    f"{len(images)} images; pass one dict per image or a single dict."
                )
            mappings = list(instance_id_to_semantic_id)
        else:
            mappings = [instance_id_to_semantic_id] * len(images)
        return TargetSources(segmentation_maps, mappings, annotations)

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
                One image or a list of images (PIL, NumPy or torch; channels first or last; any sizes; see the class
                docstring for the pixel types and channel counts).
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
            [`BatchFeature`]: `pixel_values` `(batch_size, channels, padded_height, padded_width)`, `pixel_mask`
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
        device: "str | torch.device | None" = None,
        **kwargs,
    ) -> BatchFeature:
        statistics = kwargs["image_mean"] if kwargs.get("do_normalize") else None
        images = self._prepare_image_like_inputs(
            images,
            do_convert_rgb=do_convert_rgb,
            input_data_format=input_data_format,
            device=device,
            num_channels=len(statistics) if isinstance(statistics, Sequence) else None,
        )
        targets = self._target_sources(images, segmentation_maps, instance_id_to_semantic_id, annotations)
        return self._preprocess(images, targets, **kwargs)

    def _output_size(self, image_size: Iterable[int], size: SizeDict) -> tuple[int, int]:
        """The resized `(height, width)`: the original's rounding (see [`get_resize_output_size`]), or a fixed size."""
        image_size = tuple(int(s) for s in image_size)
        if size.shortest_edge:
            return get_resize_output_size(image_size, size.shortest_edge, size.longest_edge)
        if size.height and size.width:
            return (size.height, size.width)
        raise ValueError(
            f"`size` must be {{'shortest_edge': int, 'longest_edge': int}} or {{'height': int, 'width': int}}, got {size}."
        )

    def _preprocess(
        self,
        images: list,
        targets: TargetSources | None,
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
        disable_grouping: bool | None = None,
        **kwargs,
    ) -> BatchFeature:
        original_sizes = [tuple(image.shape[-2:]) for image in images]
        resample = resample if resample is not None else self.resample
        images = self._resize_and_normalize(
            images,
            size=size if do_resize else None,
            resample=resample,
            rescale_factor=rescale_factor if do_rescale else None,
            image_mean=image_mean if do_normalize else None,
            image_std=image_std,
            disable_grouping=disable_grouping,
        )
        image_sizes = [tuple(image.shape[-2:]) for image in images]
        padded_size = self._padded_size(image_sizes, size_divisor, pad_size) if do_pad else None
        if padded_size is not None:
            images, pixel_masks = self.pad(images, pad_size=padded_size, return_mask=True)
        else:
            # each image padded to its own size: an all-ones mask of the backend's array type
            pixel_masks = [
                self.pad([image], pad_size=SizeDict(height=height, width=width), return_mask=True)[1][0]
                for image, (height, width) in zip(images, image_sizes)
            ]
        encoded = BatchFeature(data={"pixel_values": images, "pixel_mask": pixel_masks}, tensor_type=return_tensors)
        if targets is not None:
            target_arrays = self._targets(targets, original_sizes, image_sizes, ignore_index, do_reduce_labels)
            if padded_size is not None:
                # target masks are padded with "not this object", as the original's criterion pads them
                target_arrays["mask_labels"] = [
                    np.pad(masks, ((0, 0), (0, padded_size.height - h), (0, padded_size.width - w)))
                    for masks, (h, w) in zip(target_arrays["mask_labels"], image_sizes)
                ]
            as_tensors = return_tensors == "pt" or self.backend == "torchvision"
            device = images[0].device if isinstance(images[0], torch.Tensor) else None
            for key, arrays in target_arrays.items():
                encoded[key] = [torch.from_numpy(a).to(device) if as_tensors else a for a in arrays]
        return encoded

    @staticmethod
    def _padded_size(
        image_sizes: list[tuple[int, int]], size_divisor: int | None, pad_size: SizeDict | None
    ) -> SizeDict:
        if pad_size is not None:
            too_large = [s for s in image_sizes if s[0] > pad_size.height or s[1] > pad_size.width]
            if too_large:
                raise ValueError(
                    f"`pad_size` {(pad_size.height, pad_size.width)} is smaller than the (resized) image size(s) "
                    f"{too_large}."
                )
            return pad_size
        max_height = max(s[0] for s in image_sizes)
        max_width = max(s[1] for s in image_sizes)
        if size_divisor:
            max_height = math.ceil(max_height / size_divisor) * size_divisor
            max_width = math.ceil(max_width / size_divisor) * size_divisor
        return SizeDict(height=max_height, width=max_width)

    @staticmethod
    def _targets(
        targets: TargetSources,
        original_sizes: list[tuple[int, int]],
        resized_sizes: list[tuple[int, int]],
        ignore_index: int | None,
        do_reduce_labels: bool,
    ) -> dict[str, list[np.ndarray]]:
        """`mask_labels` (at the resized size, unpadded) and `class_labels` of every image, as NumPy arrays, plus
        `target_boxes` and `target_has_masks` for COCO annotations (objects with a box and no mask)."""
        mask_labels, class_labels = [], []
        target_boxes, target_has_masks = [], []
        for index, (original_size, resized_size) in enumerate(zip(original_sizes, resized_sizes)):
            if targets.segmentation_maps is not None:
                label_map = resize_label_map(targets.segmentation_maps[index], resized_size)
                masks, labels = convert_segmentation_map_to_binary_masks(
                    label_map,
                    targets.instance_id_to_semantic_id[index],
                    ignore_index=ignore_index,
                    do_reduce_labels=do_reduce_labels,
                )
            else:
                annotation = targets.annotations[index]
                objects = annotation.get("annotations", []) if isinstance(annotation, Mapping) else annotation
                if not isinstance(objects, (list, tuple)):
                    raise ValueError(
                        f"Annotation {index} must be a dict with an `annotations` list or a list of COCO objects, "
                        f"got {type(objects).__name__}."
                    )
                image_id = annotation.get("image_id") if isinstance(annotation, Mapping) else None
                coco_targets = coco_objects_to_binary_masks(objects, original_size, resized_size, image_id=image_id)
                masks, labels = coco_targets.masks, coco_targets.labels
                target_boxes.append(coco_targets.boxes)
                target_has_masks.append(coco_targets.has_masks)
            mask_labels.append(masks)
            class_labels.append(labels)
        arrays = {"mask_labels": mask_labels, "class_labels": class_labels}
        if targets.annotations is not None:
            # boxes of box-only objects; the model takes the others' boxes from their masks
            arrays.update(target_boxes=target_boxes, target_has_masks=target_has_masks)
        return arrays


class MaskDinoImageProcessorPil(MaskDinoImageProcessingMixin, MaskDinoPostProcessingMixin, PilBackend):
    r"""
    Image processor for Mask DINO on the PIL/NumPy backend (the torchvision one, [`MaskDinoImageProcessor`], gives
    the same results on tensors and on the GPU).

    Preprocessing follows the original's test-time pipeline: resize so that the shorter side is `shortest_edge`
    (capped so the longer side stays within `longest_edge`, with PIL bilinear resampling for uint8 images),
    normalise with the ImageNet mean and standard deviation on the 0..255 scale, and zero-pad at the bottom and
    right to the batch's largest size rounded up to a multiple of `size_divisor`. `pixel_mask` marks valid pixels
    with 1. The images it takes are described in [`MaskDinoImageProcessingMixin`].

    Training targets (`mask_labels`, `class_labels`, one entry per image as in Mask2Former) come from semantic
    maps, instance maps with `instance_id_to_semantic_id`, or COCO-style annotations with polygon or RLE
    segmentations.

    Post-processing reproduces the original's inference: `post_process_semantic_segmentation`,
    `post_process_instance_segmentation`, `post_process_panoptic_segmentation` and `post_process_object_detection`.
    The inference settings of a checkpoint (`object_mask_threshold`, `overlap_threshold`, `panoptic_temperature`,
    `detections_per_image`, `stuff_label_ids`, ...) are attributes of the processor and serve as defaults when a
    caller passes none.
    """

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
        PIL, as the original does; other images with `F.interpolate`, as the original does (see
        [`interpolate_float_images`]).
        """
        new_size = self._output_size(image.shape[-2:], size)
        if tuple(image.shape[-2:]) == new_size:
            return image
        resample = PILImageResampling(resample if resample is not None else self.resample)
        if image.dtype == np.uint8:
            return _pil_resize(image, new_size, resample)
        return interpolate_float_images(torch.from_numpy(np.ascontiguousarray(image)), new_size, resample).numpy()

    def _resize_and_normalize(
        self, images: list[np.ndarray], size, resample, rescale_factor, image_mean, image_std, disable_grouping
    ) -> list[np.ndarray]:
        """Each image resized (`size=None`: not), rescaled and normalised (`None`: not), as float32."""
        processed = []
        for image in images:
            if size is not None:
                image = self.resize(image, size=size, resample=resample)
            image = image.astype(np.float32)
            if rescale_factor is not None:
                image = self.rescale(image, rescale_factor)
            if image_mean is not None:
                image = self.normalize(image, image_mean, image_std)
            processed.append(image.astype(np.float32, copy=False))
        return processed


__all__ = ["MaskDinoImageProcessorPil"]
