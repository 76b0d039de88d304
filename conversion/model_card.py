# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""The model cards (`README.md`) written beside converted checkpoints: a released one (with the original's metrics), or
any other checkpoint converted from `--config-file`."""

from pathlib import Path

from convert_maskdino_to_hf import sha256_of
from huggingface_hub import EvalResult, ModelCardData
from released import ORIGINAL_COMMIT, ORIGINAL_REPO, ReleasedCheckpoint

from transformers_maskdino.model_card import (
    CITATION,
    MODEL_DESCRIPTION,
    PACKAGE,
    REMOTE_CODE_REQUIREMENTS,
    SAMPLE_IMAGE,
    TASK_TITLES,
    backbone_description,
    inference_settings,
    labels_section,
    limitations_section,
    render_card,
    task_snippets,
    usage_section,
)
from transformers_maskdino.model_card import card_metadata as base_card_metadata

__all__ = [
    "REMOTE_CODE_REQUIREMENTS",
    "SAMPLE_IMAGE",
    "card_metadata",
    "render_converted_card",
    "render_model_card",
    "task_snippets",
]

METRIC_TASK_NAMES = {
    "instance-segmentation": "Instance segmentation",
    "object-detection": "Object detection",
    "panoptic-segmentation": "Panoptic segmentation",
    "semantic-segmentation": "Semantic segmentation",
}
CONVERSION_LIMITATIONS = (
    ("The port reproduces the original implementation tensor by tensor (max difference at most 1e-4 relative) on "
    "reference runs of the original code; results on other inputs may differ from the original's by float rounding."),
)


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
    return base_card_metadata(
        repo_id=repo_id,
        tasks=entry.tasks,
        datasets=dataset["hub_datasets"],
        license="apache-2.0",
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
    """The full `README.md` text of a released checkpoint (YAML header and Markdown body). `config_name` names a
    config that replaced the table's (`--config-file`); `verification` says what `--verify` compared, if it ran."""
    labels = dataset["labels"]
    num_things = sum(label["isthing"] for label in labels)
    resize = dataset["test_resize"]
    metric_rows = "\n".join(
        f"| {METRIC_TASK_NAMES[m.task]} | {m.name} | {m.value:.1f} | {m.evaluator} |" for m in entry.metrics
    )
    notes = "".join(f"\n- {note}" for note in entry.notes)
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
    intro = f"""{MODEL_DESCRIPTION}

This repository holds the original authors' released checkpoint `{entry.file_name}`, converted to 🤗 Transformers:
{entry.description}. It supports {tasks_text}.

- Backbone: {entry.backbone}
- Parameters: {num_parameters:,}{reported}
- Training (by the original authors): {entry.training}
- Labels: {len(labels)} classes ({num_things} things, {len(labels) - num_things} stuff), `model.config.id2label`
- Test-time resize (in the image processor): shortest edge {resize["shortest_edge"]}, longest edge at most {resize["longest_edge"]}
"""
    results = f"""## Results reported by the original

These are the original authors' numbers (Mask DINO README at commit `{ORIGINAL_COMMIT}`), computed with their detectron2
code on the {dataset["evaluation_split"]} split; they were not re-measured for this conversion. The port reproduces
the original implementation tensor by tensor (max difference at most 1e-4 relative) on reference runs of the original
code. {verified_text}

| Task | Metric | Value | Evaluation |
|---|---|---|---|
{metric_rows}
{notes}
"""
    conversion = f"""## Conversion

Converted from `{entry.url}`
(sha256 `{source_sha256}`, {config_text}) with

```bash
python conversion/convert_maskdino_to_hf.py {command}
```

from the `{PACKAGE}` repository.
"""
    id2label = {label["id"]: label["name"] for label in labels}
    stuff = [label["id"] for label in labels if not label["isthing"]]
    sections = [
        intro,
        results,
        usage_section(entry.tasks, repo_id, object_mask_threshold, overlap_threshold),
        labels_section(id2label, stuff),
        conversion,
        limitations_section(CONVERSION_LIMITATIONS),
        "## License\n\nApache 2.0, as the original code and weights.\n",
        f"## Citation\n\n```bibtex\n{CITATION}\n```\n",
    ]
    title = f"Mask DINO: {entry.backbone.split(' (')[0]}, {dataset['name']}"
    return render_card(card_metadata(entry, dataset, repo_id), title, sections)


