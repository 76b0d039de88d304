# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""The synthetic dataset: determinism, consistency of its panoptic / instance / semantic annotations, shape
geometry, the command that writes it, and its files in the COCO and semantic-folder formats read back as the same
training targets."""

import math

import numpy as np
import pytest
from datasets import load_from_disk

from transformers_maskdino.training import synthetic_data
from transformers_maskdino.training.synthetic_data import (
    IGNORE_LABEL,
    LABELS,
    STUFF_LABEL_IDS,
    generate_dataset,
    generate_scene,
    shape_mask,
)


def scene(seed=0, index=0, **kwargs):
    return generate_scene(np.random.default_rng([seed, 0, index]), **kwargs)


def test_labels_and_stuff_classes():
    assert LABELS == ("circle", "square", "triangle", "sky", "grass")
    assert STUFF_LABEL_IDS == [3, 4]


def test_scenes_are_deterministic_and_differ_between_seeds():
    first, again, other = scene(seed=3), scene(seed=3), scene(seed=4)
    assert np.array_equal(first.image, again.image) and np.array_equal(first.panoptic_map, again.panoptic_map)
    assert first.segments == again.segments
    assert not np.array_equal(first.image, other.image)


def test_an_image_does_not_depend_on_how_many_are_generated():
    three = generate_dataset(3, seed=1, image_size=48)
    five = generate_dataset(5, seed=1, image_size=48)
    for index in range(3):
        assert np.array_equal(np.asarray(three[index]["image"]), np.asarray(five[index]["image"]))
    # splits draw from separate streams
    validation = generate_dataset(1, seed=1, split="validation", image_size=48)
    assert not np.array_equal(np.asarray(validation[0]["image"]), np.asarray(three[0]["image"]))


@pytest.mark.parametrize("index", range(6))
def test_panoptic_instance_and_semantic_annotations_agree(index):
    generated = scene(index=index, height=96, width=128, max_objects=4)
    image, panoptic, semantic = generated.image, generated.panoptic_map, generated.semantic_map
    assert image.shape == (96, 128, 3) and image.dtype == np.uint8
    assert panoptic.shape == semantic.shape == (96, 128)
    ids = [segment["id"] for segment in generated.segments]
    assert ids == list(range(1, len(ids) + 1))
    assert set(np.unique(panoptic).tolist()) == set(ids)  # every pixel belongs to a listed segment
    assert not (semantic == IGNORE_LABEL).any()
    things = [segment for segment in generated.segments if segment["isthing"]]
    assert 1 <= len(things) <= 4
    for segment in generated.segments:
        mask = panoptic == segment["id"]
        assert segment["isthing"] == (segment["category_id"] not in STUFF_LABEL_IDS)
        assert segment["area"] == mask.sum() > 0
        assert (semantic[mask] == segment["category_id"]).all()
        rows, cols = np.nonzero(mask)
        assert segment["bbox"] == [cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1]
    # stuff comes as at most one segment per class (sky above, grass below)
    stuff_classes = [segment["category_id"] for segment in generated.segments if not segment["isthing"]]
    assert len(stuff_classes) == len(set(stuff_classes))


def test_shapes_are_mostly_visible():
    # each later shape hides at most a quarter of what is left of an earlier one
    smallest_visible_fraction = (1 - synthetic_data.MAX_OCCLUDED_FRACTION) ** 3
    for index in range(20):
        generated = scene(index=index, max_objects=4)
        for segment in generated.segments:
            if segment["isthing"]:
                assert segment["area"] >= smallest_visible_fraction * synthetic_data.MIN_VISIBLE_AREA


@pytest.mark.parametrize(
    "name, expected_area",
    [
        ("circle", math.pi * (20 * 0.9) ** 2),
        ("square", 2 * (20 * 1.1) ** 2),
        ("triangle", 3 * math.sqrt(3) / 4 * (20 * 1.3) ** 2),
    ],
)
def test_shape_geometry(name, expected_area):
    mask = shape_mask(name, 50.0, 50.0, 20.0, 0.3, 100, 100)
    assert abs(mask.sum() - expected_area) < 0.03 * expected_area
    rows, cols = np.nonzero(mask)
    assert abs(rows.mean() - 49.5) < 1.5 and abs(cols.mean() - 49.5) < 1.5  # centred (pixel centres at +0.5)


def test_classes_are_told_apart_by_outline_not_colour():
    # the same class gets different textures across images
    colours = []
    for index in range(8):
        generated = scene(index=index)
        for segment in generated.segments:
            if segment["isthing"]:
                colours.append(generated.image[generated.panoptic_map == segment["id"]].mean(0))
    assert np.std(np.array(colours), axis=0).mean() > 20


def test_dataset_features_hold_the_class_names():
    dataset = generate_dataset(2, image_size=48)
    category = (
        dataset.features["segments_info"][0]["category_id"]
        if isinstance(dataset.features["segments_info"], list)
        else dataset.features["segments_info"].feature["category_id"]
    )
    assert category.names == list(LABELS)
    row = dataset[0]
    assert row["image"].size == (48, 48) and row["image"].mode == "RGB"
    assert np.asarray(row["panoptic_map"]).dtype == np.uint8
    assert set(row["segments_info"][0]) == {"id", "category_id", "isthing", "area", "bbox"}


def test_command_writes_a_dataset_dict(tmp_path, capsys):
    output = tmp_path / "shapes"
    assert (
        synthetic_data.main(["--output-dir", str(output), "--num-images", "5", "--image-size", "40", "--seed", "7"])
        == 0
    )
    assert "Wrote 5 training and 1 validation images" in capsys.readouterr().out
    dataset = load_from_disk(str(output))
    assert dataset.num_rows == {"train": 5, "validation": 1}
    expected = generate_dataset(5, seed=7, image_size=40)
    assert np.array_equal(np.asarray(dataset["train"][4]["image"]), np.asarray(expected[4]["image"]))
    # a held-out set: validation images only
    synthetic_data.main(
        [
            "--output-dir",
            str(tmp_path / "heldout"),
            "--num-images",
            "0",
            "--num-validation-images",
            "2",
            "--image-size",
            "40",
        ]
    )
    assert load_from_disk(str(tmp_path / "heldout")).num_rows == {"validation": 2}


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: generate_dataset(1, split="dev"), "`split`"),
        (lambda: generate_dataset(-1), "`num_images`"),
        (lambda: generate_dataset(1, image_size=16), "`image_size`"),
        (lambda: scene(max_objects=0), "`max_objects`"),
    ],
)
def test_invalid_arguments_are_rejected(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------------------------------------------ file formats


@pytest.fixture(scope="module")
def layout_rows():
    return generate_dataset(3, split="validation", image_size=48, max_objects=3)


def read_written(file_format, directory):
    from transformers_maskdino.training.formats import read_coco_annotations, read_semantic_folders

    paths = synthetic_data.write_split_files(directory, file_format, "validation", 3, image_size=48, max_objects=3)
    if file_format == "semantic-png":
        return read_semantic_folders(paths["semantic_images_dir"], paths["semantic_labels_dir"])
    return read_coco_annotations(paths["coco_annotations"], paths["images_dir"], paths.get("panoptic_masks_dir"))


@pytest.mark.parametrize(
    "file_format, task, flip, jitter",
    [
        ("coco-instance", "instance", 0.0, None),
        ("coco-instance", "instance", 1.0, 48),  # flipped RLE masks, and masks resized and cropped by the jitter
        ("coco-panoptic", "panoptic", 1.0, None),
        ("semantic-png", "semantic", 0.0, 48),
        ("coco-boxes", "detection", 1.0, 48),
    ],
)
def test_written_files_give_the_targets_of_the_datasets_layout(tmp_path, layout_rows, file_format, task, flip, jitter):
    from transformers_maskdino import MaskDinoImageProcessor
    from transformers_maskdino.training import SegmentationTransform

    dataset, labels = read_written(file_format, tmp_path)
    processor = MaskDinoImageProcessor(size={"shortest_edge": 48, "longest_edge": 96}, stuff_label_ids=STUFF_LABEL_IDS)

    def transform():  # the same draws for both: flips, and a jitter that scales by 0.75 and crops a 48-pixel window
        return SegmentationTransform(
            processor, task=task, flip_probability=flip, large_scale_jitter_size=jitter,
            large_scale_jitter_scales=(1.5, 1.5), seed=3,
        )  # fmt: skip

    from_files = dataset.with_transform(transform())[:3]
    from_layout = layout_rows.with_transform(transform())[:3]
    for index in range(3):
        assert np.array_equal(from_files["pixel_values"][index], from_layout["pixel_values"][index])
        masks, classes = from_files["mask_labels"][index].numpy(), from_files["class_labels"][index].tolist()
        expected_masks = from_layout["mask_labels"][index].numpy()
        expected_classes = from_layout["class_labels"][index].tolist()
        if file_format == "coco-boxes":
            # boxes only: the objects' boxes are those the model derives from the layout's masks
            from transformers_maskdino.modeling_maskdino import target_boxes_from_masks

            height, width = from_files["pixel_mask"][index].nonzero().max(0).values + 1
            expected_boxes = target_boxes_from_masks(from_layout["mask_labels"][index], int(height), int(width))
            assert not from_files["target_has_masks"][index].any() and masks.sum() == 0
            assert sorted(classes) == sorted(expected_classes)
            order, expected_order = np.argsort(classes, kind="stable"), np.argsort(expected_classes, kind="stable")
            np.testing.assert_allclose(
                from_files["target_boxes"][index][order], expected_boxes[expected_order], atol=1.5 / 48
            )
            continue
        # the same (class, mask) pairs, in whatever order
        assert sorted((c, m.tobytes()) for c, m in zip(classes, masks)) == sorted(
            (c, m.tobytes()) for c, m in zip(expected_classes, expected_masks)
        )
    # class names and the thing/stuff split come from the files; COCO ids are mapped to 0..N-1 and remembered
    names = list(LABELS) if file_format in ("coco-panoptic", "semantic-png") else list(synthetic_data.THING_CLASSES)
    assert list(labels.id2label.values()) == names
    assert labels.stuff_label_ids == (STUFF_LABEL_IDS if file_format == "coco-panoptic" else [])
    if file_format.startswith("coco"):
        assert labels.dataset_category_ids == {i: synthetic_data.COCO_CATEGORY_IDS[n] for i, n in enumerate(names)}
        assert dataset["image_id"] == [synthetic_data.FIRST_IMAGE_ID + i for i in range(3)]
    assert labels.task == task


def test_command_writes_each_file_format(tmp_path, capsys):
    import json

    for file_format in ("coco-instance", "coco-panoptic", "semantic-png", "coco-boxes"):
        output = tmp_path / file_format
        arguments = ["--output-dir", str(output), "--num-images", "2", "--image-size", "40", "--format", file_format]
        assert synthetic_data.main(arguments) == 0
        printed = capsys.readouterr().out
        assert "train: --" in printed and "validation: --" in printed
    instances = json.loads((tmp_path / "coco-instance" / "annotations" / "instances_train.json").read_text())
    assert {category["id"] for category in instances["categories"]} == {1, 3, 7}
    assert all("segmentation" in a and a["iscrowd"] == 0 for a in instances["annotations"])
    boxes = json.loads((tmp_path / "coco-boxes" / "annotations" / "boxes_train.json").read_text())
    assert boxes["annotations"] and all("segmentation" not in a for a in boxes["annotations"])
    assert (tmp_path / "semantic-png" / "id2label.json").is_file()
    assert len(list((tmp_path / "coco-panoptic" / "annotations" / "panoptic_validation").glob("*.png"))) == 1
