# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Model cards (`README.md`) for Mask DINO directories: the parts every card has (what the model is, its labels, how to
use it with the right thresholds, limitations) and the card of a fine-tuned model. The converter
(`conversion/model_card.py`) builds the cards of converted checkpoints from the same parts.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from huggingface_hub import ModelCardData

SAMPLE_IMAGE = "http://images.cocodataset.org/val2017/000000039769.jpg"
PACKAGE = "transformers-maskdino"
# third-party modules the remote code imports (transformers checks them before running it), as pip names
REMOTE_CODE_REQUIREMENTS = ("transformers>=5.23", "torch", "scipy", "Pillow")

CITATION = """@inproceedings{li2023maskdino,
  title     = {Mask DINO: Towards A Unified Transformer-based Framework for Object Detection and Segmentation},
  author    = {Li, Feng and Zhang, Hao and Xu, Huaizhe and Liu, Shilong and Zhang, Lei and Ni, Lionel M. and Shum, Heung-Yeung},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2023},
  note      = {arXiv:2206.02777}
}"""

MODEL_DESCRIPTION = """[Mask DINO](https://arxiv.org/abs/2206.02777) (Li et al., CVPR 2023) extends the DINO detection transformer with a mask
branch: one model that predicts, for a set of queries, a class, a box and a mask, and so serves object detection and
instance, panoptic and semantic segmentation. A backbone feeds a multi-scale deformable-attention encoder (the pixel
decoder, which also produces per-pixel mask embeddings); the top-scoring encoder tokens initialise the decoder queries,
which a deformable-attention decoder refines layer by layer while predicting boxes, classes and masks."""

TASK_TITLES = {
    "panoptic": "Panoptic segmentation",
    "instance": "Instance segmentation",
    "semantic": "Semantic segmentation",
    "detection": "Object detection",
}
TASK_TAGS = {
    "panoptic": "panoptic-segmentation",
    "instance": "instance-segmentation",
    "semantic": "semantic-segmentation",
    "detection": "object-detection",
}
# what each fine-tuning task (`transformers_maskdino.training.TASKS`) trains the model for
TASKS_OF_TRAINING_TASK = {
    "panoptic": ("panoptic", "instance", "semantic", "detection"),
    "instance": ("instance", "detection"),
    "semantic": ("semantic",),
    "detection": ("detection",),
}

COMMON_LIMITATIONS = (
    (
        "It recognises only the classes listed above, as they were annotated in its training data; anything else is "
        "either missed or given the closest of these labels."
    ),
    (
        "Accuracy depends on how close the images are to the training data (viewpoint, resolution, domain). Measure it "
        "on your own data before relying on it; scores are not calibrated probabilities."
    ),
    (
        "The deformable attention runs as compiled C++/CUDA kernels when `transformers_maskdino` is installed with a "
        "working compiler, and through an equivalent pure-PyTorch path otherwise (slower, same results up to float "
        "rounding)."
    ),
)


def _load_lines(repo_id: str, remote_code: bool) -> str:
    trust = ", trust_remote_code=True" if remote_code else ""
    register = "" if remote_code else "import transformers_maskdino  # registers Mask DINO with the Auto classes\n"
    return f"""import torch
{register}from transformers import AutoImageProcessor, AutoModelForUniversalSegmentation
from transformers.image_utils import load_image

image = load_image("{SAMPLE_IMAGE}")
processor = AutoImageProcessor.from_pretrained("{repo_id}"{trust})
model = AutoModelForUniversalSegmentation.from_pretrained("{repo_id}"{trust})
inputs = processor(images=image, return_tensors="pt")
with torch.no_grad():
    outputs = model(**inputs)
"""