def converted_tasks(config) -> tuple[str, ...]:
    """What a converted model is for: every head of Mask DINO works on any checkpoint, but panoptic needs stuff
    classes and a semantic-only checkpoint was trained without box supervision of things."""
    if config.use_semantic_cross_entropy:
        return ("semantic",)
    if config.stuff_label_ids:
        return ("panoptic", "instance", "semantic", "detection")
    return ("instance", "detection")


def render_converted_card(
    model,
    *,
    repo_id: str,
    checkpoint: Path,
    config_file: Path,
    metadata_file: Path | None = None,
    source_sha256: str | None = None,
    verification: str | None = None,
    remote_code: bool = True,
    image_processor=None,
) -> str:
    """The card of a checkpoint converted from `--config-file` (not one of the released ones): what it is, its
    labels, usage with its own inference thresholds, where it came from (checkpoint and config, with their sha256,
    and the metadata file) and limitations."""
    config = model.config
    object_mask_threshold, overlap_threshold, detections_per_image = inference_settings(image_processor)
    tasks = converted_tasks(config)
    backbone = backbone_description(config)
    intro = (
        f"{MODEL_DESCRIPTION}\n\nThis repository holds the checkpoint `{checkpoint.name}` converted to 🤗 Transformers "
        f"from the original Mask DINO format. It supports {', '.join(TASK_TITLES[t].lower() for t in tasks)}.\n\n"
        f"- Backbone: {backbone}\n- Parameters: {model.num_parameters():,}\n- Queries: {config.num_queries}\n"
        f"- Inference settings: object mask threshold {object_mask_threshold}, overlap threshold "
        f"{overlap_threshold}, at most {detections_per_image} detections per image\n"
    )
    if verification is None:
        verified = "Its outputs were not compared with the original's at conversion (`--verify`)."
    else:
        verified = f"At conversion, it was verified against the original's outputs: {verification}."
    metadata_text = (
        f"- Labels: `{metadata_file.name}` (sha256 `{sha256_of(metadata_file)}`)\n"
        if metadata_file is not None
        else "- Labels: none given at conversion, so the classes are named `LABEL_0`, `LABEL_1`, ...\n"
    )
    command = f"--config-file {config_file.name} --checkpoint {checkpoint.name}"
    if metadata_file is not None:
        command += f" --metadata {metadata_file.name}"
    provenance = (
        f"## Conversion\n\n- Checkpoint: `{checkpoint.name}` (sha256 `{source_sha256 or sha256_of(checkpoint)}`)\n"
        f"- Config: `{config_file.name}` (sha256 `{sha256_of(config_file)}`, with the `_BASE_` files it names)\n"
        f"{metadata_text}\n{verified} Converted with\n\n```bash\npython conversion/convert_maskdino_to_hf.py "
        f"{command} --output-dir OUTPUT\n```\n\nfrom the `{PACKAGE}` repository. The training data, recipe and "
        "accuracy of the checkpoint are those of whoever trained it; this conversion does not record them.\n"
    )
    extra = ["The accuracy of this checkpoint was not measured at conversion."]
    if metadata_file is None:
        extra.insert(0, "No dataset metadata was given: labels are generic names and there are no stuff classes.")
    sections = [
        intro,
        labels_section(config.id2label, config.stuff_label_ids),
        usage_section(tasks, repo_id, object_mask_threshold, overlap_threshold, remote_code),
        provenance,
        limitations_section((*extra, *CONVERSION_LIMITATIONS)),
        f"## Citation\n\n```bibtex\n{CITATION}\n```\n",
    ]
    metadata = base_card_metadata(repo_id=repo_id, tasks=tasks, remote_code=remote_code)
    return render_card(metadata, f"Mask DINO converted from {checkpoint.name}", sections)
