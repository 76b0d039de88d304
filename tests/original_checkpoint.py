# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Checkpoints in the original's format, for tests: the tensor names and shapes a detectron2 Mask DINO checkpoint of a
given config has, and files of that layout with random values.

The layout is derived here from the config alone (module by module: detectron2 ResNet or Swin backbone,
`MaskDINOEncoder` pixel decoder, `MaskDINODecoder` predictor), independently of the converter's mapping and of our
model, so that converting these files tests both. `test_original_layout_matches_the_reference_checkpoints` checks
the derivation against the four checkpoints the original code wrote (`../shared/reference/*/model.pth`).
"""

import math
from pathlib import Path

import torch

RESNET_DEPTHS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}
STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}


def _get(cfg: dict, dotted: str, default=None):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _linear(shapes, name, out_features, in_features, bias=True):
    shapes[f"{name}.weight"] = (out_features, in_features)
    if bias:
        shapes[f"{name}.bias"] = (out_features,)


def _norm(shapes, name, channels, batch_norm_stats=False, num_batches_tracked=False):
    shapes[f"{name}.weight"] = (channels,)
    shapes[f"{name}.bias"] = (channels,)
    if batch_norm_stats:
        shapes[f"{name}.running_mean"] = (channels,)
        shapes[f"{name}.running_var"] = (channels,)
    if num_batches_tracked:
        shapes[f"{name}.num_batches_tracked"] = ()


def _mlp(shapes, name, in_dim, hidden_dim, out_dim, num_layers):
    dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
    for i in range(num_layers):
        _linear(shapes, f"{name}.layers.{i}", dims[i + 1], dims[i])


def _deformable_attention(shapes, name, dim, heads, levels, points):
    _linear(shapes, f"{name}.sampling_offsets", heads * levels * points * 2, dim)
    _linear(shapes, f"{name}.attention_weights", heads * levels * points, dim)
    _linear(shapes, f"{name}.value_proj", dim, dim)
    _linear(shapes, f"{name}.output_proj", dim, dim)


def _resnet(shapes, cfg) -> dict[str, int]:
    norm = _get(cfg, "MODEL.RESNETS.NORM", "FrozenBN")
    # FrozenBN keeps weight/bias/statistics; (Sync)BatchNorm also counts batches
    tracked = norm in ("BN", "SyncBN", "nnSyncBN", "naiveSyncBN")
    stem = _get(cfg, "MODEL.RESNETS.STEM_OUT_CHANNELS", 64)
    out_channels = _get(cfg, "MODEL.RESNETS.RES2_OUT_CHANNELS", 256)
    bottleneck = _get(cfg, "MODEL.RESNETS.NUM_GROUPS", 1) * _get(cfg, "MODEL.RESNETS.WIDTH_PER_GROUP", 64)
    shapes["backbone.stem.conv1.weight"] = (stem, 3, 7, 7)
    _norm(shapes, "backbone.stem.conv1.norm", stem, True, tracked)
    channels, in_channels = {}, stem
    for stage, depth in zip(range(2, 6), RESNET_DEPTHS[_get(cfg, "MODEL.RESNETS.DEPTH", 50)]):
        for block in range(depth):
            prefix = f"backbone.res{stage}.{block}"
            if block == 0 and in_channels != out_channels:
                shapes[f"{prefix}.shortcut.weight"] = (out_channels, in_channels, 1, 1)
                _norm(shapes, f"{prefix}.shortcut.norm", out_channels, True, tracked)
            for conv, (cout, cin, k) in enumerate(
                [(bottleneck, in_channels, 1), (bottleneck, bottleneck, 3), (out_channels, bottleneck, 1)], start=1
            ):
                shapes[f"{prefix}.conv{conv}.weight"] = (cout, cin, k, k)
                _norm(shapes, f"{prefix}.conv{conv}.norm", cout, True, tracked)
            in_channels = out_channels
        channels[f"res{stage}"] = out_channels
        out_channels, bottleneck = out_channels * 2, bottleneck * 2
    return channels


def swin_relative_position_index(window_size: int) -> torch.Tensor:
    """The `(window_size**2, window_size**2)` table of indices into the relative position bias of a Swin window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)
    return relative[..., 0] * (2 * window_size - 1) + relative[..., 1]


