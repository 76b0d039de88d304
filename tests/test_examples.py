# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""The examples on a tiny synthetic dataset: the Trainer and accelerate scripts train, evaluate periodically and
save a checkpoint that reloads to the same metrics; two CPU processes keep identical replicas and evaluate like one;
`evaluate.py` scores a checkpoint, and scores perfect predictions 1; both fine-tune from COCO instance / panoptic /
box files and semantic label folders as written by the synthetic dataset, evaluate.py scores them as the datasets
layout and writes COCO results that pycocotools scores the same; runs resume with the same losses."""

import json
import logging
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from training_fixtures import (
    REPO,
    import_example,
    one_intra_op_thread,
    perfect_outputs,
    save_synthetic_dataset,
    write_tiny_config,
)

from transformers_maskdino import MaskDinoForUniversalSegmentation, MaskDinoImageProcessor
from transformers_maskdino.training import ground_truth_segments, load_segmentation_dataset
from transformers_maskdino.training.formats import dataset_category_ids_of
from transformers_maskdino.training.synthetic_data import (
    COCO_CATEGORY_IDS,
    LABELS,
    STUFF_LABEL_IDS,
    write_dataset_files,
)

METRIC_KEYS = ("PQ", "PQ_th", "PQ_st", "SQ", "RQ", "mask_AP", "mask_AP50", "box_AP", "box_AP50", "mIoU")
IMAGE_SIZE = 64


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    with one_intra_op_thread():
        yield


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return save_synthetic_dataset(
        tmp_path_factory.mktemp("data") / "shapes", num_train=8, num_validation=4, image_size=IMAGE_SIZE
    )


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    return write_tiny_config(tmp_path_factory.mktemp("config") / "tiny.json")


def assert_sane_metrics(metrics: dict, prefix: str = ""):
    for key in METRIC_KEYS:
        value = metrics[prefix + key]
        assert math.isnan(value) or 0.0 <= value <= 1.0, (key, value)
    # the stuff classes are in every image, so their PQ and mIoU are measured
    assert not math.isnan(metrics[prefix + "PQ_st"]) and not math.isnan(metrics[prefix + "mIoU"])


def common_arguments(dataset_dir, config_file, output_dir):
    return [
        "--dataset_name", str(dataset_dir),
        "--config_name", str(config_file),
        "--output_dir", str(output_dir),
        "--shortest_edge", str(IMAGE_SIZE),
        "--longest_edge", str(2 * IMAGE_SIZE),
        "--per_device_train_batch_size", "2",
        "--per_device_eval_batch_size", "2",
        "--learning_rate", "1e-3",
        "--seed", "0",
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------------------ Trainer


def test_trainer_example_trains_evaluates_and_saves_a_reloadable_checkpoint(tmp_path, dataset_dir, config_file):
    example = import_example("finetune_trainer")
    output_dir = tmp_path / "trainer"
    arguments = common_arguments(dataset_dir, config_file, output_dir) + [
        "--max_steps", "4",
        "--do_train", "--do_eval",
        "--eval_strategy", "steps", "--eval_steps", "2",
        "--logging_steps", "1",
        "--save_strategy", "no",
        "--use_cpu",
    ]  # fmt: skip
    results = example.main(arguments)

    assert math.isfinite(results["train_loss"]) and results["train_loss"] > 0
    assert math.isfinite(results["eval_loss"]) and results["eval_loss"] > 0
    assert_sane_metrics(results, "eval_")
    # periodic evaluation ran at steps 2 and 4, with the metrics of every task
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    assert [entry["step"] for entry in history if "eval_PQ" in entry][:2] == [2, 4]
    assert [entry["step"] for entry in history if "loss" in entry] == [1, 2, 3, 4]

    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert (output_dir / name).is_file(), name
    model = MaskDinoForUniversalSegmentation.from_pretrained(output_dir)
    processor = MaskDinoImageProcessor.from_pretrained(output_dir)
    assert model.config.id2label == dict(enumerate(LABELS))
    assert model.config.stuff_label_ids == STUFF_LABEL_IDS == processor.stuff_label_ids
    assert processor.size["shortest_edge"] == IMAGE_SIZE

    # evaluating the saved checkpoint gives the final metrics again: saving and reloading lose nothing
    reloaded = example.main(
        [
            "--dataset_name",
            str(dataset_dir),
            "--model_name_or_path",
            str(output_dir),
            "--output_dir",
            str(tmp_path / "reloaded"),
            "--per_device_eval_batch_size",
            "2",
            "--do_eval",
            "--use_cpu",
        ]
    )
    for key in METRIC_KEYS:
        np.testing.assert_allclose(reloaded[f"eval_{key}"], results[f"eval_{key}"], err_msg=key)


@pytest.mark.parametrize(
    "task, present, absent", [("instance", "eval_mask_AP", "eval_PQ"), ("semantic", "eval_mIoU", "eval_mask_AP")]
)
def test_trainer_example_instance_and_semantic_tasks(tmp_path, dataset_dir, config_file, task, present, absent):
    # with the original's large-scale jitter (window 64 on 64-pixel images; the instance task with scales 0.8-1.6)
    jitter = ["--large_scale_jitter_size", "64"]
    if task == "instance":
        jitter += ["--large_scale_jitter_scales", "0.8", "1.6"]
    results = import_example("finetune_trainer").main(
        common_arguments(dataset_dir, config_file, tmp_path / task)
        + ["--task", task, "--max_steps", "1", "--do_train", "--do_eval", "--save_strategy", "no", "--use_cpu"]
        + jitter
    )
    assert math.isfinite(results["eval_loss"]) and 0.0 <= results[present] <= 1.0
    assert absent not in results


def test_trainer_example_defaults_are_the_original_solver():
    example = import_example("finetune_trainer")
    parser = example.HfArgumentParser(
        (example.ModelArguments, example.DataArguments, example.MaskDinoTrainingArguments)
    )
    _, data_args, training_args = parser.parse_args_into_dataclasses(["--dataset_name", "d", "--output_dir", "o"])
    assert training_args.learning_rate == 1e-4 and training_args.weight_decay == 0.05
    assert training_args.max_grad_norm == 0.01 and training_args.backbone_learning_rate_multiplier == 0.1
    assert training_args.remove_unused_columns is False
    # the task defaults to what the data has (panoptic for this layout)
    assert data_args.task is None and data_args.flip_probability == 0.5


def run_two_cpu_processes(script, arguments, python_path):
    command = [
        sys.executable, "-m", "torch.distributed.run",
        # --standalone: the launcher binds a free port itself, so no other job can take it in between
        "--standalone", "--nproc_per_node", "2", str(script), *arguments,
    ]  # fmt: skip
    # gloo over the loopback interface: the processes share this machine
    python_path = os.pathsep.join(filter(None, [str(python_path), os.environ.get("PYTHONPATH")]))
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "PYTHONPATH": python_path}
    try:
        completed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=240, check=False)
    except subprocess.TimeoutExpired as timeout:
        pytest.fail(f"the two processes did not finish in 240 s; last output:\n{(timeout.stderr or '')[-4000:]}")
    assert completed.returncode == 0, completed.stderr[-4000:]


def test_trainer_example_evaluates_across_two_processes_like_one(tmp_path, config_file):
    # 5 validation images, 2 per process and batch: the sampler repeats 3 images to fill the last step's batches,
    # and those must not count (a lone 64-pixel image is too small for the pixel decoder's GroupNorm, hence 96)
    dataset_dir = save_synthetic_dataset(tmp_path / "shapes", num_train=8, num_validation=5, image_size=96)
    output_dir = tmp_path / "distributed"
    arguments = common_arguments(dataset_dir, config_file, output_dir) + [
        "--shortest_edge", "96", "--longest_edge", "192",
        "--max_steps", "2", "--do_train", "--do_eval", "--save_strategy", "no", "--use_cpu", "--ddp_backend", "gloo",
    ]  # fmt: skip
    run_two_cpu_processes(REPO / "examples" / "finetune_trainer.py", arguments, REPO / "src")
    distributed = json.loads((output_dir / "eval_results.json").read_text())
    assert distributed["eval_num_images"] == 5
    assert_sane_metrics(distributed, "eval_")

    # the saved model, evaluated by one process, scores the same
    single = import_example("finetune_trainer").main(
        [
            "--dataset_name",
            str(dataset_dir),
            "--model_name_or_path",
            str(output_dir),
            "--output_dir",
            str(tmp_path / "single"),
            "--per_device_eval_batch_size",
            "2",
            "--do_eval",
            "--use_cpu",
        ]  # fmt: skip
    )
    assert single["eval_num_images"] == 5
    for key in METRIC_KEYS:
        np.testing.assert_allclose(distributed[f"eval_{key}"], single[f"eval_{key}"], rtol=1e-6, err_msg=key)


# ------------------------------------------------------------------------------------------------------ accelerate


def test_accelerate_example_matches_evaluate_py_on_its_checkpoint(tmp_path, dataset_dir, config_file):
    output_dir = tmp_path / "accelerate"
    arguments = common_arguments(dataset_dir, config_file, output_dir) + [
        "--max_steps", "3", "--eval_steps", "2", "--logging_steps", "1", "--cpu",
        "--large_scale_jitter_size", "64", "--large_scale_jitter_scales", "0.5", "1.5",
    ]  # fmt: skip
    result = import_example("finetune_accelerate").train(arguments)
    assert [evaluation["step"] for evaluation in result.evaluations] == [2, 3]
    assert len(result.losses) == 3 and all(math.isfinite(loss) for loss in result.losses)
    final = result.evaluations[-1]
    assert_sane_metrics(final)
    assert final["num_images"] == 4 and math.isfinite(final["loss"])
    assert json.loads((output_dir / "eval_results.json").read_text())[-1]["PQ"] == pytest.approx(
        final["PQ"], nan_ok=True
    )

    # evaluate.py on the saved checkpoint, at the images' own size (= the training resolution here), agrees
    metrics_file = tmp_path / "metrics.json"
    metrics = import_example("evaluate").main(
        # the same batches as the example's evaluation, so that the outputs are bit for bit the same
        [
            "--model",
            str(output_dir),
            "--dataset_name",
            str(dataset_dir),
            "--batch_size",
            "2",
            "--output",
            str(metrics_file),
        ]
    )
    assert json.loads(metrics_file.read_text())["num_images"] == 4
    for key in METRIC_KEYS:
        np.testing.assert_allclose(metrics[key], final[key], rtol=1e-6, err_msg=key)


def test_two_cpu_processes_keep_identical_replicas(tmp_path, config_file):
    report_path = tmp_path / "report.json"
    # an odd number of validation images: the processes' evaluation shards differ in size (a 64-pixel image alone in
    # a batch is too small for the pixel decoder's GroupNorm at its 1x1 extra level, hence 96 pixels)
    dataset_dir = save_synthetic_dataset(tmp_path / "shapes", num_train=8, num_validation=5, image_size=96)
    arguments = [
        str(report_path),
        *common_arguments(dataset_dir, config_file, tmp_path / "distributed"),
        "--shortest_edge", "96", "--longest_edge", "192",
        "--max_steps", "3", "--logging_steps", "1", "--cpu",
    ]  # fmt: skip
    run_two_cpu_processes(REPO / "tests" / "replica_check.py", arguments, REPO / "tests")
    report = json.loads(report_path.read_text())
    assert report["num_processes"] == 2 and report["backend"] == "gloo"
    assert report["distributed_type"].endswith("MULTI_CPU")
    # each process trained on its own batches ...
    first, second = report["losses_per_process"]
    assert len(first) == 3 and first != second
    # ... yet the averaged gradients kept the replicas equal, and they did move
    assert report["max_parameter_difference"] == 0.0
    assert report["max_buffer_difference"] == 0.0
    assert report["max_change_from_initial"] > 0
    assert_sane_metrics(report["final_metrics"])
    assert report["final_metrics"]["num_images"] == 5  # the two processes' shards, each image once
    assert math.isfinite(report["final_metrics"]["loss"])
    assert (tmp_path / "distributed" / "model.safetensors").is_file()


# ------------------------------------------------------------------------------------------------------ evaluate.py


class PerfectModel:
    """Stands in for a model in `evaluate_checkpoint`: returns outputs that reproduce the ground truth of the rows it
    is given, in order."""

    def __init__(self, dataset, num_labels):
        self.rows = iter(range(len(dataset)))
        self.dataset = dataset
        self.device = torch.device("cpu")
        self.config = type("Config", (), {"num_labels": num_labels, "stuff_label_ids": STUFF_LABEL_IDS})()

    def __call__(self, pixel_values, pixel_mask):
        outputs = []
        for _ in range(pixel_values.shape[0]):
            row = self.dataset[next(self.rows)]
            masks, labels = ground_truth_segments("panoptic", np.asarray(row["panoptic_map"]), row["segments_info"])
            outputs.append(perfect_outputs(masks, labels, num_queries=10, num_labels=len(LABELS)))
        return {key: torch.cat([output[key] for output in outputs]) for key in outputs[0]}


def test_evaluate_py_scores_perfect_predictions_one(dataset_dir):
    example = import_example("evaluate")
    dataset = load_segmentation_dataset(str(dataset_dir))["validation"]
    processor = MaskDinoImageProcessor(
        size={"shortest_edge": IMAGE_SIZE, "longest_edge": 2 * IMAGE_SIZE}, stuff_label_ids=STUFF_LABEL_IDS
    )
    metrics = example.evaluate_checkpoint(PerfectModel(dataset, len(LABELS)), processor, dataset, batch_size=3)
    assert metrics["num_images"] == 4
    for key in (
        "PQ",
        "PQ_th",
        "PQ_st",
        "SQ",
        "RQ",
        "mask_AP",
        "mask_AP50",
        "mask_AP75",
        "box_AP",
        "mIoU",
        "overall_accuracy",
    ):
        assert metrics[key] == pytest.approx(1.0), key


def test_command_line_of_evaluate_py_requires_a_model(capsys):
    with pytest.raises(SystemExit):
        import_example("evaluate").build_parser().parse_args(["--dataset_name", "d"])
    assert "--model" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------ file formats

# Which example fine-tunes from each file format in these tests (both examples take every format), the task the
# data defaults to, and the training steps (the tiny model's semantic loss first rises for a few steps, then falls)
FILE_FORMATS = {
    "coco-instance": ("finetune_trainer", "instance", 6),
    "coco-panoptic": ("finetune_trainer", "panoptic", 6),
    "semantic-png": ("finetune_accelerate", "semantic", 20),
    "coco-boxes": ("finetune_accelerate", "detection", 6),
}


@pytest.fixture(scope="module")
def written_files(tmp_path_factory):
    """Each file format of the same synthetic images as `dataset_dir` (8 training, 4 validation)."""
    root = tmp_path_factory.mktemp("files")
    return {
        file_format: write_dataset_files(root / file_format, file_format, 8, 4, image_size=IMAGE_SIZE, max_objects=2)
        for file_format in FILE_FORMATS
    }


def file_arguments(paths, prefix=""):
    """`--coco_annotations ... --images_dir ...` (with `prefix="eval_"`, the validation split's arguments)."""
    arguments = []
    for name, path in paths.items():
        if not (prefix and name == "id2label_file"):
            arguments += [f"--{prefix}{name}", str(path)]
    return arguments


def assert_same_metrics(metrics, expected):
    assert metrics.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_allclose(metrics[key], value, rtol=1e-6, err_msg=key)


@pytest.mark.parametrize("file_format", list(FILE_FORMATS))
def test_examples_fine_tune_and_evaluate_from_written_files(
    tmp_path, dataset_dir, config_file, written_files, file_format, caplog
):
    caplog.set_level(logging.INFO)
    script, task, steps = FILE_FORMATS[file_format]
    train_paths, validation_paths = written_files[file_format]["train"], written_files[file_format]["validation"]
    output_dir = tmp_path / "model"
    # the same two images every step, so that the loss must fall
    arguments = file_arguments(train_paths) + file_arguments(validation_paths, "eval_") + [
        "--config_name", str(config_file), "--output_dir", str(output_dir),
        "--shortest_edge", str(IMAGE_SIZE), "--longest_edge", str(2 * IMAGE_SIZE),
        "--max_train_samples", "2", "--flip_probability", "0", "--per_device_train_batch_size", "2",
        "--per_device_eval_batch_size", "2", "--learning_rate", "3e-3", "--max_steps", str(steps),
        "--logging_steps", "1",
    ]  # fmt: skip
    if script == "finetune_trainer":
        results = import_example(script).main(
            arguments + ["--do_train", "--do_eval", "--save_strategy", "no", "--use_cpu"]
        )
        # the Trainer's evaluation reads the same targets (box-only objects' boxes included)
        assert math.isfinite(results["eval_loss"]) and results["eval_num_images"] == 4
        history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
        losses = [entry["loss"] for entry in history if "loss" in entry]
    else:
        losses = import_example(script).train(arguments + ["--cpu"]).losses
    assert len(losses) == steps and np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    assert any("Throughput:" in record.getMessage() and "images/s" in record.getMessage() for record in caplog.records)

    # the task came from the files, the label set and the category mapping are in the saved config
    model = MaskDinoForUniversalSegmentation.from_pretrained(output_dir)
    processor = MaskDinoImageProcessor.from_pretrained(output_dir)
    thing_names = [name for name in LABELS if name not in ("sky", "grass")]
    expected_names = thing_names if file_format in ("coco-instance", "coco-boxes") else list(LABELS)
    assert list(model.config.id2label.values()) == expected_names
    if file_format.startswith("coco"):
        assert dataset_category_ids_of(model.config) == {
            index: COCO_CATEGORY_IDS[name] for index, name in enumerate(expected_names)
        }

    # evaluate.py on the validation files gives the metrics of the same images read through the datasets layout
    results_json = tmp_path / "results.json"
    evaluate = import_example("evaluate")
    extra = ["--results_json", str(results_json)] if file_format in ("coco-instance", "coco-boxes") else []
    from_files = evaluate.main(
        ["--model", str(output_dir), "--batch_size", "2", *file_arguments(validation_paths), *extra]
    )
    layout = load_segmentation_dataset(str(dataset_dir))["validation"]
    from_layout = evaluate.evaluate_checkpoint(model, processor, layout, task=task, batch_size=2)
    assert from_files["num_images"] == 4
    assert_same_metrics(from_files, from_layout)
    if extra:
        assert_coco_eval_of_results_matches(validation_paths["coco_annotations"], results_json, from_files)


def assert_coco_eval_of_results_matches(annotation_file, results_json, printed):
    """pycocotools reads the results file with the dataset's own ids, and COCOeval gives the printed AP."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(annotation_file))
        detections = ground_truth.loadRes(str(results_json))
        assert set(detections.getImgIds()) <= set(ground_truth.getImgIds())
        for iou_type, prefix in (("segm", "mask"), ("bbox", "box")):
            if f"{prefix}_AP" not in printed or math.isnan(printed[f"{prefix}_AP"]):
                continue
            evaluator = COCOeval(ground_truth, detections, iouType=iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            for position, name in enumerate(("AP", "AP50", "AP75")):
                expected = printed[f"{prefix}_{name}"]
                value = evaluator.stats[position]
                assert (math.isnan(expected) and value < 0) or value == pytest.approx(expected, abs=1e-9), name


# ------------------------------------------------------------------------------------------------------ long runs


def test_trainer_example_resumes_with_the_same_loss_curve(tmp_path, dataset_dir, config_file):
    example = import_example("finetune_trainer")

    def run(output_dir):
        arguments = common_arguments(dataset_dir, config_file, output_dir) + [
            "--max_steps", "4", "--do_train", "--logging_steps", "1", "--use_cpu",
            "--save_strategy", "steps", "--save_steps", "2", "--large_scale_jitter_size", "64",
        ]  # fmt: skip
        example.main(arguments)
        history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
        return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}

    full = run(tmp_path / "full")
    # a run stopped after its checkpoint at step 2: only that checkpoint is left, and running again resumes from it
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-2", interrupted / "checkpoint-2")
    resumed = run(interrupted)  # its history holds the checkpoint's steps 1-2, then its own 3-4
    assert sorted(resumed) == [1, 2, 3, 4]
    # flips and jitter included: each sample's augmentation comes from (seed, epoch, sample index)
    np.testing.assert_allclose([resumed[3], resumed[4]], [full[3], full[4]], rtol=1e-5)


def test_accelerate_example_resumes_with_the_same_loss_curve(tmp_path, dataset_dir, config_file):
    example = import_example("finetune_accelerate")
    arguments = common_arguments(dataset_dir, config_file, tmp_path / "run") + [
        "--max_steps", "4", "--logging_steps", "1", "--checkpointing_steps", "2", "--cpu",
        "--per_device_eval_batch_size", "4", "--max_eval_samples", "2",
    ]  # fmt: skip
    full = example.train(arguments).losses
    assert (tmp_path / "run" / "step_2" / "progress.json").is_file()
    resumed = example.train(arguments + ["--resume_from_checkpoint", str(tmp_path / "run" / "step_2")]).losses
    np.testing.assert_allclose(resumed, full[2:], rtol=1e-5)


def test_max_train_samples_limits_the_training_set(tmp_path, dataset_dir, config_file, caplog):
    caplog.set_level(logging.INFO)
    results = import_example("finetune_trainer").main(
        common_arguments(dataset_dir, config_file, tmp_path / "limited")
        + ["--max_train_samples", "2", "--max_steps", "2", "--do_train", "--save_strategy", "no", "--use_cpu"]
    )
    # two samples, batches of two: every step is an epoch
    assert results["epoch"] == pytest.approx(2.0)


def test_a_datasets_dataset_with_its_own_column_names(tmp_path, config_file):
    """A semantic dataset laid out as Hub ones often are (`img` and `annotation` columns, 0 = unlabelled, class names
    in an id2label.json): the column arguments, `--do_reduce_labels` and `--id2label_file` read it, and evaluate.py
    scores it as the package's own layout."""
    from datasets import Dataset
    from datasets import Image as ImageFeature

    from transformers_maskdino.training.synthetic_data import generate_dataset

    layout = generate_dataset(8, seed=0, image_size=IMAGE_SIZE, max_objects=2)
    renamed = Dataset.from_dict(
        {
            "img": [row["image"] for row in layout],
            # ADE20K style: every class id + 1, 0 for unlabelled pixels (none here)
            "annotation": [Image.fromarray(np.asarray(row["semantic_map"]) + 1) for row in layout],
        }
    ).cast_column("img", ImageFeature()).cast_column("annotation", ImageFeature())
    renamed.save_to_disk(str(tmp_path / "hub_style"))
    id2label_file = tmp_path / "id2label.json"
    id2label_file.write_text(json.dumps(dict(enumerate(LABELS))))
    data_arguments = [
        "--dataset_name", str(tmp_path / "hub_style"), "--image_column", "img", "--semantic_map_column", "annotation",
        "--do_reduce_labels", "--id2label_file", str(id2label_file),
    ]  # fmt: skip
    output_dir = tmp_path / "model"
    result = import_example("finetune_accelerate").train(
        data_arguments + [
            "--config_name", str(config_file), "--output_dir", str(output_dir), "--validation_fraction", "0.25",
            "--shortest_edge", str(IMAGE_SIZE), "--longest_edge", str(2 * IMAGE_SIZE),
            "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2", "--max_steps", "1", "--cpu",
        ]  # fmt: skip
    )
    assert "mIoU" in result.evaluations[-1] and "PQ" not in result.evaluations[-1]  # the task came from the columns
    evaluate = import_example("evaluate")
    from_columns = evaluate.main(
        ["--model", str(output_dir), "--split", "train", "--batch_size", "2", *data_arguments]
    )
    model = MaskDinoForUniversalSegmentation.from_pretrained(output_dir)
    processor = MaskDinoImageProcessor.from_pretrained(output_dir)
    from_layout = evaluate.evaluate_checkpoint(model, processor, layout, task="semantic", batch_size=2)
    assert_same_metrics(from_columns, from_layout)
