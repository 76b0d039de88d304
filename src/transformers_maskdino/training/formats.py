# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Readers for the annotation files users hold, as `datasets.Dataset`s that [`SegmentationTransform`] takes directly:

- a COCO instance (or box-only detection) JSON with its image folder ([`read_coco_annotations`]): rows with an
  `image`, its `image_id` and its `objects` (the COCO annotations as JSON text, `category_id` made contiguous);
- a COCO panoptic JSON with its PNG folder (the same function with `panoptic_masks_dir`): rows with an `image`, the
  `panoptic_map` PNG (`R + 256 G + 256^2 B` segment ids) and `segments_info`;
- a folder of images and a folder of label PNGs of class ids ([`read_semantic_folders`], ADE20K / Cityscapes style):
  rows with an `image` and a `semantic_map`.

Images are opened lazily, when a row is read. Class names and the thing/stuff split come from the files (COCO's
`categories` and their `isthing`; an `id2label.json` for label folders). COCO category ids need not be contiguous:
they are mapped to 0..N-1 in id order, and [`DatasetLabels.dataset_category_ids`] keeps the mapping, which the
examples save in the model's `config.json` (`dataset_category_ids`) so that results are written with the dataset's
own ids. Annotations are checked when the file is read; an error names the file, the image id and the annotation id.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class DatasetLabels:
    """
    The label set read from a dataset's files.

    Args:
        id2label (`dict[int, str]`): class names by contiguous id 0..N-1.
        stuff_label_ids (`list[int]`): the stuff (non-thing) classes.
        dataset_category_ids (`dict[int, int]`, *optional*): the dataset's own id of every contiguous id, when they
            differ (COCO category ids).
        task (`str`, *optional*): what the annotations support best: `"panoptic"`, `"instance"`, `"semantic"`, or
            `"detection"` for COCO files whose objects have boxes only (the examples' default `--task`).
    """

    id2label: dict[int, str]
    stuff_label_ids: list[int]
    dataset_category_ids: dict[int, int] | None = None
    task: str | None = None


class AnnotationError(ValueError):
    """A malformed annotation; the message names the file, the image id and the annotation id."""


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"Annotation file {path} does not exist.") from None
    except json.JSONDecodeError as error:
        raise AnnotationError(f"{path} is not valid JSON: {error}") from None


def _category_mapping(path: Path, categories: Sequence[Mapping]) -> tuple[dict[int, int], DatasetLabels]:
    """`{dataset id: contiguous id}` and the labels, from COCO `categories` (sorted by id)."""
    if not categories:
        raise AnnotationError(f"{path}: `categories` is empty; it must list every class (`id`, `name`).")
    for category in categories:
        if not isinstance(category, Mapping) or "id" not in category or "name" not in category:
            raise AnnotationError(f"{path}: every category needs `id` and `name`, got {category!r}.")
    ordered = sorted(categories, key=lambda category: int(category["id"]))
    ids = [int(category["id"]) for category in ordered]
    if len(set(ids)) != len(ids):
        raise AnnotationError(f"{path}: category ids repeat: {ids}.")
    mapping = {dataset_id: index for index, dataset_id in enumerate(ids)}
    labels = DatasetLabels(
        id2label={index: str(category["name"]) for index, category in enumerate(ordered)},
        # instance files list things only; panoptic files say which are things
        stuff_label_ids=[index for index, category in enumerate(ordered) if not category.get("isthing", 1)],
        dataset_category_ids=None if ids == list(range(len(ids))) else dict(enumerate(ids)),
    )
    return mapping, labels


def _image_records(path: Path, coco: Mapping) -> dict[int, Mapping]:
    if not isinstance(coco, Mapping) or not isinstance(coco.get("images"), list):
        raise AnnotationError(f"{path}: a COCO file is a dict with `images`, `annotations` and `categories`.")
    images = {}
    for image in coco["images"]:
        if not isinstance(image, Mapping) or "id" not in image or "file_name" not in image:
            raise AnnotationError(f"{path}: every image needs `id` and `file_name`, got {image!r}.")
        images[int(image["id"])] = image
    return images


