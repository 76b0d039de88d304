# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Tests of both image-processor backends, MaskDinoImageProcessorPil and MaskDinoImageProcessor (torchvision; those
tests skip where torchvision is not installed): accepted and rejected inputs (16-bit and float PIL images, any channel
count), resizing and padding, training targets, save/load and Auto loading, post-processing behaviour, parity with the
original implementation's fixtures, and agreement of the two backends."""

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from postprocessing_reference import check_post_processing, fixture_processor
from pycocotools import mask as coco_mask
from safetensors.torch import load_file
from transformers import AutoImageProcessor
from transformers.utils import ModelOutput, is_torchvision_available
from transformers.utils import logging as transformers_logging

import transformers_maskdino
from transformers_maskdino.image_processing_maskdino import MaskDinoImageProcessor
from transformers_maskdino.image_processing_pil_maskdino import (
    MASKDINO_PIXEL_MEAN,
    MASKDINO_PIXEL_STD,
    MaskDinoImageProcessorPil,
    get_resize_output_size,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ["r50_instance", "r50_panoptic", "r50_semantic", "swin_panoptic"]
DEMO_DIR = Path(transformers_maskdino.__file__).parent / "demo"

needs_torchvision = pytest.mark.skipif(
    not is_torchvision_available(),
    reason="torchvision is not installed: the torchvision backend is tested in the torch 2.14.1 + torchvision 0.29.1 "
    "environment of scripts/check_cuda_link.sh",
)
BACKENDS = [
    pytest.param(MaskDinoImageProcessorPil, id="pil"),
    pytest.param(MaskDinoImageProcessor, id="torchvision", marks=needs_torchvision),
]
# Where a uint8 image is resized, torchvision's antialiased bilinear kernel and PIL's differ by at most this many grey
# levels (0..255), on at most this fraction of the pixels (measured on noise and smooth images from 45x70 to 1080x1920:
# 1 level on at most 0.33% of the pixels).
UINT8_RESIZE_MAX_DIFFERENCE = 1
UINT8_RESIZE_MAX_FRACTION = 0.01


def reference_dir() -> Path:
    directory = Path(os.environ.get("MASKDINO_REFERENCE_DIR", REPO_ROOT.parent / "shared" / "reference"))
    if not directory.is_dir():
        raise FileNotFoundError(
            f"Reference fixtures not found at {directory}; set MASKDINO_REFERENCE_DIR to the directory holding "
            f"{VARIANTS}."
        )
    return directory


def normalized(image_hwc: np.ndarray) -> np.ndarray:
    """The original's normalisation of an RGB uint8 (H, W, 3) image, as (3, H, W) float32."""
    chw = torch.from_numpy(np.ascontiguousarray(image_hwc.transpose(2, 0, 1))).float()
    mean = torch.tensor(MASKDINO_PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(MASKDINO_PIXEL_STD).view(3, 1, 1)
    return ((chw - mean) / std).numpy()


def as_numpy(value) -> np.ndarray:
    return value.cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def pixels(pixel_values) -> np.ndarray:
    """Normalised `(3, H, W)` pixel values back on the 0..255 scale, channels last."""
    mean, std = np.array(MASKDINO_PIXEL_MEAN), np.array(MASKDINO_PIXEL_STD)
    return as_numpy(pixel_values).transpose(1, 2, 0) * std + mean


@pytest.fixture(scope="module", params=BACKENDS)
def processor_class(request):
    return request.param


@pytest.fixture(scope="module")
def processor(processor_class):
    return processor_class()


@pytest.fixture(scope="module")
def rgb_image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(45, 70, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------- accepted inputs


def test_defaults(processor):
    assert processor.size == {"shortest_edge": 800, "longest_edge": 1333}
    assert tuple(processor.image_mean) == MASKDINO_PIXEL_MEAN
    assert tuple(processor.image_std) == MASKDINO_PIXEL_STD
    assert processor.size_divisor == 32
    assert processor.model_input_names == ["pixel_values", "pixel_mask"]


@pytest.mark.parametrize(
    "make_input",
    [
        pytest.param(lambda a: Image.fromarray(a), id="pil-rgb"),
        pytest.param(lambda a: Image.fromarray(np.dstack([a, np.full(a.shape[:2], 7, np.uint8)])), id="pil-rgba"),
        pytest.param(lambda a: a, id="numpy-hwc"),
        pytest.param(lambda a: a.transpose(2, 0, 1).copy(), id="numpy-chw"),
        pytest.param(lambda a: np.dstack([a, np.zeros(a.shape[:2], np.uint8)]), id="numpy-hwc-rgba"),
        pytest.param(lambda a: a.astype(np.float32), id="numpy-float-0-255"),
        pytest.param(lambda a: a.astype(np.int32), id="numpy-int32"),
        pytest.param(lambda a: torch.from_numpy(a.transpose(2, 0, 1).copy()), id="torch-chw-uint8"),
        pytest.param(lambda a: torch.from_numpy(a.copy()), id="torch-hwc-uint8"),
        pytest.param(lambda a: torch.from_numpy(a.transpose(2, 0, 1).copy()).double(), id="torch-chw-float64"),
        pytest.param(lambda a: torch.from_numpy(a.transpose(2, 0, 1).copy()).half(), id="torch-chw-float16"),
        pytest.param(lambda a: [a], id="list-of-one"),
        pytest.param(lambda a: a[None], id="numpy-4d-batch-of-one"),
    ],
)
def test_accepted_rgb_forms_give_the_same_pixels(processor, rgb_image, make_input):
    inputs = processor(make_input(rgb_image), do_resize=False, return_tensors="pt")
    expected = np.zeros((3, 64, 96), dtype=np.float32)
    expected[:, :45, :70] = normalized(rgb_image)
    assert inputs["pixel_values"].shape == (1, 3, 64, 96)
    assert inputs["pixel_values"].dtype == torch.float32
    np.testing.assert_allclose(inputs["pixel_values"][0].numpy(), expected, atol=1e-5)
    assert inputs["pixel_mask"].dtype == torch.int64
    assert inputs["pixel_mask"][0, :45, :70].all() and inputs["pixel_mask"].sum() == 45 * 70


@pytest.mark.parametrize(
    "make_input",
    [
        pytest.param(lambda g: Image.fromarray(g, mode="L"), id="pil-L"),
        pytest.param(lambda g: g, id="numpy-hw"),
        pytest.param(lambda g: g[None], id="numpy-1hw"),
        pytest.param(lambda g: g[..., None], id="numpy-hw1"),
        pytest.param(lambda g: torch.from_numpy(g.copy()), id="torch-hw"),
    ],
)
def test_grayscale_is_replicated_to_rgb(processor, rgb_image, make_input):
    gray = rgb_image[..., 0]
    inputs = processor(make_input(gray), do_resize=False, return_tensors="pt")
    np.testing.assert_allclose(
        inputs["pixel_values"][0, :, :45, :70].numpy(), normalized(np.dstack([gray] * 3)), atol=1e-5
    )


def test_channel_format_can_be_given_when_ambiguous(processor):
    # (3, 5, 3) could be channels first or last
    image = np.arange(45, dtype=np.uint8).reshape(3, 5, 3)
    first = processor(image, do_resize=False, input_data_format="channels_first", return_tensors="pt")
    last = processor(image, do_resize=False, input_data_format="channels_last", return_tensors="pt")
    np.testing.assert_allclose(
        first["pixel_values"][0, :, :5, :3].numpy(), normalized(image.transpose(1, 2, 0)), atol=1e-5
    )
    np.testing.assert_allclose(last["pixel_values"][0, :, :3, :5].numpy(), normalized(image), atol=1e-5)


def test_image_path_is_loaded(processor, rgb_image, tmp_path):
    path = tmp_path / "image.png"
    Image.fromarray(rgb_image).save(path)
    from_path = processor(str(path), do_resize=False, return_tensors="pt")
    from_array = processor(rgb_image, do_resize=False, return_tensors="pt")
    assert torch.equal(from_path["pixel_values"], from_array["pixel_values"])


def test_batch_of_different_sizes_is_padded_bottom_right(processor):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), rng.integers(0, 256, (70, 33, 3), dtype=np.uint8)]
    inputs = processor(images, do_resize=False, return_tensors="pt")
    assert inputs["pixel_values"].shape == (2, 3, 96, 64)
    for index, image in enumerate(images):
        height, width = image.shape[:2]
        np.testing.assert_allclose(
            inputs["pixel_values"][index, :, :height, :width].numpy(), normalized(image), atol=1e-5
        )
        assert inputs["pixel_values"][index, :, height:, :].abs().sum() == 0
        assert inputs["pixel_values"][index, :, :, width:].abs().sum() == 0
        assert inputs["pixel_mask"][index].sum() == height * width
        assert inputs["pixel_mask"][index, :height, :width].all()


def test_backend_arrays_without_return_tensors(processor, rgb_image):
    inputs = processor([rgb_image, rgb_image[:20]], do_resize=False)
    # NumPy arrays from the PIL backend, tensors from the torchvision backend (as Mask2Former's)
    array_type = np.ndarray if processor.backend == "pil" else torch.Tensor
    assert isinstance(inputs["pixel_values"], list) and isinstance(inputs["pixel_values"][1], array_type)
    assert inputs["pixel_values"][1].shape == (3, 64, 96)
    assert as_numpy(inputs["pixel_mask"][1]).dtype == np.int64


def test_pad_size_and_no_padding(processor, rgb_image):
    padded = processor(rgb_image, do_resize=False, pad_size={"height": 50, "width": 80}, return_tensors="pt")
    assert padded["pixel_values"].shape == (1, 3, 50, 80)
    unpadded = processor(rgb_image, do_resize=False, do_pad=False, return_tensors="pt")
    assert unpadded["pixel_values"].shape == (1, 3, 45, 70) and unpadded["pixel_mask"].all()


# ---------------------------------------------------------------------------------------------- resizing


@pytest.mark.parametrize(
    ("image_size", "size", "expected"),
    [
        ((150, 210), (800, 1333), (800, 1120)),
        ((480, 640), (800, 1333), (800, 1067)),
        ((640, 480), (800, 1333), (1067, 800)),
        ((100, 1000), (800, 1333), (133, 1333)),
        ((512, 512), (800, 1333), (800, 800)),
        ((375, 500), (512, 2048), (512, 683)),
        ((1024, 2048), (1024, 2048), (1024, 2048)),
    ],
)
def test_resize_output_size(image_size, size, expected):
    assert get_resize_output_size(image_size, *size) == expected


def test_resize_matches_pil_bilinear_and_pads_to_32(processor, rgb_image):
    inputs = processor(rgb_image, return_tensors="pt")
    # 45x70 -> shorter side 800 -> 800x1244, padded to 800x1248
    assert inputs["pixel_values"].shape == (1, 3, 800, 1248)
    assert inputs["pixel_mask"][0].sum() == 800 * 1244
    resized = np.array(Image.fromarray(rgb_image).resize((1244, 800), Image.BILINEAR))
    if processor.backend == "pil":
        np.testing.assert_allclose(inputs["pixel_values"][0, :, :800, :1244].numpy(), normalized(resized), atol=1e-5)
    else:
        difference = np.abs(pixels(inputs["pixel_values"][0, :, :800, :1244]) - resized)
        assert difference.max() <= UINT8_RESIZE_MAX_DIFFERENCE + 1e-3
        assert (difference > 0.5).mean() <= UINT8_RESIZE_MAX_FRACTION


@pytest.mark.parametrize(
    "image_size",
    [(45, 70), (481, 641), (1001, 333), (799, 1333), (150, 210), (333, 3000), (7, 9), (1080, 1920)],
)
def test_resized_sizes_follow_the_original_rounding(processor, image_size):
    image = np.zeros((*image_size, 3), np.uint8)
    for size in ({"shortest_edge": 800, "longest_edge": 1333}, {"shortest_edge": 512, "longest_edge": 2048}):
        expected = get_resize_output_size(image_size, size["shortest_edge"], size["longest_edge"])
        mask = processor(image, size=size, do_pad=False, return_tensors="pt")["pixel_mask"]
        assert tuple(mask.shape[-2:]) == expected, (image_size, size)


def test_resize_of_float_images_and_fixed_size(processor, rgb_image):
    inputs = processor(rgb_image.astype(np.float32), size={"height": 90, "width": 140}, return_tensors="pt")
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(rgb_image.transpose(2, 0, 1).astype(np.float32))[None], size=(90, 140), mode="bilinear"
    )[0]
    mean, std = torch.tensor(MASKDINO_PIXEL_MEAN).view(3, 1, 1), torch.tensor(MASKDINO_PIXEL_STD).view(3, 1, 1)
    assert inputs["pixel_values"].shape == (1, 3, 96, 160)
    torch.testing.assert_close(inputs["pixel_values"][0, :, :90, :140], (expected - mean) / std, atol=1e-4, rtol=0)


