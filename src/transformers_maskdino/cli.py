# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""`maskdino-segment`: run a Mask DINO checkpoint on images (files, URLs or directories), save an overlay of the masks,
boxes and labels with a legend for each, and print a summary of what was found (JSON with `--json`); optionally a
JSON summary per image and a COCO results file.

    maskdino-segment street.jpg --model path/or/hub-id --task panoptic --output street_panoptic.png
    maskdino-segment photos/ --task instance --output overlays/ --batch-size 4 --coco-results overlays/results.json
"""

import argparse
import colorsys
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# a tiny model trained on synthetic shapes, so that the command works offline out of the box
DEMO_DIR = Path(__file__).resolve().parent / "demo"
TASKS = ("panoptic", "instance", "semantic", "detection")
MASK_OPACITY = 0.5
MIN_FONT_SIZE = 14
URL_TIMEOUT_SECONDS = 30


class CommandError(Exception):
    """A problem with the command line or its inputs: printed as one line, exit status 2."""


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


def predict(images: list[Image.Image], model, processor, task: str, threshold: float | None) -> list[list[Segment]]:
    """Run the model on a batch of images and convert the post-processed results of `task` to segments per image."""
    import torch

    inputs = processor(images, return_tensors="pt").to(model.device)
    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    with torch.no_grad():
        outputs = model(**inputs)
    target_sizes = [(image.height, image.width) for image in images]
    id2label = model.config.id2label

    def name(label_id: int) -> str:
        return str(id2label.get(label_id, label_id))

    per_image = []
    if task == "panoptic":
        for result in processor.post_process_panoptic_segmentation(
            outputs, threshold=threshold, target_sizes=target_sizes
        ):
            segmentation = result["segmentation"].cpu().numpy()
            per_image.append(
                [
                    Segment(info["label_id"], name(info["label_id"]), info["score"], mask=segmentation == info["id"])
                    for info in result["segments_info"]
                ]
            )
    elif task == "instance":
        for result in processor.post_process_instance_segmentation(
            outputs, threshold=threshold, target_sizes=target_sizes, return_binary_maps=True
        ):
            masks = result["segmentation"].cpu().numpy()
            per_image.append(
                [
                    Segment(info["label_id"], name(info["label_id"]), info["score"], info.get("box_xyxy"), mask)
                    for info, mask in zip(result["segments_info"], masks)
                ]
            )
    elif task == "semantic":
        for segmentation in processor.post_process_semantic_segmentation(outputs, target_sizes=target_sizes):
            segmentation = segmentation.cpu().numpy()
            per_image.append(
                [
                    Segment(label_id, name(label_id), mask=segmentation == label_id)
                    for label_id in np.unique(segmentation).tolist()
                ]
            )
    elif task == "detection":
        for result in processor.post_process_object_detection(outputs, threshold, target_sizes):
            per_image.append(
                [
                    Segment(label_id, name(label_id), score, box)
                    for score, label_id, box in zip(
                        result["scores"].tolist(), result["labels"].tolist(), result["boxes"].tolist()
                    )
                ]
            )
    else:
        raise ValueError(f"Unknown task {task!r}; expected one of {TASKS}.")
    return per_image


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


def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a score between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a score between 0 and 1, got {value}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskdino-segment",
        description="Segment or detect objects in images with a Mask DINO checkpoint and save an overlay per image.",
    )
    parser.add_argument(
        "images",
        nargs="*",
        default=[str(DEMO_DIR / "sample.png")],
        help="paths, URLs or directories of input images (default: the sample image shipped with the package)",
    )
    parser.add_argument(
        "--model",
        default=str(DEMO_DIR),
        help="local directory or Hugging Face Hub id of a converted checkpoint (default: the tiny demo model shipped "
        "with the package, trained on synthetic shapes)",
    )
    parser.add_argument("--task", choices=TASKS, default="panoptic", help="what to predict (default: panoptic)")
    parser.add_argument(
        "--output",
        required=True,
        help="where to save the overlay (PNG, JPEG, ...) of a single image; for several images or a directory, the "
        "directory to save one <name>.png overlay per image in",
    )
    parser.add_argument(
        "--threshold",
        type=probability,
        default=None,
        help="score threshold between 0 and 1 (default: the checkpoint's own, its processor's object_mask_threshold); "
        "not for semantic",
    )
    parser.add_argument("--batch-size", type=positive_int, default=1, help="images per forward pass (default: 1)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--save-json", action="store_true", help="also save each image's summary as <overlay name>.json beside it"
    )
    parser.add_argument(
        "--coco-results",
        default=None,
        help="also write the predictions of every image as a COCO results JSON file (instance: RLE masks and boxes, "
        "detection: boxes; image_id = the image's position in the inputs)",
    )
    return parser


# ------------------------------------------------------------------------------------------ checks before inference


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def collect_image_sources(sources: list[str]) -> list[str]:
    """The image files and URLs to segment: directories are expanded to the images they hold (sorted)."""
    extensions = {extension for extension, _ in Image.registered_extensions().items()}
    collected = []
    for source in sources:
        if is_url(source):
            collected.append(source)
            continue
        path = Path(source)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in extensions)
            if not found:
                raise CommandError(f"directory {source!r} holds no image files (expected e.g. .png or .jpg files)")
            collected.extend(str(p) for p in found)
        elif path.is_file():
            collected.append(source)
        else:
            raise CommandError(f"no such image file or directory: {source!r} (expected a path, a directory or a URL)")
    return collected


def read_image(source: str) -> Image.Image:
    if is_url(source):
        from transformers.image_utils import load_image

        try:
            return load_image(source, timeout=URL_TIMEOUT_SECONDS).convert("RGB")
        except Exception as error:  # noqa: BLE001  (the HTTP client's errors have no common base)
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise CommandError(
                f"cannot download image {source!r}: {reason} (expected a reachable image URL)"
            ) from None
    try:
        with Image.open(source) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, ValueError) as error:
        raise CommandError(f"cannot read image {source!r}: {error} (expected an image file PIL can open)") from None


def check_writable(path: Path, what: str) -> None:
    """Fails unless `path` (a file to create or overwrite) can be written: a file can be created in its nearest
    existing folder (tried, as permissions alone do not tell, e.g. for root or on read-only file systems)."""
    import tempfile

    if path.is_dir():
        raise CommandError(f"{what} {str(path)!r} is a directory; expected a file path")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise CommandError(f"cannot write {what} {str(path)!r}: {str(folder)!r} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise CommandError(
            f"cannot write {what} {str(path)!r}: {error.strerror or error} in {str(folder)!r}"
        ) from None
    if path.exists() and not os.access(path, os.W_OK):
        raise CommandError(f"cannot write {what} {str(path)!r}: the file is read-only")


def overlay_paths(output: str, sources: list[str]) -> list[Path]:
    """One overlay path per image: `output` itself for one file, else `<output>/<name>.png` for each image."""
    output_path = Path(output)
    if len(sources) == 1 and not output_path.is_dir() and not output.endswith(("/", os.sep)):
        extension = output_path.suffix.lower()
        if extension not in Image.registered_extensions():
            raise CommandError(
                f"--output {output!r} has no image extension PIL can write (expected e.g. .png or .jpg; for several "
                "images, a directory)"
            )
        paths = [output_path]
    else:
        if output_path.exists() and not output_path.is_dir():
            raise CommandError(f"--output {output!r} is a file; for several images it must be a directory")
        names = [Path(source.split("?")[0]).stem or f"image{index}" for index, source in enumerate(sources)]
        # images with the same name (from different folders) keep their position in the name
        paths = [
            output_path / (f"{name}.png" if names.count(name) == 1 else f"{name}_{index}.png")
            for index, name in enumerate(names)
        ]
    for path in paths:
        check_writable(path, "--output")
    return paths


def resolve_device(requested: str | None) -> str:
    import torch

    if requested is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise CommandError(
            f"--device {requested!r} is not a torch device (expected e.g. cpu, cuda or cuda:1)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CommandError(f"--device {requested!r}: this torch has no usable CUDA device (expected --device cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise CommandError(f"--device {requested!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CommandError(f"--device {requested!r}: MPS is not available here (expected --device cpu)")
    return requested


def load_checkpoint(source: str, device: str):
    from transformers import AutoImageProcessor

    from . import MaskDinoForUniversalSegmentation

    # a Hub id is `name` or `owner/name`
    looks_local = source.startswith((".", "/", "~")) or source.count("/") > 1
    path = Path(source).expanduser()
    if path.exists() and not path.is_dir():
        raise CommandError(f"--model {source!r} is a file; expected a checkpoint directory or a Hub id")
    if not path.exists() and looks_local:
        raise CommandError(
            f"--model {source!r}: no such directory (expected a converted checkpoint directory or a Hub id)"
        )
    try:
        model = MaskDinoForUniversalSegmentation.from_pretrained(str(path) if path.exists() else source)
        # the torchvision backend where installed
        processor = AutoImageProcessor.from_pretrained(str(path) if path.exists() else source)
    except (OSError, ValueError) as error:
        reason = str(error).splitlines()[0]
        raise CommandError(
            f"cannot load --model {source!r}: {reason} (expected a converted Mask DINO checkpoint directory or Hub id)"
        ) from None
    return model.to(device).eval(), processor


# ------------------------------------------------------------------------------------------------------- results


def coco_results(task: str, image_id: int, segments: list[Segment]) -> list[dict]:
    """COCO results entries of one image: `bbox` as COCO's `[x, y, width, height]`, masks as pycocotools RLE."""
    import torch

    from .post_processing_maskdino import coco_rle

    entries = []
    for segment in segments:
        entry = {"image_id": image_id, "category_id": segment.label_id, "score": segment.score}
        if segment.box is not None:
            x0, y0, x1, y1 = segment.box
            entry["bbox"] = [x0, y0, x1 - x0, y1 - y0]
        if task == "instance":
            entry["segmentation"] = coco_rle(torch.from_numpy(segment.mask))
        entries.append(entry)
    return entries