def task_snippets(
    task: str, repo_id: str, object_mask_threshold: float, overlap_threshold: float, remote_code: bool = True
) -> tuple[str, str]:
    """`(pipeline snippet, AutoModel snippet)` for one task; both are plain Python that runs as written. With
    `remote_code`, they load the code shipped in the repository (`trust_remote_code=True`); without, they import the
    installed package."""
    trust = ", trust_remote_code=True" if remote_code else ""
    header = "from transformers import pipeline\n"
    if not remote_code:
        header = "import transformers_maskdino  # registers Mask DINO with the Auto classes and pipelines\n" + header
    model_code = _load_lines(repo_id, remote_code)
    if task == "detection":
        pipeline_code = f"""{header}
detector = pipeline("object-detection", model="{repo_id}"{trust})
for detection in detector("{SAMPLE_IMAGE}", threshold=0.5):
    print(detection["label"], round(detection["score"], 3), detection["box"])
"""
        model_code += """detections = processor.post_process_object_detection(
    outputs, threshold=0.5, target_sizes=[(image.height, image.width)]
)[0]
# boxes are [x0, y0, x1, y1] in pixels of the input image
for score, label, box in zip(detections["scores"], detections["labels"], detections["boxes"]):
    print(model.config.id2label[label.item()], round(score.item(), 3), box.tolist())
"""
        return pipeline_code, model_code
    if task == "semantic":
        pipeline_code = f"""{header}
segmenter = pipeline("image-segmentation", model="{repo_id}"{trust})
for segment in segmenter("{SAMPLE_IMAGE}", subtask="semantic"):
    print(segment["label"], segment["mask"].size)  # one PIL mask per class present
"""
        model_code += """segmentation = processor.post_process_semantic_segmentation(
    outputs, target_sizes=[(image.height, image.width)]
)[0]
# (height, width) map of class ids
print({model.config.id2label[i] for i in segmentation.unique().tolist()})
"""
        return pipeline_code, model_code
    if task == "panoptic":
        pipeline_code = f"""{header}
segmenter = pipeline("image-segmentation", model="{repo_id}"{trust})
# the model's inference settings: keep queries scoring above {object_mask_threshold}, drop segments that lose more
# than {1 - overlap_threshold:.1f} of their mask to overlaps
segments = segmenter(
    "{SAMPLE_IMAGE}", subtask="panoptic", threshold={object_mask_threshold}, overlap_mask_area_threshold={overlap_threshold}
)
for segment in segments:
    print(segment["label"], round(segment["score"], 3), segment["mask"].size)
"""
        model_code += """result = processor.post_process_panoptic_segmentation(
    outputs, target_sizes=[(image.height, image.width)]
)[0]
# result["segmentation"] is a (height, width) map of segment ids, described by result["segments_info"]
for segment in result["segments_info"]:
    print(segment["id"], model.config.id2label[segment["label_id"]], round(segment["score"], 3))
"""
        return pipeline_code, model_code
    if task == "instance":
        pipeline_code = f"""{header}
segmenter = pipeline("image-segmentation", model="{repo_id}"{trust})
for segment in segmenter("{SAMPLE_IMAGE}", subtask="instance", threshold=0.5):
    print(segment["label"], round(segment["score"], 3), segment["mask"].size)
"""
        model_code += """result = processor.post_process_instance_segmentation(
    outputs, threshold=0.5, target_sizes=[(image.height, image.width)], return_binary_maps=True
)[0]
# result["segmentation"] holds one boolean (height, width) mask per entry of result["segments_info"]
for mask, segment in zip(result["segmentation"], result["segments_info"]):
    print(model.config.id2label[segment["label_id"]], round(segment["score"], 3), int(mask.sum()))
"""
        return pipeline_code, model_code
    raise ValueError(f"Unknown task {task!r}: expected one of {', '.join(TASK_TITLES)}.")


def inference_settings(image_processor=None) -> tuple[float, float, int]:
    """`(object_mask_threshold, overlap_threshold, detections_per_image)` a card quotes: the checkpoint's image
    processor's (where post-processing defaults live), or the processor's own defaults when none is given."""
    from .image_processing_pil_maskdino import MaskDinoImageProcessorPil

    source = MaskDinoImageProcessorPil if image_processor is None else image_processor
    return source.object_mask_threshold, source.overlap_threshold, source.detections_per_image


def usage_section(
    tasks: Sequence[str],
    repo_id: str,
    object_mask_threshold: float,
    overlap_threshold: float,
    remote_code: bool = True,
) -> str:
    """The "How to use" section: how to install, then a pipeline and an AutoModel snippet per task."""
    if remote_code:
        requirements = " ".join(f'"{r}"' for r in REMOTE_CODE_REQUIREMENTS)
        install = (
            "The model code is included in this repository, so `trust_remote_code=True` is all that is needed (with\n"
            f"`pip install {requirements}`). Alternatively, `pip install {PACKAGE}` and\n"
            "`import transformers_maskdino` before loading: the package's classes are then used."
        )
    else:
        install = (
            f"This directory holds no model code: `pip install {PACKAGE}` and `import transformers_maskdino` before "
            "loading\n(it registers Mask DINO with the Auto classes and the pipelines)."
        )
    sections = []
    for task in tasks:
        pipeline_code, model_code = task_snippets(task, repo_id, object_mask_threshold, overlap_threshold, remote_code)
        sections.append(
            f"### {TASK_TITLES[task]}\n\nWith a pipeline:\n\n```python\n{pipeline_code}```\n\n"
            f"With the model and processor:\n\n```python\n{model_code}```\n"
        )
    return "## How to use\n\n" + install + "\n\n" + "\n".join(sections)


