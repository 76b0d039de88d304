# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""The model card (`README.md`) written beside a converted released checkpoint."""

from huggingface_hub import EvalResult, ModelCardData
from released import ORIGINAL_COMMIT, ORIGINAL_REPO, ReleasedCheckpoint

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
METRIC_TASK_NAMES = {
    "instance-segmentation": "Instance segmentation",
    "object-detection": "Object detection",
    "panoptic-segmentation": "Panoptic segmentation",
    "semantic-segmentation": "Semantic segmentation",
}


def _load_lines(repo_id: str) -> str:
    return f"""import torch
from transformers import AutoImageProcessor, AutoModelForUniversalSegmentation
from transformers.image_utils import load_image

image = load_image("{SAMPLE_IMAGE}")
processor = AutoImageProcessor.from_pretrained("{repo_id}", trust_remote_code=True)
model = AutoModelForUniversalSegmentation.from_pretrained("{repo_id}", trust_remote_code=True)
inputs = processor(images=image, return_tensors="pt")
with torch.no_grad():
    outputs = model(**inputs)
"""


def task_snippets(task: str, repo_id: str, object_mask_threshold: float, overlap_threshold: float) -> tuple[str, str]:
    """`(pipeline snippet, AutoModel snippet)` for one task; both are plain Python that runs as written."""
    if task == "detection":
        pipeline_code = f"""from transformers import pipeline

detector = pipeline("object-detection", model="{repo_id}", trust_remote_code=True)
for detection in detector("{SAMPLE_IMAGE}", threshold=0.5):
    print(detection["label"], round(detection["score"], 3), detection["box"])
"""
        model_code = _load_lines(repo_id) + """detections = processor.post_process_object_detection(
    outputs, threshold=0.5, target_sizes=[(image.height, image.width)]
)[0]
# boxes are [x0, y0, x1, y1] in pixels of the input image
for score, label, box in zip(detections["scores"], detections["labels"], detections["boxes"]):
    print(model.config.id2label[label.item()], round(score.item(), 3), box.tolist())
"""
        return pipeline_code, model_code
    if task == "semantic":
        pipeline_code = f"""from transformers import pipeline

segmenter = pipeline("image-segmentation", model="{repo_id}", trust_remote_code=True)
for segment in segmenter("{SAMPLE_IMAGE}", subtask="semantic"):
    print(segment["label"], segment["mask"].size)  # one PIL mask per class present
"""
        model_code = _load_lines(repo_id) + """segmentation = processor.post_process_semantic_segmentation(
    outputs, target_sizes=[(image.height, image.width)]
)[0]
# (height, width) map of class ids
print({model.config.id2label[i] for i in segmentation.unique().tolist()})
"""
        return pipeline_code, model_code
    if task == "panoptic":
        pipeline_code = f"""from transformers import pipeline

segmenter = pipeline("image-segmentation", model="{repo_id}", trust_remote_code=True)
# the original's inference settings: keep queries scoring above {object_mask_threshold}, drop segments that lose more
# than {1 - overlap_threshold:.1f} of their mask to overlaps
segments = segmenter(
    "{SAMPLE_IMAGE}", subtask="panoptic", threshold={object_mask_threshold}, overlap_mask_area_threshold={overlap_threshold}
)
for segment in segments:
    print(segment["label"], round(segment["score"], 3), segment["mask"].size)
"""
        model_code = _load_lines(repo_id) + """result = processor.post_process_panoptic_segmentation(
    outputs, target_sizes=[(image.height, image.width)]
)[0]
# result["segmentation"] is a (height, width) map of segment ids, described by result["segments_info"]
for segment in result["segments_info"]:
    print(segment["id"], model.config.id2label[segment["label_id"]], round(segment["score"], 3))
"""
        return pipeline_code, model_code
    if task == "instance":
        pipeline_code = f"""from transformers import pipeline

segmenter = pipeline("image-segmentation", model="{repo_id}", trust_remote_code=True)
for segment in segmenter("{SAMPLE_IMAGE}", subtask="instance", threshold=0.5):
    print(segment["label"], round(segment["score"], 3), segment["mask"].size)
"""
        model_code = _load_lines(repo_id) + """result = processor.post_process_instance_segmentation(
    outputs, threshold=0.5, target_sizes=[(image.height, image.width)], return_binary_maps=True
)[0]
# result["segmentation"] holds one boolean (height, width) mask per entry of result["segments_info"]
for mask, segment in zip(result["segmentation"], result["segments_info"]):
    print(model.config.id2label[segment["label_id"]], round(segment["score"], 3), int(mask.sum()))
"""
        return pipeline_code, model_code
    raise ValueError(f"Unknown task {task!r}: expected one of {', '.join(TASK_TITLES)}.")