def test_dataset_resize_settings(processor_class, rgb_image):
    ade = processor_class(size={"shortest_edge": 512, "longest_edge": 2048})
    assert ade(rgb_image, return_tensors="pt")["pixel_mask"][0].sum() == 512 * 796


# ---------------------------------------------------------------------------------------------- rejected inputs


@pytest.mark.parametrize(
    ("bad_input", "message"),
    [
        (np.zeros((10,), np.uint8), "Images must be"),
        (np.zeros((2, 3, 4, 5, 6), np.uint8), "Images must be"),
        (np.zeros((10, 12, 2), np.uint8), "Cannot find the channel dimension"),
        (np.zeros((5, 10, 12), np.uint8), "Cannot find the channel dimension"),
        (np.zeros((0, 12, 3), np.uint8), "empty image"),
        (np.zeros((10, 12, 3), bool), "Unsupported image dtype bool"),
        (np.zeros((10, 12, 3), np.complex64), "Unsupported image dtype complex64"),
        (np.full((10, 12, 3), np.nan, np.float32), "NaN or infinite"),
        ({"pixels": 1}, "Images must be"),
        (12, "Images must be"),
        ([], "Got no images"),
        ([np.zeros((10, 12, 3), np.uint8), "not an image"], None),
    ],
)
def test_rejected_images(processor, bad_input, message):
    with pytest.raises(ValueError, match=message):
        processor(bad_input, return_tensors="pt")


