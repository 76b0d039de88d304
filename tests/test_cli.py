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
    assert (picture[25, 38] == expected).all()
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