def print_summary(summary: dict) -> None:
    print(
        f"{summary['task']}: {len(summary['segments'])} found in {summary['image']} "
        f"({summary['image_size'][1]}x{summary['image_size'][0]}); overlay: {summary['output']}"
    )
    for entry in summary["segments"]:
        details = []
        if "score" in entry:
            details.append(f"score {entry['score']:.3f}")
        if "area_fraction" in entry:
            details.append(f"area {100 * entry['area_fraction']:.1f}%")
        if "box" in entry:
            details.append("box " + ", ".join(f"{v:.0f}" for v in entry["box"]))
        print(f"  {entry['label']:<24} " + "  ".join(details))


def run(args) -> int:
    # everything that can be checked without the model is checked first, so that no inference is wasted
    if args.task == "semantic" and args.threshold is not None:
        raise CommandError("--threshold does not apply to --task semantic (every pixel gets a class)")
    if args.coco_results is not None:
        if args.task not in ("instance", "detection"):
            raise CommandError(f"--coco-results is for --task instance or detection, not {args.task}")
        check_writable(Path(args.coco_results), "--coco-results")
        if args.task == "instance":
            try:
                import pycocotools  # noqa: F401
            except ImportError:
                raise CommandError(
                    "--coco-results for instance masks needs pycocotools (pip install pycocotools)"
                ) from None
    sources = collect_image_sources(args.images)
    outputs = overlay_paths(args.output, sources)
    device = resolve_device(args.device)
    images = [read_image(source) for source in sources]
    model, processor = load_checkpoint(args.model, device)

    # the checkpoint's own score threshold: Mask DINO's scores are sigmoid probabilities
    threshold = args.threshold
    if threshold is None and args.task in ("instance", "detection"):
        threshold = processor.object_mask_threshold

    from tqdm.auto import tqdm

    summaries, results = [], []
    progress = tqdm(total=len(images), desc=args.task, unit="image", disable=len(images) == 1, file=sys.stderr)
    for start in range(0, len(images), args.batch_size):
        batch = images[start : start + args.batch_size]
        for offset, segments in enumerate(predict(batch, model, processor, args.task, threshold)):
            index = start + offset
            image, output = images[index], outputs[index]
            # draw low scores first so the most confident predictions stay visible on top
            drawing_order = sorted(segments, key=lambda s: -1.0 if s.score is None else s.score)
            output.parent.mkdir(parents=True, exist_ok=True)
            render(image, drawing_order, title=f"{args.task} ({len(segments)})").save(output)
            image_area = image.width * image.height
            summary = {
                "image": sources[index],
                "model": args.model,
                "task": args.task,
                "image_size": [image.height, image.width],
                "output": str(output),
                "segments": [segment.summary(image_area) for segment in segments],
            }
            if args.save_json:
                output.with_suffix(".json").write_text(json.dumps(summary, indent=2))
            if args.coco_results is not None:
                results.extend(coco_results(args.task, index, segments))
            summaries.append(summary)
        progress.update(len(batch))
    progress.close()
    if args.coco_results is not None:
        Path(args.coco_results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.coco_results).write_text(json.dumps(results))
    if args.json:
        print(json.dumps(summaries[0] if len(summaries) == 1 else summaries, indent=2))
    else:
        for summary in summaries:
            print_summary(summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except CommandError as error:
        print(f"maskdino-segment: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
