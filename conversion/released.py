# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
The eight checkpoints released with the original Mask DINO (IDEA-Research/MaskDINO, release `maskdino-v0.1.0`).

Each entry names the config the checkpoint was trained with (the right one: the original README links the wrong
config for the Swin-L "no mask enhance" model, and the file names' `3sd1` / `50ep` tags do not describe the configs),
the dataset its labels come from (`datasets/<dataset>.json`), the Hub repository name we give it, and the metrics the
original reports, with the tool that computed them. The configs are `configs/<path>`, our extract of the original's
yaml of the same path.
"""

import json
from dataclasses import dataclass
from pathlib import Path

CONVERSION_DIR = Path(__file__).resolve().parent
CONFIGS_DIR = CONVERSION_DIR / "configs"
DATASETS_DIR = CONVERSION_DIR / "datasets"

RELEASE_URL = "https://github.com/IDEA-Research/detrex-storage/releases/download/maskdino-v0.1.0/"
ORIGINAL_REPO = "https://github.com/IDEA-Research/MaskDINO"
ORIGINAL_COMMIT = "3831d85"

# Every yaml under the original's configs/ at ORIGINAL_COMMIT. Four are _BASE_ files (dataset, solver, input) that
# no model is built from alone; the other fifteen are model configs.
ORIGINAL_CONFIG_FILES = (
    "ade20k/semantic-segmentation/Base-ADE20K-SemanticSegmentation.yaml",
    "ade20k/semantic-segmentation/maskdino_R50_bs16_160k_steplr.yaml",
    "cityscapes/semantic-segmentation/Base-Cityscapes-SemanticSegmentation.yaml",
    "cityscapes/semantic-segmentation/maskdino_R50_bs16_90k_steplr.yaml",
    "coco/instance-segmentation/Base-COCO-InstanceSegmentation.yaml",
    "coco/instance-segmentation/maskdino_R50_bs16_50ep_3s.yaml",
    "coco/instance-segmentation/maskdino_R50_bs16_50ep_3s_dowsample1_2048.yaml",
    "coco/instance-segmentation/maskdino_R50_bs16_50ep_3s_dowsample1_2048_bitmask.yaml",
    "coco/instance-segmentation/maskdino_R50_bs16_50ep_3s_dowsample2.yaml",
    "coco/instance-segmentation/maskdino_R50_bs16_50ep_4s_dowsample1_2048.yaml",
    "coco/instance-segmentation/swin/maskdino_R50_bs16_50ep_4s_dowsample1_1024.yaml",
    "coco/instance-segmentation/swin/maskdino_R50_bs16_50ep_4s_dowsample1_2048.yaml",
    "coco/instance-segmentation/swin/maskdino_R50_bs16_50ep_4s_dowsample1_2048_no_maskEnhance.yaml",
    "coco/panoptic-segmentation/Base-COCO-PanopticSegmentation.yaml",
    "coco/panoptic-segmentation/maskdino_R50_bs16_50ep_3s_dowsample1_2048.yaml",
    "coco/panoptic-segmentation/swin/maskdino_R50_bs16_50ep_4s_dowsample1_2048.yaml",
    "coco/panoptic-segmentation/swin/maskdino_R50_bs16_50ep_4s_dowsample1_large_eval.yaml",
    "coco/panoptic-segmentation/swin/maskdino_R50_bs16_50ep_4s_dowsample1_maskEnhance_2048.yaml",
)
BASE_CONFIG_FILES = tuple(path for path in ORIGINAL_CONFIG_FILES if Path(path).name.startswith("Base-"))

R50 = "ResNet-50 (ImageNet-1k, torchvision weights)"
SWIN_L = "Swin-L (ImageNet-22k pre-trained, 384x384, window 12)"

COCO_AP = "detectron2 `COCOEvaluator` (COCO API, `bbox` and `segm` AP), COCO val2017"
COCO_PQ = "detectron2 `COCOPanopticEvaluator` (panopticapi `pq_compute`), COCO val2017"
COCO_PANOPTIC_AP = "detectron2 `COCOEvaluator` on the instance annotations of COCO val2017"
COCO_PANOPTIC_MIOU = "detectron2 `SemSegEvaluator` on the semantic maps derived from COCO val2017 panoptic"
ADE_MIOU = "detectron2 `SemSegEvaluator`, ADE20K validation (2,000 images), single scale"
CITYSCAPES_MIOU = "detectron2 `CityscapesSemSegEvaluator` (cityscapesScripts), Cityscapes val (500 images), single scale"


@dataclass(frozen=True)
class Metric:
    """A number the original reports, with what computed it."""

    name: str  # e.g. "mask AP"
    value: float
    task: str  # "instance-segmentation", "object-detection", "panoptic-segmentation", "semantic-segmentation"
    metric_type: str  # Hub model-index metric type: "mask_ap", "box_ap", "pq", "miou"
    evaluator: str


@dataclass(frozen=True)
class ReleasedCheckpoint:
    name: str
    file_name: str
    config: str  # path relative to configs/
    dataset: str  # datasets/<dataset>.json
    backbone: str
    description: str
    tasks: tuple[str, ...]  # "instance", "panoptic", "semantic", "detection"
    metrics: tuple[Metric, ...]
    training: str
    notes: tuple[str, ...] = ()
    readme_config: str | None = None  # the config the original README links, when it is not `config`
    reported_parameters: str | None = None  # the original README's "Params" column, when it has one
    # sha256 of the released file; None until someone records it from a download (the converter prints it)
    sha256: str | None = None

    @property
    def url(self) -> str:
        return RELEASE_URL + self.file_name

    @property
    def config_path(self) -> Path:
        return CONFIGS_DIR / self.config

    def load_dataset(self) -> dict:
        with open(DATASETS_DIR / f"{self.dataset}.json") as f:
            return json.load(f)


COCO_50EP = "COCO train2017, 50 epochs (368,750 iterations, batch 16), large-scale jitter at 1024 (scale 0.1-2.0)"

RELEASED = {
    entry.name: entry
    for entry in (
        ReleasedCheckpoint(
            name="maskdino-r50-coco-instance-hid1024",
            file_name="maskdino_r50_50ep_300q_hid1024_3sd1_instance_maskenhanced_mask46.1ap_box51.5ap.pth",
            config="coco/instance-segmentation/maskdino_R50_bs16_50ep_3s.yaml",
            dataset="coco_instance",
            backbone=R50,
            description="COCO instance segmentation and object detection; 300 queries, encoder feed-forward width 1024, "
            "3 feature levels (res3-res5), mask-enhanced anchor boxes (`bitmask`)",
            tasks=("instance", "detection"),
            metrics=(
                Metric("mask AP", 46.1, "instance-segmentation", "mask_ap", COCO_AP),
                Metric("box AP", 51.5, "object-detection", "box_ap", COCO_AP),
            ),
            training=COCO_50EP,
            reported_parameters="47M",
            notes=(
                (
                    "The file name's `3sd1` tag does not describe the config: `maskdino_R50_bs16_50ep_3s.yaml` has 3 "
                    "feature levels and no extra downsampled level."
                ),
            ),
        ),
        ReleasedCheckpoint(
            name="maskdino-r50-coco-instance",
            file_name="maskdino_r50_50ep_300q_hid2048_3sd1_instance_maskenhanced_mask46.3ap_box51.7ap.pth",
            config="coco/instance-segmentation/maskdino_R50_bs16_50ep_3s_dowsample1_2048.yaml",
            dataset="coco_instance",
            backbone=R50,
            description="COCO instance segmentation and object detection; 300 queries, encoder feed-forward width 2048, "
            "3 backbone levels (res3-res5) plus 1 downsampled level, mask-enhanced anchor boxes (`mask2box`)",
            tasks=("instance", "detection"),
            metrics=(
                Metric("mask AP", 46.3, "instance-segmentation", "mask_ap", COCO_AP),
                Metric("box AP", 51.7, "object-detection", "box_ap", COCO_AP),
            ),
            training=COCO_50EP,
            reported_parameters="52M",
        ),
        ReleasedCheckpoint(
            name="maskdino-swinl-coco-instance-no-mask-enhance",
            file_name="maskdino_swinl_50ep_300q_hid2048_3sd1_instance_mask52.1ap_box58.3ap.pth",
            config="coco/instance-segmentation/swin/maskdino_R50_bs16_50ep_4s_dowsample1_2048_no_maskEnhance.yaml",
            dataset="coco_instance",
            backbone=SWIN_L,
            description="COCO instance segmentation and object detection; 300 queries, encoder feed-forward width 2048, "
            "4 backbone levels (res2-res5) plus 1 downsampled level, anchor boxes from the encoder proposals "
            "(no mask-enhanced initialisation)",
            tasks=("instance", "detection"),
            metrics=(
                Metric("mask AP", 52.1, "instance-segmentation", "mask_ap", COCO_AP),
                Metric("box AP", 58.3, "object-detection", "box_ap", COCO_AP),
            ),
            training=COCO_50EP,
            reported_parameters="223M",
            readme_config="coco/instance-segmentation/swin/maskdino_R50_bs16_50ep_4s_dowsample1_2048.yaml",
            notes=(
                (
                    "The original README links `swin/maskdino_R50_bs16_50ep_4s_dowsample1_2048.yaml` for this model, which "
                    "uses mask-enhanced (`bitmask`) anchors; the matching config is `..._2048_no_maskEnhance.yaml`."
                ),
                "The file name's `3sd1` tag does not describe the config (4 backbone levels plus 1 downsampled level).",
            ),
        ),
        ReleasedCheckpoint(
            name="maskdino-swinl-coco-instance",
            file_name="maskdino_swinl_50ep_300q_hid2048_3sd1_instance_maskenhanced_mask52.3ap_box59.0ap.pth",
            config="coco/instance-segmentation/swin/maskdino_R50_bs16_50ep_4s_dowsample1_2048.yaml",
            dataset="coco_instance",
            backbone=SWIN_L,
            description="COCO instance segmentation and object detection; 300 queries, encoder feed-forward width 2048, "
            "4 backbone levels (res2-res5) plus 1 downsampled level, mask-enhanced anchor boxes (`bitmask`)",
            tasks=("instance", "detection"),
            metrics=(
                Metric("mask AP", 52.3, "instance-segmentation", "mask_ap", COCO_AP),
                Metric("box AP", 59.0, "object-detection", "box_ap", COCO_AP),
            ),
            training=COCO_50EP,
            reported_parameters="223M",
            notes=("The file name's `3sd1` tag does not describe the config (4 backbone levels plus 1 downsampled level).",),
        ),
        ReleasedCheckpoint(
            name="maskdino-r50-coco-panoptic",
            file_name="maskdino_r50_50ep_300q_hid2048_3sd1_panoptic_pq53.0.pth",
            config="coco/panoptic-segmentation/maskdino_R50_bs16_50ep_3s_dowsample1_2048.yaml",
            dataset="coco_panoptic",
            backbone=R50,
            description="COCO panoptic segmentation (133 classes: 80 things, 53 stuff); 300 queries, encoder "
            "feed-forward width 2048, 3 backbone levels (res3-res5) plus 1 downsampled level",
            tasks=("panoptic", "instance", "semantic", "detection"),
            metrics=(
                Metric("PQ", 53.0, "panoptic-segmentation", "pq", COCO_PQ),
                # the README's columns are swapped for this row; see the note
                Metric("box AP", 48.8, "object-detection", "box_ap", COCO_PANOPTIC_AP),
                Metric("mask AP", 44.3, "instance-segmentation", "mask_ap", COCO_PANOPTIC_AP),
                Metric("mIoU", 60.6, "semantic-segmentation", "miou", COCO_PANOPTIC_MIOU),
            ),
            training=COCO_50EP,
            notes=(
                (
                    "The original README lists 48.8 under \"Mask AP\" and 44.3 under \"Box AP\" for this model. Those "
                    "columns are swapped: mmdetection's reproduction of this checkpoint (open-mmlab/mmdetection PR #10689, "
                    "PQ 52.95, mIoU 60.6) logs bbox mAP 48.9 and segm mAP 44.4, and every other Mask DINO model has box AP "
                    "above mask AP. They are listed here as box AP 48.8 and mask AP 44.3."
                ),
            ),
        ),
        ReleasedCheckpoint(
            name="maskdino-swinl-coco-panoptic",
            file_name="maskdino_swinl_50ep_300q_hid2048_3sd1_panoptic_58.3pq.pth",
            config="coco/panoptic-segmentation/swin/maskdino_R50_bs16_50ep_4s_dowsample1_2048.yaml",
            dataset="coco_panoptic",
            backbone=SWIN_L,
            description="COCO panoptic segmentation (133 classes: 80 things, 53 stuff); 300 queries, encoder "
            "feed-forward width 2048, 4 backbone levels (res2-res5) plus 1 downsampled level",
            tasks=("panoptic", "instance", "semantic", "detection"),
            metrics=(
                Metric("PQ", 58.3, "panoptic-segmentation", "pq", COCO_PQ),
                Metric("mask AP", 50.6, "instance-segmentation", "mask_ap", COCO_PANOPTIC_AP),
                Metric("box AP", 56.2, "object-detection", "box_ap", COCO_PANOPTIC_AP),
                Metric("mIoU", 67.5, "semantic-segmentation", "miou", COCO_PANOPTIC_MIOU),
            ),
            training=COCO_50EP,
            notes=("The file name's `3sd1` tag does not describe the config (4 backbone levels plus 1 downsampled level).",),
        ),
        ReleasedCheckpoint(
            name="maskdino-r50-ade20k-semantic",
            file_name="maskdino_r50_50ep_100q_celoss_hid1024_3s_semantic_ade20k_48.7miou.pth",
            config="ade20k/semantic-segmentation/maskdino_R50_bs16_160k_steplr.yaml",
            dataset="ade20k",
            backbone=R50,
            description="ADE20K semantic segmentation (150 classes); 100 learned queries, softmax classification with "
            "a \"no object\" class, encoder feed-forward width 1024, 3 feature levels (res3-res5)",
            tasks=("semantic",),
            metrics=(Metric("mIoU", 48.7, "semantic-segmentation", "miou", ADE_MIOU),),
            training="ADE20K train, 160k iterations (batch 16), 512x512 crops",
            notes=("The file name's `50ep` tag does not describe the training: the config trains 160k iterations.",),
        ),
        ReleasedCheckpoint(
            name="maskdino-r50-cityscapes-semantic",
            file_name="maskdino_r50_50ep_100q_celoss_hid1024_3s_semantic_cityscapes_79.8miou.pth",
            config="cityscapes/semantic-segmentation/maskdino_R50_bs16_90k_steplr.yaml",
            dataset="cityscapes",
            backbone=R50 + ", SyncBN",
            description="Cityscapes semantic segmentation (19 classes); 100 learned queries, softmax classification with "
            "a \"no object\" class, encoder feed-forward width 1024, 3 feature levels (res3-res5)",
            tasks=("semantic",),
            metrics=(Metric("mIoU", 79.8, "semantic-segmentation", "miou", CITYSCAPES_MIOU),),
            training="Cityscapes fine train, 90k iterations (batch 16), 512x1024 crops",
            notes=(
                (
                    "The backbone was trained with synchronised BatchNorm (`NORM: SyncBN`), so its BatchNorm layers keep "
                    "running statistics (used in eval mode) rather than being frozen."
                ),
                "The file name's `50ep` tag does not describe the training: the config trains 90k iterations.",
            ),
        ),
    )
}


def get_released(name: str) -> ReleasedCheckpoint:
    if name not in RELEASED:
        raise KeyError(f"Unknown model name {name!r}; the released checkpoints are: {', '.join(RELEASED)}.")
    return RELEASED[name]
