# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
The model card written for a released checkpoint: valid Hub metadata (`huggingface_hub.ModelCard` parses it, with the
original's results as model-index entries), what the model is, the metrics with their evaluation tool, the known
quirks, the citation and the conversion command; and its usage snippets run as written (against small converted
reference checkpoints of the same task, with the repository id and the image URL pointed at local files).
"""

import re

import pytest
from conftest import REFERENCE_DIR
from conversion_helpers import copy_with_reference_image_size, one_torch_thread  # noqa: F401  (fixture)
from huggingface_hub import ModelCard
from model_card import SAMPLE_IMAGE, render_model_card, task_snippets
from released import RELEASED

import transformers_maskdino  # noqa: F401  (registers the Auto classes)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# a converted reference checkpoint with the same kind of head as each task's releases
TASK_FIXTURE = {"panoptic": "r50_panoptic", "instance": "r50_instance", "detection": "r50_instance", "semantic": "r50_semantic"}


def render(name, repo_id="org/" + "model"):
    entry = RELEASED[name]
    return render_model_card(
        entry,
        entry.load_dataset(),
        repo_id=repo_id,
        num_parameters=52_085_193,
        source_sha256="ab" * 32,
        object_mask_threshold=0.25,
        overlap_threshold=0.8,
    )


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_card_is_valid_hub_metadata(name, tmp_path):
    entry = RELEASED[name]
    (tmp_path / "README.md").write_text(render(name, repo_id=f"org/{name}"))
    card = ModelCard.load(tmp_path / "README.md")
    data = card.data
    assert data.license == "apache-2.0" and data.library_name == "transformers"
    assert data.pipeline_tag == "image-segmentation"
    assert data.datasets == entry.load_dataset()["hub_datasets"]
    assert {"mask-dino", "custom_code"} <= set(data.tags)
    assert data.model_name == name
    results = {(r.metric_name, r.metric_value) for r in data.eval_results}
    assert results == {(m.name, m.value) for m in entry.metrics}
    assert all(r.verified is False and "MaskDINO" in r.source_url for r in data.eval_results)

    text = card.text
    assert "Mask DINO" in text and entry.file_name in text and entry.url in text
    for metric in entry.metrics:
        assert f"| {metric.name} | {metric.value:.1f} | {metric.evaluator} |" in text
    for note in entry.notes:
        assert note in text
    assert "@inproceedings{li2023maskdino" in text
    assert f"python conversion/convert_maskdino_to_hf.py --model-name {name} --output-dir {name}" in text
    for task in entry.tasks:
        pipeline_code, model_code = task_snippets(task, f"org/{name}", 0.25, 0.8)
        assert pipeline_code in text and model_code in text
    assert text.count("trust_remote_code=True") == 3 * len(entry.tasks) + 1  # once per snippet load, once in prose


def test_card_names_the_evaluation_tools_and_the_swapped_columns():
    card = render("maskdino-r50-coco-panoptic")
    assert "COCOPanopticEvaluator" in card and "panopticapi" in card and "SemSegEvaluator" in card
    assert "| Object detection | box AP | 48.8 |" in card and "| Instance segmentation | mask AP | 44.3 |" in card
    assert "columns are swapped" in card and "PR #10689" in card
    assert "CityscapesSemSegEvaluator" in render("maskdino-r50-cityscapes-semantic")
    assert "README links `swin/maskdino_R50_bs16_50ep_4s_dowsample1_2048.yaml`" in render(
        "maskdino-swinl-coco-instance-no-mask-enhance"
    )


def test_card_says_whether_this_checkpoint_was_verified():
    assert "outputs were not compared with the original's at conversion (`--verify`)" in render("maskdino-r50-coco-panoptic")
    entry = RELEASED["maskdino-r50-coco-panoptic"]
    card = render_model_card(
        entry,
        entry.load_dataset(),
        repo_id="org/model",
        num_parameters=1,
        source_sha256="0" * 64,
        object_mask_threshold=0.25,
        overlap_threshold=0.8,
        config_name="my_config.yaml",
        verification="9 outputs of the original on one image, max difference 3.1e-06",
    )
    assert "verified against the original's outputs: 9 outputs of the original on one image" in card
    assert "--model-name maskdino-r50-coco-panoptic --config-file my_config.yaml --output-dir" in card


def snippet_cases():
    cases = []
    for name in ("maskdino-r50-coco-panoptic", "maskdino-r50-coco-instance", "maskdino-r50-ade20k-semantic"):
        for task in RELEASED[name].tasks:
            for kind in ("pipeline", "model"):
                cases.append((task, kind))
    return sorted(set(cases))


@pytest.fixture(scope="module")
def small_checkpoint(converted_reference, tmp_path_factory):
    """`get(variant)` -> a converted reference checkpoint that keeps the reference images at their size."""
    copies = {}

    def get(variant):
        if variant not in copies:
            target = tmp_path_factory.mktemp(variant) / "checkpoint"
            copies[variant] = copy_with_reference_image_size(converted_reference(variant), target)
        return copies[variant]

    return get


@pytest.mark.parametrize("task, kind", snippet_cases())
def test_card_snippets_run(task, kind, small_checkpoint, capsys):
    directory = small_checkpoint(TASK_FIXTURE[task])
    pipeline_code, model_code = task_snippets(task, str(directory), 0.25, 0.8)
    code = pipeline_code if kind == "pipeline" else model_code
    assert code.count(SAMPLE_IMAGE) == 1
    code = code.replace(SAMPLE_IMAGE, str(REFERENCE_DIR / TASK_FIXTURE[task] / "image.png"))
    # random reference weights score low; the card's thresholds are for trained models
    code = re.sub(r"(?<![_a-z])threshold=0\.\d+", "threshold=0.0", code)
    exec(compile(code, f"<{task} {kind} snippet>", "exec"), {})  # noqa: S102  (the card's own code)
    assert capsys.readouterr().out.strip()


# ------------------------------------------------------------------------------------ every conversion gets a card


def card_sections(text):
    return re.findall(r"^## (.+)$", text, flags=re.MULTILINE)


def test_released_card_has_labels_and_limitations():
    card = render("maskdino-r50-coco-panoptic")
    assert {"Results reported by the original", "How to use", "Labels", "Conversion", "Limitations", "Citation"} <= set(card_sections(card))
    assert "| 0 | person | thing |" in card and "| 132 | rug-merged | stuff |" in card


@pytest.mark.parametrize("variant, tasks", [("r50_panoptic", ("panoptic", "instance", "semantic", "detection")), ("r50_instance", ("instance", "detection")), ("r50_semantic", ("semantic",))])
def test_conversion_from_a_config_file_writes_a_card(variant, tasks, tmp_path, capsys):
    from convert_maskdino_to_hf import main, sha256_of

    source = REFERENCE_DIR / variant
    output_dir = tmp_path / "converted"
    main(["--config-file", str(source / "config.yaml"), "--checkpoint", str(source / "model.pth"), "--metadata",
          str(source / "metadata.json"), "--output-dir", str(output_dir), "--no-progress"])  # fmt: skip
    assert f"Card:        {output_dir / 'README.md'}" in capsys.readouterr().out
    card = ModelCard.load(output_dir / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "image-segmentation"
    assert {"mask-dino", "custom_code"} <= set(card.data.tags)
    text = card.text
    assert set(card_sections(text)) == {"Labels", "How to use", "Conversion", "Limitations", "Citation"}
    # provenance: the checkpoint, config and metadata files with their digests
    for path in (source / "model.pth", source / "config.yaml", source / "metadata.json"):
        assert f"`{path.name}` (sha256 `{sha256_of(path)}`" in text
    assert "not compared with the original's at conversion" in text
    # labels, and usage with this checkpoint's own thresholds
    from transformers import AutoConfig, AutoImageProcessor

    config = AutoConfig.from_pretrained(output_dir)
    for i, name in config.id2label.items():
        kind = "stuff" if i in config.stuff_label_ids else "thing"
        assert f"| {i} | {name} | {kind} |" in text
    # the thresholds are the processor's (post-processing defaults live there)
    processor = AutoImageProcessor.from_pretrained(output_dir)
    for task in tasks:
        pipeline_code, model_code = task_snippets(task, str(output_dir), processor.object_mask_threshold, processor.overlap_threshold)
        assert pipeline_code in text and model_code in text
    if "panoptic" in tasks:
        assert f"threshold={processor.object_mask_threshold}, overlap_mask_area_threshold={processor.overlap_threshold}" in text


def test_conversion_card_without_metadata_or_remote_code(tmp_path):
    from model_card import render_converted_card

    from transformers_maskdino import MaskDinoConfig, MaskDinoForUniversalSegmentation

    source = REFERENCE_DIR / "r50_instance"
    from convert_maskdino_to_hf import convert

    model, _ = convert(source / "config.yaml", source / "model.pth", tmp_path / "out", remote_code=False)
    text = (tmp_path / "out" / "README.md").read_text()
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert "custom_code" not in card.data.tags
    assert "trust_remote_code" not in text and "import transformers_maskdino" in text
    assert "No dataset metadata was given" in text and "| 0 | LABEL_0 | thing |" in text
    assert isinstance(model.config, MaskDinoConfig) and isinstance(model, MaskDinoForUniversalSegmentation)
    verified = render_converted_card(
        model, repo_id="org/model", checkpoint=source / "model.pth", config_file=source / "config.yaml", verification="9 outputs"
    )
    assert "verified against the original's outputs: 9 outputs" in verified


# ------------------------------------------------------------------------------------------ fine-tuned saves


def test_fine_tuned_card(tmp_path):
    from tiny_checkpoint import LABELS, save_tiny_checkpoint

    from transformers_maskdino import MaskDinoForUniversalSegmentation
    from transformers_maskdino.model_card import task_snippets as package_snippets
    from transformers_maskdino.model_card import write_fine_tuned_model_card

    directory = save_tiny_checkpoint(tmp_path / "tuned")
    model = MaskDinoForUniversalSegmentation.from_pretrained(directory)
    arguments = {"max_steps": 200, "num_train_epochs": 3.0, "learning_rate": 1e-4, "per_device_train_batch_size": 4,
                 "seed": 0, "fp16": False, "output_dir": "x", "hub_token": "secret"}  # fmt: skip
    path = write_fine_tuned_model_card(
        directory, model, task="panoptic", dataset="org/shapes", base_model="org/maskdino-r50-coco-panoptic",
        training=arguments, metrics={"eval_PQ": 0.4512, "eval_PQ_th": float("nan"), "eval_runtime": 3.2, "epoch": 1.0},
    )  # fmt: skip
    card = ModelCard.load(path)
    assert card.data.base_model == "org/maskdino-r50-coco-panoptic" and card.data.datasets == ["org/shapes"]
    assert "custom_code" not in card.data.tags  # a plain save_pretrained directory: no code beside the weights
    text = card.text
    assert set(card_sections(text)) == {"Labels", "How to use", "Training", "Evaluation", "Limitations", "Citation"}
    assert "fine-tuned from `org/maskdino-r50-coco-panoptic` on `org/shapes` with panoptic targets" in text
    for i, name in enumerate(LABELS):
        assert f"| {i} | {name} | {'stuff' if i in model.config.stuff_label_ids else 'thing'} |" in text
    assert "| max_steps | 200 |" in text and "| learning_rate | 0.0001 |" in text and "num_train_epochs" not in text
    assert "secret" not in text and "output_dir" not in text and "fp16" not in text
    assert "| eval_PQ | 0.4512 |" in text and "| eval_PQ_th | not measured |" in text
    assert "eval_runtime" not in text and "| epoch |" not in text
    # the AutoModel snippet of the card runs as written against the saved directory (the package is installed)
    _, model_code = package_snippets("panoptic", str(directory), 0.0, 0.8, remote_code=False)
    assert model_code in text
    exec(compile(model_code.replace(SAMPLE_IMAGE, str(REFERENCE_DIR / "r50_panoptic" / "image.png")), "<card>", "exec"), {})  # noqa: S102


def test_cards_from_scratch_and_local_paths(tmp_path):
    from tiny_checkpoint import save_tiny_checkpoint

    from transformers_maskdino import MaskDinoForUniversalSegmentation
    from transformers_maskdino.model_card import render_fine_tuned_card

    directory = save_tiny_checkpoint(tmp_path / "scratch")
    model = MaskDinoForUniversalSegmentation.from_pretrained(directory)
    text = render_fine_tuned_card(model, repo_id=str(directory), task="semantic", dataset=str(tmp_path), base_model=None, training={"config_name": "tiny.json"})
    (tmp_path / "README.md").write_text(text)
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.base_model is None and card.data.datasets is None  # local paths are no Hub ids
    assert "trained from scratch" in text and "Trained from scratch: expect far lower accuracy" in text
    assert "No evaluation was run at the end of training." in text and "| config_name | `tiny.json` |" in text
    assert "### Semantic segmentation" in text and "### Panoptic segmentation" not in text


@pytest.mark.parametrize("example", ["finetune_trainer", "finetune_accelerate"])
def test_fine_tuning_examples_save_a_card(example, tmp_path):
    from training_fixtures import import_example, one_intra_op_thread, save_synthetic_dataset, write_tiny_config

    dataset_dir = save_synthetic_dataset(tmp_path / "shapes", num_train=4, num_validation=2, image_size=64)
    config_file = write_tiny_config(tmp_path / "tiny.json")
    output_dir = tmp_path / "out"
    arguments = [
        "--dataset_name", str(dataset_dir), "--config_name", str(config_file), "--output_dir", str(output_dir),
        "--shortest_edge", "64", "--longest_edge", "128", "--per_device_train_batch_size", "2",
        "--per_device_eval_batch_size", "2", "--max_steps", "2", "--learning_rate", "1e-3", "--seed", "0",
    ]  # fmt: skip
    if example == "finetune_trainer":
        arguments += ["--do_train", "--do_eval", "--save_strategy", "no", "--use_cpu", "--report_to", "none"]
    else:
        arguments += ["--cpu"]
    with one_intra_op_thread():
        import_example(example).main(arguments)
    card = ModelCard.load(output_dir / "README.md")
    text = card.text
    assert "trained from scratch" in text and "| max_steps | 2 |" in text and "| learning_rate | 0.001 |" in text
    assert f"| config_name | `{config_file}` |" in text
    assert re.search(r"\| (eval_)?PQ \| (\d\.\d+|0|not measured) \|", text)
    assert "## Limitations" in text and "| 0 | " in text
