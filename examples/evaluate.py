# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Evaluate a Mask DINO checkpoint on a segmentation or detection dataset: panoptic quality (PQ, SQ, RQ; things and
stuff), COCO mask and box AP (pycocotools) and mean IoU, at each image's original resolution.

The data arguments are those of the fine-tuning examples, for the data to evaluate:

    python examples/evaluate.py --model out/tiny --dataset_name synthetic_heldout --split validation \
        --output out/tiny/heldout_metrics.json
    python examples/evaluate.py --model out/coco --coco_annotations annotations/instances_val2017.json \
        --images_dir val2017 --results_json out/coco/results.json
    python examples/evaluate.py --model out/coco_panoptic --coco_annotations annotations/panoptic_val2017.json \
        --images_dir val2017 --panoptic_masks_dir annotations/panoptic_val2017
    python examples/evaluate.py --model out/ade --semantic_images_dir images/validation \
        --semantic_labels_dir annotations/validation

`--task` defaults to what the data has (see finetune_trainer.py); `detection` scores the boxes of
`post_process_object_detection` with COCO box AP, for box-trained models. Class ids of the data must be the model's
label ids (the file readers map COCO category ids in id order, as the fine-tuning examples did).

`--results_json` writes the detections (instance segmentation, or object detection with `--task detection`) in COCO
results format, with the dataset's own image ids and category ids (`dataset_category_ids` in the model's config),
for the COCO evaluation server or any tool that reads it: `COCO(annotations).loadRes(results)` and `COCOeval` give
the AP printed here.

Metrics are fractions in [0, 1]. mIoU uses the definition of the `evaluate` library's `mean_iou` but is computed
by `transformers_maskdino.training.evaluation`: `evaluate.load("mean_iou")` downloads its script from the Hub. (This
file's name also shadows the `evaluate` library for scripts in this directory; nothing here imports it.)
"""

import dataclasses
import json
import math
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import HfArgumentParser

from transformers_maskdino import (
    MaskDinoForUniversalSegmentation,
    MaskDinoImageProcessor,
)
from transformers_maskdino.training import ground_truth_of_row
from transformers_maskdino.training.evaluation import (
    METRIC_TASKS_FOR_DATASET_TASK,
    SegmentationEvaluator,
    coco_results,
)
from transformers_maskdino.training.formats import (
    DatasetSource,
    dataset_category_ids_of,
    load_evaluation_data,
)


def build_parser() -> HfArgumentParser:
    parser = HfArgumentParser(DatasetSource, description="Evaluate Mask DINO: PQ, COCO mask/box AP and mIoU.")
    parser.add_argument("--model", required=True, help="checkpoint directory or Hub id")
    parser.add_argument("--split", default="validation", help="split of a --dataset_name dataset")
    parser.add_argument(
        "--task",
        choices=tuple(METRIC_TASKS_FOR_DATASET_TASK),
        default=None,
        help="panoptic: PQ + AP + mIoU from the panoptic annotation; instance: AP; semantic: mIoU from semantic_map; "
        "detection: box AP of object detection (default: what the data has)",
    )
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--max_samples", type=int, default=None)
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--output", default=None, help="write the metrics here as JSON")
    parser.add_argument("--results_json", default=None, help="write the detections here in COCO results format")
    return parser


def run_evaluation(
    model,
    image_processor,
    dataset,
    task: str = "panoptic",
    batch_size: int = 4,
    row_options: dict | None = None,
) -> SegmentationEvaluator:
    """An evaluator holding the metric state of `model` over `dataset`, at each image's original resolution;
    `row_options` ([`DatasetSource.row_options`]: column names, ignore index, reduced labels) say how to read rows."""
    row_options = row_options or DatasetSource().row_options()
    device = model.device
    evaluator = SegmentationEvaluator(
        image_processor,
        num_labels=model.config.num_labels,
        stuff_label_ids=model.config.stuff_label_ids,
        tasks=METRIC_TASKS_FOR_DATASET_TASK[task],
        ignore_index=row_options["ignore_index"],
    )
    # a panoptic annotation also gives the semantic ground truth, and the thing segments for AP
    for start in tqdm(range(0, len(dataset), batch_size), desc="evaluating", unit="batch"):
        rows = dataset[start : start + batch_size]
        images = [image.convert("RGB") for image in rows[row_options["image_column"]]]
        inputs = image_processor(images=images, return_tensors="pt").to(device)
        with torch.no_grad():
            outputs = model(**inputs)
        ground_truth = [
            ground_truth_of_row(
                {column: values[index] for column, values in rows.items()},
                task,
                **row_options,
            )
            for index in range(len(images))
        ]
        evaluator.add(
            outputs,
            ground_truth,
            target_sizes=[(image.height, image.width) for image in images],
            image_ids=rows.get("image_id", None),
        )
    return evaluator


def evaluate_checkpoint(
    model, image_processor, dataset, task: str = "panoptic", batch_size: int = 4, **kwargs
) -> dict:
    """Metrics of `model` over `dataset` (rows as the fine-tuning examples read them), at original resolution."""
    evaluator = run_evaluation(model, image_processor, dataset, task, batch_size, **kwargs)
    return {**evaluator.compute(), "num_images": evaluator.num_images}


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    source = DatasetSource(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DatasetSource)})
    source.kind()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = MaskDinoForUniversalSegmentation.from_pretrained(args.model).to(device).eval()
    image_processor = MaskDinoImageProcessor.from_pretrained(args.model)
    dataset, labels = load_evaluation_data(source, args.split)
    if labels is not None and labels.id2label and labels.id2label != model.config.id2label:
        raise ValueError(
            f"The data's classes {labels.id2label} are not the model's {model.config.id2label}: the model must have "
            "been fine-tuned on this label set."
        )
    task = args.task or (labels.task if labels is not None else None) or "panoptic"
    if args.max_samples is not None:
        dataset = dataset.select(range(min(args.max_samples, len(dataset))))

    evaluator = run_evaluation(
        model,
        image_processor,
        dataset,
        task,
        args.batch_size,
        source.row_options(),
    )
    metrics = {**evaluator.compute(), "num_images": evaluator.num_images}
    width = max(len(name) for name in metrics)
    for name, value in metrics.items():
        if isinstance(value, float):
            value = "n/a" if math.isnan(value) else f"{value:.4f}"
        print(f"{name:<{width}}  {value}")
    if args.output is not None:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(metrics, indent=2) + "\n")
    if args.results_json is not None:
        if not evaluator.instance_records:
            raise ValueError(
                f"--results_json needs detections: the {task!r} task makes none (use instance/detection)."
            )
        results = coco_results(evaluator.instance_records, dataset_category_ids_of(model.config))
        Path(args.results_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results_json).write_text(json.dumps(results) + "\n")
        print(f"{len(results)} detections written to {args.results_json}")
    return metrics


if __name__ == "__main__":
    main()