def test_rejected_channel_format(processor):
    with pytest.raises(ValueError, match="has 10 channels; expected 1 \\(grayscale\\), 3 \\(RGB\\) or 4 \\(RGBA\\)"):
        processor(np.zeros((10, 12, 3), np.uint8), input_data_format="channels_first")


def test_rejected_size(processor_class, rgb_image):
    with pytest.raises(ValueError, match="`size` must be"):
        processor_class(size={"longest_edge": 100})(rgb_image)


def test_pad_size_smaller_than_image(processor, rgb_image):
    with pytest.raises(ValueError, match="`pad_size` \\(32, 32\\) is smaller than"):
        processor(rgb_image, do_resize=False, pad_size={"height": 32, "width": 32})


# ---------------------------------------------------------------------------------------------- training targets


def test_targets_from_semantic_map_with_ignore_index(processor):
    semantic_map = np.array([[0, 0, 1, 255], [3, 3, 1, 255], [3, 3, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=np.uint8)
    inputs = processor(
        np.zeros((5, 4, 3), np.uint8),
        segmentation_maps=semantic_map,
        ignore_index=255,
        do_resize=False,
        return_tensors="pt",
    )
    assert inputs["class_labels"][0].tolist() == [0, 1, 3]
    assert inputs["class_labels"][0].dtype == torch.int64
    masks = inputs["mask_labels"][0]
    assert masks.shape == (3, 32, 32) and masks.dtype == torch.float32
    for mask, label in zip(masks, [0, 1, 3]):
        assert torch.equal(mask[:5, :4], torch.from_numpy((semantic_map == label).astype(np.float32)))
    assert masks[:, 5:, :].sum() == 0 and masks[:, :, 4:].sum() == 0  # padding belongs to no target


def test_targets_from_semantic_map_with_reduced_labels(processor):
    semantic_map = np.array([[0, 1], [2, 2]], dtype=np.int64)
    inputs = processor(
        np.zeros((2, 2, 3), np.uint8),
        segmentation_maps=semantic_map,
        ignore_index=255,
        do_reduce_labels=True,
        do_resize=False,
        return_tensors="pt",
    )
    assert inputs["class_labels"][0].tolist() == [0, 1]
    assert inputs["mask_labels"][0][:, :2, :2].tolist() == [[[0, 1], [0, 0]], [[0, 0], [1, 1]]]


def test_targets_from_instance_maps_are_resized_with_the_image(processor):
    instance_map = np.zeros((20, 30), dtype=np.int32)
    instance_map[2:8, 3:12] = 7
    instance_map[10:18, 15:29] = 1000  # ids beyond 8 bits keep their value
    inputs = processor(
        [np.zeros((20, 30, 3), np.uint8)] * 2,
        segmentation_maps=[instance_map, np.zeros((20, 30), np.int32)],
        instance_id_to_semantic_id={7: 4, 1000: 2},
        ignore_index=0,
        size={"shortest_edge": 40, "longest_edge": 100},
        return_tensors="pt",
    )
    assert inputs["pixel_values"].shape == (2, 3, 64, 64)
    assert inputs["class_labels"][0].tolist() == [4, 2]
    masks = inputs["mask_labels"][0]
    assert masks.shape == (2, 64, 64)
    # exact 2x nearest upscaling
    assert torch.equal(
        masks[0, :40, :60], torch.from_numpy(np.kron(instance_map == 7, np.ones((2, 2))).astype(np.float32))
    )
    assert masks[1].sum() == (instance_map == 1000).sum() * 4
    # an image without objects
    assert inputs["mask_labels"][1].shape == (0, 64, 64) and inputs["class_labels"][1].shape == (0,)


def test_per_image_instance_mappings(processor):
    maps = [np.array([[1, 2]]), np.array([[1, 1]])]
    inputs = processor(
        [np.zeros((1, 2, 3), np.uint8)] * 2,
        segmentation_maps=maps,
        instance_id_to_semantic_id=[{1: 5, 2: 6}, {1: 0}],
        do_resize=False,
    )
    assert [labels.tolist() for labels in inputs["class_labels"]] == [[5, 6], [0]]


def test_targets_from_coco_polygons_and_rle(processor):
    height, width = 40, 60
    rle_mask = np.zeros((height, width), dtype=np.uint8, order="F")
    rle_mask[5:15, 30:50] = 1
    compressed_rle = coco_mask.encode(rle_mask)
    uncompressed_rle = {"size": [height, width], "counts": [int(v) for v in _uncompressed_counts(rle_mask)]}
    annotation = {
        "image_id": 3,
        "annotations": [
            {"category_id": 2, "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]], "iscrowd": 0},
            {"category_id": 5, "segmentation": compressed_rle, "iscrowd": 0},
            {"category_id": 6, "segmentation": uncompressed_rle},
            {"category_id": 1, "segmentation": [[0, 0, 60, 0, 60, 40]], "iscrowd": 1},  # crowd: dropped
            {"category_id": 4, "segmentation": [[1, 1, 2, 2]]},  # degenerate polygon: no mask, dropped
        ],
    }
    inputs = processor(
        np.zeros((height, width, 3), np.uint8), annotations=annotation, do_resize=False, return_tensors="pt"
    )
    assert inputs["class_labels"][0].tolist() == [2, 5, 6]
    masks = inputs["mask_labels"][0]
    assert masks.shape == (3, 64, 64)
    expected_polygon = coco_mask.decode(
        coco_mask.merge(coco_mask.frPyObjects([[10, 10, 30, 10, 30, 30, 10, 30]], height, width))
    )
    assert torch.equal(masks[0, :height, :width], torch.from_numpy(expected_polygon.astype(np.float32)))
    assert torch.equal(masks[1, :height, :width], torch.from_numpy(rle_mask.astype(np.float32)))
    assert torch.equal(masks[2], masks[1])

    # with resizing, polygons are scaled then rasterised: the 20x20 square becomes about 40x40
    resized = processor(
        np.zeros((height, width, 3), np.uint8),
        annotations=[annotation["annotations"]],
        size={"shortest_edge": 80, "longest_edge": 200},
        return_tensors="pt",
    )
    assert resized["mask_labels"][0].shape == (3, 96, 128)
    assert abs(resized["mask_labels"][0][0].sum().item() - 40 * 40) < 120
    assert resized["mask_labels"][0][1].sum() == 4 * rle_mask.sum()


def test_coco_image_without_objects(processor):
    inputs = processor(
        np.zeros((20, 20, 3), np.uint8), annotations={"annotations": []}, do_resize=False, return_tensors="pt"
    )
    assert inputs["mask_labels"][0].shape == (0, 32, 32) and inputs["class_labels"][0].shape == (0,)


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE counts: alternating run lengths in column-major order, starting with zeros."""
    flat = mask.flatten(order="F")
    edges = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [flat.size]])
    counts = np.diff(edges).tolist()
    return [0, *counts] if flat[0] else counts


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"segmentation_maps": np.zeros((5, 5), np.int64)},
            "Segmentation map 0 has shape \\(5, 5\\) but its image is 4x6",
        ),
        ({"segmentation_maps": np.zeros((4, 6, 2), np.int64)}, "must be 2-d"),
        ({"segmentation_maps": np.full((4, 6), 0.5)}, "non-integer float values"),
        ({"segmentation_maps": [np.zeros((4, 6))] * 2}, "1 images but 2 segmentation maps"),
        (
            {"segmentation_maps": np.ones((4, 6), np.int64), "instance_id_to_semantic_id": {2: 1}},
            "Instance ids \\[1\\]",
        ),
        ({"segmentation_maps": np.ones((4, 6), np.int64), "do_reduce_labels": True}, "needs `ignore_index`"),
        ({"instance_id_to_semantic_id": {1: 1}}, "only used with `segmentation_maps`"),
        ({"segmentation_maps": np.ones((4, 6), np.int64), "annotations": {"annotations": []}}, "not both"),
        ({"annotations": [{"annotations": []}] * 2}, "1 images but 2 annotations"),
        ({"annotations": [[{"segmentation": [[0, 0, 1, 1, 1, 0]]}]]}, "needs `category_id` and `segmentation`"),
        ({"annotations": [[{"category_id": 1, "segmentation": "x"}]]}, "list of polygons or an RLE dict"),
        ({"annotations": [[{"category_id": 1, "segmentation": [[0, 0, 1]]}]]}, "odd number of coordinates"),
        (
            {"annotations": [[{"category_id": 1, "segmentation": {"size": [3, 3], "counts": [9]}}]]},
            "has size \\[3, 3\\], but the image is 4x6",
        ),
    ],
)
def test_rejected_targets(processor, kwargs, message):
    with pytest.raises(ValueError, match=message):
        processor(np.zeros((4, 6, 3), np.uint8), do_resize=False, input_data_format="channels_last", **kwargs)


# ---------------------------------------------------------------------------------------------- save / load


def test_save_load_round_trip(processor_class, tmp_path):
    processor = processor_class(
        size={"shortest_edge": 512, "longest_edge": 2048},
        object_mask_threshold=0.8,
        detections_per_image=20,
        stuff_label_ids=[5, 6, 7],
        use_semantic_cross_entropy=True,
        semantic_resize_mask_logits=False,
        ignore_index=255,
    )
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    # both backends save the same file, as Mask2Former's do
    assert saved["image_processor_type"] == "MaskDinoImageProcessor"
    assert saved["stuff_label_ids"] == [5, 6, 7] and saved["object_mask_threshold"] == 0.8

    reloaded = processor_class.from_pretrained(tmp_path)
    assert type(reloaded) is processor_class and reloaded.to_dict() == processor.to_dict()
    auto = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(auto) is DEFAULT_BACKEND and auto.to_dict() == processor.to_dict()
    image = np.random.default_rng(2).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    assert torch.equal(
        reloaded(image, return_tensors="pt")["pixel_values"], processor(image, return_tensors="pt")["pixel_values"]
    )


# ---------------------------------------------------------------------------------------------- backends and Auto

DEFAULT_BACKEND = MaskDinoImageProcessor if is_torchvision_available() else MaskDinoImageProcessorPil


@pytest.fixture
def transformers_warnings():
    """The warnings that transformers logs inside the test, including those it logs only once per process."""
    transformers_logging.warning_once.cache_clear()
    messages = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    loggers = [logging.getLogger("transformers"), logging.getLogger("transformers_maskdino")]
    for logger in loggers:
        logger.addHandler(handler)
    yield messages
    for logger in loggers:
        logger.removeHandler(handler)


def test_auto_image_processor_loads_every_directory_without_a_fallback(
    converted_reference, tmp_path, transformers_warnings
):
    """The shipped demo (`image_processor_type: MaskDinoImageProcessor`), a converted directory (`auto_map` in its
    config, no `image_processor_type`) and a directory saved by either backend load through AutoImageProcessor as
    the torchvision backend where torchvision is installed and as the PIL backend elsewhere, with no warning."""
    MaskDinoImageProcessorPil().save_pretrained(tmp_path / "pil")
    directories = [DEMO_DIR, converted_reference("r50_panoptic"), tmp_path / "pil"]
    if is_torchvision_available():
        MaskDinoImageProcessor().save_pretrained(tmp_path / "torchvision")
        directories.append(tmp_path / "torchvision")
    for directory in directories:
        assert type(AutoImageProcessor.from_pretrained(directory)) is DEFAULT_BACKEND, directory
        assert type(AutoImageProcessor.from_pretrained(directory, backend="pil")) is MaskDinoImageProcessorPil
        if is_torchvision_available():
            loaded = AutoImageProcessor.from_pretrained(directory, backend="torchvision")
            assert type(loaded) is MaskDinoImageProcessor
    assert transformers_warnings == []


@needs_torchvision
def test_package_name_is_the_torchvision_backend_where_installed():
    assert transformers_maskdino.MaskDinoImageProcessor is MaskDinoImageProcessor
    assert MaskDinoImageProcessor().backend == "torchvision"


@pytest.mark.skipif(is_torchvision_available(), reason="checks the environment without torchvision")
def test_package_name_falls_back_to_pil_without_torchvision(transformers_warnings):
    """As `transformers.Mask2FormerImageProcessor` does: the name gives the PIL backend, with a warning saying so,
    while the torchvision class itself refuses to be built."""
    transformers_maskdino.__dict__.pop("MaskDinoImageProcessor", None)
    from transformers_maskdino import MaskDinoImageProcessor as package_name

    assert package_name is MaskDinoImageProcessorPil
    assert any("falling back to `MaskDinoImageProcessorPil`" in message for message in transformers_warnings)
    with pytest.raises(ImportError, match="needs torchvision, which is not installed.*MaskDinoImageProcessorPil"):
        MaskDinoImageProcessor()


# ---------------------------------------------------------------------------------------------- post-processing


def make_outputs(class_logits, mask_logits, boxes=None, image_sizes=None, padded_image_sizes=None):
    fields = {"class_queries_logits": class_logits, "masks_queries_logits": mask_logits}
    if boxes is not None:
        fields["pred_boxes"] = boxes
    if image_sizes is not None:
        fields["image_sizes"] = torch.tensor(image_sizes)
        fields["padded_image_sizes"] = torch.tensor(padded_image_sizes)
    return ModelOutput(fields)


def test_padding_is_cropped_before_resizing(processor):
    # one query whose mask covers exactly the valid (unpadded) left half of a 32x64 padded input
    mask_logits = torch.full((1, 2, 8, 16), -10.0)
    mask_logits[0, 0, :, :8] = 10.0
    mask_logits[0, 1, :, 8:] = 10.0  # lies in the padding only
    class_logits = torch.tensor([[[5.0, -5.0], [-5.0, 4.0]]])
    boxes = torch.tensor([[[0.25, 0.5, 0.5, 1.0], [0.75, 0.5, 0.5, 1.0]]])
    outputs = make_outputs(class_logits, mask_logits, boxes, image_sizes=[[32, 32]], padded_image_sizes=[[32, 64]])

    semantic = processor.post_process_semantic_segmentation(outputs, target_sizes=[(64, 64)])[0]
    assert semantic.shape == (64, 64) and (semantic == 0).all()

    instances = processor.post_process_instance_segmentation(
        outputs, target_sizes=[(64, 64)], return_binary_maps=True
    )[0]
    first = instances["segments_info"][0]
    assert first["label_id"] == 0 and instances["segmentation"][0].all()
    assert first["box_xyxy"] == pytest.approx([0.0, 0.0, 64.0, 64.0])
    # (query 0, label 1) keeps query 0's full mask; query 1's mask lies in the padding, so it scores 0
    scores = [s["score"] for s in instances["segments_info"]]
    assert scores == pytest.approx(
        [torch.sigmoid(torch.tensor(5.0)).item(), torch.sigmoid(torch.tensor(-5.0)).item(), 0, 0], abs=5e-3
    )
    assert [s["label_id"] for s in instances["segments_info"][:2]] == [0, 1]
    assert not instances["segmentation"][2:].any()

    detections = processor.post_process_object_detection(outputs, 0.5, torch.IntTensor([[64, 64]]))[0]
    assert detections["labels"].tolist() == [0, 1]
    torch.testing.assert_close(detections["boxes"], torch.tensor([[0.0, 0.0, 64.0, 64.0], [64.0, 0.0, 128.0, 64.0]]))
    relative = processor.post_process_object_detection(outputs, 0.5)[0]
    torch.testing.assert_close(relative["boxes"][0], torch.tensor([0.0, 0.0, 1.0, 1.0]))

    panoptic = processor.post_process_panoptic_segmentation(outputs, target_sizes=[(64, 64)])[0]
    assert [s["label_id"] for s in panoptic["segments_info"]] == [0]
    assert (panoptic["segmentation"] == 1).all()


def test_outputs_without_geometry_are_resized_directly(processor):
    outputs = make_outputs(torch.zeros(1, 3, 2), torch.randn(1, 3, 8, 8))
    assert processor.post_process_semantic_segmentation(outputs)[0].shape == (8, 8)
    assert processor.post_process_semantic_segmentation(outputs, target_sizes=[(20, 30)])[0].shape == (20, 30)
    with pytest.raises(ValueError, match="Object detection needs `pred_boxes`"):
        processor.post_process_object_detection(outputs)


@pytest.fixture
def random_outputs():
    generator = torch.Generator().manual_seed(0)
    return make_outputs(
        torch.randn(2, 6, 4, generator=generator) * 3,
        torch.randn(2, 6, 8, 12, generator=generator) * 4,
        torch.rand(2, 6, 4, generator=generator) * 0.5 + 0.25,
        image_sizes=[[32, 48], [20, 40]],
        padded_image_sizes=[[32, 48], [32, 48]],
    )


def test_pipeline_keyword_arguments_are_accepted(processor, random_outputs):
    pipeline_kwargs = {
        "threshold": 0.0,
        "mask_threshold": 0.5,
        "overlap_mask_area_threshold": 0.5,
        "target_sizes": [(10, 10), (10, 10)],
    }
    for method in (processor.post_process_panoptic_segmentation, processor.post_process_instance_segmentation):
        results = method(random_outputs, **pipeline_kwargs)
        assert len(results) == 2
        for result in results:
            assert result["segmentation"].shape == (10, 10)
            for segment in result["segments_info"]:
                assert {"id", "label_id", "score"} <= set(segment)
    semantic = processor.post_process_semantic_segmentation(random_outputs, target_sizes=[(10, 10), (5, 7)])
    assert [tuple(s.shape) for s in semantic] == [(10, 10), (5, 7)]


def test_instance_selection_threshold_and_formats(processor_class, random_outputs):
    processor = processor_class(detections_per_image=5, stuff_label_ids=[3])
    results = processor.post_process_instance_segmentation(random_outputs, return_binary_maps=True)
    for index, result in enumerate(results):
        labels = [s["label_id"] for s in result["segments_info"]]
        scores = [s["score"] for s in result["segments_info"]]
        assert len(labels) <= 5 and 3 not in labels
        assert scores == sorted(scores, reverse=True)
        assert result["segmentation"].dtype == torch.bool
        assert result["segmentation"].shape[1:] == ((32, 48), (20, 40))[index]
    thresholded = processor.post_process_instance_segmentation(random_outputs, threshold=0.3)[0]
    assert all(s["score"] >= 0.3 for s in thresholded["segments_info"])
    # segment map: background -1, ids from 0 (as Mask2Former), higher scores on top
    segmentation = thresholded["segmentation"]
    assert segmentation.dtype == torch.int32 and segmentation.min() >= -1
    rle = processor.post_process_instance_segmentation(random_outputs, return_coco_annotation=True)[0]
    assert len(rle["segmentation"]) == len(rle["segments_info"])
    assert all(sum(runs[1::2]) <= 32 * 48 for runs in rle["segmentation"])
    with pytest.raises(ValueError, match="Set at most one of"):
        processor.post_process_instance_segmentation(
            random_outputs, return_binary_maps=True, return_coco_annotation=True
        )
    with pytest.raises(ValueError, match="must be in \\(0, 1\\)"):
        processor.post_process_instance_segmentation(random_outputs, mask_threshold=1.5)


def test_higher_scored_instances_cover_lower_ones(processor):
    mask_logits = torch.full((1, 2, 4, 4), 10.0)  # both queries cover the whole image
    class_logits = torch.tensor([[[0.0], [3.0]]])
    result = processor.post_process_instance_segmentation(make_outputs(class_logits, mask_logits))[0]
    assert [s["id"] for s in result["segments_info"]] == [0, 1]
    assert (result["segmentation"] == 0).all()


def test_panoptic_fuses_stuff_and_uses_thresholds(processor_class, random_outputs):
    processor = processor_class(stuff_label_ids=[0, 1, 2, 3], object_mask_threshold=0.0, overlap_threshold=0.0)
    result = processor.post_process_panoptic_segmentation(random_outputs)[0]
    labels = [s["label_id"] for s in result["segments_info"]]
    assert len(labels) == len(set(labels))  # one segment per stuff class
    assert all(s["was_fused"] for s in result["segments_info"])
    assert set(result["segmentation"].unique().tolist()) <= {0, *[s["id"] for s in result["segments_info"]]}
    assert processor.post_process_panoptic_segmentation(random_outputs, threshold=1.0)[0]["segments_info"] == []
    unfused = processor.post_process_panoptic_segmentation(random_outputs, label_ids_to_fuse=set())[0]
    assert len(unfused["segments_info"]) >= len(result["segments_info"])


def test_cross_entropy_models_drop_the_no_object_class(processor_class):
    processor = processor_class(use_semantic_cross_entropy=True)
    class_logits = torch.tensor([[[0.0, 0.0, 9.0], [0.0, 5.0, 0.0]]])  # query 0 is "no object"
    mask_logits = torch.full((1, 2, 4, 4), 5.0)
    outputs = make_outputs(class_logits, mask_logits, torch.full((1, 2, 4), 0.5))
    assert (processor.post_process_semantic_segmentation(outputs)[0] == 1).all()
    panoptic = processor.post_process_panoptic_segmentation(outputs, threshold=0.5)[0]
    assert [s["label_id"] for s in panoptic["segments_info"]] == [1]
    detections = processor.post_process_object_detection(outputs, threshold=0.5)[0]
    assert detections["labels"].tolist() == [1]


def test_half_precision_outputs(processor, random_outputs):
    half = make_outputs(
        random_outputs.class_queries_logits.half(),
        random_outputs.masks_queries_logits.half(),
        random_outputs.pred_boxes.half(),
        random_outputs.image_sizes.tolist(),
        random_outputs.padded_image_sizes.tolist(),
    )
    full = processor.post_process_semantic_segmentation(random_outputs)[0]
    assert (processor.post_process_semantic_segmentation(half)[0] == full).float().mean() > 0.95


def test_target_sizes_must_match_the_batch(processor, random_outputs):
    with pytest.raises(ValueError, match="`target_sizes` has 1 entries but the outputs hold 2 images"):
        processor.post_process_semantic_segmentation(random_outputs, target_sizes=[(4, 4)])
    with pytest.raises(ValueError, match="must be a positive \\(height, width\\)"):
        processor.post_process_instance_segmentation(random_outputs, target_sizes=[(4, 4, 4), (4, 4)])


def test_incomplete_outputs_are_rejected(processor):
    with pytest.raises(ValueError, match="`class_queries_logits` and `masks_queries_logits`"):
        processor.post_process_semantic_segmentation(ModelOutput({"class_queries_logits": torch.zeros(1, 2, 3)}))
    outputs = ModelOutput(
        {
            "class_queries_logits": torch.zeros(1, 2, 3),
            "masks_queries_logits": torch.zeros(1, 2, 4, 4),
            "image_sizes": torch.tensor([[4, 4]]),
        }
    )
    with pytest.raises(ValueError, match="both `image_sizes` and `padded_image_sizes`"):
        processor.post_process_semantic_segmentation(outputs)


# ---------------------------------------------------------------------------------------------- fixture parity


def fixture_runs(variant_dir: Path):
    """(name, model-like outputs of the original, batch index, result prefix) for the single image and both batch
    elements, from the fixture's raw decoder outputs."""
    outputs = load_file(variant_dir / "outputs.safetensors")
    inputs = load_file(variant_dir / "inputs.safetensors")
    padded = list(inputs["pixel_values"].shape[-2:])
    runs = []
    for prefix, sizes in (("", inputs["image_size"][None]), ("batch2.", inputs["batch2.image_sizes"])):
        model_outputs = ModelOutput(
            {
                "class_queries_logits": outputs[f"{prefix}decoder.pred_logits"],
                "masks_queries_logits": outputs[f"{prefix}decoder.pred_masks"],
                "pred_boxes": outputs[f"{prefix}decoder.pred_boxes"],
                "image_sizes": sizes,
                "padded_image_sizes": torch.tensor([padded] * len(sizes)),
            }
        )
        for index in range(len(sizes)):
            runs.append((f"{prefix or 'single.'}{index}", model_outputs, index, f"batch2.{index}." if prefix else ""))
    return runs


@pytest.fixture(scope="module", params=VARIANTS)
def variant(request):
    directory = reference_dir() / request.param
    if not directory.is_dir():
        raise FileNotFoundError(f"Missing reference variant {directory}.")
    return directory


def backend_fixture_processor(processor_class, variant_dir: Path):
    """The fixture's processor (`fixture_processor`) on the given backend."""
    return processor_class.from_dict(fixture_processor(variant_dir).to_dict())


def test_fixture_pixel_values(processor_class, variant):
    inputs = load_file(variant / "inputs.safetensors")
    processor = backend_fixture_processor(processor_class, variant)
    image = Image.open(variant / "image.png")
    single = processor(image, do_resize=False, return_tensors="pt")
    torch.testing.assert_close(single["pixel_values"], inputs["pixel_values"], atol=1e-6, rtol=0)
    assert torch.equal(inputs["image"], torch.from_numpy(np.array(image)).permute(2, 0, 1))

    batch = processor([image, Image.open(variant / "image2.png")], do_resize=False, return_tensors="pt")
    assert batch["pixel_values"].shape == (2, *inputs["pixel_values"].shape[1:])
    torch.testing.assert_close(batch["pixel_values"][:1], inputs["pixel_values"], atol=1e-6, rtol=0)
    height, width = inputs["batch2.image_sizes"][1].tolist()
    expected = normalized(inputs["image2"].permute(1, 2, 0).numpy())
    torch.testing.assert_close(
        batch["pixel_values"][1, :, :height, :width], torch.from_numpy(expected), atol=1e-6, rtol=0
    )
    assert (
        batch["pixel_values"][1, :, height:].abs().sum() == 0
        and batch["pixel_values"][1, :, :, width:].abs().sum() == 0
    )
    assert batch["pixel_mask"].flatten(1).sum(1).tolist() == inputs["batch2.image_sizes"].prod(1).tolist()


def test_fixture_post_processing_of_the_original_outputs(processor_class, variant):
    """The original's raw outputs through our post-processing give the original's post-processed results."""
    processor = backend_fixture_processor(processor_class, variant)
    checked = set()
    for name, outputs, index, prefix in fixture_runs(variant):
        checked |= check_post_processing(processor, outputs, index, variant, prefix, name, exact=True)
    expected_tasks = {
        "r50_instance": {"instance"},
        "r50_semantic": {"semantic"},
        "r50_panoptic": {"semantic", "instance", "panoptic"},
        "swin_panoptic": {"semantic", "instance", "panoptic"},
    }[variant.name]
    assert checked == expected_tasks


# ---------------------------------------------------------------------------------------------- both backends agree


PIXEL_STD = torch.tensor(MASKDINO_PIXEL_STD).view(3, 1, 1)  # normalised differences to grey levels


def backend_pair(**kwargs):
    return MaskDinoImageProcessorPil(**kwargs), MaskDinoImageProcessor(**kwargs)


@needs_torchvision
@pytest.mark.parametrize(
    ("make_input", "has_uint8"),
    [
        pytest.param(lambda rng: Image.fromarray(rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)), True, id="pil"),
        pytest.param(lambda rng: rng.integers(0, 256, (3, 33, 50), dtype=np.uint8), True, id="uint8-chw"),
        pytest.param(lambda rng: torch.from_numpy(rng.random((40, 31, 3)) * 255), False, id="torch-float64-hwc"),
        pytest.param(lambda rng: rng.integers(0, 65536, (21, 34), dtype=np.uint16), False, id="uint16-gray"),
        pytest.param(lambda rng: [rng.integers(0, 256, (20, 30, 3), np.uint8)] * 2, True, id="batch-same-size"),
        pytest.param(
            lambda rng: [rng.integers(0, 256, (20, 30, 3), np.uint8), rng.random((41, 17, 3)).astype(np.float32)],
            True,
            id="batch-mixed",
        ),
    ],
)
def test_backends_give_the_same_pixel_values_and_masks(make_input, has_uint8):
    pil, torchvision = backend_pair()
    for kwargs in (
        {"do_resize": False},
        {"do_resize": False, "pad_size": {"height": 96, "width": 96}},
        {"size": {"height": 61, "width": 45}},
        {"size": {"shortest_edge": 100, "longest_edge": 130}},
    ):
        images = make_input(np.random.default_rng(3))
        expected = pil(images, return_tensors="pt", **kwargs)
        actual = torchvision(images, return_tensors="pt", **kwargs)
        assert torch.equal(actual["pixel_mask"], expected["pixel_mask"])
        difference = (actual["pixel_values"] - expected["pixel_values"]).abs() * PIXEL_STD
        # exact without resizing and for non-uint8 images (the same F.interpolate); grey levels for uint8 resizing
        tolerance = UINT8_RESIZE_MAX_DIFFERENCE + 1e-3 if has_uint8 and "size" in kwargs else 1e-3
        assert difference.max() <= tolerance, kwargs


@needs_torchvision
def test_uint8_resize_tolerance_between_backends():
    """PIL's bilinear filter (the original's) against torchvision's antialiased bilinear one, up and down."""
    image = np.random.default_rng(4).integers(0, 256, (150, 210, 3), dtype=np.uint8)
    pil, torchvision = backend_pair()
    for size in ({"shortest_edge": 800, "longest_edge": 1333}, {"shortest_edge": 64, "longest_edge": 100}):
        expected = pixels(pil(image, size=size, do_pad=False, return_tensors="pt")["pixel_values"][0])
        actual = pixels(torchvision(image, size=size, do_pad=False, return_tensors="pt")["pixel_values"][0])
        difference = np.abs(actual - expected)
        assert difference.max() <= UINT8_RESIZE_MAX_DIFFERENCE + 1e-3, size
        assert (difference > 0.5).mean() <= UINT8_RESIZE_MAX_FRACTION, size


@needs_torchvision
def test_backends_give_the_same_targets_and_post_processing(random_outputs):
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (40, 60, 3), np.uint8), rng.integers(0, 256, (50, 30, 3), np.uint8)]
    instance_maps = [rng.integers(0, 4, (40, 60)), rng.integers(0, 4, (50, 30))]
    polygon = {"category_id": 2, "segmentation": [[3, 3, 25, 4, 20, 30, 2, 28]], "iscrowd": 0}
    size = {"shortest_edge": 70, "longest_edge": 100}
    pil, torchvision = backend_pair(ignore_index=0, stuff_label_ids=[1])
    for targets in (
        {"segmentation_maps": instance_maps, "instance_id_to_semantic_id": {1: 0, 2: 3, 3: 1}},
        {"annotations": [{"annotations": [polygon]}, [polygon, dict(polygon, category_id=1)]]},
    ):
        expected = pil(images, size=size, return_tensors="pt", **targets)
        actual = torchvision(images, size=size, return_tensors="pt", **targets)
        for key in ("mask_labels", "class_labels"):
            assert len(actual[key]) == 2 and all(torch.equal(a, e) for a, e in zip(actual[key], expected[key])), key
    for method in ("semantic_segmentation", "instance_segmentation", "panoptic_segmentation", "object_detection"):
        expected = getattr(pil, f"post_process_{method}")(random_outputs)
        actual = getattr(torchvision, f"post_process_{method}")(random_outputs)
        assert str(actual) == str(expected), method