def labels_section(id2label: Mapping[int, str], stuff_label_ids: Sequence[int]) -> str:
    """The "Labels" section: every class with its id and whether it is a thing or stuff."""
    stuff = set(stuff_label_ids)
    rows = "\n".join(
        f"| {i} | {str(id2label[i]).replace('|', '/')} | {'stuff' if i in stuff else 'thing'} |"
        for i in sorted(id2label)
    )
    return (
        f"## Labels\n\n{len(id2label)} classes ({len(id2label) - len(stuff)} things, {len(stuff)} stuff), as in "
        "`model.config.id2label`; stuff classes (`model.config.stuff_label_ids`) are regions without instances, merged "
        f"into one segment per class by panoptic post-processing.\n\n| id | label | kind |\n|---|---|---|\n{rows}\n"
    )


def limitations_section(extra: Sequence[str] = ()) -> str:
    """The "Limitations" section: what holds for every Mask DINO model, then `extra` notes."""
    return "## Limitations\n\n" + "\n".join(f"- {item}" for item in (*extra, *COMMON_LIMITATIONS)) + "\n"


def card_metadata(
    *, repo_id: str, tasks: Sequence[str], datasets: Sequence[str] = (), license: str | None = None, **kwargs
) -> ModelCardData:
    """The YAML header shared by every card (library, pipeline tag, tags); `kwargs` go to `ModelCardData`."""
    return ModelCardData(
        license=license,
        library_name="transformers",
        pipeline_tag="image-segmentation",
        datasets=list(datasets) or None,
        tags=[
            "vision",
            "image-segmentation",
            "mask-dino",
            *(["custom_code"] if kwargs.pop("remote_code", True) else []),
        ]
        + [TASK_TAGS[t] for t in tasks],
        model_name=repo_id.rstrip("/").split("/")[-1],
        **kwargs,
    )


RESNET_DEPTHS = {16: 50, 33: 101, 50: 152}  # bottleneck blocks in all stages -> ResNet-N


def backbone_description(config) -> str:
    """A readable name of the model's backbone, e.g. "ResNet-50" or "Swin (embed dim 192, depths [2, 2, 18, 2])"."""
    backbone = config.backbone_config
    if backbone.model_type == "resnet":
        depth = RESNET_DEPTHS.get(sum(backbone.depths)) if backbone.layer_type == "bottleneck" else None
        return f"ResNet-{depth}" if depth else f"ResNet (depths {list(backbone.depths)}, {backbone.layer_type} blocks)"
    if backbone.model_type == "swin":
        return f"Swin (embed dim {backbone.embed_dim}, depths {list(backbone.depths)}, window {backbone.window_size})"
    return backbone.model_type


def render_card(metadata: ModelCardData, title: str, sections: Sequence[str]) -> str:
    """The full `README.md` text: YAML header, title, then the sections in order."""
    body = "\n".join(section.rstrip("\n") + "\n" for section in sections)
    return f"---\n{metadata.to_yaml()}\n---\n\n# {title}\n\n{body}"


# The settings of the examples' arguments (`TrainingArguments.to_dict()` or the accelerate example's namespace) that
# describe a training run in its card, in this order.
RECIPE_KEYS = (
    "config_name",
    "backbone_checkpoint",
    "dataset_config_name",
    "max_steps",
    "num_train_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "backbone_learning_rate_multiplier",
    "weight_decay",
    "lr_scheduler_type",
    "warmup_steps",
    "max_grad_norm",
    "shortest_edge",
    "longest_edge",
    "flip_probability",
    "large_scale_jitter_size",
    "mixed_precision",
    "fp16",
    "bf16",
    "seed",
)
_RUN_STATISTICS = ("runtime", "per_second", "flos")


def training_recipe(arguments: Mapping[str, object]) -> dict[str, object]:
    """The entries of `arguments` that describe the training recipe (`RECIPE_KEYS`), leaving out unset ones (and
    `num_train_epochs` when `max_steps` bounds the run)."""
    recipe = {key: arguments[key] for key in RECIPE_KEYS if arguments.get(key) not in (None, False, "")}
    if isinstance(recipe.get("max_steps"), int) and recipe["max_steps"] > 0:
        recipe.pop("num_train_epochs", None)
    elif recipe.get("max_steps") is not None:
        recipe.pop("max_steps")
    return recipe


def _hub_id(name: str | None) -> str | None:
    """`name` when it can be a Hub repository id (not a local path), for the card's metadata."""
    if name is None or Path(name).exists() or not re.fullmatch(r"[\w.-]+/[\w.-]+|[\w.-]+", name):
        return None
    return name


def _has_remote_code(directory: Path) -> bool:
    config_file = directory / "config.json"
    return config_file.is_file() and "auto_map" in json.loads(config_file.read_text())


