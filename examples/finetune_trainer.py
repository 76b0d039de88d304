# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Train or fine-tune Mask DINO for panoptic, instance or semantic segmentation with the 🤗 `Trainer`.

The data is one of:
- a local directory written by `datasets`' `save_to_disk` or a Hub dataset name (`--dataset_name`), with the columns
  of `transformers_maskdino.training.synthetic_data` (`image`, `panoptic_map` + `segments_info`, `semantic_map`;
  other names with `--image_column` etc.; COCO objects in an `objects` column) and class names from a `ClassLabel`
  or `--id2label_file`;
- COCO files: `--coco_annotations FILE.json --images_dir DIR` (instance, box-only detection, or panoptic with
  `--panoptic_masks_dir DIR`), the validation split in `--eval_coco_annotations` / `--eval_images_dir` / ...;
- semantic label folders: `--semantic_images_dir DIR --semantic_labels_dir DIR` (`--ignore_index`,
  `--do_reduce_labels`, class names from `id2label.json`), validation in `--eval_semantic_images_dir` / ...
Start from a checkpoint
directory / Hub id (`--model_name_or_path`; the classification head is re-initialised when the dataset's labels
differ) or from scratch with a config file (`--config_name`, optionally with ImageNet backbone weights from
`--backbone_checkpoint`).

The optimizer defaults are the original's: AdamW, learning rate 1e-4, weight decay 0.05 (none on norms and
embeddings), backbone learning rate x 0.1, gradient norm clipped to 0.01. Evaluation during training reports PQ,
COCO mask/box AP and mIoU on the validation split (`--eval_strategy steps --eval_steps N`), also across several
processes (`torchrun --nproc_per_node N examples/finetune_trainer.py ...`). Running again with the same
`--output_dir` resumes from its last checkpoint.

Example (a tiny model on synthetic data, CPU):

    python -m transformers_maskdino.training.synthetic_data --output-dir synthetic_shapes --num-images 200
    python examples/finetune_trainer.py --dataset_name synthetic_shapes \
        --config_name examples/configs/maskdino_tiny_synthetic.json --shortest_edge 160 --longest_edge 320 \
        --output_dir out/tiny --do_train --do_eval --max_steps 200 --per_device_train_batch_size 4 \
        --eval_strategy steps --eval_steps 100