def _checked_object(path: Path, annotation: Any, images: Mapping, mapping: Mapping[int, int]) -> dict:
    """One COCO object annotation, checked, with its `category_id` made contiguous."""
    if not isinstance(annotation, Mapping):
        raise AnnotationError(f"{path}: every annotation must be a dict, got {type(annotation).__name__}.")
    where = f"{path}: annotation {annotation.get('id', '(no id)')} of image {annotation.get('image_id', '(no id)')}"
    if annotation.get("image_id") not in images:
        raise AnnotationError(f"{where}: `image_id` is not in `images`.")
    if annotation.get("category_id") not in mapping:
        raise AnnotationError(
            f"{where}: `category_id` {annotation.get('category_id')!r} is not in `categories` ({sorted(mapping)})."
        )
    segmentation, bbox = annotation.get("segmentation"), annotation.get("bbox")
    if segmentation in (None, []) and bbox is None:
        raise AnnotationError(f"{where}: needs a `segmentation` (polygons or RLE) or a `bbox`.")
    if segmentation not in (None, []):
        if isinstance(segmentation, Mapping):
            if "counts" not in segmentation or "size" not in segmentation:
                raise AnnotationError(f"{where}: an RLE `segmentation` needs `counts` and `size`.")
        elif not (isinstance(segmentation, list) and all(isinstance(p, list) for p in segmentation)):
            raise AnnotationError(f"{where}: `segmentation` must be a list of polygons or an RLE dict.")
        elif any(len(polygon) % 2 for polygon in segmentation):
            raise AnnotationError(f"{where}: a polygon has an odd number of coordinates; expected [x0, y0, ...].")
    if bbox is not None:
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise AnnotationError(f"{where}: `bbox` must be [x, y, width, height], got {bbox!r}.")
        if bbox[2] < 0 or bbox[3] < 0:
            raise AnnotationError(f"{where}: `bbox` has a negative width or height: {bbox}.")
    return {**annotation, "category_id": mapping[annotation["category_id"]]}


def _checked_segments(path: Path, annotation: Any, images: Mapping, mapping: Mapping[int, int], stuff) -> list:
    """The `segments_info` of one COCO panoptic annotation, checked, with contiguous `category_id`s."""
    where = f"{path}: panoptic annotation of image {annotation.get('image_id', '(no id)')}"
    if annotation.get("image_id") not in images:
        raise AnnotationError(f"{where}: `image_id` is not in `images`.")
    if "file_name" not in annotation or not isinstance(annotation.get("segments_info"), list):
        raise AnnotationError(f"{where}: needs the PNG's `file_name` and a `segments_info` list.")
    segments = []
    for segment in annotation["segments_info"]:
        segment_where = f"{where}, segment {segment.get('id', '(no id)') if isinstance(segment, Mapping) else ''}"
        if not isinstance(segment, Mapping) or "id" not in segment:
            raise AnnotationError(f"{segment_where}: every segment needs an `id` and a `category_id`.")
        if segment.get("category_id") not in mapping:
            raise AnnotationError(
                f"{segment_where}: `category_id` {segment.get('category_id')!r} is not in `categories`."
            )
        label = mapping[segment["category_id"]]
        segments.append(
            {
                "id": int(segment["id"]),
                "category_id": label,
                "isthing": label not in stuff,
                "iscrowd": bool(segment.get("iscrowd", 0)),
            }
        )
    return segments


def _image_path(directory: Path, file_name: str) -> str:
    path = directory / file_name
    if not path.is_file():
        raise FileNotFoundError(f"Image {path} (listed in the annotations) does not exist.")
    return str(path)


