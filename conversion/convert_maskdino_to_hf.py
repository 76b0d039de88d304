# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Convert an original Mask DINO checkpoint (detectron2 `.pth` + yaml config) into a transformers model directory.

    python conversion/convert_maskdino_to_hf.py --config-file CONFIG.yaml --checkpoint MODEL.pth \
        --output-dir DIR [--metadata METADATA.json]

The directory (`config.json`, `model.safetensors`, `preprocessor_config.json`) loads with
`AutoModelForUniversalSegmentation.from_pretrained(DIR)` once `transformers_maskdino` is imported. The converter
refuses to write when a checkpoint tensor is not used, a model tensor is not filled, or a shape differs.
"""

import argparse
import json
import re
from pathlib import Path

import torch
import yaml
from transformers import ResNetConfig, SwinConfig

from transformers_maskdino import MaskDinoConfig, MaskDinoForUniversalSegmentation, MaskDinoImageProcessor


class ConversionError(ValueError):
    """The checkpoint or config cannot be converted faithfully."""


# ---------------------------------------------------------------------------------------------------------------------
# detectron2 yaml -> MaskDinoConfig
# ---------------------------------------------------------------------------------------------------------------------


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_detectron2_yaml(path: str | Path) -> dict:
    """Reads a detectron2 yaml, following `_BASE_` files (relative to the file that names them)."""
    path = Path(path)
    with open(path) as f:
        cfg = yaml.safe_load(f) or {}
    base = cfg.pop("_BASE_", None)
    if base is not None:
        cfg = _merge(load_detectron2_yaml(path.parent / base), cfg)
    return cfg


def _get(cfg: dict, dotted: str, default=None):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _stage_name(detectron2_name: str) -> str:
    """`res2`..`res5` -> `stage1`..`stage4`."""
    match = re.fullmatch(r"res([2-5])", detectron2_name)
    if match is None:
        raise ConversionError(f"Unknown backbone feature {detectron2_name!r}: expected res2..res5.")
    return f"stage{int(match.group(1)) - 1}"


RESNET_DEPTHS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}


def _backbone_config(cfg: dict, out_features: list[str]):
    name = _get(cfg, "MODEL.BACKBONE.NAME", "build_resnet_backbone")
    if name == "build_resnet_backbone":
        depth = _get(cfg, "MODEL.RESNETS.DEPTH", 50)
        if depth not in RESNET_DEPTHS:
            raise ConversionError(f"MODEL.RESNETS.DEPTH={depth} is not supported: expected one of {list(RESNET_DEPTHS)}.")
        res2 = _get(cfg, "MODEL.RESNETS.RES2_OUT_CHANNELS", 256)
        groups = _get(cfg, "MODEL.RESNETS.NUM_GROUPS", 1)
        width = _get(cfg, "MODEL.RESNETS.WIDTH_PER_GROUP", 64) * groups
        if groups != 1 or width * 4 != res2:
            raise ConversionError(
                f"Only plain bottleneck ResNets are supported (NUM_GROUPS 1, WIDTH_PER_GROUP = RES2_OUT_CHANNELS / 4); "
                f"got NUM_GROUPS={groups}, WIDTH_PER_GROUP={width // groups}, RES2_OUT_CHANNELS={res2}."
            )
        if _get(cfg, "MODEL.RESNETS.RES5_DILATION", 1) != 1 or any(_get(cfg, "MODEL.RESNETS.DEFORM_ON_PER_STAGE", [])):
            raise ConversionError("Dilated or deformable ResNet stages are not supported.")
        if _get(cfg, "MODEL.RESNETS.STEM_TYPE", "basic") != "basic":
            raise ConversionError("Only the basic ResNet stem is supported.")
        return ResNetConfig(
            embedding_size=_get(cfg, "MODEL.RESNETS.STEM_OUT_CHANNELS", 64),
            hidden_sizes=[res2, res2 * 2, res2 * 4, res2 * 8],
            depths=RESNET_DEPTHS[depth],
            layer_type="bottleneck",
            hidden_act="relu",
            downsample_in_bottleneck=bool(_get(cfg, "MODEL.RESNETS.STRIDE_IN_1X1", True)),
            out_features=out_features,
        )
    if name == "D2SwinTransformer":
        if _get(cfg, "MODEL.SWIN.APE", False):
            raise ConversionError("Swin with absolute position embeddings (MODEL.SWIN.APE) is not supported.")
        if not _get(cfg, "MODEL.SWIN.PATCH_NORM", True):
            raise ConversionError("Swin without patch normalisation (MODEL.SWIN.PATCH_NORM False) is not supported.")
        if _get(cfg, "MODEL.SWIN.QK_SCALE") is not None:
            raise ConversionError("A custom Swin MODEL.SWIN.QK_SCALE is not supported.")
        return SwinConfig(
            image_size=_get(cfg, "MODEL.SWIN.PRETRAIN_IMG_SIZE", 224),
            patch_size=_get(cfg, "MODEL.SWIN.PATCH_SIZE", 4),
            embed_dim=_get(cfg, "MODEL.SWIN.EMBED_DIM", 96),
            depths=list(_get(cfg, "MODEL.SWIN.DEPTHS", [2, 2, 6, 2])),
            num_heads=list(_get(cfg, "MODEL.SWIN.NUM_HEADS", [3, 6, 12, 24])),
            window_size=_get(cfg, "MODEL.SWIN.WINDOW_SIZE", 7),
            mlp_ratio=float(_get(cfg, "MODEL.SWIN.MLP_RATIO", 4.0)),
            qkv_bias=bool(_get(cfg, "MODEL.SWIN.QKV_BIAS", True)),
            hidden_dropout_prob=float(_get(cfg, "MODEL.SWIN.DROP_RATE", 0.0)),
            attention_probs_dropout_prob=float(_get(cfg, "MODEL.SWIN.ATTN_DROP_RATE", 0.0)),
            drop_path_rate=float(_get(cfg, "MODEL.SWIN.DROP_PATH_RATE", 0.3)),
            out_features=out_features,
        )
    raise ConversionError(
        f"MODEL.BACKBONE.NAME={name!r} is not supported: expected 'build_resnet_backbone' or 'D2SwinTransformer'."
    )


def labels_from_metadata(metadata: dict, num_labels: int) -> tuple[dict[int, str], list[int]]:
    """`id2label` and the stuff label ids from detectron2-style dataset metadata."""
    thing_ids = set(metadata.get("thing_dataset_id_to_contiguous_id", {}).values())
    stuff_ids = set(metadata.get("stuff_dataset_id_to_contiguous_id", {}).values()) - thing_ids
    stuff_names = metadata.get("stuff_classes") or []
    thing_names = metadata.get("thing_classes") or []
    # detectron2 panoptic metadata lists every class in `stuff_classes`; instance metadata only things
    names = stuff_names if len(stuff_names) == num_labels else thing_names
    if len(names) != num_labels:
        raise ConversionError(
            f"The metadata names {len(names)} classes but the model has {num_labels} (SEM_SEG_HEAD.NUM_CLASSES)."
        )
    bad = sorted(i for i in stuff_ids | thing_ids if not 0 <= i < num_labels)
    if bad:
        raise ConversionError(f"The metadata maps to contiguous ids {bad}, outside 0..{num_labels - 1}.")
    return {i: str(name) for i, name in enumerate(names)}, sorted(stuff_ids)


def config_from_detectron2(cfg: dict, metadata: dict | None = None) -> MaskDinoConfig:
    """Builds a `MaskDinoConfig` from a merged detectron2 config dict (and optional dataset metadata)."""
    if _get(cfg, "MODEL.META_ARCHITECTURE", "MaskDINO") != "MaskDINO":
        raise ConversionError(f"MODEL.META_ARCHITECTURE is {_get(cfg, 'MODEL.META_ARCHITECTURE')!r}, not 'MaskDINO'.")
    if _get(cfg, "MODEL.SEM_SEG_HEAD.NORM", "GN") != "GN":
        raise ConversionError("Only GroupNorm pixel decoders (MODEL.SEM_SEG_HEAD.NORM: GN) are supported.")
    if _get(cfg, "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "MaskDINOEncoder") != "MaskDINOEncoder":
        raise ConversionError("Only the MaskDINOEncoder pixel decoder is supported.")
    if _get(cfg, "MODEL.MaskDINO.HIDDEN_DIM", 256) % 4:
        raise ConversionError("MODEL.MaskDINO.HIDDEN_DIM must be divisible by 4.")

    in_features = list(_get(cfg, "MODEL.SEM_SEG_HEAD.IN_FEATURES", ["res2", "res3", "res4", "res5"]))
    encoder_features = list(_get(cfg, "MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES", in_features))
    backbone_config = _backbone_config(cfg, [_stage_name(name) for name in sorted(in_features)])
    num_labels = int(_get(cfg, "MODEL.SEM_SEG_HEAD.NUM_CLASSES"))
    dn = str(_get(cfg, "MODEL.MaskDINO.DN", "seg"))
    if dn not in ("no", "standard", "seg"):
        raise ConversionError(f"MODEL.MaskDINO.DN={dn!r}: expected 'no', 'standard' or 'seg'.")
    box_init = str(_get(cfg, "MODEL.MaskDINO.INITIALIZE_BOX_TYPE", "no"))
    box_init = {"no": "none"}.get(box_init, box_init)
    semantic_on = bool(_get(cfg, "MODEL.MaskDINO.TEST.SEMANTIC_ON", False))
    panoptic_on = bool(_get(cfg, "MODEL.MaskDINO.TEST.PANOPTIC_ON", False))
    norm = _get(cfg, "MODEL.RESNETS.NORM", "FrozenBN")
    noise_scale = float(_get(cfg, "MODEL.MaskDINO.DN_NOISE_SCALE", 0.4))

    kwargs = {}
    if metadata is not None:
        id2label, stuff_label_ids = labels_from_metadata(metadata, num_labels)
        kwargs.update(id2label=id2label, stuff_label_ids=stuff_label_ids)
    else:
        kwargs.update(num_labels=num_labels)

    return MaskDinoConfig(
        backbone_config=backbone_config,
        freeze_backbone_batch_norm=norm == "FrozenBN" or _get(cfg, "MODEL.BACKBONE.NAME") == "D2SwinTransformer",
        hidden_dim=int(_get(cfg, "MODEL.MaskDINO.HIDDEN_DIM", 256)),
        num_queries=int(_get(cfg, "MODEL.MaskDINO.NUM_OBJECT_QUERIES", 300)),
        feature_size=int(_get(cfg, "MODEL.SEM_SEG_HEAD.CONVS_DIM", 256)),
        mask_feature_size=int(_get(cfg, "MODEL.SEM_SEG_HEAD.MASK_DIM", 256)),
        encoder_in_features=[_stage_name(name) for name in encoder_features],
        num_feature_levels=int(_get(cfg, "MODEL.SEM_SEG_HEAD.TOTAL_NUM_FEATURE_LEVELS", len(encoder_features))),
        encoder_low_resolution_first=_get(cfg, "MODEL.SEM_SEG_HEAD.FEATURE_ORDER", "low2high") == "high2low",
        common_stride=int(_get(cfg, "MODEL.SEM_SEG_HEAD.COMMON_STRIDE", 4)),
        encoder_layers=int(_get(cfg, "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", 6)),
        encoder_ffn_dim=int(_get(cfg, "MODEL.SEM_SEG_HEAD.DIM_FEEDFORWARD", 1024)),
        # the original's encoder takes its heads from MaskDINO.NHEADS and always samples 4 points; the decoder
        # always uses 8 heads and 4 points
        encoder_attention_heads=int(_get(cfg, "MODEL.MaskDINO.NHEADS", 8)),
        encoder_n_points=4,
        decoder_layers=int(_get(cfg, "MODEL.MaskDINO.DEC_LAYERS", 9)),
        decoder_ffn_dim=int(_get(cfg, "MODEL.MaskDINO.DIM_FEEDFORWARD", 2048)),
        decoder_attention_heads=8,
        decoder_n_points=4,
        enforce_input_projection=bool(_get(cfg, "MODEL.MaskDINO.ENFORCE_INPUT_PROJ", False)),
        dropout=float(_get(cfg, "MODEL.MaskDINO.DROPOUT", 0.0)),
        init_queries_from_encoder=bool(_get(cfg, "MODEL.MaskDINO.TWO_STAGE", True)),
        learnable_query_content=bool(_get(cfg, "MODEL.MaskDINO.LEARN_TGT", False)),
        initial_prediction=bool(_get(cfg, "MODEL.MaskDINO.INITIAL_PRED", True)),
        mask_enhanced_box_init=box_init,
        num_denoising=0 if dn == "no" else int(_get(cfg, "MODEL.MaskDINO.DN_NUM", 100)),
        label_noise_ratio=noise_scale,
        box_noise_scale=noise_scale,
        denoise_masks=dn == "seg",
        use_semantic_cross_entropy=bool(_get(cfg, "MODEL.MaskDINO.SEMANTIC_CE_LOSS", False))
        and semantic_on
        and not panoptic_on,
        class_weight=float(_get(cfg, "MODEL.MaskDINO.CLASS_WEIGHT", 4.0)),
        mask_weight=float(_get(cfg, "MODEL.MaskDINO.MASK_WEIGHT", 5.0)),
        dice_weight=float(_get(cfg, "MODEL.MaskDINO.DICE_WEIGHT", 5.0)),
        box_weight=float(_get(cfg, "MODEL.MaskDINO.BOX_WEIGHT", 5.0)),
        giou_weight=float(_get(cfg, "MODEL.MaskDINO.GIOU_WEIGHT", 2.0)),
        no_object_weight=float(_get(cfg, "MODEL.MaskDINO.NO_OBJECT_WEIGHT", 0.1)),
        class_cost=float(_get(cfg, "MODEL.MaskDINO.COST_CLASS_WEIGHT", 4.0)),
        mask_cost=float(_get(cfg, "MODEL.MaskDINO.COST_MASK_WEIGHT", 5.0)),
        dice_cost=float(_get(cfg, "MODEL.MaskDINO.COST_DICE_WEIGHT", 5.0)),
        box_cost=float(_get(cfg, "MODEL.MaskDINO.COST_BOX_WEIGHT", 5.0)),
        giou_cost=float(_get(cfg, "MODEL.MaskDINO.COST_GIOU_WEIGHT", 2.0)),
        use_auxiliary_loss=bool(_get(cfg, "MODEL.MaskDINO.DEEP_SUPERVISION", True)),
        box_loss=bool(_get(cfg, "MODEL.MaskDINO.BOX_LOSS", True)),
        # PANO_BOX_LOSS=True is the original's decoupled box loss that leaves stuff boxes out
        panoptic_box_loss=not _get(cfg, "MODEL.MaskDINO.PANO_BOX_LOSS", False),
        train_num_points=int(_get(cfg, "MODEL.MaskDINO.TRAIN_NUM_POINTS", 12544)),
        oversample_ratio=float(_get(cfg, "MODEL.MaskDINO.OVERSAMPLE_RATIO", 3.0)),
        importance_sample_ratio=float(_get(cfg, "MODEL.MaskDINO.IMPORTANCE_SAMPLE_RATIO", 0.75)),
        object_mask_threshold=float(_get(cfg, "MODEL.MaskDINO.TEST.OBJECT_MASK_THRESHOLD", 0.25)),
        overlap_threshold=float(_get(cfg, "MODEL.MaskDINO.TEST.OVERLAP_THRESHOLD", 0.8)),
        panoptic_temperature=float(_get(cfg, "MODEL.MaskDINO.TEST.PANO_TEMPERATURE", 0.06)),
        apply_panoptic_temperature=bool(_get(cfg, "MODEL.MaskDINO.TEST.PANO_TRANSFORM_EVAL", True)),
        detections_per_image=int(_get(cfg, "TEST.DETECTIONS_PER_IMAGE", 100)),
        **kwargs,
    )


def image_processor_from_detectron2(cfg: dict, config: MaskDinoConfig) -> MaskDinoImageProcessor:
    """The processor with the dataset's test-time resize, the pixel statistics and the checkpoint's inference defaults."""
    if _get(cfg, "INPUT.FORMAT", "RGB") != "RGB":
        raise ConversionError(
            f"INPUT.FORMAT={_get(cfg, 'INPUT.FORMAT')!r}: only RGB-trained checkpoints are supported (the processor "
            "feeds RGB images)."
        )
    return MaskDinoImageProcessor(
        size={
            "shortest_edge": int(_get(cfg, "INPUT.MIN_SIZE_TEST", 800)),
            "longest_edge": int(_get(cfg, "INPUT.MAX_SIZE_TEST", 1333)),
        },
        image_mean=[float(v) for v in _get(cfg, "MODEL.PIXEL_MEAN", [123.675, 116.28, 103.53])],
        image_std=[float(v) for v in _get(cfg, "MODEL.PIXEL_STD", [58.395, 57.12, 57.375])],
        size_divisor=int(_get(cfg, "MODEL.MaskDINO.SIZE_DIVISIBILITY", 32)) or 32,
        use_semantic_cross_entropy=config.use_semantic_cross_entropy,
        object_mask_threshold=config.object_mask_threshold,
        overlap_threshold=config.overlap_threshold,
        panoptic_temperature=config.panoptic_temperature,
        apply_panoptic_temperature=config.apply_panoptic_temperature,
        detections_per_image=config.detections_per_image,
        stuff_label_ids=list(config.stuff_label_ids),
    )


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoint tensors -> our names
# ---------------------------------------------------------------------------------------------------------------------

# Tensors the original stores that carry no weights of ours: detectron2's loss buffer and the aliases of the shared
# box head and decoder norm (checked equal to the tensor we keep).
ALIASES = {
    r"sem_seg_head\.predictor\.bbox_embed\.\d+\.(.*)": r"sem_seg_head.predictor._bbox_embed.\1",
    r"sem_seg_head\.predictor\.decoder\.bbox_embed\.\d+\.(.*)": r"sem_seg_head.predictor._bbox_embed.\1",
    r"sem_seg_head\.predictor\.decoder\.norm\.(.*)": r"sem_seg_head.predictor.decoder_norm.\1",
}


def _resnet_key(key: str) -> str | None:
    rules = [
        (r"backbone\.stem\.conv1\.weight", "model.backbone.embedder.embedder.convolution.weight"),
        (r"backbone\.stem\.conv1\.norm\.(\w+)", r"model.backbone.embedder.embedder.normalization.\1"),
        (r"backbone\.res(\d)\.(\d+)\.shortcut\.weight", "model.backbone.encoder.stages.{s}.layers.{b}.shortcut.convolution.weight"),
        (r"backbone\.res(\d)\.(\d+)\.shortcut\.norm\.(\w+)", "model.backbone.encoder.stages.{s}.layers.{b}.shortcut.normalization.{p}"),
        (r"backbone\.res(\d)\.(\d+)\.conv(\d)\.weight", "model.backbone.encoder.stages.{s}.layers.{b}.layer.{c}.convolution.weight"),
        (r"backbone\.res(\d)\.(\d+)\.conv(\d)\.norm\.(\w+)", "model.backbone.encoder.stages.{s}.layers.{b}.layer.{c}.normalization.{p}"),
    ]
    for pattern, target in rules:
        match = re.fullmatch(pattern, key)
        if match is None:
            continue
        if "{" not in target:
            return match.expand(target)
        groups = match.groups()
        fields = {"s": int(groups[0]) - 2, "b": groups[1]}
        if "{c}" in target:
            fields["c"] = int(groups[2]) - 1
            fields["p"] = groups[3] if len(groups) > 3 else None
        else:
            fields["p"] = groups[2] if len(groups) > 2 else None
        return target.format(**fields)
    return None


def _swin_key(key: str) -> str | None:
    rules = [
        (r"backbone\.patch_embed\.proj\.(\w+)", r"model.backbone.swin.embeddings.patch_embeddings.projection.\1"),
        (r"backbone\.patch_embed\.norm\.(\w+)", r"model.backbone.swin.embeddings.norm.\1"),
        (r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.norm1\.(\w+)", r"model.backbone.swin.encoder.layers.\1.blocks.\2.layernorm_before.\3"),
        (r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.norm2\.(\w+)", r"model.backbone.swin.encoder.layers.\1.blocks.\2.layernorm_after.\3"),
        (
            r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_bias_table",
            r"model.backbone.swin.encoder.layers.\1.blocks.\2.attention.relative_position_bias.relative_position_bias_table",
        ),
        (r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.attn\.proj\.(\w+)", r"model.backbone.swin.encoder.layers.\1.blocks.\2.attention.o_proj.\3"),
        (r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.mlp\.(fc\d)\.(\w+)", r"model.backbone.swin.encoder.layers.\1.blocks.\2.mlp.\3.\4"),
        (r"backbone\.layers\.(\d+)\.downsample\.(\w+)\.(\w+)", r"model.backbone.swin.encoder.layers.\1.downsample.\2.\3"),
    ]
    for pattern, target in rules:
        match = re.fullmatch(pattern, key)
        if match is not None:
            return match.expand(target)
    match = re.fullmatch(r"backbone\.norm(\d)\.(\w+)", key)
    if match is not None:
        return f"model.backbone.hidden_states_norms.stage{int(match.group(1)) + 1}.{match.group(2)}"
    return None


def _head_key(key: str, config: MaskDinoConfig) -> str | None:
    num_backbone_levels = len(config.encoder_in_features)

    def pixel_projection_index(match):
        index = int(match.group(1))
        # the original orders its backbone projections low2high: ascending stride; high2low: descending
        if index < num_backbone_levels and config.encoder_low_resolution_first:
            index = num_backbone_levels - 1 - index
        return f"model.pixel_decoder.input_projections.{index}.{match.group(2)}"

    prefix = "sem_seg_head.pixel_decoder."
    rules = [
        (prefix + r"input_proj\.(\d+)\.(\d\.\w+)", pixel_projection_index),
        (prefix + r"transformer\.level_embed", lambda m: "model.pixel_decoder.level_embed"),
        (prefix + r"transformer\.encoder\.layers\.(\d+)\.self_attn\.(\w+)\.(\w+)", r"model.pixel_decoder.encoder.layers.\1.self_attn.\2.\3"),
        (prefix + r"transformer\.encoder\.layers\.(\d+)\.norm1\.(\w+)", r"model.pixel_decoder.encoder.layers.\1.self_attn_layer_norm.\2"),
        (prefix + r"transformer\.encoder\.layers\.(\d+)\.norm2\.(\w+)", r"model.pixel_decoder.encoder.layers.\1.final_layer_norm.\2"),
        (prefix + r"transformer\.encoder\.layers\.(\d+)\.linear1\.(\w+)", r"model.pixel_decoder.encoder.layers.\1.mlp.fc1.\2"),
        (prefix + r"transformer\.encoder\.layers\.(\d+)\.linear2\.(\w+)", r"model.pixel_decoder.encoder.layers.\1.mlp.fc2.\2"),
        (prefix + r"mask_features\.(\w+)", r"model.pixel_decoder.mask_projection.\1"),
    ]
    predictor = "sem_seg_head.predictor."
    rules += [
        (predictor + r"enc_output\.(\w+)", r"model.encoder_output_projection.\1"),
        (predictor + r"enc_output_norm\.(\w+)", r"model.encoder_output_layernorm.\1"),
        (predictor + r"input_proj\.(\d+)\.(\w+)", r"model.input_projections.\1.\2"),
        (predictor + r"query_feat\.weight", "model.query_content_embeddings.weight"),
        (predictor + r"query_embed\.weight", "model.query_anchor_embeddings.weight"),
        (predictor + r"label_enc\.weight", "model.denoising_label_embeddings.weight"),
        (predictor + r"class_embed\.(\w+)", r"model.decoder.class_embed.\1"),
        (predictor + r"mask_embed\.layers\.(\d+)\.(\w+)", r"model.decoder.mask_embed.layers.\1.\2"),
        (predictor + r"_bbox_embed\.layers\.(\d+)\.(\w+)", r"model.decoder.bbox_embed.layers.\1.\2"),
        (predictor + r"decoder_norm\.(\w+)", r"model.decoder.layernorm.\1"),
        (predictor + r"decoder\.ref_point_head\.layers\.(\d+)\.(\w+)", r"model.decoder.query_position_head.layers.\1.\2"),
    ]
    layer = predictor + r"decoder\.layers\.(\d+)\."
    rules += [
        (layer + r"cross_attn\.(\w+)\.(\w+)", r"model.decoder.layers.\1.encoder_attn.\2.\3"),
        (layer + r"norm1\.(\w+)", r"model.decoder.layers.\1.encoder_attn_layer_norm.\2"),
        (layer + r"norm2\.(\w+)", r"model.decoder.layers.\1.self_attn_layer_norm.\2"),
        (layer + r"norm3\.(\w+)", r"model.decoder.layers.\1.final_layer_norm.\2"),
        (layer + r"linear1\.(\w+)", r"model.decoder.layers.\1.mlp.fc1.\2"),
        (layer + r"linear2\.(\w+)", r"model.decoder.layers.\1.mlp.fc2.\2"),
        (layer + r"self_attn\.out_proj\.(\w+)", r"model.decoder.layers.\1.self_attn.o_proj.\2"),
    ]
    for pattern, target in rules:
        match = re.fullmatch(pattern, key)
        if match is not None:
            return target(match) if callable(target) else match.expand(target)
    return None


def convert_state_dict(original: dict[str, torch.Tensor], config: MaskDinoConfig, num_fpn_levels: int):
    """
    Maps every tensor of an original checkpoint to our names.

    Returns:
        `(state_dict, unused)`: our tensors, and the original keys that mapped to nothing.
    """
    is_swin = config.backbone_config.model_type == "swin"
    converted, unused = {}, []
    for key, tensor in original.items():
        if key == "criterion.empty_weight":
            continue  # rebuilt from the config by the loss
        alias = next((re.sub(p, t, key) for p, t in ALIASES.items() if re.fullmatch(p, key)), None)
        if alias is not None:
            if alias not in original or not torch.equal(original[alias], tensor):
                raise ConversionError(f"{key} should be an alias of {alias} (one shared tensor), but it differs.")
            continue
        # the original's in_proj stacks (q, k, v); ours are three layers
        match = re.fullmatch(r"sem_seg_head\.predictor\.decoder\.layers\.(\d+)\.self_attn\.in_proj_(weight|bias)", key)
        if match is not None:
            for name, chunk in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0)):
                converted[f"model.decoder.layers.{match.group(1)}.self_attn.{name}.{match.group(2)}"] = chunk.clone()
            continue
        match = re.fullmatch(r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)", key)
        if is_swin and match is not None:
            stage, block, kind = match.groups()
            for name, chunk in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0)):
                converted[f"model.backbone.swin.encoder.layers.{stage}.blocks.{block}.attention.{name}.{kind}"] = chunk.clone()
            continue
        if is_swin and re.fullmatch(r"backbone\.layers\.\d+\.blocks\.\d+\.attn\.relative_position_index", key):
            converted[key] = tensor  # checked against our recomputed buffer in `check_and_load`
            continue
        # FPN convs: adapter_k / layer_k belong to the k-th highest-resolution stage; ours run top-down
        match = re.fullmatch(r"sem_seg_head\.pixel_decoder\.(adapter|layer)_(\d+)\.(norm\.)?(\w+)", key)
        if match is not None:
            kind, k, norm, param = match.groups()
            index = num_fpn_levels - int(k)
            module = "lateral_convs" if kind == "adapter" else "output_convs"
            converted[f"model.pixel_decoder.{module}.{index}.{1 if norm else 0}.{param}"] = tensor
            continue
        target = _swin_key(key) if is_swin else _resnet_key(key)
        if target is None:
            target = _head_key(key, config)
        if target is None:
            unused.append(key)
        else:
            converted[target] = tensor
    return converted, unused


# Tensors of ours that no original checkpoint has, each with the reason it may stay at its initial value.
NOT_IN_ORIGINAL = {
    r"model\.backbone\.swin\.layernorm\.(weight|bias)": "Swin's final LayerNorm: computed by SwinModel, never reaches the backbone feature maps",
}


def check_and_load(model: MaskDinoForUniversalSegmentation, converted: dict[str, torch.Tensor], unused: list[str]):
    """Loads `converted` into `model`, refusing unused, missing or mis-shaped tensors (all listed at once)."""
    expected = model.state_dict()
    problems = []
    if unused:
        problems.append("checkpoint tensors that map to nothing:\n  " + "\n  ".join(sorted(unused)))
    position_indices = {k: v for k, v in converted.items() if k.endswith("attn.relative_position_index")}
    for key, tensor in position_indices.items():
        stage_block = re.search(r"layers\.(\d+)\.blocks\.(\d+)", key).groups()
        ours = "model.backbone.swin.encoder.layers.{}.blocks.{}.attention.relative_position_bias.relative_position_index".format(*stage_block)
        buffer = dict(model.named_buffers()).get(ours)
        if buffer is None or not torch.equal(buffer.to(tensor.dtype), tensor.flatten()):
            problems.append(f"{key} differs from our relative position index ({ours}).")
        del converted[key]
    unexpected = sorted(set(converted) - set(expected))
    if unexpected:
        problems.append("mapped names the model does not have:\n  " + "\n  ".join(unexpected))
    missing = sorted(
        key
        for key in set(expected) - set(converted)
        if not key.endswith("num_batches_tracked") and not any(re.fullmatch(p, key) for p in NOT_IN_ORIGINAL)
    )
    if missing:
        problems.append("model tensors the checkpoint does not fill:\n  " + "\n  ".join(missing))
    mismatched = [
        f"{key}: checkpoint {tuple(tensor.shape)} vs model {tuple(expected[key].shape)}"
        for key, tensor in converted.items()
        if key in expected and tensor.shape != expected[key].shape
    ]
    if mismatched:
        problems.append("shape mismatches:\n  " + "\n  ".join(mismatched))
    if problems:
        raise ConversionError("Refusing to convert:\n" + "\n".join(problems))
    model.load_state_dict(converted, strict=False)


def convert(
    config_file: str | Path,
    checkpoint: str | Path,
    output_dir: str | Path | None = None,
    metadata_file: str | Path | None = None,
):
    """
    Converts `checkpoint` with `config_file` (and optional detectron2-style dataset metadata). Writes the model and
    its processor to `output_dir` when given, and returns `(model, image_processor)`.
    """
    cfg = load_detectron2_yaml(config_file)
    metadata = None
    if metadata_file is not None:
        with open(metadata_file) as f:
            metadata = json.load(f)
    config = config_from_detectron2(cfg, metadata)
    config.architectures = ["MaskDinoForUniversalSegmentation"]
    image_processor = image_processor_from_detectron2(cfg, config)

    loaded = torch.load(checkpoint, map_location="cpu", weights_only=True)
    original = loaded.get("model", loaded) if isinstance(loaded, dict) else None
    if not isinstance(original, dict):
        raise ConversionError(f"{checkpoint} holds no state dict (expected a dict, or a dict with a 'model' entry).")

    model = MaskDinoForUniversalSegmentation(config).eval()
    converted, unused = convert_state_dict(original, config, len(model.model.pixel_decoder.fpn_features))
    check_and_load(model, converted, unused)

    if output_dir is not None:
        model.save_pretrained(output_dir)
        image_processor.save_pretrained(output_dir)
    return model, image_processor


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="detectron2 yaml of the checkpoint (follows _BASE_).")
    parser.add_argument("--checkpoint", required=True, help="original .pth checkpoint.")
    parser.add_argument("--output-dir", required=True, help="directory to write the converted model to.")
    parser.add_argument(
        "--metadata",
        help="detectron2-style dataset metadata JSON (class names, thing/stuff id maps) for id2label and stuff labels.",
    )
    args = parser.parse_args(argv)
    model, _ = convert(args.config_file, args.checkpoint, args.output_dir, args.metadata)
    num_parameters = sum(p.numel() for p in model.parameters())
    print(f"Wrote {args.output_dir}: {len(model.state_dict())} tensors, {num_parameters:,} parameters.")


if __name__ == "__main__":
    main()
