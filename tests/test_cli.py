# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Tests of the `maskdino-segment` command's drawing."""

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

    missing = tmp_path / "missing.png"
    assert main([str(missing), "--model", str(checkpoint), "--output", str(tmp_path / "o.png")]) == 2
    assert "cannot read image" in capsys.readouterr().err


def test_help_lists_the_tasks():
    assert "--task {panoptic,instance,semantic,detection}" in build_parser().format_help()
