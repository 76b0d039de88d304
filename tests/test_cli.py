# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Tests of the `maskdino-segment` command's drawing."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transformers_maskdino.cli import Segment, build_parser, label_color, render


def test_render_draws_masks_boxes_and_a_legend():
    image = Image.fromarray(np.full((60, 80, 3), 100, dtype=np.uint8))
    mask = np.zeros((60, 80), dtype=bool)
    mask[10:30, 10:40] = True
    segments = [
        Segment(3, "cat", 0.9, box=[5.0, 5.0, 45.0, 35.0], mask=mask),
        Segment(7, "sky", None, mask=~mask),
        Segment(3, "cat", 0.4, box=[40.0, 20.0, 78.0, 58.0]),
    ]
    rendered = np.asarray(render(image, segments, title="instance (3)"))
    assert rendered.shape[0] >= 60 and rendered.shape[1] > 80  # legend panel on the right (may be taller)
    picture, legend = rendered[:60, :80], rendered[:, 80:]
    # the mask is tinted halfway towards its label's colour, away from the box and label text
    expected = np.round(0.5 * 100 + 0.5 * np.array(label_color(3))).astype(np.uint8)
    assert (picture[28, 12] == expected).all()
    assert (picture[50, 5] == np.round(0.5 * 100 + 0.5 * np.array(label_color(7)))).all()
    # the box outline of the unmasked detection is drawn in its colour
    assert (picture[55, 40] == label_color(3)).all() and (picture[58, 60] == label_color(3)).all()
    # the legend has a swatch for each label
    for label_id in (3, 7):
        assert (legend == label_color(label_id)).all(-1).any()


def test_render_without_results_is_not_blank():
    rendered = np.asarray(render(Image.new("RGB", (30, 20), (0, 0, 0)), [], title="panoptic (0)"))
    assert rendered.shape[0] >= 20 and rendered.shape[1] > 30
    assert rendered.std() > 0