def read_coco_annotations(
    annotation_file: str | Path, images_dir: str | Path, panoptic_masks_dir: str | Path | None = None
):
    """
    Read a COCO instance / detection file (`panoptic_masks_dir` unset) or a COCO panoptic file (its PNG folder in
    `panoptic_masks_dir`) and its image folder.

    Every image of `images` is kept, also those without annotations (they train as negatives). Instance objects
    keep their `segmentation` (polygons or RLE), `bbox`, `iscrowd`, `area` and `id`; objects with a `bbox` and no
    `segmentation` are box-only (detection data). Crowd objects are ignored in training and, at evaluation, treated
    as COCO does.

    Returns:
        `tuple`: a `datasets.Dataset` and its [`DatasetLabels`].
    """
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    path, images_dir = Path(annotation_file), Path(images_dir)
    coco = _load_json(path)
    images = _image_records(path, coco)
    mapping, labels = _category_mapping(path, coco.get("categories") or [])
    annotations = coco.get("annotations") or []
    panoptic = panoptic_masks_dir is not None
    if not panoptic and any(isinstance(a, Mapping) and "segments_info" in a for a in annotations):
        raise ValueError(f"{path} is a COCO panoptic file: give its PNG folder as well (`--panoptic_masks_dir`).")
    image_ids = sorted(images)
    columns: dict[str, list] = {
        "image": [_image_path(images_dir, images[i]["file_name"]) for i in image_ids],
        "image_id": image_ids,
    }
    if panoptic:
        panoptic_masks_dir = Path(panoptic_masks_dir)
        by_image = {}
        for annotation in annotations:
            if not isinstance(annotation, Mapping):
                raise AnnotationError(f"{path}: every annotation must be a dict, got {type(annotation).__name__}.")
            segments = _checked_segments(path, annotation, images, mapping, set(labels.stuff_label_ids))
            by_image[annotation["image_id"]] = (annotation["file_name"], segments)
        missing = [i for i in image_ids if i not in by_image]
        if missing:
            raise AnnotationError(f"{path}: images {missing[:5]} have no panoptic annotation (every image needs one).")
        columns["panoptic_map"] = [_image_path(panoptic_masks_dir, by_image[i][0]) for i in image_ids]
        columns["segments_info"] = [by_image[i][1] for i in image_ids]
        segment = {
            "id": Value("int64"),
            "category_id": Value("int64"),
            "isthing": Value("bool"),
            "iscrowd": Value("bool"),
        }
        features = Features(
            {
                "image": ImageFeature(),
                "image_id": Value("int64"),
                "panoptic_map": ImageFeature(),
                "segments_info": [segment],
            }
        )
        labels.task = "panoptic"
    else:
        objects: dict[int, list] = {i: [] for i in image_ids}
        for annotation in annotations:
            checked = _checked_object(path, annotation, images, mapping)
            objects[checked["image_id"]].append(checked)
        # JSON text: polygons and RLE segmentations do not share one `datasets` type
        columns["objects"] = [json.dumps(objects[i]) for i in image_ids]
        features = Features({"image": ImageFeature(), "image_id": Value("int64"), "objects": Value("string")})
        with_masks = any(obj.get("segmentation") not in (None, []) for image in objects.values() for obj in image)
        labels.task = "instance" if with_masks else "detection"
    return Dataset.from_dict(columns, features=features), labels


def read_id2label_file(path: str | Path) -> dict[int, str]:
    """Class names from a JSON `{"0": "wall", "1": "building", ...}` (the `id2label.json` of transformers'
    segmentation examples); ids must be 0..N-1."""
    path = Path(path)
    raw = _load_json(path)
    if not isinstance(raw, Mapping):
        raise AnnotationError(f"{path} must hold a JSON object {{id: name}}.")
    try:
        id2label = {int(key): str(name) for key, name in raw.items()}
    except ValueError:
        raise AnnotationError(f"{path}: keys must be integer class ids, got {sorted(raw)[:5]}.") from None
    if sorted(id2label) != list(range(len(id2label))):
        raise AnnotationError(f"{path}: class ids must be 0..{len(id2label) - 1}, got {sorted(id2label)}.")
    return dict(sorted(id2label.items()))


def read_semantic_folders(images_dir: str | Path, labels_dir: str | Path, id2label_file: str | Path | None = None):
    """
    Pair the images of `images_dir` with the label PNGs of `labels_dir` by file name (without extension); a label
    PNG holds one class id per pixel. Class names come from `id2label_file`, by default an `id2label.json` in
    `labels_dir` or one of its two parent folders.

    Returns:
        `tuple`: a `datasets.Dataset` with `image` and `semantic_map` columns, and its [`DatasetLabels`] (no stuff
        classes: semantic data does not tell things from stuff).
    """
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    for directory in (images_dir, labels_dir):
        if not directory.is_dir():
            raise FileNotFoundError(f"{directory} is not a directory.")
    if id2label_file is None:
        candidates = [
            directory / "id2label.json" for directory in (labels_dir, labels_dir.parent, labels_dir.parent.parent)
        ]
        found = [candidate for candidate in candidates if candidate.is_file()]
        if not found:
            raise FileNotFoundError(
                f"No id2label.json in {labels_dir} or its parents: give the class names with `--id2label_file`."
            )
        id2label_file = found[0]
    id2label = read_id2label_file(id2label_file)
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    labels = {p.stem: p for p in labels_dir.iterdir() if p.suffix.lower() == ".png"}
    missing = [p.name for p in images if p.stem not in labels]
    if missing:
        raise FileNotFoundError(f"No label PNG in {labels_dir} for the images {missing[:5]} of {images_dir}.")
    if not images:
        raise FileNotFoundError(f"{images_dir} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    columns = {
        "image": [str(p) for p in images],
        "image_id": list(range(len(images))),
        "semantic_map": [str(labels[p.stem]) for p in images],
    }
    features = Features({"image": ImageFeature(), "image_id": Value("int64"), "semantic_map": ImageFeature()})
    labels = DatasetLabels(id2label=id2label, stuff_label_ids=[], task="semantic")
    return Dataset.from_dict(columns, features=features), labels


