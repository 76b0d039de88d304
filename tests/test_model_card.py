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
