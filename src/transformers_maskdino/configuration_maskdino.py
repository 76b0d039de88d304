# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Mask DINO model configuration."""

import os

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec
from transformers.utils import logging

from .remote_code import sync_remote_code

logger = logging.get_logger(__name__)

MASK_ENHANCED_BOX_INIT_TYPES = ("none", "bitmask", "mask2box")
# old field name -> new field name; old names still load, with a deprecation warning
RENAMED_FIELDS = {"box_loss": "use_box_loss", "panoptic_box_loss": "supervise_stuff_boxes"}
# fields of older configs that belong to the image processor (post-processing defaults)
POST_PROCESSING_FIELDS = (
    "object_mask_threshold",
    "overlap_threshold",
    "panoptic_temperature",
    "apply_panoptic_temperature",
    "detections_per_image",
)
# (field, predicate, what is expected): single-field range checks of `validate_architecture`
RANGE_CHECKS = (
    ("common_stride", lambda value: value in (2, 4, 8, 16, 32), "a power of two between 2 and 32"),
    ("num_labels", lambda value: value >= 1, "at least 1"),
    ("num_denoising", lambda value: value >= 0, ">= 0"),
    ("importance_sample_ratio", lambda value: 0 <= value <= 1, "in [0, 1]"),
    ("oversample_ratio", lambda value: value >= 1, ">= 1"),
)