# ---------------------------------------------------------------------------------------------------------- sources


@dataclass
class DatasetSource:
    """
    Where the examples read their data from: one of a `datasets` dataset (`dataset_name`), COCO files
    (`coco_annotations` + `images_dir`, and `panoptic_masks_dir` for panoptic), or semantic label folders
    (`semantic_images_dir` + `semantic_labels_dir`). The `eval_*` fields give the validation split of files;
    without them, a fraction of the training data is held out. The field names are the examples' arguments.
    """

    dataset_name: str | None = field(
        default=None, metadata={"help": "A local `save_to_disk` directory or a Hub dataset name (`load_dataset`)."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    coco_annotations: str | None = field(
        default=None,
        metadata={"help": "COCO instance, detection (boxes only) or panoptic JSON of the training split."},
    )
    images_dir: str | None = field(default=None, metadata={"help": "Image folder of --coco_annotations."})
    panoptic_masks_dir: str | None = field(
        default=None, metadata={"help": "PNG folder of a COCO panoptic --coco_annotations."}
    )
    eval_coco_annotations: str | None = field(default=None, metadata={"help": "COCO JSON of the validation split."})
    eval_images_dir: str | None = field(default=None, metadata={"help": "Image folder of --eval_coco_annotations."})
    eval_panoptic_masks_dir: str | None = field(
        default=None, metadata={"help": "PNG folder of a COCO panoptic --eval_coco_annotations."}
    )
    semantic_images_dir: str | None = field(default=None, metadata={"help": "Training images (semantic folders)."})
    semantic_labels_dir: str | None = field(
        default=None, metadata={"help": "Label PNGs of class ids, named as the images (semantic folders)."}
    )
    eval_semantic_images_dir: str | None = field(default=None, metadata={"help": "Validation images."})
    eval_semantic_labels_dir: str | None = field(default=None, metadata={"help": "Validation label PNGs."})
    id2label_file: str | None = field(
        default=None,
        metadata={
            "help": "JSON {id: name} of the classes (semantic folders: default id2label.json beside the labels)."
        },
    )
    ignore_index: int = field(default=255, metadata={"help": "Label-PNG value of unlabelled pixels."})
    do_reduce_labels: bool = field(
        default=False, metadata={"help": "Label PNGs whose 0 is 'unlabelled' (ADE20K): 0 is ignored, others - 1."}
    )
    image_column: str = field(default="image", metadata={"help": "Image column of a --dataset_name dataset."})
    panoptic_map_column: str = field(default="panoptic_map", metadata={"help": "Its panoptic map column."})
    segments_info_column: str = field(default="segments_info", metadata={"help": "Its segments column."})
    semantic_map_column: str = field(default="semantic_map", metadata={"help": "Its semantic map column."})
    objects_column: str = field(default="objects", metadata={"help": "Its column of COCO objects (detection data)."})

    def row_options(self) -> dict[str, Any]:
        """How to read a row (column names, `ignore_index`, `do_reduce_labels`), as [`SegmentationTransform`] and
        [`ground_truth_of_row`] take it."""
        return {
            "ignore_index": self.ignore_index,
            "do_reduce_labels": self.do_reduce_labels,
            "image_column": self.image_column,
            "panoptic_map_column": self.panoptic_map_column,
            "segments_info_column": self.segments_info_column,
            "semantic_map_column": self.semantic_map_column,
            "objects_column": self.objects_column,
        }

    def kind(self) -> str:
        """`"datasets"`, `"coco"` or `"semantic"`; raises unless exactly one source is given."""
        given = {
            "datasets": self.dataset_name is not None,
            "coco": self.coco_annotations is not None,
            "semantic": self.semantic_images_dir is not None,
        }
        if sum(given.values()) != 1:
            raise ValueError(
                "Give one data source: --dataset_name, --coco_annotations with --images_dir, or "
                "--semantic_images_dir with --semantic_labels_dir."
            )
        kind = next(name for name, present in given.items() if present)
        if kind == "coco" and self.images_dir is None:
            raise ValueError("--coco_annotations needs its image folder, --images_dir.")
        if kind == "semantic" and self.semantic_labels_dir is None:
            raise ValueError("--semantic_images_dir needs its labels, --semantic_labels_dir.")
        return kind

    def read_files(self, validation: bool = False):
        """The training (or, with `validation`, the validation) files as a `Dataset` and its [`DatasetLabels`];
        `None` when no validation files are given."""
        prefix = "eval_" if validation else ""
        if self.kind() == "coco":
            annotations = getattr(self, f"{prefix}coco_annotations")
            if annotations is None:
                return None
            return read_coco_annotations(
                annotations,
                getattr(self, f"{prefix}images_dir") or self.images_dir,
                getattr(self, f"{prefix}panoptic_masks_dir") or (None if validation else self.panoptic_masks_dir),
            )
        images_dir = getattr(self, f"{prefix}semantic_images_dir")
        if images_dir is None:
            return None
        return read_semantic_folders(images_dir, getattr(self, f"{prefix}semantic_labels_dir"), self.id2label_file)


def _labels_of_dataset(dataset, source: DatasetSource) -> DatasetLabels:
    """Labels of a `datasets` dataset: `--id2label_file`, else the `ClassLabel` of its segments; its default task
    from the columns it has."""
    from .data import dataset_label_names, dataset_stuff_label_ids

    segments_info_column = source.segments_info_column
    columns = {
        "panoptic": source.panoptic_map_column,
        "semantic": source.semantic_map_column,
        "instance": source.objects_column,
    }
    has_segments = segments_info_column in dataset.column_names
    stuff = dataset_stuff_label_ids(dataset, segments_info_column) if has_segments else []
    present = [task for task, column in columns.items() if column in dataset.column_names]
    task = present[0] if present else None
    if source.id2label_file is not None:
        return DatasetLabels(id2label=read_id2label_file(source.id2label_file), stuff_label_ids=stuff, task=task)
    names = dataset_label_names(dataset, segments_info_column) if has_segments else None
    if names is None:
        raise ValueError(
            f"The dataset's class names are unknown: `{segments_info_column}.category_id` is not a "
            "`datasets.ClassLabel` holding them; give them with --id2label_file (a JSON {id: name})."
        )
    return DatasetLabels(id2label=dict(enumerate(names)), stuff_label_ids=stuff, task=task)


def load_training_data(
    source: DatasetSource,
    train_split: str = "train",
    eval_split: str = "validation",
    validation_fraction: float = 0.1,
    seed: int = 0,
):
    """
    The `train` and `validation` splits of `source` as a `DatasetDict`, and the [`DatasetLabels`] of the training
    split. Files without a validation part, and datasets without `eval_split`, get `validation_fraction` of the
    training data held out.
    """
    from datasets import DatasetDict

    from .data import load_segmentation_dataset

    if source.kind() == "datasets":
        dataset = load_segmentation_dataset(
            source.dataset_name, source.dataset_config_name, train_split, eval_split, validation_fraction, seed
        )
        return dataset, _labels_of_dataset(dataset["train"], source)
    train, labels = source.read_files()
    validation = source.read_files(validation=True)
    if validation is not None:
        if validation[1].id2label != labels.id2label:
            raise ValueError(
                f"The validation files' classes {validation[1].id2label} differ from the training files' "
                f"{labels.id2label}."
            )
        return DatasetDict({"train": train, "validation": validation[0]}), labels
    if not 0 < validation_fraction < 1:
        raise ValueError(
            f"No validation files, and `validation_fraction` ({validation_fraction}) cannot make a split."
        )
    split = train.train_test_split(test_size=validation_fraction, seed=seed)
    return DatasetDict({"train": split["train"], "validation": split["test"]}), labels


def load_evaluation_data(source: DatasetSource, split: str = "validation"):
    """The data to evaluate: split `split` of a `datasets` source, or the files of the source (its training-side
    arguments: `--coco_annotations`, `--semantic_images_dir`, ...). Returns the `Dataset` and its labels."""
    from .data import load_segmentation_dataset

    if source.kind() == "datasets":
        dataset = load_segmentation_dataset(source.dataset_name, source.dataset_config_name, split, split)[
            "validation"
        ]
        try:
            return dataset, _labels_of_dataset(dataset, source)
        except ValueError:  # no class names in the data: evaluation uses the model's
            return dataset, None
    return source.read_files()


def dataset_category_ids_of(config) -> dict[int, int] | None:
    """The dataset's own category id of each label id, as the examples keep it in `config.json`
    (`dataset_category_ids`), or `None` when label ids are the dataset's ids."""
    mapping = getattr(config, "dataset_category_ids", None)
    return None if not mapping else {int(label): int(category) for label, category in mapping.items()}


__all__ = [
    "AnnotationError",
    "DatasetLabels",
    "DatasetSource",
    "dataset_category_ids_of",
    "load_evaluation_data",
    "load_training_data",
    "read_coco_annotations",
    "read_id2label_file",
    "read_semantic_folders",
]
