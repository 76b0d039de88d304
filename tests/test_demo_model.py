# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""The demo model shipped in the package: complete and small, its sample image is the documented synthetic scene,
it segments that scene, and `maskdino-segment` runs it offline."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from training_fixtures import one_intra_op_thread

import transformers_maskdino
from transformers_maskdino import MaskDinoForUniversalSegmentation, MaskDinoImageProcessor
from transformers_maskdino.cli import main as maskdino_segment
from transformers_maskdino.training.evaluation import panoptic_matching, panoptic_quality
from transformers_maskdino.training.synthetic_data import LABELS, STUFF_LABEL_IDS, generate_scene

DEMO_DIR = Path(transformers_maskdino.__file__).resolve().parent / "demo"
# the sample is this scene (documented in the model card)
SAMPLE_SEED, SAMPLE_SPLIT, SAMPLE_INDEX, SAMPLE_SIZE = 2024, 2, 0, 320


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    with one_intra_op_thread():
        yield


@pytest.fixture(scope="module")
def sample_scene():
    rng = np.random.default_rng([SAMPLE_SEED, SAMPLE_SPLIT, SAMPLE_INDEX])
    return generate_scene(rng, SAMPLE_SIZE, SAMPLE_SIZE, max_objects=4)


def test_the_demo_model_is_complete_small_and_documented():
    names = {path.name for path in DEMO_DIR.iterdir() if path.is_file()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "sample.png"} <= names
    total = sum(path.stat().st_size for path in DEMO_DIR.iterdir() if path.is_file())
    assert total < 5 * 1024 * 1024
    config = json.loads((DEMO_DIR / "config.json").read_text())
    assert config["model_type"] == "maskdino"
    assert [config["id2label"][str(i)] for i in range(len(LABELS))] == list(LABELS)
    assert config["stuff_label_ids"] == STUFF_LABEL_IDS
    card = (DEMO_DIR / "README.md").read_text()
    for command in (
        "python -m transformers_maskdino.training.synthetic_data",
        "examples/finetune_trainer.py",
        "--config_name examples/configs/maskdino_tiny_synthetic.json",
        "examples/evaluate.py",
    ):
        assert command in card, command
    assert "not a stand-in for real data" in card


def test_the_sample_image_is_the_documented_synthetic_scene(sample_scene):
    assert np.array_equal(np.asarray(Image.open(DEMO_DIR / "sample.png").convert("RGB")), sample_scene.image)


def test_the_demo_model_segments_its_sample_image(sample_scene):
    model, loading_info = MaskDinoForUniversalSegmentation.from_pretrained(DEMO_DIR, output_loading_info=True)
    # a complete checkpoint: the loader would otherwise print a report of "newly initialized" tensors to every user
    assert not any(loading_info.values()), loading_info
    processor = MaskDinoImageProcessor.from_pretrained(DEMO_DIR)
    assert model.num_parameters() < 1_250_000
    image = Image.open(DEMO_DIR / "sample.png").convert("RGB")
    inputs = processor(images=image, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    result = processor.post_process_panoptic_segmentation(outputs, target_sizes=[(image.height, image.width)])[0]
    segment_ids = sorted({segment["id"] for segment in sample_scene.segments})
    ground_truth_masks = np.stack([sample_scene.panoptic_map == i for i in segment_ids])
    ground_truth_labels = np.array([s["category_id"] for s in sorted(sample_scene.segments, key=lambda s: s["id"])])
    predicted_map = result["segmentation"].numpy()
    predicted_labels = {info["id"]: info["label_id"] for info in result["segments_info"]}
    # every segment (four shapes, sky, grass) is found with a close outline ...
    class_agnostic = panoptic_matching(
        predicted_map, dict.fromkeys(predicted_labels, 0), ground_truth_masks, np.zeros_like(ground_truth_labels), 1
    )
    assert (class_agnostic["tp"][0], class_agnostic["fp"][0], class_agnostic["fn"][0]) == (6, 0, 0)
    assert class_agnostic["iou"][0] / 6 > 0.85
    # ... and every one with the right class
    stats = panoptic_matching(predicted_map, predicted_labels, ground_truth_masks, ground_truth_labels, len(LABELS))
    assert stats["tp"].sum() == 6 and stats["fp"].sum() == 0 and stats["fn"].sum() == 0
    assert panoptic_quality(stats, STUFF_LABEL_IDS)["PQ"] > 0.85


def test_maskdino_segment_runs_the_demo_model_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    output = tmp_path / "overlay.png"
    status = maskdino_segment(
        [
            str(DEMO_DIR / "sample.png"),
            "--model",
            str(DEMO_DIR),
            "--task",
            "panoptic",
            "--output",
            str(output),
            "--json",
        ]
    )
    assert status == 0
    summary = json.loads(capsys.readouterr().out)
    found = sorted(segment["label"] for segment in summary["segments"])
    assert found == ["circle", "grass", "sky", "square", "square", "triangle"]
    overlay = Image.open(output)
    assert overlay.height == SAMPLE_SIZE and overlay.width > SAMPLE_SIZE  # with the legend panel


def test_maskdino_segment_defaults_to_the_demo_model_and_its_sample(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    output = tmp_path / "overlay.png"
    assert maskdino_segment(["--output", str(output), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert sorted(segment["label"] for segment in summary["segments"]) == [
        "circle",
        "grass",
        "sky",
        "square",
        "square",
        "triangle",
    ]
    assert Image.open(output).height == SAMPLE_SIZE


@pytest.mark.parametrize("task", ["instance", "detection"])
def test_maskdino_segment_defaults_find_every_shape_of_the_sample_once(tmp_path, capsys, monkeypatch, task):
    # at the checkpoint's own threshold: the four shapes, each once, with the right label
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert maskdino_segment(["--task", task, "--output", str(tmp_path / "overlay.png"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert sorted(segment["label"] for segment in summary["segments"]) == ["circle", "square", "square", "triangle"]