@strict
class MaskDinoConfig(PreTrainedConfig):
    r"""
    Configuration of a Mask DINO model ([`MaskDinoModel`], [`MaskDinoForUniversalSegmentation`]). The defaults are
    those of the original ResNet-50 COCO instance-segmentation checkpoint (3 backbone levels + 1 extra level, encoder
    FFN 2048, 300 queries, 80 classes, mask-enhanced box initialisation with `mask2box`). Post-processing defaults
    (`object_mask_threshold`, `overlap_threshold`, `panoptic_temperature`, ...) are image-processor attributes.

    Args:
        backbone_config (`PreTrainedConfig` or `dict`, *optional*):
            Configuration of the backbone, loaded with `AutoBackbone` (ResNet or Swin). Its `out_features` must contain
            every stage named in `encoder_in_features` and the stride-4 stage used by the mask-feature FPN.
        freeze_backbone_batch_norm (`bool`, *optional*, defaults to `True`):
            Replace the backbone's BatchNorm layers by frozen ones (statistics and affine parameters held as buffers),
            as the original's `FrozenBN` ResNet does.
        num_channels (`int`, *optional*, defaults to 3):
            Number of input image channels.
        hidden_dim (`int`, *optional*, defaults to 256):
            Width of the decoder queries and of the prediction heads.
        num_queries (`int`, *optional*, defaults to 300):
            Number of object queries (matching part, without denoising queries).
        feature_size (`int`, *optional*, defaults to 256):
            Width of the pixel decoder (deformable encoder and FPN), the original's `CONVS_DIM`.
        mask_feature_size (`int`, *optional*, defaults to 256):
            Channels of the per-pixel mask embeddings, the original's `MASK_DIM`.
        encoder_in_features (`list[str]`, *optional*, defaults to `["stage2", "stage3", "stage4"]`):
            Backbone stages that feed the deformable encoder.
        num_feature_levels (`int`, *optional*, defaults to 4):
            Total number of encoder levels: one per entry of `encoder_in_features`, plus extra stride-2 levels
            computed from the lowest-resolution backbone stage.
        encoder_low_resolution_first (`bool`, *optional*, defaults to `False`):
            Order of the levels in the encoder sequence. `False` (the original's `FEATURE_ORDER: low2high`) puts the
            highest-resolution level first and the extra levels last; `True` (`high2low`) puts the extra levels first,
            then the backbone levels from low to high resolution. The decoder always reads the levels in reverse order.
        common_stride (`int`, *optional*, defaults to 4):
            Stride of the mask features relative to the input image.
        encoder_layers (`int`, *optional*, defaults to 6):
            Number of deformable encoder layers in the pixel decoder.
        encoder_ffn_dim (`int`, *optional*, defaults to 2048):
            Feed-forward width of the encoder layers.
        encoder_attention_heads (`int`, *optional*, defaults to 8):
            Attention heads of the encoder's deformable attention.
        encoder_n_points (`int`, *optional*, defaults to 4):
            Sampling points per head and level in the encoder.
        decoder_layers (`int`, *optional*, defaults to 9):
            Number of decoder layers (the prediction made from the initial queries is not a layer).
        decoder_ffn_dim (`int`, *optional*, defaults to 2048):
            Feed-forward width of the decoder layers.
        decoder_attention_heads (`int`, *optional*, defaults to 8):
            Attention heads of the decoder's self- and cross-attention.
        decoder_n_points (`int`, *optional*, defaults to 4):
            Sampling points per head and level in the decoder cross-attention.
        enforce_input_projection (`bool`, *optional*, defaults to `False`):
            Add the decoder's 1x1 input projections even when `feature_size == hidden_dim`.
        dropout (`float`, *optional*, defaults to 0.0):
            Dropout in the encoder and decoder layers.
        activation_function (`str`, *optional*, defaults to `"relu"`):
            Activation of the feed-forward layers.
        init_queries_from_encoder (`bool`, *optional*, defaults to `True`):
            Two-stage query selection: the initial queries are the top-`num_queries` encoder tokens, with their class,
            box and mask predictions (the original's `TWO_STAGE`). When `False`, queries and anchor boxes are learned.
        learnable_query_content (`bool`, *optional*, defaults to `False`):
            With query selection, keep the content part of the queries learned and take only the anchors from the
            encoder (the original's `LEARN_TGT`).
        initial_prediction (`bool`, *optional*, defaults to `True`):
            Predict classes, masks and boxes from the initial queries, before the first decoder layer.
        mask_enhanced_box_init (`str`, *optional*, defaults to `"mask2box"`):
            How the selected queries' anchor boxes are initialised from their predicted masks: `"none"` keeps the
            encoder proposals; `"mask2box"` takes `[xmin, ymin, xmax, ymax]` of `mask > 0` (empty masks give a
            degenerate box); `"bitmask"` takes `[xmin, ymin, xmax + 1, ymax + 1]` (empty masks give a zero box).
        num_denoising (`int`, *optional*, defaults to 100):
            Number of denoising queries in training (0 disables denoising). They form
            `num_denoising // max_targets_per_image` groups.
        label_noise_ratio (`float`, *optional*, defaults to 0.4):
            Denoising labels are replaced by a random class with probability `label_noise_ratio * 0.5`.
        box_noise_scale (`float`, *optional*, defaults to 0.4):
            Scale of the uniform jitter applied to denoising boxes.
        denoise_masks (`bool`, *optional*, defaults to `True`):
            Also apply the mask losses to the denoising queries (the original's `DN: "seg"`; `False` is `"standard"`).
        use_semantic_cross_entropy (`bool`, *optional*, defaults to `False`):
            Classify with a softmax over `num_labels + 1` classes (the last one is "no object") and train it with
            cross-entropy, as the original's semantic models do. Otherwise sigmoid focal classification over
            `num_labels` classes.
        stuff_label_ids (`list[int]`, *optional*, defaults to `[]`):
            Labels that are "stuff" (amorphous regions). Panoptic post-processing merges their segments, and boxes
            are not supervised for them when `supervise_stuff_boxes` is `False`.
        class_weight (`float`, *optional*, defaults to 4.0):
            Weight of the classification loss.
        mask_weight (`float`, *optional*, defaults to 5.0):
            Weight of the mask sigmoid cross-entropy loss.
        dice_weight (`float`, *optional*, defaults to 5.0):
            Weight of the mask dice loss.
        box_weight (`float`, *optional*, defaults to 5.0):
            Weight of the L1 box loss.
        giou_weight (`float`, *optional*, defaults to 2.0):
            Weight of the generalized IoU box loss.
        no_object_weight (`float`, *optional*, defaults to 0.1):
            Weight of the "no object" class in the cross-entropy loss (`use_semantic_cross_entropy` only).
        class_cost (`float`, *optional*, defaults to 4.0):
            Weight of the focal classification cost in the Hungarian matching.
        mask_cost (`float`, *optional*, defaults to 5.0):
            Weight of the mask sigmoid cross-entropy cost in the Hungarian matching.
        dice_cost (`float`, *optional*, defaults to 5.0):
            Weight of the dice cost in the Hungarian matching.
        box_cost (`float`, *optional*, defaults to 5.0):
            Weight of the L1 box cost in the Hungarian matching.
        giou_cost (`float`, *optional*, defaults to 2.0):
            Weight of the generalized IoU cost in the Hungarian matching.
        focal_alpha (`float`, *optional*, defaults to 0.25):
            Alpha of the sigmoid focal loss and cost.
        focal_gamma (`float`, *optional*, defaults to 2.0):
            Gamma of the sigmoid focal loss and cost.
        use_auxiliary_loss (`bool`, *optional*, defaults to `True`):
            Apply the losses to every earlier decoder layer and the initial prediction (deep supervision).
        use_box_loss (`bool`, *optional*, defaults to `True`):
            Train the box head of the matched queries (L1 and GIoU losses; the denoising queries' boxes are always
            trained). Formerly `box_loss`.
        supervise_stuff_boxes (`bool`, *optional*, defaults to `False`):
            Also supervise the boxes of stuff labels (`stuff_label_ids`). The original's `PANO_BOX_LOSS: True` is
            `False` here: its "panoptic" box loss is the one that leaves stuff boxes out. Formerly `panoptic_box_loss`.
        train_num_points (`int`, *optional*, defaults to 12544):
            Points sampled per mask for the mask losses and costs.
        oversample_ratio (`float`, *optional*, defaults to 3.0):
            Oversampling of candidate points for importance sampling.
        importance_sample_ratio (`float`, *optional*, defaults to 0.75):
            Fraction of points taken from the most uncertain candidates.
        init_std (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialiser of linear layers not covered by a specific init.
    """

    model_type = "maskdino"
    sub_configs_defaults = {
        "backbone_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="resnet",
            init_kwargs={
                "depths": [3, 4, 6, 3],
                "hidden_sizes": [256, 512, 1024, 2048],
                "embedding_size": 64,
                "layer_type": "bottleneck",
                "downsample_in_bottleneck": False,
                "out_features": ["stage1", "stage2", "stage3", "stage4"],
            },
        ),
    }
    attribute_map = {
        "hidden_size": "hidden_dim",
        "num_hidden_layers": "decoder_layers",
        "num_attention_heads": "decoder_attention_heads",
    }

    backbone_config: dict | PreTrainedConfig | None = None
    freeze_backbone_batch_norm: bool = True
    num_channels: int = 3
    hidden_dim: int = 256
    num_queries: int = 300
    feature_size: int = 256
    mask_feature_size: int = 256
    encoder_in_features: list[str] | tuple[str, ...] = ("stage2", "stage3", "stage4")
    num_feature_levels: int = 4
    encoder_low_resolution_first: bool = False
    common_stride: int = 4
    encoder_layers: int = 6
    encoder_ffn_dim: int = 2048
    encoder_attention_heads: int = 8
    encoder_n_points: int = 4
    decoder_layers: int = 9
    decoder_ffn_dim: int = 2048
    decoder_attention_heads: int = 8
    decoder_n_points: int = 4
    enforce_input_projection: bool = False
    dropout: float | int = 0.0
    activation_function: str = "relu"
    init_queries_from_encoder: bool = True
    learnable_query_content: bool = False
    initial_prediction: bool = True
    mask_enhanced_box_init: str = "mask2box"
    num_denoising: int = 100
    label_noise_ratio: float | int = 0.4
    box_noise_scale: float | int = 0.4
    denoise_masks: bool = True
    use_semantic_cross_entropy: bool = False
    stuff_label_ids: list[int] | tuple[int, ...] = ()
    class_weight: float | int = 4.0
    mask_weight: float | int = 5.0
    dice_weight: float | int = 5.0
    box_weight: float | int = 5.0
    giou_weight: float | int = 2.0
    no_object_weight: float | int = 0.1
    class_cost: float | int = 4.0
    mask_cost: float | int = 5.0
    dice_cost: float | int = 5.0
    box_cost: float | int = 5.0
    giou_cost: float | int = 2.0
    focal_alpha: float | int = 0.25
    focal_gamma: float | int = 2.0
    use_auxiliary_loss: bool = True
    use_box_loss: bool = True
    supervise_stuff_boxes: bool = False
    train_num_points: int = 12544
    oversample_ratio: float | int = 3.0
    importance_sample_ratio: float | int = 0.75
    init_std: float = 0.02
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        for old_name, new_name in RENAMED_FIELDS.items():
            if old_name in kwargs:
                logger.warning_once(f"`{old_name}` is deprecated and will be removed: use `{new_name}`.")
                setattr(self, new_name, kwargs.pop(old_name))
        # Configs written before the post-processing defaults moved to the image processor still carry them; the
        # model never read them (the processor's values were always the ones used), so they are dropped on load.
        ignored = [name for name in POST_PROCESSING_FIELDS if kwargs.pop(name, None) is not None]
        if ignored:
            logger.info(f"Ignoring {ignored}: post-processing defaults are read from the image processor.")
        # json round trips turn tuples into lists; keep one type so configs compare equal
        self.encoder_in_features = list(self.encoder_in_features)
        self.stuff_label_ids = list(self.stuff_label_ids)
        super().__post_init__(**kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs):
        # model.save_pretrained saves its config this way too, before any upload of the directory
        result = super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        sync_remote_code(save_directory)
        return result

    @property
    def num_encoder_backbone_levels(self) -> int:
        """Encoder levels taken from backbone stages (the rest are extra stride-2 levels)."""
        return len(self.encoder_in_features)

    @property
    def num_class_logits(self) -> int:
        """Width of the classification head: `num_labels`, plus a "no object" logit with semantic cross-entropy."""
        return self.num_labels + 1 if self.use_semantic_cross_entropy else self.num_labels

    def validate_architecture(self):
        """Cross-field checks, run at construction and by `config.validate()`."""
        super().validate_architecture()
        if self.mask_enhanced_box_init not in MASK_ENHANCED_BOX_INIT_TYPES:
            raise ValueError(
                f"`mask_enhanced_box_init` must be one of {MASK_ENHANCED_BOX_INIT_TYPES}, got "
                f"{self.mask_enhanced_box_init!r}."
            )
        if self.mask_enhanced_box_init != "none" and not self.init_queries_from_encoder:
            raise ValueError(
                f"`mask_enhanced_box_init={self.mask_enhanced_box_init!r}` initialises anchors from the masks of the "
                "queries selected from the encoder, so it needs `init_queries_from_encoder=True`."
            )
        if self.mask_enhanced_box_init != "none" and not self.initial_prediction:
            raise ValueError(
                f"`mask_enhanced_box_init={self.mask_enhanced_box_init!r}` needs `initial_prediction=True`."
            )
        if self.learnable_query_content and not self.init_queries_from_encoder:
            raise ValueError(
                "`learnable_query_content=True` only applies with `init_queries_from_encoder=True` (without query "
                "selection the content queries are always learned)."
            )
        if not self.encoder_in_features:
            raise ValueError("`encoder_in_features` must name at least one backbone stage.")
        if self.num_feature_levels < len(self.encoder_in_features):
            raise ValueError(
                f"`num_feature_levels` ({self.num_feature_levels}) counts the backbone levels "
                f"({len(self.encoder_in_features)}: {self.encoder_in_features}) plus extra levels; it cannot be smaller."
            )
        for name, dim, heads in (
            ("feature_size", self.feature_size, self.encoder_attention_heads),
            ("hidden_dim", self.hidden_dim, self.decoder_attention_heads),
        ):
            if dim % heads != 0:
                raise ValueError(f"`{name}` ({dim}) must be divisible by its number of attention heads ({heads}).")
        if self.feature_size % 32 != 0 or self.feature_size < 32:
            raise ValueError(
                f"`feature_size` ({self.feature_size}) must be a positive multiple of 32: the pixel decoder uses "
                "GroupNorm with 32 groups."
            )
        if self.hidden_dim % 4 != 0:
            raise ValueError(
                f"`hidden_dim` ({self.hidden_dim}) must be divisible by 4: the query position embedding encodes the "
                "four box coordinates with hidden_dim / 2 sine features each."
            )
        for name, is_valid, expected in RANGE_CHECKS:
            if not is_valid(getattr(self, name)):
                raise ValueError(f"`{name}` must be {expected}, got {getattr(self, name)}.")
        bad_stuff = [i for i in self.stuff_label_ids if not 0 <= i < self.num_labels]
        if bad_stuff:
            raise ValueError(
                f"`stuff_label_ids` {bad_stuff} are not valid label ids (0 to {self.num_labels - 1} for "
                f"num_labels={self.num_labels})."
            )
        backbone_config = self.backbone_config
        if backbone_config is not None and hasattr(backbone_config, "out_features"):
            missing = [f for f in self.encoder_in_features if f not in backbone_config.out_features]
            if missing:
                raise ValueError(
                    f"`encoder_in_features` names {missing}, which the backbone does not output "
                    f"(backbone out_features: {backbone_config.out_features})."
                )


__all__ = ["MaskDinoConfig", "sync_remote_code"]
