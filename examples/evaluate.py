# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Evaluate a Mask DINO checkpoint on a segmentation dataset: panoptic quality (PQ, SQ, RQ; things and stuff), COCO
mask and box AP (pycocotools) and mean IoU, at each image's original resolution.

The dataset is a local `save_to_disk` directory or a Hub dataset name with the columns of
`transformers_maskdino.training.synthetic_data` (`image`, `panoptic_map` + `segments_info`, or `semantic_map` for
`--task semantic`). Predictions are post-processed with the checkpoint's image processor settings; class ids of the
dataset must be the model's label ids.

    python examples/evaluate.py --model out/tiny --dataset_name synthetic_heldout --split validation \
        --output out/tiny/heldout_metrics.json

Metrics are fractions in [0, 1]. mIoU uses the definition of the `evaluate` library's `mean_iou` but is computed
by `transformers_maskdino.training.evaluation`: `evaluate.load("mean_iou")` downloads its script from the Hub. (This file's
name also shadows the `evaluate` library for scripts in this directory; nothing here imports it.)
"""

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from transformers_maskdino import MaskDinoForUniversalSegmentation, MaskDinoImageProcessor
from transformers_maskdino.training.evaluation import METRIC_TASKS_FOR_DATASET_TASK, SegmentationEvaluator
from transformers_maskdino.training import ground_truth_segments, load_segmentation_dataset


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Evaluate Mask DINO: PQ, COCO mask/box AP and mIoU.")
    parser.add_argument("--model", required=True, help="checkpoint directory or Hub id")
    parser.add_argument("--dataset_name", required=True, help="local save_to_disk directory or Hub dataset name")
    parser.add_argument("--dataset_config_name", default=None)
    parser.add_argument("--split", default="validation")
    parser.add_argument(
        "--task",
        choices=tuple(METRIC_TASKS_FOR_DATASET_TASK),
        default="panoptic",
        help="panoptic: PQ + AP + mIoU from the panoptic annotation; instance: AP; semantic: mIoU from semantic_map",
    )
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--max_samples", type=int, default=None)
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--output", default=None, help="write the metrics here as JSON")
    return parser


def evaluate_checkpoint(model, image_processor, dataset, task: str = "panoptic", batch_size: int = 4) -> dict:
    """Metrics of `model` over `dataset` (rows with the synthetic dataset's columns), at original resolution."""
    device = model.device
    evaluator = SegmentationEvaluator(
        image_processor,
        num_labels=model.config.num_labels,
        stuff_label_ids=model.config.stuff_label_ids,
        tasks=METRIC_TASKS_FOR_DATASET_TASK[task],
    )
    # panoptic ground truth also gives the semantic one; AP uses its thing segments
    ground_truth_task = "semantic" if task == "semantic" else "panoptic"
    for start in tqdm(range(0, len(dataset), batch_size), desc="evaluating", unit="batch"):
        rows = dataset[start : start + batch_size]
        images = [image.convert("RGB") for image in rows["image"]]
        inputs = image_processor(images=images, return_tensors="pt").to(device)
        with torch.no_grad():
            outputs = model(**inputs)
        ground_truth = [
            ground_truth_segments(
                ground_truth_task,
                panoptic_map=np.asarray(rows["panoptic_map"][index]) if "panoptic_map" in rows else None,
                segments_info=rows["segments_info"][index] if "segments_info" in rows else None,
                semantic_map=np.asarray(rows["semantic_map"][index]) if "semantic_map" in rows else None,
            )
            for index in range(len(images))
        ]
        evaluator.add(outputs, ground_truth, target_sizes=[(image.height, image.width) for image in images])
    metrics = evaluator.compute()
    metrics["num_images"] = evaluator.num_images
    return metrics


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = MaskDinoForUniversalSegmentation.from_pretrained(args.model).to(device).eval()
    image_processor = MaskDinoImageProcessor.from_pretrained(args.model)
    dataset = load_segmentation_dataset(
        args.dataset_name, config_name=args.dataset_config_name, train_split=args.split, eval_split=args.split
    )["validation"]
    if args.max_samples is not None:
        dataset = dataset.select(range(min(args.max_samples, len(dataset))))

    metrics = evaluate_checkpoint(model, image_processor, dataset, task=args.task, batch_size=args.batch_size)
    width = max(len(name) for name in metrics)
    for name, value in metrics.items():
        if isinstance(value, float):
            value = "n/a" if math.isnan(value) else f"{value:.4f}"
        print(f"{name:<{width}}  {value}")
    if args.output is not None:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


if __name__ == "__main__":
    main()
