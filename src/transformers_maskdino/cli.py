# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""`maskdino-segment`: run a Mask DINO checkpoint on one image, save an overlay of its masks, boxes and labels with a
legend, and print a summary of what was found (JSON with `--json`).

    maskdino-segment street.jpg --model path/or/hub-id --task panoptic --output street_panoptic.png
"""

import argparse
import colorsys
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# a tiny model trained on synthetic shapes, so that the command works offline out of the box
DEMO_DIR = Path(__file__).resolve().parent / "demo"
TASKS = ("panoptic", "instance", "semantic", "detection")
# Score threshold used when `--threshold` is not given; `None` means the checkpoint's own inference setting.
DEFAULT_THRESHOLDS = {"panoptic": None, "instance": 0.5, "semantic": None, "detection": 0.5}
MASK_OPACITY = 0.5
MIN_FONT_SIZE = 14


@dataclass
class Segment:
    """One thing the model found: a mask (panoptic, instance, semantic), a box (instance, detection), or both."""

    label_id: int
    label: str
    score: float | None = None
    box: list[float] | None = None  # x0, y0, x1, y1 in image pixels
    mask: np.ndarray | None = field(default=None, repr=False)  # (height, width) bool

    def summary(self, image_area: int) -> dict:
        entry = {"label_id": self.label_id, "label": self.label}
        if self.score is not None:
            entry["score"] = round(self.score, 4)
        if self.box is not None:
            entry["box"] = [round(v, 1) for v in self.box]
        if self.mask is not None:
            entry["area_fraction"] = round(float(self.mask.sum()) / image_area, 4)
        return entry


def label_color(label_id: int) -> tuple[int, int, int]:
    """A distinct, stable colour per label: hues spaced by the golden ratio."""
    hue = (label_id * 0.618033988749895) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return int(red * 255), int(green * 255), int(blue * 255)


def predict(image: Image.Image, model, processor, task: str, threshold: float | None) -> list[Segment]:
    """Run the model on `image` and convert the post-processed result of `task` to a list of segments."""
    import torch

    inputs = processor(image, return_tensors="pt").to(model.device)
    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    with torch.no_grad():
        outputs = model(**inputs)
    target_sizes = [(image.height, image.width)]
    id2label = model.config.id2label

    def name(label_id: int) -> str:
        return str(id2label.get(label_id, label_id))

    segments = []
    if task == "panoptic":
        result = processor.post_process_panoptic_segmentation(outputs, threshold=threshold, target_sizes=target_sizes)[
            0
        ]
        segmentation = result["segmentation"].cpu().numpy()
        for info in result["segments_info"]:
            segments.append(
                Segment(info["label_id"], name(info["label_id"]), info["score"], mask=segmentation == info["id"])
            )
    elif task == "instance":
        result = processor.post_process_instance_segmentation(
            outputs, threshold=threshold, target_sizes=target_sizes, return_binary_maps=True
        )[0]
        masks = result["segmentation"].cpu().numpy()
        for info, mask in zip(result["segments_info"], masks):
            segments.append(Segment(info["label_id"], name(info["label_id"]), info["score"], info.get("box_xyxy"), mask))
    elif task == "semantic":
        segmentation = (
            processor.post_process_semantic_segmentation(outputs, target_sizes=target_sizes)[0].cpu().numpy()
        )
        for label_id in np.unique(segmentation).tolist():
            segments.append(Segment(label_id, name(label_id), mask=segmentation == label_id))
    elif task == "detection":
        result = processor.post_process_object_detection(
            outputs, 0.5 if threshold is None else threshold, target_sizes
        )[0]
        for score, label_id, box in zip(
            result["scores"].tolist(), result["labels"].tolist(), result["boxes"].tolist()
        ):
            segments.append(Segment(label_id, name(label_id), score, box))
    else:
        raise ValueError(f"Unknown task {task!r}; expected one of {TASKS}.")
    return segments


def render(image: Image.Image, segments: list[Segment], title: str | None = None) -> Image.Image:
    """
    The image with each segment's mask tinted in its label's colour, boxes outlined and labelled, and a legend
    panel on the right listing every label found (with its count). Segments are drawn in the given order, so later
    ones end on top.
    """
    # text grows with the image so that labels stay readable on large photos
    font_size = max(MIN_FONT_SIZE, round(min(image.size) / 50))
    font = ImageFont.load_default(size=font_size)
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    for segment in segments:
        if segment.mask is not None and segment.mask.any():
            color = np.array(label_color(segment.label_id), dtype=np.float32)
            pixels[segment.mask] = (1 - MASK_OPACITY) * pixels[segment.mask] + MASK_OPACITY * color
    overlay = Image.fromarray(pixels.round().astype(np.uint8))
    draw = ImageDraw.Draw(overlay)
    for segment in segments:
        color = label_color(segment.label_id)
        text = segment.label if segment.score is None else f"{segment.label} {segment.score:.2f}"
        anchor = None
        if segment.box is not None:
            x0, y0, x1, y1 = segment.box
            draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=color, width=2)
            anchor = (max(min(x0, x1), 0), max(min(y0, y1), 0))
        elif segment.mask is not None and segment.mask.any():
            rows, cols = np.nonzero(segment.mask)
            anchor = (float(np.median(cols)), float(np.median(rows)))
        if anchor is not None:
            # keep the label inside the image
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
            anchor = (
                max(0, min(anchor[0], overlay.width - (right - left) - 1)),
                max(0, min(anchor[1], overlay.height - (bottom - top) - 1)),
            )
            left, top, right, bottom = draw.textbbox(anchor, text, font=font)
            draw.rectangle([left - 1, top - 1, right + 1, bottom + 1], fill=(0, 0, 0))
            draw.text(anchor, text, fill=color, font=font)
    return _append_legend(overlay, segments, font, font_size, title)


def _append_legend(
    overlay: Image.Image, segments: list[Segment], font, font_size: int, title: str | None
) -> Image.Image:
    counts: dict[int, list] = {}
    for segment in segments:
        counts.setdefault(segment.label_id, [segment.label, 0])[1] += 1
    lines = [(None, title or "legend")]
    lines += [
        (label_id, f"{label} x{count}" if count > 1 else label) for label_id, (label, count) in sorted(counts.items())
    ]
    if not counts:
        lines.append((None, "nothing found"))
    scratch = ImageDraw.Draw(overlay)
    line_height = font_size + 8
    swatch = font_size
    text_width = max(scratch.textlength(text, font=font) for _, text in lines)
    panel_width = int(text_width + swatch + 24)
    height = max(overlay.height, line_height * len(lines) + 8)
    canvas = Image.new("RGB", (overlay.width + panel_width, height), (255, 255, 255))
    canvas.paste(overlay, (0, 0))
    draw = ImageDraw.Draw(canvas)
    x = overlay.width + 8
    for row, (label_id, text) in enumerate(lines):
        y = 4 + row * line_height
        if label_id is not None:
            draw.rectangle([x, y + 2, x + swatch, y + 2 + swatch], fill=label_color(label_id), outline=(0, 0, 0))
            draw.text((x + swatch + 8, y), text, fill=(0, 0, 0), font=font)
        else:
            draw.text((x, y), text, fill=(0, 0, 0), font=font)
    return canvas


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskdino-segment",
        description="Segment or detect objects in an image with a Mask DINO checkpoint and save an overlay.",
    )
    parser.add_argument(
        "image", nargs="?", default=str(DEMO_DIR / "sample.png"), help="path or URL of the input image (default: the "
        "sample image shipped with the package)"
    )
    parser.add_argument(
        "--model",
        default=str(DEMO_DIR),
        help="local directory or Hugging Face Hub id of a converted checkpoint (default: the tiny demo model shipped "
        "with the package, trained on synthetic shapes)",
    )
    parser.add_argument("--task", choices=TASKS, default="panoptic", help="what to predict (default: panoptic)")
    parser.add_argument("--output", required=True, help="where to save the overlay (PNG, JPEG, ...)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="score threshold (default: 0.5 for instance and detection, the checkpoint's own for panoptic)",
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    import torch
    from transformers import AutoImageProcessor
    from transformers.image_utils import load_image

    from . import MaskDinoForUniversalSegmentation

    try:
        image = load_image(args.image).convert("RGB")
    except (OSError, ValueError) as error:
        print(f"maskdino-segment: cannot read image {args.image!r}: {error}", file=sys.stderr)
        return 2
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = MaskDinoForUniversalSegmentation.from_pretrained(args.model).to(device).eval()
    processor = AutoImageProcessor.from_pretrained(args.model)  # the torchvision backend where installed

    threshold = args.threshold if args.threshold is not None else DEFAULT_THRESHOLDS[args.task]
    segments = predict(image, model, processor, args.task, threshold)
    # draw low scores first so the most confident predictions stay visible on top
    drawing_order = sorted(segments, key=lambda s: -1.0 if s.score is None else s.score)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    render(image, drawing_order, title=f"{args.task} ({len(segments)})").save(args.output)

    image_area = image.width * image.height
    summary = {
        "image": args.image,
        "model": args.model,
        "task": args.task,
        "image_size": [image.height, image.width],
        "output": str(Path(args.output)),
        "segments": [segment.summary(image_area) for segment in segments],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{args.task}: {len(segments)} found in {args.image} ({image.width}x{image.height}); overlay: {args.output}"
        )
        for segment in segments:
            entry = segment.summary(image_area)
            details = []
            if "score" in entry:
                details.append(f"score {entry['score']:.3f}")
            if "area_fraction" in entry:
                details.append(f"area {100 * entry['area_fraction']:.1f}%")
            if "box" in entry:
                details.append("box " + ", ".join(f"{v:.0f}" for v in entry["box"]))
            print(f"  {segment.label:<24} " + "  ".join(details))
    return 0


if __name__ == "__main__":
    sys.exit(main())