def card_metadata(entry: ReleasedCheckpoint, dataset: dict, repo_id: str) -> ModelCardData:
    """The card's YAML header: license, library, pipeline tag, datasets, tags and the original's results."""
    eval_results = [
        EvalResult(
            task_type=metric.task,
            task_name=METRIC_TASK_NAMES[metric.task],
            dataset_type=dataset["hub_datasets"][0],
            dataset_name=dataset["name"],
            dataset_split=dataset["evaluation_split"],
            metric_type=metric.metric_type,
            metric_name=metric.name,
            metric_value=metric.value,
            verified=False,
            source_name="Mask DINO README (original authors)",
            source_url=f"{ORIGINAL_REPO}/tree/{ORIGINAL_COMMIT}#results",
        )
        for metric in entry.metrics
    ]
    return ModelCardData(
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="image-segmentation",
        datasets=list(dataset["hub_datasets"]),
        tags=["vision", "image-segmentation", "mask-dino", "custom_code"] + [TASK_TAGS[t] for t in entry.tasks],
        model_name=repo_id.split("/")[-1],
        eval_results=eval_results,
    )


def render_model_card(
    entry: ReleasedCheckpoint,
    dataset: dict,
    *,
    repo_id: str,
    num_parameters: int,
    source_sha256: str,
    object_mask_threshold: float,
    overlap_threshold: float,
    config_name: str | None = None,
    verification: str | None = None,
) -> str:
    """The full `README.md` text (YAML header and Markdown body). `config_name` names a config that replaced the
    table's (`--config-file`); `verification` says what `--verify` compared, if it ran."""
    metadata = card_metadata(entry, dataset, repo_id).to_yaml()
    labels = dataset["labels"]
    num_things = sum(label["isthing"] for label in labels)
    resize = dataset["test_resize"]
    metric_rows = "\n".join(
        f"| {METRIC_TASK_NAMES[m.task]} | {m.name} | {m.value:.1f} | {m.evaluator} |" for m in entry.metrics
    )
    notes = "".join(f"\n- {note}" for note in entry.notes)
    task_sections = []
    for task in entry.tasks:
        pipeline_code, model_code = task_snippets(task, repo_id, object_mask_threshold, overlap_threshold)
        task_sections.append(
            f"### {TASK_TITLES[task]}\n\nWith a pipeline:\n\n```python\n{pipeline_code}```\n\n"
            f"With the model and processor:\n\n```python\n{model_code}```\n"
        )
    usage = "\n".join(task_sections)
    tasks_text = ", ".join(TASK_TITLES[t].lower() for t in entry.tasks)
    reported = f" (the original README lists {entry.reported_parameters})" if entry.reported_parameters else ""
    if verification is None:
        verified_text = "This checkpoint's outputs were not compared with the original's at conversion (`--verify`)."
    else:
        verified_text = f"At conversion, this checkpoint was verified against the original's outputs: {verification}."
    if config_name is None:
        config_text = f"config `configs/{entry.config}` of [{ORIGINAL_REPO}]({ORIGINAL_REPO}) at `{ORIGINAL_COMMIT}`"
        command = f"--model-name {entry.name} --output-dir {entry.name}"
    else:
        config_text = f"config `{config_name}`"
        command = f"--model-name {entry.name} --config-file {config_name} --output-dir {entry.name}"
    return f"""---
{metadata}
---

# Mask DINO: {entry.backbone.split(" (")[0]}, {dataset["name"]}

[Mask DINO](https://arxiv.org/abs/2206.02777) (Li et al., CVPR 2023) extends the DINO detection transformer with a mask
branch: one model that predicts, for a set of queries, a class, a box and a mask, and so serves object detection and
instance, panoptic and semantic segmentation. A backbone feeds a multi-scale deformable-attention encoder (the pixel
decoder, which also produces per-pixel mask embeddings); the top-scoring encoder tokens initialise the decoder queries,
which a deformable-attention decoder refines layer by layer while predicting boxes, classes and masks.

This repository holds the original authors' released checkpoint `{entry.file_name}`, converted to 🤗 Transformers:
{entry.description}. It supports {tasks_text}.

- Backbone: {entry.backbone}
- Parameters: {num_parameters:,}{reported}
- Training (by the original authors): {entry.training}
- Labels: {len(labels)} classes ({num_things} things, {len(labels) - num_things} stuff), `model.config.id2label`
- Test-time resize (in the image processor): shortest edge {resize["shortest_edge"]}, longest edge at most {resize["longest_edge"]}

## Results reported by the original

These are the original authors' numbers (Mask DINO README at commit `{ORIGINAL_COMMIT}`), computed with their detectron2
code on the {dataset["evaluation_split"]} split; they were not re-measured for this conversion. The port reproduces
the original implementation tensor by tensor (max difference at most 1e-4 relative) on reference runs of the original
code. {verified_text}

| Task | Metric | Value | Evaluation |
|---|---|---|---|
{metric_rows}
{notes}

## How to use

The model code is included in this repository, so `trust_remote_code=True` is all that is needed (with
`pip install {" ".join(f'"{r}"' for r in REMOTE_CODE_REQUIREMENTS)}`). Alternatively, `pip install {PACKAGE}` and
`import transformers_maskdino` before loading: the package's classes are then used.

{usage}
## Conversion

Converted from `{entry.url}`
(sha256 `{source_sha256}`, {config_text}) with

```bash
python conversion/convert_maskdino_to_hf.py {command}
```

from the `{PACKAGE}` repository.

## License

Apache 2.0, as the original code and weights.

## Citation

```bibtex
{CITATION}
```
"""