def _format_value(value) -> str:
    if isinstance(value, float):
        return "not measured" if math.isnan(value) else f"{value:.4g}"
    return f"`{value}`" if isinstance(value, str) else str(value)


def render_fine_tuned_card(
    model,
    *,
    repo_id: str,
    task: str,
    dataset: str,
    base_model: str | None,
    training: Mapping[str, object],
    metrics: Mapping[str, object] | None = None,
    remote_code: bool = False,
    image_processor=None,
) -> str:
    """
    The card of a model fine-tuned (or trained from scratch) by the examples: what it is, its labels, usage, the
    training data and recipe (`training`: the script's arguments, of which `training_recipe` keeps the settings that
    matter), the evaluation `metrics` measured at the end of training (numbers only, run statistics left out), and
    limitations.
    """
    config = model.config
    tasks = TASKS_OF_TRAINING_TASK[task]
    start = f"fine-tuned from `{base_model}`" if base_model else "trained from scratch (randomly initialised head)"
    backbone = backbone_description(config)
    intro = (
        f"{MODEL_DESCRIPTION}\n\nThis model was {start} on `{dataset}` with {task} targets, with the "
        f"fine-tuning examples of `{PACKAGE}`. It supports {', '.join(TASK_TITLES[t].lower() for t in tasks)}.\n\n"
        f"- Backbone: {backbone}\n- Parameters: {model.num_parameters():,}\n- Queries: {config.num_queries}\n"
    )
    recipe = "\n".join(f"| {key} | {_format_value(value)} |" for key, value in training_recipe(training).items())
    metrics = {
        key: value
        for key, value in (metrics or {}).items()
        if isinstance(value, (int, float))
        and key not in ("step", "epoch")
        and not any(word in key for word in _RUN_STATISTICS)
    }
    provenance = (
        f"## Training\n\n- Data: `{dataset}` ({task} targets)\n- Starting point: {base_model or 'random initialisation'}"
        f"\n\n| setting | value |\n|---|---|\n{recipe}\n"
    )
    if metrics:
        rows = "\n".join(f"| {key} | {_format_value(value)} |" for key, value in metrics.items())
        provenance += (
            f"\n## Evaluation\n\nMeasured at the end of training on the evaluation split of `{dataset}`:\n\n"
            f"| metric | value |\n|---|---|\n{rows}\n"
        )
    else:
        provenance += "\nNo evaluation was run at the end of training.\n"
    extra = ["It was trained on one dataset with one recipe (above) and was not evaluated beyond it."]
    if not base_model:
        extra.insert(
            0, "Trained from scratch: expect far lower accuracy than a model fine-tuned from a pre-trained one."
        )
    hub_dataset = _hub_id(dataset)
    metadata = card_metadata(
        repo_id=repo_id,
        tasks=tasks,
        datasets=[hub_dataset] if hub_dataset else (),
        base_model=_hub_id(base_model),
        remote_code=remote_code,
    )
    sections = [
        intro,
        labels_section(config.id2label, config.stuff_label_ids),
        usage_section(tasks, repo_id, *inference_settings(image_processor)[:2], remote_code),
        provenance,
        limitations_section(extra),
        f"## Citation\n\n```bibtex\n{CITATION}\n```\n",
    ]
    return render_card(metadata, f"Mask DINO fine-tuned on {dataset}", sections)


def _saved_image_processor(directory: Path):
    """The image processor saved in `directory`, or `None` when there is none."""
    if not (directory / "preprocessor_config.json").is_file():
        return None
    from .image_processing_pil_maskdino import MaskDinoImageProcessorPil

    return MaskDinoImageProcessorPil.from_pretrained(directory)


def write_fine_tuned_model_card(
    output_dir: str | Path,
    model,
    *,
    task: str,
    dataset: str,
    base_model: str | None,
    training: Mapping[str, object],
    metrics: Mapping[str, object] | None = None,
    repo_id: str | None = None,
) -> Path:
    """Writes `README.md` (`render_fine_tuned_card`) into a directory the model was saved to; returns its path."""
    output_dir = Path(output_dir)
    card = render_fine_tuned_card(
        model,
        repo_id=repo_id or str(output_dir),
        task=task,
        dataset=dataset,
        base_model=base_model,
        training=training,
        metrics=metrics,
        remote_code=_has_remote_code(output_dir),
        image_processor=_saved_image_processor(output_dir),
    )
    path = output_dir / "README.md"
    path.write_text(card)
    return path


__all__ = [
    "inference_settings",
    "render_fine_tuned_card",
    "task_snippets",
    "training_recipe",
    "write_fine_tuned_model_card",
]
