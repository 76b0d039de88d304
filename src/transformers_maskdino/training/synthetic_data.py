# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
A synthetic segmentation dataset: textured shapes (the "thing" classes circle, square and triangle) on a textured sky
above textured grass (the "stuff" classes), with panoptic, instance and semantic annotations.

It exists so that tests, the training examples and the shipped demo model can run end to end offline and in
minutes. It is **not a stand-in for real data**: a model trained on it recognises these three shapes on this kind of
background and nothing else, and its numbers say nothing about performance on natural images.

Each example has:

- `image`: RGB image.
- `panoptic_map`: 8-bit map of segment ids (0 = no segment; every pixel belongs to a segment here). Together with
  `segments_info` it is the panoptic annotation; the `isthing` segments alone are the instance annotation.
- `segments_info`: per segment `id`, `category_id` (a `ClassLabel` holding the class names), `isthing`, `area` and
  `bbox` (COCO `[x, y, width, height]` of the visible pixels).
- `semantic_map`: 8-bit map of class ids (`IGNORE_LABEL` would mark unlabelled pixels; none are generated).
- `image_id`.

Generation is deterministic: image `i` of split `s` is drawn from `numpy.random.default_rng([seed, s, i])`, so a
dataset does not change when more images are asked for, and another seed gives disjoint held-out data.

    python -m transformers_maskdino.training.synthetic_data --output-dir synthetic_shapes --num-images 2000

`--format coco-instance|coco-panoptic|semantic-png|coco-boxes` writes the same images as files in the layouts users
hold their data in ([`write_dataset_files`]), for the examples' file readers.
"""

import argparse
import colorsys
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

THING_CLASSES = ("circle", "square", "triangle")
STUFF_CLASSES = ("sky", "grass")
LABELS = THING_CLASSES + STUFF_CLASSES
STUFF_LABEL_IDS = [LABELS.index(name) for name in STUFF_CLASSES]
IGNORE_LABEL = 255
SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}

# A shape whose visible part is smaller than this (in pixels) is not placed: it would be a few pixels of texture.
MIN_VISIBLE_AREA = 48
# A new shape may hide at most this fraction of what is still visible of each shape placed before it.
MAX_OCCLUDED_FRACTION = 0.25
PLACEMENT_ATTEMPTS = 30


@dataclass
class SyntheticScene:
    """One generated image and its annotations (`segments` as in the dataset's `segments_info`)."""

    image: np.ndarray  # (height, width, 3) uint8
    panoptic_map: np.ndarray  # (height, width) uint8 segment ids
    semantic_map: np.ndarray  # (height, width) uint8 class ids
    segments: list[dict]


# ---------------------------------------------------------------------------------------------------------- textures


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell_size: float) -> np.ndarray:
    """Value noise in [0, 1]: a random grid of about `cell_size`-pixel cells, bicubically upsampled."""
    grid_height = max(2, round(height / cell_size) + 1)
    grid_width = max(2, round(width / cell_size) + 1)
    grid = Image.fromarray(rng.random((grid_height, grid_width)).astype(np.float32), mode="F")
    noise = np.asarray(grid.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    return np.clip(noise, 0.0, 1.0)


def hsv_color(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value), dtype=np.float32)