def _swin(shapes, cfg) -> dict[str, int]:
    dim = _get(cfg, "MODEL.SWIN.EMBED_DIM", 96)
    patch = _get(cfg, "MODEL.SWIN.PATCH_SIZE", 4)
    depths = _get(cfg, "MODEL.SWIN.DEPTHS", [2, 2, 6, 2])
    heads = _get(cfg, "MODEL.SWIN.NUM_HEADS", [3, 6, 12, 24])
    window = _get(cfg, "MODEL.SWIN.WINDOW_SIZE", 7)
    mlp_ratio = _get(cfg, "MODEL.SWIN.MLP_RATIO", 4.0)
    out_features = _get(cfg, "MODEL.SWIN.OUT_FEATURES", ["res2", "res3", "res4", "res5"])
    shapes["backbone.patch_embed.proj.weight"] = (dim, 3, patch, patch)
    shapes["backbone.patch_embed.proj.bias"] = (dim,)
    _norm(shapes, "backbone.patch_embed.norm", dim)
    channels = {}
    for stage, (depth, num_heads) in enumerate(zip(depths, heads)):
        stage_dim = dim * 2**stage
        stage_hidden = int(stage_dim * mlp_ratio)
        for block in range(depth):
            prefix = f"backbone.layers.{stage}.blocks.{block}"
            _norm(shapes, f"{prefix}.norm1", stage_dim)
            shapes[f"{prefix}.attn.relative_position_bias_table"] = ((2 * window - 1) ** 2, num_heads)
            shapes[f"{prefix}.attn.relative_position_index"] = (window**2, window**2)
            _linear(shapes, f"{prefix}.attn.qkv", 3 * stage_dim, stage_dim)
            _linear(shapes, f"{prefix}.attn.proj", stage_dim, stage_dim)
            _norm(shapes, f"{prefix}.norm2", stage_dim)
            _linear(shapes, f"{prefix}.mlp.fc1", stage_hidden, stage_dim)
            _linear(shapes, f"{prefix}.mlp.fc2", stage_dim, stage_hidden)
        if stage < len(depths) - 1:
            _linear(shapes, f"backbone.layers.{stage}.downsample.reduction", 2 * stage_dim, 4 * stage_dim, bias=False)
            _norm(shapes, f"backbone.layers.{stage}.downsample.norm", 4 * stage_dim)
        name = f"res{stage + 2}"
        if name in out_features:
            _norm(shapes, f"backbone.norm{stage}", stage_dim)
        channels[name] = stage_dim
    return channels