def test_parser_rejects_unknown_tasks(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["image.png", "--model", "m", "--task", "depth", "--output", "o.png"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from tiny_checkpoint import save_tiny_checkpoint

    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny_maskdino_cli"))


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli_image") / "image.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("task", ["panoptic", "instance", "semantic", "detection"])
def test_command_writes_an_overlay_and_a_json_summary(checkpoint, image_path, tmp_path, capsys, task):
    import json

    from tiny_checkpoint import LABELS

    from transformers_maskdino.cli import main

    output = tmp_path / f"{task}.png"
    arguments = [str(image_path), "--model", str(checkpoint), "--task", task, "--output", str(output), "--json"]
    assert main(arguments + (["--threshold", "0.0"] if task != "semantic" else [])) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["task"] == task and summary["image_size"] == [50, 70]
    assert len(summary["segments"]) > 0
    assert all(segment["label"] in LABELS for segment in summary["segments"])
    if task in ("instance", "detection"):
        assert all(len(segment["box"]) == 4 for segment in summary["segments"])
    if task in ("panoptic", "semantic"):
        # panoptic and semantic segments partition (part of) the image
        assert sum(segment["area_fraction"] for segment in summary["segments"]) <= 1.0 + 1e-6

    rendered = np.asarray(Image.open(output).convert("RGB"))
    assert rendered.shape[0] >= 50 and rendered.shape[1] > 70  # the image plus the legend panel
    original = np.asarray(Image.open(image_path))
    assert rendered.std() > 0
    assert (rendered[:50, :70] != original).any()  # something was drawn on the image


def test_command_plain_summary(checkpoint, image_path, tmp_path, capsys):
    from transformers_maskdino.cli import main

    output = tmp_path / "semantic.jpg"
    assert main([str(image_path), "--model", str(checkpoint), "--task", "semantic", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("semantic: ") and "area" in printed
    assert Image.open(output).size[1] >= 50


def test_command_reports_unreadable_images(checkpoint, tmp_path, capsys):
    from transformers_maskdino.cli import main

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert main([str(broken), "--model", str(checkpoint), "--output", str(tmp_path / "o.png")]) == 2
    assert "cannot read image" in capsys.readouterr().err


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--output", "{tmp}/x.xyz"], "has no image extension PIL can write"),
        (["--output", "/proc/x.png"], "cannot write --output '/proc/x.png'"),
        (["--device", "cuda:7", "--output", "{tmp}/o.png"], "--device 'cuda:7'"),
        (["--device", "gpu", "--output", "{tmp}/o.png"], "is not a torch device"),
        (["--model", "/nonexistent", "--output", "{tmp}/o.png"], "--model '/nonexistent': no such directory"),
        (["--model", "{image}", "--output", "{tmp}/o.png"], "is a file; expected a checkpoint directory"),
        (["http://127.0.0.1:9/x.png", "--output", "{tmp}/o.png"], "cannot download image 'http://127.0.0.1:9/x.png'"),
        (["{tmp}/missing.png", "--output", "{tmp}/o.png"], "no such image file or directory"),
        (["{tmp}", "--output", "{tmp}/o.png"], "holds no image files"),
        (["--task", "semantic", "--threshold", "0.3", "--output", "{tmp}/o.png"], "does not apply to --task semantic"),
        (["--task", "panoptic", "--coco-results", "{tmp}/r.json", "--output", "{tmp}/o.png"], "--coco-results is for"),
    ],
)
def test_command_errors_are_one_line_before_inference(checkpoint, image_path, tmp_path, capsys, monkeypatch, arguments, message):
    import transformers_maskdino.cli as cli

    def no_inference(*args, **kwargs):
        raise AssertionError("inference ran before the error was found")

    monkeypatch.setattr(cli, "predict", no_inference)
    arguments = [a.format(tmp=tmp_path, image=image_path) for a in arguments]
    if not arguments[0].startswith(("http", str(tmp_path))) or arguments[0].endswith(".xyz"):
        arguments = [str(image_path), *arguments]
    if "--model" not in arguments:
        arguments += ["--model", str(checkpoint)]
    assert cli.main(arguments) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("maskdino-segment: error: ") and message in error and "\n" not in error, error


@pytest.mark.parametrize("value", ["5", "-0.1", "x"])
def test_threshold_outside_0_1_is_refused(value, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--threshold", value, "--output", "o.png"])
    assert "expected a score between 0 and 1" in capsys.readouterr().err


def test_command_on_a_directory_writes_one_overlay_json_and_coco_results_per_image(checkpoint, tmp_path, capsys):
    import json

    from transformers_maskdino.cli import main

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(4)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(images / f"{name}.png")
    (images / "notes.txt").write_text("not an image")
    output = tmp_path / "out"
    arguments = [str(images), "--model", str(checkpoint), "--task", "instance", "--output", str(output)]
    arguments += ["--batch-size", "2", "--threshold", "0.0", "--save-json", "--coco-results", str(output / "r.json")]
    assert main(arguments + ["--json"]) == 0
    summaries = json.loads(capsys.readouterr().out)
    assert [Path(s["image"]).name for s in summaries] == ["a.png", "b.png", "c.png"]
    for summary in summaries:
        overlay = Path(summary["output"])
        assert overlay.parent == output and overlay.suffix == ".png" and Image.open(overlay).size[1] >= 50
        assert json.loads(overlay.with_suffix(".json").read_text()) == summary
    results = json.loads((output / "r.json").read_text())
    assert sorted({r["image_id"] for r in results}) == [0, 1, 2]
    assert len(results) == sum(len(s["segments"]) for s in summaries) > 0
    from pycocotools import mask as mask_utils

    assert all(mask_utils.decode(r["segmentation"]).shape == (50, 70) and len(r["bbox"]) == 4 for r in results)
    # each image alone gives what the batch gave it (same-size images: the batch adds no padding)
    assert main([str(images / "b.png"), "--model", str(checkpoint), "--task", "instance", "--threshold", "0.0",
                 "--output", str(tmp_path / "b.png"), "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert [s["label"] for s in alone["segments"]] == [s["label"] for s in summaries[1]["segments"]]


def test_defaults_use_the_checkpoints_threshold(checkpoint, image_path, tmp_path, capsys):
    import json

    from transformers_maskdino import MaskDinoImageProcessor
    from transformers_maskdino.cli import main

    threshold = MaskDinoImageProcessor.from_pretrained(checkpoint).object_mask_threshold
    for task in ("instance", "detection"):
        output = str(tmp_path / f"{task}.png")
        assert main([str(image_path), "--model", str(checkpoint), "--task", task, "--output", output, "--json"]) == 0
        scores = [s["score"] for s in json.loads(capsys.readouterr().out)["segments"]]
        assert all(score >= threshold - 1e-4 for score in scores)


def test_help_lists_the_tasks():
    assert "--task {panoptic,instance,semantic,detection}" in build_parser().format_help()