(`--shortest_edge`: a new image processor defaults to the original's 800-pixel test size, far above these images.)
"""

# This directory also holds `evaluate.py`, which shadows the `evaluate` library for scripts run from here: nothing
# in this file imports `evaluate`.
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

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


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Checkpoint directory or Hub id to fine-tune (a converted Mask DINO)."}
    )
    config_name: str | None = field(
        default=None,
        metadata={
            "help": "config.json (file or directory) of a model to train from scratch, when no checkpoint is given."
        },
    )
    backbone_checkpoint: str | None = field(
        default=None,
        metadata={
            "help": "ImageNet backbone weights for a model trained from scratch (save_pretrained dir or state dict)."
        },
    )
    image_processor_name: str | None = field(
        default=None, metadata={"help": "Image processor directory/Hub id (default: the checkpoint's, or a new one)."}
    )
    shortest_edge: int | None = field(
        default=None, metadata={"help": "Resize images so that their shorter side is this."}
    )
    longest_edge: int | None = field(default=None, metadata={"help": "... and their longer side at most this."})


@dataclass
class DataArguments(DatasetSource):
    task: str | None = field(
        default=None,
        metadata={
            "help": f"Targets to train on: one of {TASKS} (detection: boxes, evaluated by box AP). Default: what "
            "the data has (panoptic for the package's datasets and COCO panoptic files, instance or detection for "
            "COCO instance files, semantic for label folders)."
        },
    )
    train_split: str = field(default="train")
    eval_split: str = field(
        default="validation", metadata={"help": "Split for evaluation (made from train if absent)."}
    )
    validation_fraction: float = field(
        default=0.1, metadata={"help": "Fraction of train held out when the dataset has no `eval_split`."}
    )
    max_train_samples: int | None = field(default=None)
    max_eval_samples: int | None = field(default=None)
    flip_probability: float = field(default=0.5, metadata={"help": "Random horizontal flips in training."})
    large_scale_jitter_size: int | None = field(
        default=None,
        metadata={
            "help": "Large-scale jitter in training, as the original trains on COCO (1024 there): scale each image "
            "to fit a square of this side times a random factor from --large_scale_jitter_scales, then crop a "
            "random window of at most this side. Replaces the processor's resize in training. Off by default."
        },
    )
    large_scale_jitter_scales: list[float] = field(
        default_factory=lambda: [0.1, 2.0], metadata={"help": "Min and max factor of the large-scale jitter."}
    )


@dataclass
class MaskDinoTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the original Mask DINO solver as defaults, and the settings list targets need."""

    learning_rate: float = field(default=DEFAULT_LEARNING_RATE, metadata={"help": "AdamW learning rate."})
    weight_decay: float = field(default=DEFAULT_WEIGHT_DECAY, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=DEFAULT_MAX_GRAD_NORM, metadata={"help": "Clip the global gradient norm."})
    backbone_learning_rate_multiplier: float = field(
        default=DEFAULT_BACKBONE_LEARNING_RATE_MULTIPLIER, metadata={"help": "Backbone learning rate factor."}
    )
    # the targets are lists of tensors, which the Trainer must not drop as unused columns
    remove_unused_columns: bool = field(default=False)


class MaskDinoTrainer(Trainer):
    """
    `Trainer` with Mask DINO's optimizer parameter groups, and PQ / AP / mIoU computed during evaluation.

    Each evaluation step post-processes its own batch on its own process and gathers only what each image adds to
    the metrics ([`SegmentationEvaluator.image_states`]): a few small arrays and run-length-encoded masks per image,
    instead of every query's mask logits at a size that differs from batch to batch and process to process.
    `gather_for_metrics` drops the images that the distributed sampler repeated to even out the last batch.

    The evaluation loss is the loss of the final prediction and the encoder proposals ([`evaluation_loss`]): one
    forward without targets gives both it and the predictions, without predicting every decoder layer's masks.
    `predict()` therefore returns metrics and the loss but no predictions; for those, run the model or a pipeline.
    """

    def __init__(self, *args, evaluator: SegmentationEvaluator | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.evaluator = evaluator

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            self.optimizer = build_optimizer(
                self.model if model is None else model,
                learning_rate=self.args.learning_rate,
                weight_decay=self.args.weight_decay,
                backbone_learning_rate_multiplier=self.args.backbone_learning_rate_multiplier,
            )
        return self.optimizer

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):  # fmt: skip
        if self.evaluator is not None:
            self.evaluator.reset()
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        if self.evaluator is not None and self.evaluator.num_images:
            metrics = {**self.evaluator.compute(), "num_images": self.evaluator.num_images}
            output.metrics.update({f"{metric_key_prefix}_{name}": value for name, value in metrics.items()})
        return output

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        mask_labels, class_labels = inputs.get("mask_labels"), inputs.get("class_labels")
        with torch.no_grad():
            outputs = model(pixel_values=inputs["pixel_values"], pixel_mask=inputs.get("pixel_mask"))
        if mask_labels is None:
            return None, None, None
        boxes = {key: inputs.get(key) for key in ("target_boxes", "target_has_masks")}
        loss = evaluation_loss(self.accelerator.unwrap_model(model), outputs, mask_labels, class_labels, **boxes)
        if self.evaluator is not None:
            ground_truth = ground_truth_at_input_size(mask_labels, class_labels, outputs.image_sizes, **boxes)
            image_states = self.evaluator.image_states(outputs, ground_truth)
            self.evaluator.accumulate(self.accelerator.gather_for_metrics(image_states, use_gather_object=True))
        return loss, None, None


class AugmentationEpochCallback(TrainerCallback):
    """Tells the training transform which epoch starts, for its per-sample augmentation draws."""

    def __init__(self, transform: SegmentationTransform):
        self.transform = transform

    def on_epoch_begin(self, args, state, control, **kwargs):
        # a run resumed mid-epoch starts at a fractional epoch
        self.transform.epoch = math.floor(state.epoch + 1e-9)


class ThroughputCallback(TrainerCallback):
    """Logs one line with the training throughput in images per second (all processes together)."""

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_time, self.start_step = time.perf_counter(), state.global_step

    def on_train_end(self, args, state, control, **kwargs):
        seconds = time.perf_counter() - self.start_time
        images = (state.global_step - self.start_step) * args.train_batch_size * args.gradient_accumulation_steps
        images *= args.world_size
        if state.is_world_process_zero and seconds > 0:
            logger.info(
                "Throughput: %.2f images/s (%d images in %.1f s on %d process(es))",
                images / seconds, images, seconds, args.world_size,
            )  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = HfArgumentParser((ModelArguments, DataArguments, MaskDinoTrainingArguments))
    if argv is None and len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        model_args, data_args, training_args = parser.parse_json_file(json_file=sys.argv[1])
    else:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    if data_args.task is not None and data_args.task not in TASKS:
        raise ValueError(f"`--task` must be one of {TASKS}, got {data_args.task!r}.")
    data_args.kind()  # one data source, complete

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    transformers.set_seed(training_args.seed)

    dataset, labels = load_training_data(
        data_args,
        train_split=data_args.train_split,
        eval_split=data_args.eval_split,
        validation_fraction=data_args.validation_fraction,
        seed=training_args.seed,
    )
    task = data_args.task or labels.task or "panoptic"
    train_dataset, eval_dataset = dataset["train"], dataset["validation"]
    if data_args.max_train_samples is not None:
        train_dataset = train_dataset.select(range(min(data_args.max_train_samples, len(train_dataset))))
    if data_args.max_eval_samples is not None:
        eval_dataset = eval_dataset.select(range(min(data_args.max_eval_samples, len(eval_dataset))))
    # per-sample augmentation draws, so that a resumed run sees the images the interrupted one would have
    train_dataset = train_dataset.add_column("sample_index", list(range(len(train_dataset))))

    id2label, stuff_label_ids = labels.id2label, labels.stuff_label_ids
    model, image_processor, backbone_info = build_model_and_image_processor(
        id2label,
        stuff_label_ids,
        model_name_or_path=model_args.model_name_or_path,
        config_name=model_args.config_name,
        backbone_checkpoint=model_args.backbone_checkpoint,
        image_processor_name=model_args.image_processor_name,
        shortest_edge=model_args.shortest_edge,
        longest_edge=model_args.longest_edge,
        dataset_category_ids=labels.dataset_category_ids,
    )
    if backbone_info is not None:
        logger.info(
            "Backbone weights: %d tensors loaded, %d left as initialised, %d checkpoint tensors unused",
            len(backbone_info.loaded_keys),
            len(backbone_info.missing_keys),
            len(backbone_info.unused_keys),
        )
    logger.info(
        "Model: %.2fM parameters; task %s; labels %s; stuff %s",
        model.num_parameters() / 1e6,
        task,
        id2label,
        stuff_label_ids,
    )

    columns = {"task": task, **data_args.row_options()}
    train_transform = SegmentationTransform(
        image_processor,
        flip_probability=data_args.flip_probability,
        large_scale_jitter_size=data_args.large_scale_jitter_size,
        large_scale_jitter_scales=tuple(data_args.large_scale_jitter_scales),
        seed=training_args.seed,
        **columns,
    )
    train_dataset = train_dataset.with_transform(train_transform)
    eval_dataset = eval_dataset.with_transform(SegmentationTransform(image_processor, **columns))

    evaluator = SegmentationEvaluator(
        image_processor,
        num_labels=len(id2label),
        stuff_label_ids=stuff_label_ids,
        tasks=METRIC_TASKS_FOR_DATASET_TASK[task],
    )
    trainer = MaskDinoTrainer(
        model=model,
        args=training_args,
        data_collator=collate_segmentation_batch,
        train_dataset=train_dataset if training_args.do_train else None,
        eval_dataset=eval_dataset,
        processing_class=image_processor,
        evaluator=evaluator,
        callbacks=[AugmentationEpochCallback(train_transform), ThroughputCallback()],
    )

    results = {}
    if training_args.do_train:
        checkpoint = training_args.resume_from_checkpoint
        if checkpoint is None and Path(training_args.output_dir).is_dir():
            checkpoint = get_last_checkpoint(training_args.output_dir)
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model()
        trainer.log_metrics("train", train_result.metrics)
        trainer.save_metrics("train", train_result.metrics)
        trainer.save_state()
        results.update(train_result.metrics)
    if training_args.do_eval:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        results.update(metrics)
    if training_args.do_train and trainer.is_world_process_zero():
        write_fine_tuned_model_card(
            training_args.output_dir, model, task=task,
            dataset=data_args.dataset_name or data_args.coco_annotations or data_args.semantic_images_dir,
            base_model=model_args.model_name_or_path, training={**vars(model_args), **training_args.to_dict()},
            metrics={k: v for k, v in results.items() if k.startswith("eval_")},
        )  # fmt: skip
    return results


if __name__ == "__main__":
    main()
