# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Train or fine-tune Mask DINO with a plain PyTorch loop and 🤗 Accelerate: the same data, model choices, optimizer
and metrics as `finetune_trainer.py`, in a loop you can change.

Single process:

    python examples/finetune_accelerate.py --dataset_name synthetic_shapes \
        --config_name examples/configs/maskdino_tiny_synthetic.json --output_dir out/tiny_accelerate \
        --shortest_edge 160 --longest_edge 320 --max_steps 200 --eval_steps 100

The data arguments are those of `finetune_trainer.py` (`--dataset_name`, or COCO files with `--coco_annotations` and
`--images_dir`, or label folders with `--semantic_images_dir` and `--semantic_labels_dir`). `--checkpointing_steps N`
saves the whole training state (model, optimizer, scheduler, random states) every N steps in
`output_dir/step_<N>`, and `--resume_from_checkpoint output_dir/step_<N>` continues from one with the same losses.

Several processes (GPUs: `accelerate launch --multi_gpu --num_processes N ...`, or several machines with
`accelerate launch --config_file ...`, see docs/training.md; CPU processes talking over gloo:
`torchrun --nproc_per_node N examples/finetune_accelerate.py --cpu ...`). Each process sees its own batches,
gradients are averaged, and `MaskDinoLoss` averages the number of target masks over processes, so the loss is the
one of the global batch. The model uses every parameter in every step, so DDP needs no `find_unused_parameters`.
"""

# This directory also holds `evaluate.py`, which shadows the `evaluate` library for scripts run from here: nothing
# in this file imports `evaluate`.
import argparse
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, gather_object, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import HfArgumentParser, get_scheduler

from transformers_maskdino.model_card import write_fine_tuned_model_card
from transformers_maskdino.training import (
    DEFAULT_BACKBONE_LEARNING_RATE_MULTIPLIER,
    DEFAULT_LEARNING_RATE,
    DEFAULT_MAX_GRAD_NORM,
    DEFAULT_WEIGHT_DECAY,
    TASKS,
    SegmentationTransform,
    build_model_and_image_processor,
    build_optimizer,
    collate_segmentation_batch,
    evaluation_loss,
    ground_truth_at_input_size,
)
from transformers_maskdino.training.evaluation import (
    METRIC_TASKS_FOR_DATASET_TASK,
    SegmentationEvaluator,
)
from transformers_maskdino.training.formats import DatasetSource, load_training_data

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    # the data source arguments (--dataset_name, --coco_annotations, ...) are those of the Trainer example
    parser = HfArgumentParser(DatasetSource, description="Train Mask DINO with Accelerate.")
    data = parser.add_argument_group("data")
    data.add_argument("--task", choices=TASKS, default=None, help="default: what the data has (see finetune_trainer)")
    data.add_argument("--train_split", default="train")
    data.add_argument("--eval_split", default="validation")
    data.add_argument("--validation_fraction", type=float, default=0.1)
    data.add_argument("--max_train_samples", type=int, default=None)
    data.add_argument("--max_eval_samples", type=int, default=None)
    data.add_argument("--flip_probability", type=float, default=0.5)
    data.add_argument(
        "--large_scale_jitter_size",
        type=int,
        default=None,
        help="large-scale jitter in training (1024 in the original's COCO configs); see finetune_trainer.py",
    )
    data.add_argument("--large_scale_jitter_scales", type=float, nargs=2, default=[0.1, 2.0], metavar=("MIN", "MAX"))
    model = parser.add_argument_group("model")
    model.add_argument("--model_name_or_path", default=None, help="checkpoint directory or Hub id to fine-tune")
    model.add_argument("--config_name", default=None, help="config.json of a model to train from scratch")
    model.add_argument("--backbone_checkpoint", default=None, help="ImageNet backbone weights (from scratch)")
    model.add_argument("--image_processor_name", default=None)
    model.add_argument("--shortest_edge", type=int, default=None)
    model.add_argument("--longest_edge", type=int, default=None)
    training = parser.add_argument_group("training")
    training.add_argument("--output_dir", required=True)
    training.add_argument("--per_device_train_batch_size", type=int, default=2)
    training.add_argument("--per_device_eval_batch_size", type=int, default=2)
    training.add_argument("--gradient_accumulation_steps", type=int, default=1)
    training.add_argument("--max_steps", type=int, required=True, help="optimizer steps")
    training.add_argument("--learning_rate", type=float, default=DEFAULT_LEARNING_RATE)
    training.add_argument("--weight_decay", type=float, default=DEFAULT_WEIGHT_DECAY)
    training.add_argument(
        "--backbone_learning_rate_multiplier", type=float, default=DEFAULT_BACKBONE_LEARNING_RATE_MULTIPLIER
    )
    training.add_argument("--max_grad_norm", type=float, default=DEFAULT_MAX_GRAD_NORM)
    training.add_argument("--lr_scheduler_type", default="constant_with_warmup")
    training.add_argument("--warmup_steps", type=int, default=0)
    training.add_argument("--eval_steps", type=int, default=0, help="evaluate every N steps (0: at the end only)")
    training.add_argument("--logging_steps", type=int, default=10)
    training.add_argument("--seed", type=int, default=0)
    training.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default="no")
    training.add_argument("--cpu", action="store_true", help="train on CPU even if a GPU is available")
    training.add_argument("--checkpointing_steps", type=int, default=0, help="save the training state every N steps")
    training.add_argument("--resume_from_checkpoint", default=None, help="a step_<N> directory to continue from")
    return parser


@dataclass
class TrainingResult:
    """What [`train`] returns: the prepared model (still wrapped for distribution), the accelerator, the metrics
    of every evaluation, and the losses logged by the main process."""

    model: torch.nn.Module
    accelerator: Accelerator
    evaluations: list[dict]
    losses: list[float]


def evaluate_model(
    model, dataset, image_processor, num_labels, stuff_label_ids, task, batch_size, accelerator
) -> dict:
    """PQ / AP / mIoU and the evaluation loss over `dataset`, split across processes without duplicates."""
    model = accelerator.unwrap_model(model)
    was_training = model.training
    model.eval()
    shard = dataset.shard(num_shards=accelerator.num_processes, index=accelerator.process_index, contiguous=True)
    loader = DataLoader(shard, batch_size=batch_size, collate_fn=collate_segmentation_batch)
    evaluator = SegmentationEvaluator(
        image_processor, num_labels, stuff_label_ids, tasks=METRIC_TASKS_FOR_DATASET_TASK[task]
    )
    # The loss all-reduces the number of target masks, so every process must compute it equally often: shards differ
    # by at most one image, and the loss is taken on the batches that the smallest shard also has.
    num_loss_batches = math.ceil((len(dataset) // accelerator.num_processes) / batch_size)
    loss_sum, num_batches = 0.0, 0
    progress = tqdm(loader, desc="evaluating", disable=not accelerator.is_local_main_process)
    for batch_index, batch in enumerate(progress):
        batch = {
            key: [t.to(accelerator.device) for t in value] if isinstance(value, list) else value.to(accelerator.device)
            for key, value in batch.items()
        }
        boxes = {key: batch.get(key) for key in ("target_boxes", "target_has_masks")}
        with torch.no_grad():
            outputs = model(pixel_values=batch["pixel_values"], pixel_mask=batch["pixel_mask"])
            if batch_index < num_loss_batches:
                loss = evaluation_loss(model, outputs, batch["mask_labels"], batch["class_labels"], **boxes)
                loss_sum += float(loss)
                num_batches += 1
        evaluator.add(
            outputs,
            ground_truth_at_input_size(batch["mask_labels"], batch["class_labels"], outputs.image_sizes, **boxes),
        )
    states = gather_object([evaluator.state()])
    losses = gather_object([(loss_sum, num_batches)])
    evaluator.merge(states)
    metrics = evaluator.compute()
    total_batches = sum(count for _, count in losses)
    metrics["loss"] = sum(loss for loss, _ in losses) / total_batches if total_batches else math.nan
    metrics["num_images"] = evaluator.num_images
    model.train(was_training)
    return metrics


def train(argv: list[str] | None = None) -> TrainingResult:
    args = build_parser().parse_args(argv)
    source = DatasetSource(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DatasetSource)})
    source.kind()  # one data source, complete
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        cpu=args.cpu,
        # each epoch's shuffle comes from (seed, epoch), so that a resumed run sees the same batches
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if not accelerator.is_main_process:
        logger.setLevel(logging.WARNING)
    # the same seed everywhere makes the initial weights identical; the data is still split across processes
    set_seed(args.seed)

    dataset, labels = load_training_data(
        source,
        train_split=args.train_split,
        eval_split=args.eval_split,
        validation_fraction=args.validation_fraction,
        seed=args.seed,
    )
    task = args.task or labels.task or "panoptic"
    train_dataset, eval_dataset = dataset["train"], dataset["validation"]
    if args.max_train_samples is not None:
        train_dataset = train_dataset.select(range(min(args.max_train_samples, len(train_dataset))))
    if args.max_eval_samples is not None:
        eval_dataset = eval_dataset.select(range(min(args.max_eval_samples, len(eval_dataset))))
    train_dataset = train_dataset.add_column("sample_index", list(range(len(train_dataset))))
    id2label, stuff_label_ids = labels.id2label, labels.stuff_label_ids

    model, image_processor, _ = build_model_and_image_processor(
        id2label,
        stuff_label_ids,
        model_name_or_path=args.model_name_or_path,
        config_name=args.config_name,
        backbone_checkpoint=args.backbone_checkpoint,
        image_processor_name=args.image_processor_name,
        shortest_edge=args.shortest_edge,
        longest_edge=args.longest_edge,
        dataset_category_ids=labels.dataset_category_ids,
    )
    logger.info(
        "Model: %.2fM parameters, labels %s, stuff %s", model.num_parameters() / 1e6, id2label, stuff_label_ids
    )

    # flips and jitter differ per process, as the batches do
    label_options = {"task": task, **source.row_options()}
    train_transform = SegmentationTransform(
        image_processor,
        flip_probability=args.flip_probability,
        large_scale_jitter_size=args.large_scale_jitter_size,
        large_scale_jitter_scales=tuple(args.large_scale_jitter_scales),
        seed=args.seed + accelerator.process_index,
        **label_options,
    )
    train_dataset = train_dataset.with_transform(train_transform)
    eval_dataset = eval_dataset.with_transform(SegmentationTransform(image_processor, **label_options))
    train_loader = DataLoader(
        train_dataset,
        batch_size=args.per_device_train_batch_size,
        shuffle=True,
        collate_fn=collate_segmentation_batch,
        generator=torch.Generator().manual_seed(args.seed),
    )
    optimizer = build_optimizer(model, args.learning_rate, args.weight_decay, args.backbone_learning_rate_multiplier)
    scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer,
        num_warmup_steps=args.warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_steps * accelerator.num_processes,
    )
    # the prepared loader gives each process a different part of every global batch
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)

    evaluations, losses = [], []
    completed_steps, running_loss, running_count = 0, 0.0, 0

    def run_evaluation():
        return evaluate_model(
            model,
            eval_dataset,
            image_processor,
            len(id2label),
            stuff_label_ids,
            task,
            args.per_device_eval_batch_size,
            accelerator,
        )

    epoch, skip_batches = 0, 0
    if args.resume_from_checkpoint is not None:
        accelerator.load_state(args.resume_from_checkpoint)
        completed_steps = json.loads((Path(args.resume_from_checkpoint) / "progress.json").read_text())["step"]
        batches_done = completed_steps * args.gradient_accumulation_steps
        epoch, skip_batches = divmod(batches_done, len(train_loader))
        logger.info("Resumed from %s at step %d", args.resume_from_checkpoint, completed_steps)

    progress = tqdm(
        total=args.max_steps, initial=completed_steps, desc="training", disable=not accelerator.is_local_main_process
    )
    model.train()
    start_time, start_step = time.perf_counter(), completed_steps
    while completed_steps < args.max_steps:
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)  # reshuffles differently every epoch
        train_transform.epoch = epoch
        loader = train_loader
        if skip_batches:
            # the batches the checkpointed run had already trained on in this epoch
            loader, skip_batches = accelerator.skip_first_batches(train_loader, skip_batches), 0
        for batch in loader:
            with accelerator.accumulate(model):
                outputs = model(**batch)
                accelerator.backward(outputs.loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            running_loss += outputs.loss.detach().float().item()
            running_count += 1
            if not accelerator.sync_gradients:
                continue
            completed_steps += 1
            progress.update(1)
            if completed_steps % args.logging_steps == 0 or completed_steps == args.max_steps:
                loss = running_loss / running_count
                losses.append(loss)
                logger.info("step %d: loss %.4f, lr %.3g", completed_steps, loss, scheduler.get_last_lr()[0])
                running_loss, running_count = 0.0, 0
            if args.checkpointing_steps and completed_steps % args.checkpointing_steps == 0:
                checkpoint_dir = Path(args.output_dir) / f"step_{completed_steps}"
                accelerator.save_state(str(checkpoint_dir))
                if accelerator.is_main_process:
                    (checkpoint_dir / "progress.json").write_text(json.dumps({"step": completed_steps}) + "\n")
            if args.eval_steps and completed_steps % args.eval_steps == 0 and completed_steps < args.max_steps:
                metrics = run_evaluation()
                evaluations.append({"step": completed_steps, **metrics})
                logger.info("step %d: %s", completed_steps, _format_metrics(metrics))
            if completed_steps >= args.max_steps:
                break
        epoch += 1
    progress.close()
    seconds = time.perf_counter() - start_time
    images = (completed_steps - start_step) * args.per_device_train_batch_size * args.gradient_accumulation_steps
    images *= accelerator.num_processes
    if seconds > 0:
        logger.info(
            "Throughput: %.2f images/s (%d images in %.1f s on %d process(es))",
            images / seconds, images, seconds, accelerator.num_processes,
        )  # fmt: skip

    metrics = run_evaluation()
    evaluations.append({"step": completed_steps, **metrics})
    logger.info("final (%d epochs started): %s", epoch, _format_metrics(metrics))

    accelerator.wait_for_everyone()
    output_dir = Path(args.output_dir)
    accelerator.unwrap_model(model).save_pretrained(
        output_dir, is_main_process=accelerator.is_main_process, save_function=accelerator.save
    )
    if accelerator.is_main_process:
        image_processor.save_pretrained(output_dir)
        (output_dir / "eval_results.json").write_text(json.dumps(evaluations, indent=2) + "\n")
        write_fine_tuned_model_card(
            output_dir, accelerator.unwrap_model(model), task=task,
            dataset=args.dataset_name or args.coco_annotations or args.semantic_images_dir,
            base_model=args.model_name_or_path, training=vars(args), metrics=evaluations[-1],
        )  # fmt: skip
    accelerator.wait_for_everyone()
    return TrainingResult(model=model, accelerator=accelerator, evaluations=evaluations, losses=losses)


def _format_metrics(metrics: dict) -> str:
    keys = ("loss", "PQ", "mask_AP", "box_AP", "mIoU")
    return ", ".join(f"{key} {metrics[key]:.4f}" for key in keys if key in metrics and not math.isnan(metrics[key]))


def main(argv: list[str] | None = None) -> None:
    result = train(argv)
    result.accelerator.end_training()


if __name__ == "__main__":
    main()