@needs_torchvision
@pytest.mark.cuda
def test_torchvision_backend_runs_on_the_gpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    rng = np.random.default_rng(6)
    images = [rng.integers(0, 256, (150, 210, 3), np.uint8), rng.integers(0, 256, (120, 90, 3), np.uint8)]
    maps = [rng.integers(0, 3, (150, 210)), rng.integers(0, 3, (120, 90))]
    processor = MaskDinoImageProcessor()
    on_gpu = processor(images, segmentation_maps=maps, device="cuda", return_tensors="pt")
    from_cuda_tensors = processor([torch.from_numpy(i).cuda() for i in images], return_tensors="pt")
    on_cpu = processor(images, segmentation_maps=maps, return_tensors="pt")
    assert on_gpu["pixel_values"].is_cuda and on_gpu["mask_labels"][0].is_cuda
    assert from_cuda_tensors["pixel_values"].is_cuda
    difference = (on_gpu["pixel_values"].cpu() - on_cpu["pixel_values"]).abs() * PIXEL_STD
    assert difference.max() <= UINT8_RESIZE_MAX_DIFFERENCE + 1e-3
    assert torch.equal(on_gpu["pixel_mask"].cpu(), on_cpu["pixel_mask"])
    assert all(torch.equal(g.cpu(), c) for g, c in zip(on_gpu["mask_labels"], on_cpu["mask_labels"]))