def original_layout(cfg: dict) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """
    The tensors of an original checkpoint of the merged detectron2 config `cfg`.

    Returns:
        `(shapes, aliases)`: the shape of every stored name, and the names that are aliases of another (the box head
        shared by every decoder layer, the decoder's final norm), mapped to the name whose tensor they share.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    if _get(cfg, "MODEL.BACKBONE.NAME") == "D2SwinTransformer":
        channels = _swin(shapes, cfg)
    else:
        channels = _resnet(shapes, cfg)

    # pixel decoder (MaskDINOEncoder)
    conv_dim = _get(cfg, "MODEL.SEM_SEG_HEAD.CONVS_DIM")
    mask_dim = _get(cfg, "MODEL.SEM_SEG_HEAD.MASK_DIM")
    heads = _get(cfg, "MODEL.MaskDINO.NHEADS", 8)
    in_features = sorted(_get(cfg, "MODEL.SEM_SEG_HEAD.IN_FEATURES"), key=STRIDES.get)
    encoder_features = sorted(_get(cfg, "MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES"), key=STRIDES.get)
    total_levels = _get(cfg, "MODEL.SEM_SEG_HEAD.TOTAL_NUM_FEATURE_LEVELS")
    # projection i reads the i-th level from the highest resolution ("low2high") or from the lowest ("high2low")
    projected = encoder_features if _get(cfg, "MODEL.SEM_SEG_HEAD.FEATURE_ORDER", "high2low") == "low2high" else encoder_features[::-1]
    pixel = "sem_seg_head.pixel_decoder"
    for i, name in enumerate(projected):
        shapes[f"{pixel}.input_proj.{i}.0.weight"] = (conv_dim, channels[name], 1, 1)
        shapes[f"{pixel}.input_proj.{i}.0.bias"] = (conv_dim,)
        _norm(shapes, f"{pixel}.input_proj.{i}.1", conv_dim)
    in_channels = max(channels[name] for name in encoder_features)
    for i in range(len(encoder_features), total_levels):
        shapes[f"{pixel}.input_proj.{i}.0.weight"] = (conv_dim, in_channels, 3, 3)
        shapes[f"{pixel}.input_proj.{i}.0.bias"] = (conv_dim,)
        _norm(shapes, f"{pixel}.input_proj.{i}.1", conv_dim)
        in_channels = conv_dim
    shapes[f"{pixel}.transformer.level_embed"] = (total_levels, conv_dim)
    encoder_ffn = _get(cfg, "MODEL.SEM_SEG_HEAD.DIM_FEEDFORWARD")
    for layer in range(_get(cfg, "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS")):
        prefix = f"{pixel}.transformer.encoder.layers.{layer}"
        _deformable_attention(shapes, f"{prefix}.self_attn", conv_dim, heads, total_levels, 4)
        _norm(shapes, f"{prefix}.norm1", conv_dim)
        _linear(shapes, f"{prefix}.linear1", encoder_ffn, conv_dim)
        _linear(shapes, f"{prefix}.linear2", conv_dim, encoder_ffn)
        _norm(shapes, f"{prefix}.norm2", conv_dim)
    shapes[f"{pixel}.mask_features.weight"] = (mask_dim, conv_dim, 1, 1)
    shapes[f"{pixel}.mask_features.bias"] = (mask_dim,)
    common_stride = _get(cfg, "MODEL.SEM_SEG_HEAD.COMMON_STRIDE", 4)
    num_fpn = max(int(math.log2(STRIDES[encoder_features[0]]) - math.log2(common_stride)), 1)
    for k, name in enumerate(in_features[:num_fpn], start=1):
        # GroupNorm convs without bias
        shapes[f"{pixel}.adapter_{k}.weight"] = (conv_dim, channels[name], 1, 1)
        _norm(shapes, f"{pixel}.adapter_{k}.norm", conv_dim)
        shapes[f"{pixel}.layer_{k}.weight"] = (conv_dim, conv_dim, 3, 3)
        _norm(shapes, f"{pixel}.layer_{k}.norm", conv_dim)

    # predictor (MaskDINODecoder)
    hidden = _get(cfg, "MODEL.MaskDINO.HIDDEN_DIM", 256)
    queries = _get(cfg, "MODEL.MaskDINO.NUM_OBJECT_QUERIES")
    num_classes = _get(cfg, "MODEL.SEM_SEG_HEAD.NUM_CLASSES")
    two_stage = _get(cfg, "MODEL.MaskDINO.TWO_STAGE", True)
    box_init = _get(cfg, "MODEL.MaskDINO.INITIALIZE_BOX_TYPE", "no")
    # the original's condition reads `SEMANTIC_ON and SEMANTIC_CE_LOSS and ~PANOPTIC_ON`, and `~bool` is never False
    semantic_ce = bool(_get(cfg, "MODEL.MaskDINO.TEST.SEMANTIC_ON", True) and _get(cfg, "MODEL.MaskDINO.SEMANTIC_CE_LOSS", False))
    decoder_ffn = _get(cfg, "MODEL.MaskDINO.DIM_FEEDFORWARD", 2048)
    predictor = "sem_seg_head.predictor"
    if not two_stage or _get(cfg, "MODEL.MaskDINO.LEARN_TGT", False):
        shapes[f"{predictor}.query_feat.weight"] = (queries, hidden)
    if not two_stage and box_init == "no":
        shapes[f"{predictor}.query_embed.weight"] = (queries, 4)
    if two_stage:
        _linear(shapes, f"{predictor}.enc_output", hidden, hidden)
        _norm(shapes, f"{predictor}.enc_output_norm", hidden)
    if conv_dim != hidden or _get(cfg, "MODEL.MaskDINO.ENFORCE_INPUT_PROJ", False):
        for i in range(total_levels):
            shapes[f"{predictor}.input_proj.{i}.weight"] = (hidden, conv_dim, 1, 1)
            shapes[f"{predictor}.input_proj.{i}.bias"] = (hidden,)
    _linear(shapes, f"{predictor}.class_embed", num_classes + 1 if semantic_ce else num_classes, hidden)
    shapes[f"{predictor}.label_enc.weight"] = (num_classes, hidden)
    _mlp(shapes, f"{predictor}.mask_embed", hidden, hidden, mask_dim, 3)
    _norm(shapes, f"{predictor}.decoder_norm", hidden)
    num_layers = _get(cfg, "MODEL.MaskDINO.DEC_LAYERS")
    for layer in range(num_layers):
        prefix = f"{predictor}.decoder.layers.{layer}"
        _deformable_attention(shapes, f"{prefix}.cross_attn", hidden, 8, total_levels, 4)
        _norm(shapes, f"{prefix}.norm1", hidden)
        shapes[f"{prefix}.self_attn.in_proj_weight"] = (3 * hidden, hidden)
        shapes[f"{prefix}.self_attn.in_proj_bias"] = (3 * hidden,)
        _linear(shapes, f"{prefix}.self_attn.out_proj", hidden, hidden)
        _norm(shapes, f"{prefix}.norm2", hidden)
        _linear(shapes, f"{prefix}.linear1", decoder_ffn, hidden)
        _linear(shapes, f"{prefix}.linear2", hidden, decoder_ffn)
        _norm(shapes, f"{prefix}.norm3", hidden)
    _mlp(shapes, f"{predictor}.decoder.ref_point_head", 2 * hidden, hidden, hidden, 2)
    _mlp(shapes, f"{predictor}._bbox_embed", hidden, hidden, 4, 3)
    aliases = {}
    for suffix in ("weight", "bias"):
        aliases[f"{predictor}.decoder.norm.{suffix}"] = f"{predictor}.decoder_norm.{suffix}"
        shapes[f"{predictor}.decoder.norm.{suffix}"] = (hidden,)
    for layer in range(num_layers):
        for owner in ("bbox_embed", "decoder.bbox_embed"):
            for i in range(3):
                for suffix in ("weight", "bias"):
                    source = f"{predictor}._bbox_embed.layers.{i}.{suffix}"
                    name = f"{predictor}.{owner}.{layer}.layers.{i}.{suffix}"
                    aliases[name] = source
                    shapes[name] = shapes[source]
    shapes["criterion.empty_weight"] = (num_classes + 1,)
    return shapes, aliases


def make_original_state_dict(cfg: dict, seed: int = 0, zero_memory: bool = False) -> dict[str, torch.Tensor]:
    """
    A state dict with the layout of an original checkpoint of `cfg`: random values (uniform in [0.5, 1.5] for norm
    weights and running variances), the real Swin position index tables, the loss weights, and aliases that share
    their tensor. With `zero_memory`, every float tensor is a stride-0 view of one value (shapes only, no memory).
    """
    shapes, aliases = original_layout(cfg)
    generator = torch.Generator().manual_seed(seed)
    num_classes = _get(cfg, "MODEL.SEM_SEG_HEAD.NUM_CLASSES")
    state = {}
    for name, shape in shapes.items():
        if name in aliases:
            continue
        if name.endswith("relative_position_index"):
            state[name] = swin_relative_position_index(math.isqrt(shape[0]))
        elif name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(1000, dtype=torch.int64)
        elif name == "criterion.empty_weight":
            state[name] = torch.ones(num_classes + 1)
            state[name][-1] = _get(cfg, "MODEL.MaskDINO.NO_OBJECT_WEIGHT", 0.1)
        elif zero_memory:
            state[name] = torch.ones(()).expand(shape)
        elif name.endswith(("running_var", "norm.weight", "norm1.weight", "norm2.weight", "norm3.weight")) or (
            name.endswith(".1.weight") and "input_proj" in name
        ):
            state[name] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[name] = torch.randn(shape, generator=generator) * 0.02
    for name, source in aliases.items():
        state[name] = state[source]
    return state


def save_original_checkpoint(cfg: dict, path: str | Path, seed: int = 0) -> Path:
    """Writes a random checkpoint of `cfg` as the original releases are stored: `{"model": state_dict, "iteration"}`."""
    torch.save({"model": make_original_state_dict(cfg, seed), "iteration": 0}, path)
    return Path(path)