def sky_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Blue vertical gradient (deeper at the top) with soft white clouds."""
    hue = rng.uniform(0.54, 0.62)
    top = hsv_color(hue, rng.uniform(0.55, 0.85), rng.uniform(0.6, 0.85))
    bottom = hsv_color(hue, rng.uniform(0.15, 0.35), rng.uniform(0.85, 1.0))
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    sky = top * (1 - ramp) + bottom * ramp
    clouds = smooth_noise(rng, height, width, cell_size=rng.uniform(12, 30))
    cloud_amount = np.clip((clouds - rng.uniform(0.45, 0.65)) * 3.0, 0.0, 0.8)[..., None]
    return sky * (1 - cloud_amount) + cloud_amount


def grass_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Green with fine speckle and vertical blade streaks."""
    base = hsv_color(rng.uniform(0.22, 0.36), rng.uniform(0.5, 0.85), rng.uniform(0.35, 0.65))
    # a grid that is fine horizontally and coarse vertically gives vertical streaks
    streak_rows = max(2, height // 6)
    streaks = Image.fromarray(rng.random((streak_rows, width)).astype(np.float32), mode="F")
    streaks = np.asarray(streaks.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)
    speckle = rng.random((height, width)).astype(np.float32)
    patches = smooth_noise(rng, height, width, cell_size=rng.uniform(16, 40))
    shade = 0.65 + 0.3 * streaks + 0.15 * speckle + 0.25 * (patches - 0.5)
    return np.clip(base * shade[..., None], 0.0, 1.0)


def object_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random two-colour pattern (stripes at a random angle, checkerboard or dots) with a little noise. The
    colours are random, so the class of a shape can only be told from its outline."""
    first = hsv_color(rng.random(), rng.uniform(0.4, 1.0), rng.uniform(0.45, 1.0))
    second = hsv_color(rng.random(), rng.uniform(0.2, 1.0), rng.uniform(0.1, 0.9))
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    period = rng.uniform(4.0, 10.0)
    pattern = rng.integers(3)
    if pattern == 0:
        angle = rng.uniform(0, math.pi)
        coordinate = cols * math.cos(angle) + rows * math.sin(angle)
        weight = (np.sin(2 * math.pi * coordinate / period) > 0).astype(np.float32)
    elif pattern == 1:
        weight = ((np.floor(rows / period) + np.floor(cols / period)) % 2).astype(np.float32)
    else:
        offset_rows, offset_cols = rng.uniform(0, period, size=2)
        distance = np.hypot((rows + offset_rows) % period - period / 2, (cols + offset_cols) % period - period / 2)
        weight = (distance < period * rng.uniform(0.2, 0.4)).astype(np.float32)
    texture = first * (1 - weight[..., None]) + second * weight[..., None]
    texture += rng.normal(0.0, 0.04, size=texture.shape).astype(np.float32)
    return np.clip(texture, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------------------- shapes


def convex_polygon_mask(vertices: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixels whose centre lies inside a convex polygon given counter-clockwise in (x, y) image coordinates."""
    rows, cols = np.mgrid[0:height, 0:width]
    x, y = cols + 0.5, rows + 0.5
    inside = np.ones((height, width), dtype=bool)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0)):
        # with y pointing down, "counter-clockwise on screen" keeps the interior where the cross product is <= 0
        inside &= (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0) <= 0
    return inside


def shape_mask(name: str, center_x: float, center_y: float, radius: float, angle: float, height: int, width: int):
    """Binary mask of a circle, square or equilateral triangle; `radius` is the circumradius, scaled per shape so
    that the three have similar areas."""
    if name == "circle":
        rows, cols = np.mgrid[0:height, 0:width]
        return np.hypot(cols + 0.5 - center_x, rows + 0.5 - center_y) <= radius * 0.9
    corners = {"square": 4, "triangle": 3}[name]
    scale = {"square": 1.1, "triangle": 1.3}[name]
    angles = angle + np.arange(corners) * 2 * math.pi / corners
    # decreasing angles go counter-clockwise on screen, where y points down
    vertices = np.stack([center_x + radius * scale * np.cos(-angles), center_y + radius * scale * np.sin(-angles)], 1)
    return convex_polygon_mask(vertices, height, width)