# ---------------------------------------------------------------------------------------------- every image kind


def test_16_bit_images_are_rescaled_not_clipped(processor, rgb_image):
    """A 16-bit image (PIL `I;16`, as 16-bit PNGs open, or a uint16 array) is 16-bit data: x * 255 / 65535."""
    gray = rgb_image[..., 0]
    sixteen_bit = gray.astype(np.uint16) * 257  # the same picture on the 0..65535 scale
    expected = processor(Image.fromarray(gray), do_resize=False, return_tensors="pt")["pixel_values"]
    for image in (
        Image.fromarray(sixteen_bit),  # mode I;16
        sixteen_bit,
        torch.from_numpy(sixteen_bit.astype(np.int32)).to(torch.uint16),
    ):
        if isinstance(image, Image.Image):
            assert image.mode == "I;16"
        actual = processor(image, do_resize=False, return_tensors="pt")["pixel_values"]
        torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)


def test_16_bit_png_file_is_not_white(processor, tmp_path):
    """The file of issue 10: a dark 16-bit PNG used to become all white (PIL's convert("RGB") clips at 255)."""
    dark = (np.linspace(0, 20000, 40 * 60).reshape(40, 60)).astype(np.uint16)
    Image.fromarray(dark).save(tmp_path / "depth.png")
    assert Image.open(tmp_path / "depth.png").mode in ("I;16", "I")
    values = pixels(processor(str(tmp_path / "depth.png"), do_resize=False, return_tensors="pt")["pixel_values"][0])
    np.testing.assert_allclose(values[:40, :60, 0], dark.astype(np.float64) * 255 / 65535, atol=1e-3)


def test_32_bit_integer_and_float_pil_images(processor, rgb_image):
    gray = rgb_image[..., 0]
    expected = processor(Image.fromarray(gray), do_resize=False, return_tensors="pt")["pixel_values"]
    for image in (Image.fromarray(gray.astype(np.int32)), Image.fromarray(gray.astype(np.float32))):
        assert image.mode in ("I", "F")
        actual = processor(image, do_resize=False, return_tensors="pt")["pixel_values"]
        torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)
    # values beyond 0..255 are refused, never clipped
    with pytest.raises(ValueError, match=r"values in \[0, 40000\], outside 0..255.*uint16"):
        processor(Image.fromarray(np.array([[0, 40000]], np.int32)))
    with pytest.raises(ValueError, match=r"values in \[-3, 7\], outside 0..255"):
        processor(np.array([[-3, 7]], np.int64))


def test_any_channel_count_without_rgb_conversion(processor_class):
    rng = np.random.default_rng(7)
    rgbd = rng.integers(0, 256, (30, 40, 4), dtype=np.uint8)
    mean, std = [*MASKDINO_PIXEL_MEAN, 100.0], [*MASKDINO_PIXEL_STD, 50.0]
    processor = processor_class(do_convert_rgb=False, image_mean=mean, image_std=std)
    inputs = processor(rgbd, do_resize=False, return_tensors="pt")
    assert inputs["pixel_values"].shape == (1, 4, 32, 64)
    expected = (rgbd.transpose(2, 0, 1) - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(inputs["pixel_values"][0, :, :30, :40].numpy(), expected, atol=1e-5)
    # resized band by band like the RGB channels (PIL would premultiply an RGBA image's alpha)
    resized = processor(rgbd, size={"height": 45, "width": 60}, return_tensors="pt")["pixel_values"][0, :3, :45, :60]
    rgb = processor_class()(rgbd[..., :3], size={"height": 45, "width": 60}, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(resized, rgb[0, :, :45, :60], atol=1e-5, rtol=0)

    eight = processor_class(do_convert_rgb=False, image_mean=[100.0] * 8, image_std=[50.0] * 8)
    multispectral = rng.random((20, 25, 8)).astype(np.float32) * 255  # channels last, found from image_mean
    assert eight(multispectral, do_resize=False, return_tensors="pt")["pixel_values"].shape == (1, 8, 32, 32)
    gray = processor_class(do_convert_rgb=False, image_mean=[100.0], image_std=[50.0])
    assert gray(Image.fromarray(rgbd[..., 0]), do_resize=False, return_tensors="pt")["pixel_values"].shape[1] == 1

    with pytest.raises(ValueError, match=r"4 channel\(s\) and `do_convert_rgb=False`, but `image_mean` and "):
        processor_class(do_convert_rgb=False)(rgbd)
    with pytest.raises(ValueError, match=r"1 channel\(s\) and `do_convert_rgb=False`"):
        processor_class(do_convert_rgb=False)(Image.fromarray(rgbd[..., 0]))
    with pytest.raises(ValueError, match="palette image"):
        processor_class(do_convert_rgb=False)(Image.fromarray(rgbd[..., 0]).convert("P"))
    with pytest.raises(ValueError, match="Cannot find the channel dimension"):
        processor_class()(multispectral)  # 8 channels need do_convert_rgb=False and 8 statistics


def test_four_channel_images_through_a_four_channel_model(processor_class):
    from test_modeling import tiny_config
    from transformers import ResNetConfig

    from transformers_maskdino import MaskDinoForUniversalSegmentation

    backbone = ResNetConfig(
        num_channels=4,
        embedding_size=8,
        hidden_sizes=[16, 16, 32, 32],
        depths=[1, 1, 1, 1],
        layer_type="bottleneck",
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    model = MaskDinoForUniversalSegmentation(tiny_config(backbone_config=backbone, num_channels=4)).eval()
    processor = processor_class(
        do_convert_rgb=False,
        image_mean=[*MASKDINO_PIXEL_MEAN, 128.0],
        image_std=[*MASKDINO_PIXEL_STD, 64.0],
        size={"shortest_edge": 64, "longest_edge": 96},
    )
    image = np.random.default_rng(8).integers(0, 256, (48, 64, 4), dtype=np.uint8)
    with torch.no_grad():
        outputs = model(**processor(image, return_tensors="pt"))
    segmentation = processor.post_process_semantic_segmentation(outputs, target_sizes=[(48, 64)])[0]
    assert segmentation.shape == (48, 64)