def mask_bbox(mask: np.ndarray) -> list[float]:
    """COCO `[x, y, width, height]` of a non-empty mask, in pixels."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


# ---------------------------------------------------------------------------------------------------------- scenes


def generate_scene(
    rng: np.random.Generator,
    height: int = 160,
    width: int = 160,
    max_objects: int = 4,
    min_radius_fraction: float = 0.08,
    max_radius_fraction: float = 0.2,
) -> SyntheticScene:
    """
    Draw one scene: sky above a wavy horizon, grass below, then 1 to `max_objects` shapes of random class, size,
    rotation and texture, each placed so that it hides at most `MAX_OCCLUDED_FRACTION` of what is visible of every
    earlier shape (a shape is dropped when no such place is found).
    """
    if max_objects < 1:
        raise ValueError(f"`max_objects` must be at least 1, got {max_objects}.")
    if not 0 < min_radius_fraction <= max_radius_fraction:
        raise ValueError(
            f"Need 0 < min_radius_fraction <= max_radius_fraction, got {min_radius_fraction} and {max_radius_fraction}."
        )
    rows = np.arange(height, dtype=np.float32)[:, None]
    cols = np.arange(width, dtype=np.float32)[None, :]
    horizon = height * rng.uniform(0.3, 0.7)
    wave = (
        rng.uniform(0.02, 0.08)
        * height
        * np.sin(2 * math.pi * cols / (width * rng.uniform(0.5, 1.5)) + rng.uniform(0, 6.3))
    )
    is_grass = rows + 0.5 >= horizon + wave
    image = np.where(is_grass[..., None], grass_texture(rng, height, width), sky_texture(rng, height, width))

    sky_id, grass_id = LABELS.index("sky"), LABELS.index("grass")
    semantic_map = np.where(is_grass, grass_id, sky_id).astype(np.uint8)
    # 0 = sky segment, 1 = grass segment, 2.. = shapes, in painting order; ids are assigned at the end
    owner = is_grass.astype(np.int64)
    shape_classes: list[int] = []

    num_objects = int(rng.integers(1, max_objects + 1))
    side = min(height, width)
    for _ in range(num_objects):
        for _ in range(PLACEMENT_ATTEMPTS):
            class_id = int(rng.integers(len(THING_CLASSES)))
            radius = side * rng.uniform(min_radius_fraction, max_radius_fraction)
            # centres keep at least half the shape inside the image
            center_x = rng.uniform(radius * 0.5, width - radius * 0.5)
            center_y = rng.uniform(radius * 0.5, height - radius * 0.5)
            mask = shape_mask(
                THING_CLASSES[class_id], center_x, center_y, radius, rng.uniform(0, 2 * math.pi), height, width
            )
            if mask.sum() < MIN_VISIBLE_AREA:
                continue
            covered = owner[mask]
            hides_too_much = any(
                (covered == 2 + index).sum() > MAX_OCCLUDED_FRACTION * (owner == 2 + index).sum()
                for index in range(len(shape_classes))
            )
            if not hides_too_much:
                break
        else:
            continue
        owner[mask] = 2 + len(shape_classes)
        shape_classes.append(class_id)
        texture = object_texture(rng, height, width)
        image[mask] = texture[mask]
        semantic_map[mask] = class_id

    panoptic_map = np.zeros((height, width), dtype=np.uint8)
    segments = []
    owners = [(0, sky_id, False), (1, grass_id, False)] + [
        (2 + index, class_id, True) for index, class_id in enumerate(shape_classes)
    ]
    for owner_value, class_id, is_thing in owners:
        mask = owner == owner_value
        if not mask.any():  # shapes can cover all the sky or all the grass
            continue
        segment_id = len(segments) + 1
        panoptic_map[mask] = segment_id
        segments.append(
            {
                "id": segment_id,
                "category_id": class_id,
                "isthing": is_thing,
                "area": int(mask.sum()),
                "bbox": mask_bbox(mask),
            }
        )
    image = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return SyntheticScene(image=image, panoptic_map=panoptic_map, semantic_map=semantic_map, segments=segments)


def dataset_features():
    """`datasets.Features` of the synthetic dataset (the class names are in `segments_info.category_id`)."""
    from datasets import ClassLabel, Features, Value
    from datasets import Image as ImageFeature

    # a Python list of a feature is "list of" in every datasets version (`datasets.List` only exists from 4.0)
    segment = {
        "id": Value("int32"),
        "category_id": ClassLabel(names=list(LABELS)),
        "isthing": Value("bool"),
        "area": Value("int64"),
        "bbox": [Value("float32")],
    }
    return Features(
        {
            "image_id": Value("int64"),
            "image": ImageFeature(),
            "panoptic_map": ImageFeature(),
            "semantic_map": ImageFeature(),
            "segments_info": [segment],
        }
    )


def generate_dataset(
    num_images: int,
    seed: int = 0,
    split: str = "train",
    image_size: int = 160,
    max_objects: int = 4,
):
    """
    A `datasets.Dataset` of `num_images` synthetic scenes of `image_size` x `image_size` pixels (see the module
    docstring for the columns). `split` only selects an independent random stream (`"train"`, `"validation"` or
    `"test"`), so that splits made with one seed do not share images.
    """
    from datasets import Dataset

    if split not in SPLIT_IDS:
        raise ValueError(f"`split` must be one of {sorted(SPLIT_IDS)}, got {split!r}.")
    if num_images < 0:
        raise ValueError(f"`num_images` must be >= 0, got {num_images}.")
    if image_size < 32:
        raise ValueError(f"`image_size` must be at least 32 pixels, got {image_size}.")

    def examples():
        for index in range(num_images):
            rng = np.random.default_rng([seed, SPLIT_IDS[split], index])
            scene = generate_scene(rng, image_size, image_size, max_objects=max_objects)
            yield {
                "image_id": index,
                "image": Image.fromarray(scene.image),
                "panoptic_map": Image.fromarray(scene.panoptic_map),
                "semantic_map": Image.fromarray(scene.semantic_map),
                "segments_info": scene.segments,
            }

    features = dataset_features()
    rows = list(examples())
    if not rows:  # from_list cannot tell the columns of an empty list
        return Dataset.from_dict({name: [] for name in features}, features=features)
    # from_list keeps everything in memory, which is fine at these sizes and avoids the generator cache
    return Dataset.from_list(rows, features=features)


def generate_dataset_dict(
    num_train_images: int,
    num_validation_images: int,
    seed: int = 0,
    image_size: int = 160,
    max_objects: int = 4,
):
    """A `datasets.DatasetDict` with `train` and `validation` splits; a split of 0 images is left out (`datasets`
    cannot load an empty split back from disk)."""
    from datasets import DatasetDict

    return DatasetDict(
        {
            split: generate_dataset(count, seed=seed, split=split, image_size=image_size, max_objects=max_objects)
            for split, count in (("train", num_train_images), ("validation", num_validation_images))
            if count > 0
        }
    )


# ---------------------------------------------------------------------------------------------------------- files

FILE_FORMATS = ("datasets", "coco-instance", "coco-panoptic", "semantic-png", "coco-boxes")
# Category ids of the COCO files: not contiguous, as in COCO itself, so that readers must map them.
COCO_CATEGORY_IDS = {"circle": 1, "square": 3, "triangle": 7, "sky": 20, "grass": 21}
# Image ids of the files start here (not at 0), so that results must keep the dataset's own ids.
FIRST_IMAGE_ID = 1000
# Panoptic segment ids in the PNGs are spread over the R, G and B channels (COCO's `R + 256 G + 256^2 B`).
PANOPTIC_SEGMENT_ID_STRIDE = 70001


def _coco_categories(names: Sequence[str], with_isthing: bool) -> list[dict]:
    categories = []
    for name in names:
        category = {"id": COCO_CATEGORY_IDS[name], "name": name, "supercategory": "shape"}
        if with_isthing:
            category["isthing"] = int(name in THING_CLASSES)
            category["supercategory"] = "shape" if name in THING_CLASSES else "background"
        categories.append(category)
    return categories


def _coco_rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as coco_mask

    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _segment_record(segment: dict, mask: np.ndarray) -> dict:
    return {
        "category_id": COCO_CATEGORY_IDS[LABELS[segment["category_id"]]],
        "area": int(mask.sum()),
        "bbox": [float(v) for v in segment["bbox"]],
        "iscrowd": 0,
    }


def write_split_files(
    output_dir: str | Path,
    file_format: str,
    split: str,
    num_images: int,
    seed: int = 0,
    image_size: int = 160,
    max_objects: int = 4,
) -> dict[str, Path]:
    """
    Write one split of the synthetic dataset in a format users hold their data in, and return the paths the
    examples take (`coco_annotations`, `images_dir`, `panoptic_masks_dir`, `semantic_images_dir`,
    `semantic_labels_dir`, `id2label_file`):

    - `coco-instance`: `annotations/instances_<split>.json` (the thing segments, RLE masks) and `images/<split>/`;
    - `coco-boxes`: the same objects with boxes and no masks (`annotations/boxes_<split>.json`), detection data;
    - `coco-panoptic`: `annotations/panoptic_<split>.json`, its PNGs (`R + 256 G + 256^2 B` segment ids) in
      `annotations/panoptic_<split>/`, and `images/<split>/`;
    - `semantic-png`: `images/<split>/`, label PNGs (class ids, 255 = ignore) in `labels/<split>/`, and
      `id2label.json` (the ADE20K / Cityscapes folder layout).

    COCO category ids are [`COCO_CATEGORY_IDS`] (not contiguous) and image ids start at [`FIRST_IMAGE_ID`]. Images
    are PNG, so that they read back bit for bit the same as the `datasets` layout.
    """
    import json

    if file_format not in FILE_FORMATS[1:]:
        raise ValueError(f"`file_format` must be one of {FILE_FORMATS[1:]}, got {file_format!r}.")
    if split not in SPLIT_IDS:
        raise ValueError(f"`split` must be one of {sorted(SPLIT_IDS)}, got {split!r}.")
    root = Path(output_dir)
    images_dir = root / "images" / split
    images_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    images, annotations = [], []
    panoptic_dir = root / "annotations" / f"panoptic_{split}"
    labels_dir = root / "labels" / split
    if file_format == "coco-panoptic":
        panoptic_dir.mkdir(parents=True, exist_ok=True)
    if file_format == "semantic-png":
        labels_dir.mkdir(parents=True, exist_ok=True)
    for index in range(num_images):
        scene = generate_scene(
            np.random.default_rng([seed, SPLIT_IDS[split], index]), image_size, image_size, max_objects=max_objects
        )
        image_id = FIRST_IMAGE_ID + index
        file_name = f"{index:06d}.png"
        Image.fromarray(scene.image).save(images_dir / file_name)
        images.append({"id": image_id, "file_name": file_name, "height": image_size, "width": image_size})
        if file_format == "semantic-png":
            Image.fromarray(scene.semantic_map).save(labels_dir / file_name)
        elif file_format == "coco-panoptic":
            segment_ids = scene.panoptic_map.astype(np.int64) * PANOPTIC_SEGMENT_ID_STRIDE
            rgb = np.stack([segment_ids % 256, segment_ids // 256 % 256, segment_ids // 256**2], axis=-1)
            Image.fromarray(rgb.astype(np.uint8)).save(panoptic_dir / file_name)
            segments_info = [
                {"id": segment["id"] * PANOPTIC_SEGMENT_ID_STRIDE}
                | _segment_record(segment, scene.panoptic_map == segment["id"])
                for segment in scene.segments
            ]
            annotations.append({"image_id": image_id, "file_name": file_name, "segments_info": segments_info})
        else:
            for segment in scene.segments:
                if not segment["isthing"]:
                    continue
                mask = scene.panoptic_map == segment["id"]
                annotation = {"id": len(annotations) + 1, "image_id": image_id} | _segment_record(segment, mask)
                if file_format == "coco-instance":
                    annotation["segmentation"] = _coco_rle(mask)
                annotations.append(annotation)

    if file_format == "semantic-png":
        id2label_file = root / "id2label.json"
        id2label_file.write_text(json.dumps({str(i): name for i, name in enumerate(LABELS)}, indent=2) + "\n")
        return {"semantic_images_dir": images_dir, "semantic_labels_dir": labels_dir, "id2label_file": id2label_file}
    panoptic = file_format == "coco-panoptic"
    names = LABELS if panoptic else THING_CLASSES
    stem = {"coco-instance": "instances", "coco-boxes": "boxes", "coco-panoptic": "panoptic"}[file_format]
    annotation_file = root / "annotations" / f"{stem}_{split}.json"
    annotation_file.parent.mkdir(parents=True, exist_ok=True)
    coco = {"images": images, "annotations": annotations, "categories": _coco_categories(names, panoptic)}
    annotation_file.write_text(json.dumps(coco) + "\n")
    paths = {"coco_annotations": annotation_file, "images_dir": images_dir}
    if panoptic:
        paths["panoptic_masks_dir"] = panoptic_dir
    return paths


def write_dataset_files(
    output_dir: str | Path,
    file_format: str,
    num_train_images: int,
    num_validation_images: int,
    seed: int = 0,
    image_size: int = 160,
    max_objects: int = 4,
) -> dict[str, dict[str, Path]]:
    """[`write_split_files`] for the `train` and `validation` splits (a split of 0 images is left out); returns the
    paths of each split."""
    return {
        split: write_split_files(output_dir, file_format, split, count, seed, image_size, max_objects)
        for split, count in (("train", num_train_images), ("validation", num_validation_images))
        if count > 0
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m transformers_maskdino.training.synthetic_data",
        description=(
            "Write a synthetic segmentation dataset (textured circles, squares and triangles on sky and grass) with "
            "datasets' save_to_disk, or as COCO instance / panoptic / box files or semantic PNG folders (--format). "
            "For tests and demos only: it is not a stand-in for real data."
        ),
    )
    parser.add_argument("--output-dir", required=True, help="directory to write (datasets.load_from_disk reads it)")
    parser.add_argument("--num-images", type=int, required=True, help="number of training images")
    parser.add_argument(
        "--num-validation-images",
        type=int,
        default=None,
        help="number of validation images (default: a tenth of --num-images, at least 1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--image-size", type=int, default=160, help="height and width in pixels (default: 160)")
    parser.add_argument("--max-objects", type=int, default=4, help="most shapes per image (default: 4)")
    parser.add_argument(
        "--format",
        choices=FILE_FORMATS,
        default="datasets",
        help="datasets: save_to_disk (default); coco-instance / coco-panoptic / coco-boxes: COCO JSON and image "
        "folders; semantic-png: image and label PNG folders with id2label.json",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    num_validation = args.num_validation_images
    if num_validation is None:
        num_validation = max(1, args.num_images // 10)
    if args.format == "datasets":
        dataset = generate_dataset_dict(
            args.num_images, num_validation, seed=args.seed, image_size=args.image_size, max_objects=args.max_objects
        )
        dataset.save_to_disk(str(Path(args.output_dir)))
    else:
        written = write_dataset_files(
            args.output_dir, args.format, args.num_images, num_validation, args.seed, args.image_size, args.max_objects
        )
        for split, paths in written.items():
            print(f"{split}: " + " ".join(f"--{name} {path}" for name, path in paths.items()))
    print(
        f"Wrote {args.num_images} training and {num_validation} validation images "
        f"({args.image_size}x{args.image_size}, seed {args.seed}) to {args.output_dir}"
    )
    return 0


__all__ = [
    "COCO_CATEGORY_IDS",
    "FILE_FORMATS",
    "FIRST_IMAGE_ID",
    "IGNORE_LABEL",
    "LABELS",
    "STUFF_CLASSES",
    "STUFF_LABEL_IDS",
    "THING_CLASSES",
    "SyntheticScene",
    "generate_dataset",
    "generate_dataset_dict",
    "generate_scene",
    "write_dataset_files",
    "write_split_files",
]

if __name__ == "__main__":
    raise SystemExit(main())
