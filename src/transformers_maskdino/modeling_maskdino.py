# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""PyTorch Mask DINO model: DINO-style detection with a mask branch, for detection and universal segmentation."""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.backbone_utils import load_backbone
from transformers.image_transforms import corners_to_center_format
from transformers.integrations import use_kernel_forward_from_hub
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel
from transformers.models.deformable_detr.modeling_deformable_detr import inverse_sigmoid
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_maskdino import MaskDinoConfig
from .loss_maskdino import MaskDinoLoss

try:  # absolute: remote code (no kernel sources beside it) gets the compiled kernel only where the package is installed
    from transformers_maskdino import msda_kernels
except ImportError:
    msda_kernels = None


# ---- Outputs ----


@dataclass
class MaskDinoPixelDecoderOutput(ModelOutput):
    r"""
    mask_features (`torch.FloatTensor` of shape `(batch_size, mask_feature_size, height / 4, width / 4)`):
        Per-pixel mask embeddings.
    multi_scale_features (`tuple(torch.FloatTensor)`):
        Encoder outputs per level, each `(batch_size, feature_size, height_l, width_l)`, in encoder level order.
    encoder_inputs (`tuple(torch.FloatTensor)`):
        Projected backbone features (and extra levels) entering the deformable encoder, in encoder level order.
    fpn_output (`torch.FloatTensor` of shape `(batch_size, feature_size, height / 4, width / 4)`):
        Output of the FPN path, from which the mask features are projected.
    encoder_last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, feature_size)`):
        Flattened output of the deformable encoder.
    encoder_hidden_states (`tuple(torch.FloatTensor)`, *optional*):
        Output of each encoder layer, returned with `output_hidden_states=True`.
    encoder_attentions (`tuple(torch.FloatTensor)`, *optional*):
        Deformable attention weights of each encoder layer, `(batch_size, sequence_length, num_heads, num_levels,
        num_points)`, returned with `output_attentions=True`.
    """

    mask_features: torch.FloatTensor | None = None
    multi_scale_features: tuple[torch.FloatTensor, ...] | None = None
    encoder_inputs: tuple[torch.FloatTensor, ...] | None = None
    fpn_output: torch.FloatTensor | None = None
    encoder_last_hidden_state: torch.FloatTensor | None = None
    encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    encoder_attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class MaskDinoDecoderOutput(ModelOutput):
    r"""
    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_queries, hidden_dim)`):
        Output of the last decoder layer (before the decoder's final LayerNorm).
    intermediate_hidden_states (`torch.FloatTensor` of shape `(batch_size, decoder_layers, num_queries, hidden_dim)`):
        Output of every decoder layer after the decoder's final LayerNorm.
    intermediate_reference_points (`torch.FloatTensor` of shape `(batch_size, decoder_layers + 1, num_queries, 4)`):
        Sigmoid reference boxes fed to each layer, then the box refined by the last layer.
    hidden_states (`tuple(torch.FloatTensor)`, *optional*):
        Output of each decoder layer, returned with `output_hidden_states=True`.
    attentions (`tuple(torch.FloatTensor)`, *optional*):
        Self-attention weights of each layer, returned with `output_attentions=True`.
    cross_attentions (`tuple(torch.FloatTensor)`, *optional*):
        Deformable cross-attention weights of each layer, returned with `output_attentions=True`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    intermediate_hidden_states: torch.FloatTensor | None = None
    intermediate_reference_points: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class MaskDinoPredictionOutput(ModelOutput):
    r"""
    One set of predictions (here: of the encoder proposals), a `ModelOutput` so that pipelines can slice it per image.

    class_queries_logits (`torch.FloatTensor` of shape `(batch_size, num_queries, num_class_logits)`):
        Class logits.
    masks_queries_logits (`torch.FloatTensor` of shape `(batch_size, num_queries, height / 4, width / 4)`):
        Mask logits.
    pred_boxes (`torch.FloatTensor` of shape `(batch_size, num_queries, 4)`):
        Sigmoid (center_x, center_y, width, height) boxes relative to the padded input.
    mask_embeddings (`torch.FloatTensor` of shape `(batch_size, num_queries, mask_feature_size)`):
        The mask head's output: `masks_queries_logits = einsum("bqc,bchw->bqhw", mask_embeddings, mask_features)`.
    """

    class_queries_logits: torch.FloatTensor | None = None
    masks_queries_logits: torch.FloatTensor | None = None
    pred_boxes: torch.FloatTensor | None = None
    mask_embeddings: torch.FloatTensor | None = None


@dataclass
class MaskDinoModelOutput(ModelOutput):
    r"""
    class_queries_logits (`torch.FloatTensor` of shape `(batch_size, num_queries, num_class_logits)`):
        Class logits of the last decoder layer: sigmoid logits over `num_labels` classes, or softmax logits over
        `num_labels + 1` (last = "no object") when `config.use_semantic_cross_entropy`.
    masks_queries_logits (`torch.FloatTensor` of shape `(batch_size, num_queries, height / 4, width / 4)`):
        Mask logits of the last decoder layer, at the resolution of the mask features (1/4 of the padded input).
    pred_boxes (`torch.FloatTensor` of shape `(batch_size, num_queries, 4)`):
        Sigmoid (center_x, center_y, width, height) boxes of the last decoder layer, relative to the padded input.
    auxiliary_outputs (`list[dict]`):
        Predictions before the last layer, earliest first: the initial prediction from the selected queries (when
        `config.initial_prediction`), then every decoder layer but the last. Each dict has `class_queries_logits`,
        `masks_queries_logits` and `mask_embeddings` (`None` at inference, i.e. in eval mode without targets: the
        original predicts intermediate masks only for the loss) and `pred_boxes`.
        [`MaskDinoForUniversalSegmentation`] returns them only with `output_auxiliary_logits=True`.
    encoder_proposal_outputs ([`MaskDinoPredictionOutput`], *optional*):
        With query selection (`config.init_queries_from_encoder`): `class_queries_logits`, `masks_queries_logits`
        and `pred_boxes` of the top-`num_queries` encoder tokens.
    denoising_outputs (`dict`, *optional*):
        In training with denoising: the predictions of the denoising queries, with the same keys as above plus their
        own `auxiliary_outputs`.
    denoising_meta_values (`dict`, *optional*):
        In training with denoising: the group layout from `build_denoising_queries`.
    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_queries, hidden_dim)`):
        Output of the last decoder layer after the decoder's final LayerNorm.
    intermediate_hidden_states (`torch.FloatTensor` of shape `(batch_size, decoder_layers, num_queries, hidden_dim)`):
        Output of every decoder layer after the final LayerNorm.
    intermediate_reference_points (`torch.FloatTensor` of shape `(batch_size, decoder_layers + 1, num_queries, 4)`):
        Reference boxes fed to each decoder layer, then the box refined by the last one.
    encoder_class_logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, num_class_logits)`, *optional*):
        With query selection: class logits of every encoder token, in the decoder's level order.
    encoder_topk_indices (`torch.LongTensor` of shape `(batch_size, num_queries)`, *optional*):
        With query selection: indices of the selected encoder tokens.
    mask_features (`torch.FloatTensor` of shape `(batch_size, mask_feature_size, height / 4, width / 4)`):
        Per-pixel mask embeddings of the pixel decoder.
    multi_scale_features (`tuple(torch.FloatTensor)`, *optional*):
        Pixel-decoder encoder outputs per level, in encoder level order; with `output_hidden_states=True`.
    backbone_features (`tuple(torch.FloatTensor)`, *optional*):
        Backbone feature maps, one per backbone `out_features` entry; with `output_hidden_states=True`.
    encoder_inputs (`tuple(torch.FloatTensor)`, *optional*):
        Inputs of the deformable encoder per level, in encoder level order; with `output_hidden_states=True`.
    fpn_output (`torch.FloatTensor`, *optional*):
        FPN output at stride `common_stride`; with `output_hidden_states=True`.
    encoder_last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, feature_size)`):
        Flattened output of the deformable encoder.
    encoder_hidden_states, encoder_attentions, decoder_hidden_states, decoder_attentions, cross_attentions (`tuple`, *optional*):
        Per-layer states and attention weights, returned with `output_hidden_states` / `output_attentions`.
    mask_embeddings (`torch.FloatTensor` of shape `(batch_size, num_queries, mask_feature_size)`):
        The mask head's output for the last layer: `masks_queries_logits = einsum("bqc,bchw->bqhw",
        mask_embeddings, mask_features)`. The loss computes the matched queries' masks from it, so that the
        backward pass touches only their rows.
    """

    class_queries_logits: torch.FloatTensor | None = None
    masks_queries_logits: torch.FloatTensor | None = None
    pred_boxes: torch.FloatTensor | None = None
    auxiliary_outputs: list[dict] | None = None
    encoder_proposal_outputs: MaskDinoPredictionOutput | None = None
    denoising_outputs: dict | None = None
    denoising_meta_values: dict | None = None
    last_hidden_state: torch.FloatTensor | None = None
    intermediate_hidden_states: torch.FloatTensor | None = None
    intermediate_reference_points: torch.FloatTensor | None = None
    encoder_class_logits: torch.FloatTensor | None = None
    encoder_topk_indices: torch.LongTensor | None = None
    mask_features: torch.FloatTensor | None = None
    multi_scale_features: tuple[torch.FloatTensor, ...] | None = None
    backbone_features: tuple[torch.FloatTensor, ...] | None = None
    encoder_inputs: tuple[torch.FloatTensor, ...] | None = None
    fpn_output: torch.FloatTensor | None = None
    encoder_last_hidden_state: torch.FloatTensor | None = None
    encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    encoder_attentions: tuple[torch.FloatTensor, ...] | None = None
    decoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    decoder_attentions: tuple[torch.FloatTensor, ...] | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None
    mask_embeddings: torch.FloatTensor | None = None


@dataclass
class MaskDinoForUniversalSegmentationOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*):
        Weighted sum of `loss_dict`, returned when `mask_labels` and `class_labels` are given.
    loss_dict (`dict[str, torch.FloatTensor]`, *optional*):
        The weighted losses under the original's keys (`loss_ce`, `loss_mask`, `loss_dice`, `loss_bbox`,
        `loss_giou`, with `_{i}`, `_interm` and `_dn` suffixes).
    class_queries_logits (`torch.FloatTensor` of shape `(batch_size, num_queries, num_class_logits)`):
        Class logits of the last layer (sigmoid over `num_labels`, or softmax over `num_labels + 1` with semantic
        cross-entropy).
    masks_queries_logits (`torch.FloatTensor` of shape `(batch_size, num_queries, height / 4, width / 4)`):
        Mask logits of the last layer.
    pred_boxes (`torch.FloatTensor` of shape `(batch_size, num_queries, 4)`):
        Sigmoid (center_x, center_y, width, height) boxes relative to the padded input.
    image_sizes (`torch.LongTensor` of shape `(batch_size, 2)`):
        Valid (height, width) of each image in input pixels, from `pixel_mask` (the padded size without one).
    padded_image_sizes (`torch.LongTensor` of shape `(batch_size, 2)`):
        (height, width) of the padded input, repeated per image.
    auxiliary_outputs (`list[dict]`, *optional*):
        As in [`MaskDinoModelOutput`], returned with `output_auxiliary_logits=True` (as Mask2Former's
        `auxiliary_logits`).
    encoder_proposal_outputs, denoising_outputs, denoising_meta_values:
        As in [`MaskDinoModelOutput`].
    last_hidden_state, intermediate_hidden_states, intermediate_reference_points, encoder_class_logits,
    encoder_topk_indices, mask_features, multi_scale_features, backbone_features, encoder_inputs, fpn_output,
    encoder_last_hidden_state, encoder_hidden_states, encoder_attentions, decoder_hidden_states, decoder_attentions,
    cross_attentions, mask_embeddings:
        As in [`MaskDinoModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    loss_dict: dict[str, torch.FloatTensor] | None = None
    class_queries_logits: torch.FloatTensor | None = None
    masks_queries_logits: torch.FloatTensor | None = None
    pred_boxes: torch.FloatTensor | None = None
    image_sizes: torch.LongTensor | None = None
    padded_image_sizes: torch.LongTensor | None = None
    auxiliary_outputs: list[dict] | None = None
    encoder_proposal_outputs: MaskDinoPredictionOutput | None = None
    denoising_outputs: dict | None = None
    denoising_meta_values: dict | None = None
    last_hidden_state: torch.FloatTensor | None = None
    intermediate_hidden_states: torch.FloatTensor | None = None
    intermediate_reference_points: torch.FloatTensor | None = None
    encoder_class_logits: torch.FloatTensor | None = None
    encoder_topk_indices: torch.LongTensor | None = None
    mask_features: torch.FloatTensor | None = None
    multi_scale_features: tuple[torch.FloatTensor, ...] | None = None
    backbone_features: tuple[torch.FloatTensor, ...] | None = None
    encoder_inputs: tuple[torch.FloatTensor, ...] | None = None
    fpn_output: torch.FloatTensor | None = None
    encoder_last_hidden_state: torch.FloatTensor | None = None
    encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    encoder_attentions: tuple[torch.FloatTensor, ...] | None = None
    decoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    decoder_attentions: tuple[torch.FloatTensor, ...] | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None
    mask_embeddings: torch.FloatTensor | None = None


# ---- Attention and small blocks ----


def exporting_or_tracing() -> bool:
    """Under torch.export, ONNX export or TorchScript tracing: graphs that should hold portable operators only."""
    return torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()


def use_compiled_deformable_attention(value: Tensor) -> bool:
    """Kernel dispatch: the package's compiled C++/CUDA op runs where the package is installed with its kernel
    sources, `MASKDINO_KERNELS` (`auto` by default, `off`, `require`) allows it and it supports `value`'s device and
    dtype; see docs/kernels.md. A Hub kernel (`from_pretrained(..., use_kernels=True)` with `kernels` installed)
    replaces `MultiScaleDeformableAttention.forward` as a whole, so it bypasses this choice."""
    return msda_kernels is not None and msda_kernels.use_compiled_kernel(value)


@use_kernel_forward_from_hub("MultiScaleDeformableAttention")
class MultiScaleDeformableAttention(nn.Module):
    """Stateless multi-scale deformable attention: the compiled kernel where it applies, else bilinear `grid_sample`
    (Deformable DETR's layer, whose signature Hub kernels implement)."""

    def forward(
        self,
        value: Tensor,
        value_spatial_shapes: Tensor,
        value_spatial_shapes_list: list[tuple],
        level_start_index: Tensor,
        sampling_locations: Tensor,
        attention_weights: Tensor,
        im2col_step: int,
    ):
        # exported graphs (torch.export, ONNX, TorchScript tracing) use the portable grid_sample path: the compiled
        # op has no ONNX translation and would tie the graph to this package's kernel library
        if not exporting_or_tracing() and use_compiled_deformable_attention(value):
            return msda_kernels.multi_scale_deformable_attention(
                value, value_spatial_shapes, level_start_index, sampling_locations, attention_weights
            )

        # Adapted from transformers.models.deformable_detr.modeling_deformable_detr.MultiScaleDeformableAttention.forward
        # (the same operations, shorter names)
        batch_size, _, num_heads, head_dim = value.shape
        _, num_queries, num_heads, num_levels, num_points, _ = sampling_locations.shape
        # Sampled and summed in float32 for half-precision inputs, like the compiled kernels: CPU `grid_sample` in
        # bfloat16/float16 rounds pixel coordinates to 8/11 bits and on the strided per-level views below returns
        # garbage (values of 1e35, NaN); the output goes back to `value`'s dtype.
        compute_dtype = float32_or_wider(value.dtype)
        value_list = value.to(compute_dtype).split([height * width for height, width in value_spatial_shapes_list], 1)
        sampling_grids = 2 * sampling_locations.to(compute_dtype) - 1
        sampling_value_list = []
        for level_id, (height, width) in enumerate(value_spatial_shapes_list):
            # batch_size, height*width, num_heads, head_dim -> batch_size*num_heads, head_dim, height, width
            value_l = (
                value_list[level_id]
                .flatten(2)
                .transpose(1, 2)
                .reshape(batch_size * num_heads, head_dim, height, width)
            )
            # batch_size, num_queries, num_heads, num_points, 2 -> batch_size*num_heads, num_queries, num_points, 2
            sampling_grid_l = sampling_grids[:, :, :, level_id].transpose(1, 2).flatten(0, 1)
            # batch_size*num_heads, head_dim, num_queries, num_points
            sampling_value_list.append(
                F.grid_sample(value_l, sampling_grid_l, mode="bilinear", padding_mode="zeros", align_corners=False)
            )
        # batch_size, num_queries, num_heads, num_levels, num_points -> batch_size*num_heads, 1, num_queries, levels*points
        attention_weights = (
            attention_weights.to(compute_dtype)
            .transpose(1, 2)
            .reshape(batch_size * num_heads, 1, num_queries, num_levels * num_points)
        )
        output = (
            (torch.stack(sampling_value_list, dim=-2).flatten(-2) * attention_weights)
            .sum(-1)
            .view(batch_size, num_heads * head_dim, num_queries)
        )
        return output.transpose(1, 2).to(value.dtype).contiguous()


class MaskDinoFrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters, all held as buffers (detectron2's `FrozenBN`)."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Buffer(torch.ones(num_features))
        self.bias = nn.Buffer(torch.zeros(num_features))
        self.running_mean = nn.Buffer(torch.zeros(num_features))
        self.running_var = nn.Buffer(torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints of trainable BatchNorm carry a counter that frozen statistics have no use for
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, hidden_states: Tensor) -> Tensor:
        # inference-mode batch norm with the frozen statistics: one fused pass instead of a multiply and an add
        return F.batch_norm(
            hidden_states, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=self.eps
        )


def replace_batch_norm(module: nn.Module) -> None:
    """Recursively replaces every `nn.BatchNorm2d` of `module` by a `MaskDinoFrozenBatchNorm2d` with its values."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = MaskDinoFrozenBatchNorm2d(child.num_features, eps=child.eps)
            if child.weight.device != torch.device("meta"):
                with torch.no_grad():
                    frozen.weight.copy_(child.weight)
                    frozen.bias.copy_(child.bias)
                    frozen.running_mean.copy_(child.running_mean)
                    frozen.running_var.copy_(child.running_var)
            module._modules[name] = frozen
        else:
            replace_batch_norm(child)


class MaskDinoFrozenConvNorm(nn.Module):
    """transformers' ResNet convolution + frozen batch norm (+ ReLU), same parameter names. In float32 and bfloat16
    CPU inference: one oneDNN convolution, batch norm folded in (in float32, then rounded once), ReLU or residual +
    ReLU fused (fp32: a quarter of the backbone's time at 800x1216, outputs move ~1e-6 relative; bf16: 3-5% of the
    forward, as close to fp32 as unfused)."""

    def __init__(self, convolution: nn.Conv2d, normalization: MaskDinoFrozenBatchNorm2d, relu: bool):
        super().__init__()
        self.convolution = convolution
        self.normalization = normalization
        self.activation = nn.ReLU() if relu else nn.Identity()

    def forward(
        self, hidden_states: Tensor, residual: Tensor | None = None, overwrite_residual: bool = False
    ) -> Tensor:
        """With `residual`: ReLU(norm(conv(hidden_states)) + residual), the end of a residual block (fused: into
        `residual`'s memory with `overwrite_residual`)."""
        conv, norm = self.convolution, self.normalization
        if not (
            MKLDNN_CONVOLUTION_POINTWISE is not None
            and fused_cpu_inference_applies(hidden_states, conv.weight)
            # bf16 residual fusion fails on NCHW ("Unsupported datatype for add_relu"); the model runs channels-last
            and (
                hidden_states.dtype == torch.float32
                or all(
                    t is None or t.is_contiguous(memory_format=torch.channels_last) for t in (hidden_states, residual)
                )
            )
        ):
            hidden_states = self.activation(norm(conv(hidden_states)))
            return hidden_states if residual is None else hidden_states.add_(residual).relu_()
        dtype = hidden_states.dtype
        scale = norm.weight.float() * (norm.running_var.float() + norm.eps).rsqrt()
        weight = (conv.weight.float() * scale[:, None, None, None]).to(dtype)
        bias = norm.bias.float() - norm.running_mean.float() * scale
        bias = (bias if conv.bias is None else bias + conv.bias.float() * scale).to(dtype)
        layout = (conv.padding, conv.stride, conv.dilation, conv.groups)
        if residual is not None:
            fusion = (weight, bias, *layout, "add", 1.0, "relu", [], "")
            overwrite = overwrite_residual and MKLDNN_CONVOLUTION_POINTWISE_INPLACE is not None
            if overwrite and residual.is_contiguous(memory_format=memory_format_of(hidden_states)):
                # bit-identical, no fresh output (res2's are 62 MB each at 800x1216: new mappings to fault in)
                return MKLDNN_CONVOLUTION_POINTWISE_INPLACE.binary(residual, hidden_states, *fusion)
            return MKLDNN_CONVOLUTION_POINTWISE.binary(hidden_states, residual, *fusion)
        relu = "relu" if isinstance(self.activation, nn.ReLU) else "none"
        return MKLDNN_CONVOLUTION_POINTWISE(hidden_states, weight, bias, *layout, relu, [], "")


class MaskDinoFrozenResidualBlock(nn.Module):
    """transformers' ResNet block (same names); its last convolution takes the residual addition and ReLU, and
    overwrites the residual if nothing else holds it: a projection's output, or an `input_is_private`."""

    def __init__(self, shortcut: nn.Module, layer: nn.Sequential, input_is_private: bool):
        super().__init__()
        self.shortcut = shortcut
        self.layer = layer
        self.overwrite_residual = input_is_private or not isinstance(shortcut, nn.Identity)

    def forward(self, hidden_states: Tensor) -> Tensor:
        residual = self.shortcut(hidden_states)
        for convolution in self.layer[:-1]:
            hidden_states = convolution(hidden_states)
        return self.layer[-1](hidden_states, residual=residual, overwrite_residual=self.overwrite_residual)


def use_fusable_resnet_layers(module: nn.Module) -> None:
    """Swaps, in a transformers ResNet with frozen batch norm, the convolution layers and the residual blocks ending
    in ReLU for [`MaskDinoFrozenConvNorm`] / [`MaskDinoFrozenResidualBlock`]; other backbones stay as they are."""
    from transformers.models.resnet import modeling_resnet as resnet

    for name, child in list(module.named_children()):
        use_fusable_resnet_layers(child)
        replacement = None
        if isinstance(child, (resnet.ResNetConvLayer, resnet.ResNetShortCut)):
            activation = type(getattr(child, "activation", nn.Identity()))  # a shortcut has none
            if isinstance(child.normalization, MaskDinoFrozenBatchNorm2d) and activation in (nn.ReLU, nn.Identity):
                replacement = MaskDinoFrozenConvNorm(child.convolution, child.normalization, activation is nn.ReLU)
        elif isinstance(child, (resnet.ResNetBottleNeckLayer, resnet.ResNetBasicLayer)):
            last = child.layer[-1]
            if (
                type(child.activation) is nn.ReLU
                and isinstance(last, MaskDinoFrozenConvNorm)
                and isinstance(last.activation, nn.Identity)
                and isinstance(child.shortcut, (nn.Identity, MaskDinoFrozenConvNorm))
            ):
                # in a Sequential (a stage's blocks) only the previous block holds a later block's input; a stage's
                # input can be a feature map or hidden state
                private = isinstance(module, nn.Sequential) and name != "0"
                replacement = MaskDinoFrozenResidualBlock(child.shortcut, child.layer, input_is_private=private)
        if replacement is not None:
            module._modules[name] = replacement


def float32_or_wider(dtype: torch.dtype) -> torch.dtype:
    """The dtype of box coordinates, reference points and deformable-attention sampling: float32 in bfloat16/float16
    models (bfloat16's 8-bit mantissa rounds a coordinate by up to 0.4% of the image: 5 px at 1216), else `dtype`."""
    return torch.promote_types(dtype, torch.float32)


def sine_position_embedding_2d(
    batch_size: int, height: int, width: int, num_pos_feats: int, device, dtype, temperature: float = 10000.0
) -> Tensor:
    """
    Normalised 2D sine position embedding of an unmasked `height x width` grid, `(batch_size, 2 * num_pos_feats,
    height, width)`, y features first. Padding is not masked: the original embeds the padded grid as if it were image.
    """
    scale = 2 * math.pi
    eps = 1e-6
    y_embed = torch.arange(1, height + 1, device=device, dtype=torch.float32)[:, None].expand(height, width)
    x_embed = torch.arange(1, width + 1, device=device, dtype=torch.float32)[None, :].expand(height, width)
    y_embed = y_embed / (height + eps) * scale
    x_embed = x_embed / (width + eps) * scale
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)
    pos_x = x_embed[:, :, None] / dim_t
    pos_y = y_embed[:, :, None] / dim_t
    pos_x = torch.stack((pos_x[:, :, 0::2].sin(), pos_x[:, :, 1::2].cos()), dim=3).flatten(2)
    pos_y = torch.stack((pos_y[:, :, 0::2].sin(), pos_y[:, :, 1::2].cos()), dim=3).flatten(2)
    pos = torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1)
    return pos.to(dtype)[None].expand(batch_size, -1, -1, -1)


def box_sine_embedding(boxes: Tensor, num_pos_feats: int, temperature: float = 10000.0) -> Tensor:
    """
    Sine embedding of (cx, cy, w, h) boxes in [0, 1]: `num_pos_feats` features per coordinate, ordered (y, x, w, h).

    Args:
        boxes (`torch.Tensor` of shape `(batch_size, num_queries, 4)`)

    Returns:
        `torch.Tensor` of shape `(batch_size, num_queries, 4 * num_pos_feats)`.
    """
    scale = 2 * math.pi
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=boxes.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)
    embeddings = []
    for coordinate in (1, 0, 2, 3):
        pos = boxes[:, :, coordinate, None] * scale / dim_t
        embeddings.append(torch.stack((pos[:, :, 0::2].sin(), pos[:, :, 1::2].cos()), dim=3).flatten(2))
    return torch.cat(embeddings, dim=2)


def eager_attention_forward(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Unpack[TransformersKwargs],
):
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


class MaskDinoSelfAttention(nn.Module):
    """Multi-head self-attention of the decoder queries; position embeddings are added to queries and keys only."""

    def __init__(self, config: MaskDinoConfig, hidden_size: int, num_attention_heads: int, dropout: float = 0.0):
        super().__init__()
        self.config = config
        self.head_dim = hidden_size // num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = dropout
        self.is_causal = False
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(hidden_size, hidden_size)
        self.v_proj = nn.Linear(hidden_size, hidden_size)
        self.o_proj = nn.Linear(hidden_size, hidden_size)

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Tensor | None = None,
        position_embeddings: Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[Tensor, Tensor]:
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query_key_input = hidden_states + position_embeddings if position_embeddings is not None else hidden_states
        query_states = self.q_proj(query_key_input).view(hidden_shape).transpose(1, 2)
        key_states = self.k_proj(query_key_input).view(hidden_shape).transpose(1, 2)
        value_states = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query_states,
            key_states,
            value_states,
            attention_mask,
            dropout=0.0 if not self.training else self.attention_dropout,
            scaling=self.scaling,
            **kwargs,
        )
        attn_output = self.o_proj(attn_output.reshape(*input_shape, -1).contiguous())
        return attn_output, attn_weights


def fused_cpu_inference_applies(hidden_states: Tensor, weight: Tensor) -> bool:
    """Whether a layer may run as one fused oneDNN call ([`MaskDinoLinear`], [`MaskDinoFrozenConvNorm`]): CPU
    inference in float32 or bfloat16, outside autocast (which would not cast for it), tracing, compiling and exporting
    (which should see the plain operators)."""
    # global state first: in exports the tensor checks could guard symbolic sizes
    return (
        not torch.compiler.is_compiling()
        and not exporting_or_tracing()
        and not torch.is_autocast_enabled("cpu")
        and hidden_states.device.type == "cpu"
        and hidden_states.dtype in (torch.float32, torch.bfloat16)
        and weight.dtype == hidden_states.dtype
        and not (torch.is_grad_enabled() and (hidden_states.requires_grad or weight.requires_grad))
    )


def fused_cpu_linear_applies(hidden_states: Tensor, weight: Tensor) -> bool:
    return (
        MKLDNN_LINEAR_POINTWISE is not None
        and fused_cpu_inference_applies(hidden_states, weight)
        and hidden_states.is_contiguous()
    )


def find_mkldnn_pointwise(name: str):
    # PyTorch's fused oneDNN linear/convolution (what torch.compile's CPU backend emits); relied on in x86 builds only
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64") or not torch.backends.mkldnn.is_available():
        return None
    return getattr(torch.ops.mkldnn, name, None)


MKLDNN_LINEAR_POINTWISE = find_mkldnn_pointwise("_linear_pointwise")
MKLDNN_CONVOLUTION_POINTWISE = find_mkldnn_pointwise("_convolution_pointwise")
MKLDNN_CONVOLUTION_POINTWISE_INPLACE = find_mkldnn_pointwise("_convolution_pointwise_")


class MaskDinoLinear(nn.Linear):
    """`nn.Linear` with an optional ReLU: in CPU inference one oneDNN call with bias and ReLU fused (the numbers of
    `F.linear`, without `addmm`'s bias broadcast and the ReLU's extra passes); elsewhere `F.linear` + in-place ReLU."""

    def forward(self, hidden_states: Tensor, relu: bool = False) -> Tensor:
        if fused_cpu_linear_applies(hidden_states, self.weight):
            return MKLDNN_LINEAR_POINTWISE(hidden_states, self.weight, self.bias, "relu" if relu else "none", [], "")
        if not relu:
            return F.linear(hidden_states, self.weight, self.bias)
        # in place: ReLU's backward only needs its output, and the encoder FFN's is the model's widest tensor. On a
        # 2-d product: F.linear's n-d output is a view, and for an in-place op on it autograd copies the whole
        # gradient (the encoder FFN trains 1.25x faster without)
        leading_shape = hidden_states.shape[:-1]
        hidden_states = F.linear(hidden_states.reshape(-1, self.in_features), self.weight, self.bias)
        return hidden_states.relu_().view(*leading_shape, self.out_features)


def mask_logits_from(mask_embeddings: Tensor, mask_features: Tensor) -> Tensor:
    """`einsum("bqc,bchw->bqhw")`; in CPU inference on channels-last features one oneDNN matmul per image with the
    features as its `(h*w, c)` weight, 1.3x (float32) to 2.5x (bfloat16) faster."""
    batch_size, channels, height, width = mask_features.shape
    if fused_cpu_linear_applies(mask_embeddings, mask_features) and mask_features.is_contiguous(
        memory_format=torch.channels_last
    ):
        tokens = mask_features.permute(0, 2, 3, 1).reshape(batch_size, height * width, channels)
        logits = [MKLDNN_LINEAR_POINTWISE(e, t, None, "none", [], "") for e, t in zip(mask_embeddings, tokens)]
        return (logits[0][None] if batch_size == 1 else torch.stack(logits)).view(batch_size, -1, height, width)
    return torch.einsum("bqc,bchw->bqhw", mask_embeddings, mask_features)


class MaskDinoMultiscaleDeformableAttention(nn.Module):
    """Multi-scale deformable attention (Deformable DETR), used by the pixel-decoder encoder and the decoder."""

    def __init__(self, embed_dim: int, num_heads: int, num_levels: int, num_points: int):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads}).")
        self.im2col_step = 64
        self.d_model = embed_dim
        self.n_levels = num_levels
        self.n_heads = num_heads
        self.n_points = num_points
        self.attn = MultiScaleDeformableAttention()
        self.sampling_offsets = MaskDinoLinear(embed_dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = MaskDinoLinear(embed_dim, num_heads * num_levels * num_points)
        self.value_proj = MaskDinoLinear(embed_dim, embed_dim)
        self.output_proj = MaskDinoLinear(embed_dim, embed_dim)

    def forward(
        self,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor,
        position_embeddings: Tensor | None = None,
        reference_points: Tensor | None = None,
        spatial_shapes: Tensor | None = None,
        spatial_shapes_list: list[tuple[int, int]] | None = None,
        level_start_index: Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[Tensor, Tensor]:
        if position_embeddings is not None:
            hidden_states = hidden_states + position_embeddings
        batch_size, num_queries, _ = hidden_states.shape
        _, sequence_length, _ = encoder_hidden_states.shape

        value = self.value_proj(encoder_hidden_states)
        value = value.view(batch_size, sequence_length, self.n_heads, self.d_model // self.n_heads)
        # batch_size, num_queries, n_heads, n_levels, n_points, 2
        sampling_offsets = self.sampling_offsets(hidden_states).view(
            batch_size, num_queries, self.n_heads, self.n_levels, self.n_points, 2
        )
        attention_weights = self.attention_weights(hidden_states).view(
            batch_size, num_queries, self.n_heads, self.n_levels * self.n_points
        )
        # float32 for half-precision inputs, as both attention paths read it (a third of the time of bf16 + cast)
        attention_weights = F.softmax(attention_weights, -1, dtype=float32_or_wider(attention_weights.dtype)).view(
            batch_size, num_queries, self.n_heads, self.n_levels, self.n_points
        )
        num_coordinates = reference_points.shape[-1]
        if num_coordinates == 2:
            # in the reference points' float32 (half-precision locations would be off by up to a pixel, and a
            # bfloat16 normaliser is inexact from 257 pixels up), in place on the fresh projection: over the
            # encoder's tokens these are its largest temporaries. The normaliser and the reference points are
            # broadcast over (levels, points, xy) as one contiguous run: broadcasting them in the 6-d shape leaves
            # element-wise loops of 2 elements, 5x slower (same divisions and additions either way)
            offset_normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1).to(
                reference_points.dtype
            )
            per_head = self.n_levels * self.n_points * 2
            offsets = sampling_offsets.to(reference_points.dtype).view(batch_size, num_queries, self.n_heads, per_head)
            normalizer_run = offset_normalizer[:, None, :].expand(self.n_levels, self.n_points, 2).reshape(per_head)
            reference_run = (
                reference_points[:, :, None, :, None, :]
                .expand(batch_size, num_queries, 1, self.n_levels, self.n_points, 2)
                .reshape(batch_size, num_queries, 1, per_head)
            )
            sampling_locations = offsets.div_(normalizer_run).add_(reference_run).view(sampling_offsets.shape)
        elif num_coordinates == 4:
            sampling_locations = (
                reference_points[:, :, None, :, None, :2]
                + sampling_offsets / self.n_points * reference_points[:, :, None, :, None, 2:] * 0.5
            )
        else:
            raise ValueError(
                f"reference_points must end with 2 (x, y) or 4 (cx, cy, w, h) coordinates, got {num_coordinates}."
            )
        output = self.attn(
            value,
            spatial_shapes,
            spatial_shapes_list,
            level_start_index,
            sampling_locations,
            attention_weights,
            self.im2col_step,
        )
        return self.output_proj(output), attention_weights


# Tokens per FFN chunk in CPU inference: 2048 x 2048 float32 is 16 MB, under glibc's largest mmap threshold (32 MB)
FFN_CHUNK_TOKENS = 2048


class MaskDinoMLP(nn.Module):
    """Feed-forward block of the encoder and decoder layers."""

    def __init__(self, config: MaskDinoConfig, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.fc1 = MaskDinoLinear(hidden_size, intermediate_size)
        self.fc2 = MaskDinoLinear(intermediate_size, hidden_size)
        self.relu = config.activation_function == "relu"
        self.activation_fn = None if self.relu else ACT2FN[config.activation_function]
        self.dropout = config.dropout

    def forward(self, hidden_states: Tensor) -> Tensor:
        # counted only on the fused path: in exports `numel()` would fix the symbolic sizes
        fused = not self.training and fused_cpu_linear_applies(hidden_states, self.fc1.weight)
        num_tokens = hidden_states.shape[:-1].numel() if fused else 0
        if num_tokens > FFN_CHUNK_TOKENS:
            # the encoder's FFN-wide hidden state (165 MB at 800x1216) would be mapped afresh in every layer
            tokens = hidden_states.reshape(num_tokens, -1)
            output = tokens.new_empty(num_tokens, self.fc2.out_features)
            for start in range(0, num_tokens, FFN_CHUNK_TOKENS):
                output[start : start + FFN_CHUNK_TOKENS] = self._feed_forward(tokens[start : start + FFN_CHUNK_TOKENS])
            return output.view(*hidden_states.shape[:-1], -1)
        return self._feed_forward(hidden_states)

    def _feed_forward(self, hidden_states: Tensor) -> Tensor:
        if self.relu:
            hidden_states = self.fc1(hidden_states, relu=True)
        else:
            hidden_states = self.activation_fn(self.fc1(hidden_states))
        hidden_states = nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)
        hidden_states = self.fc2(hidden_states)
        return nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)


class MaskDinoMLPPredictionHead(nn.Module):
    """A small MLP (ReLU between layers) used for boxes, mask embeddings and the query position head."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(MaskDinoLinear(n, k) for n, k in zip(dims, dims[1:] + [output_dim]))

    def forward(self, hidden_states: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            hidden_states = layer(hidden_states, relu=i < len(self.layers) - 1)
        return hidden_states


# ---- Layers ----


class MaskDinoPixelDecoderEncoderLayer(GradientCheckpointingLayer):
    """Post-norm deformable self-attention layer of the pixel decoder."""

    def __init__(self, config: MaskDinoConfig):
        super().__init__()
        self.self_attn = MaskDinoMultiscaleDeformableAttention(
            config.feature_size, config.encoder_attention_heads, config.num_feature_levels, config.encoder_n_points
        )
        self.self_attn_layer_norm = nn.LayerNorm(config.feature_size)
        self.mlp = MaskDinoMLP(config, config.feature_size, config.encoder_ffn_dim)
        self.final_layer_norm = nn.LayerNorm(config.feature_size)
        self.dropout = config.dropout

    def forward(
        self,
        hidden_states: Tensor,
        position_embeddings: Tensor,
        reference_points: Tensor,
        spatial_shapes: Tensor,
        spatial_shapes_list: list[tuple[int, int]],
        level_start_index: Tensor,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Tensor:
        residual = hidden_states
        hidden_states, _ = self.self_attn(
            hidden_states,
            hidden_states,
            position_embeddings=position_embeddings,
            reference_points=reference_points,
            spatial_shapes=spatial_shapes,
            spatial_shapes_list=spatial_shapes_list,
            level_start_index=level_start_index,
            **kwargs,
        )
        hidden_states = nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)
        hidden_states = self.self_attn_layer_norm(residual + hidden_states)
        hidden_states = self.final_layer_norm(hidden_states + self.mlp(hidden_states))
        return hidden_states


class MaskDinoDecoderLayer(GradientCheckpointingLayer):
    """Decoder layer: post-norm self-attention, deformable cross-attention to the encoder tokens, feed-forward."""

    def __init__(self, config: MaskDinoConfig):
        super().__init__()
        self.self_attn = MaskDinoSelfAttention(
            config, config.hidden_dim, config.decoder_attention_heads, dropout=config.dropout
        )
        self.self_attn_layer_norm = nn.LayerNorm(config.hidden_dim)
        self.encoder_attn = MaskDinoMultiscaleDeformableAttention(
            config.hidden_dim, config.decoder_attention_heads, config.num_feature_levels, config.decoder_n_points
        )
        self.encoder_attn_layer_norm = nn.LayerNorm(config.hidden_dim)
        self.mlp = MaskDinoMLP(config, config.hidden_dim, config.decoder_ffn_dim)
        self.final_layer_norm = nn.LayerNorm(config.hidden_dim)
        self.dropout = config.dropout

    def forward(
        self,
        hidden_states: Tensor,
        query_position_embeddings: Tensor,
        reference_points: Tensor,
        spatial_shapes: Tensor,
        spatial_shapes_list: list[tuple[int, int]],
        level_start_index: Tensor,
        encoder_hidden_states: Tensor,
        self_attention_mask: Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Tensor:
        residual = hidden_states
        hidden_states, _ = self.self_attn(
            hidden_states, attention_mask=self_attention_mask, position_embeddings=query_position_embeddings, **kwargs
        )
        hidden_states = nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)
        hidden_states = self.self_attn_layer_norm(residual + hidden_states)

        residual = hidden_states
        hidden_states, _ = self.encoder_attn(
            hidden_states,
            encoder_hidden_states,
            position_embeddings=query_position_embeddings,
            reference_points=reference_points,
            spatial_shapes=spatial_shapes,
            spatial_shapes_list=spatial_shapes_list,
            level_start_index=level_start_index,
            **kwargs,
        )
        hidden_states = nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)
        hidden_states = self.encoder_attn_layer_norm(residual + hidden_states)
        hidden_states = self.final_layer_norm(hidden_states + self.mlp(hidden_states))
        return hidden_states


# ---- Pretrained base ----


def sampling_offsets_grid_init(num_heads: int, num_levels: int, num_points: int) -> Tensor:
    """Deformable DETR's initial sampling offsets: one direction per head, at distances 1..num_points."""
    thetas = torch.arange(num_heads, dtype=torch.float32) * (2.0 * math.pi / num_heads)
    grid = torch.stack([thetas.cos(), thetas.sin()], -1)
    grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(num_heads, 1, 1, 2).repeat(1, num_levels, num_points, 1)
    grid = grid * torch.arange(1, num_points + 1, dtype=torch.float32).view(1, 1, num_points, 1)
    return grid.view(-1)


class MaskDinoPreTrainedModel(PreTrainedModel):
    config: MaskDinoConfig
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = [r"MaskDinoPixelDecoderEncoderLayer", r"MaskDinoDecoderLayer"]
    _supports_sdpa = True
    # BatchNorm's step counter: unused by frozen statistics, and by a trainable BatchNorm with a momentum
    _keys_to_ignore_on_load_missing = [r"num_batches_tracked"]
    _keys_to_ignore_on_load_unexpected = [r"num_batches_tracked"]

    @torch.no_grad()
    def _init_weights(self, module):
        # Outside the transformers package, a module whose own tensors are all loaded (vacuously: one without tensors
        # of its own) is skipped. So every init below is applied from the module that holds the tensors: the
        # deformable attention's, the box head's and the input projections' layers are found through their container.
        super()._init_weights(module)
        if isinstance(module, MaskDinoFrozenBatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
        elif isinstance(module, MaskDinoPixelDecoder):
            init.normal_(module.level_embed)
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            self._init_layer_by_role(module)

    def _init_layer_by_role(self, layer: nn.Module) -> None:
        """Deformable DETR's inits for the layers of deformable attention, a zero last layer for the box head, and
        Xavier for the pixel decoder's input projections; other layers keep the default init."""
        # a plain walk: `self.modules()` is about 25x slower, and this runs once per linear/conv layer
        containers = [self]
        while containers:
            container = containers.pop()
            containers.extend(child for child in container._modules.values() if child is not None)
            if isinstance(container, MaskDinoMultiscaleDeformableAttention):
                if layer is container.sampling_offsets:
                    init.constant_(layer.weight, 0.0)
                    init.copy_(
                        layer.bias,
                        sampling_offsets_grid_init(container.n_heads, container.n_levels, container.n_points),
                    )
                elif layer is container.attention_weights:
                    init.constant_(layer.weight, 0.0)
                    init.constant_(layer.bias, 0.0)
                elif layer is container.value_proj or layer is container.output_proj:
                    init.xavier_uniform_(layer.weight)
                    init.constant_(layer.bias, 0.0)
                else:
                    continue
                return
            if isinstance(container, MaskDinoDecoder) and layer is container.bbox_embed.layers[-1]:
                # the box head starts at zero so that the first refinement keeps the anchors
                init.constant_(layer.weight, 0.0)
                init.constant_(layer.bias, 0.0)
                return
            if isinstance(container, MaskDinoPixelDecoder) and any(
                layer is projection[0] for projection in container.input_projections
            ):
                init.xavier_uniform_(layer.weight)
                init.constant_(layer.bias, 0.0)
                return


# ---- Stacks ----


def stage_stride(stage_name: str) -> int:
    """Stride of a transformers backbone stage (`stem`/`stage1` 4, `stage2` 8, ...), as ResNet and Swin define them."""
    if stage_name == "stem":
        return 4
    if not stage_name.startswith("stage") or not stage_name[5:].isdigit():
        raise ValueError(f"Cannot infer the stride of backbone stage {stage_name!r}: expected 'stem' or 'stageN'.")
    return 2 ** (int(stage_name[5:]) + 1)


def memory_format_of(tensor: Tensor) -> torch.memory_format:
    channels_last = tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def sizes_tensor(sizes, dtype: torch.dtype, device) -> Tensor:
    """
    A tensor of (possibly nested) sizes. `torch.tensor` would turn symbolic sizes (under torch.export or dynamic
    torch.compile) into constants of the traced input's size; stacking one scalar per size keeps them symbolic.
    """
    if isinstance(sizes[0], (tuple, list)):
        return torch.stack([sizes_tensor(row, dtype, device) for row in sizes])
    return torch.stack([torch.scalar_tensor(size, dtype=dtype, device=device) for size in sizes])


def flatten_feature_levels(levels: list[Tensor]):
    """
    Flattens feature maps `(batch_size, channels, height_l, width_l)` into one token sequence.

    Returns:
        `(sequence, spatial_shapes_list, spatial_shapes, level_start_index)`: the `(batch_size, sum of h*w, channels)`
        sequence, the (height, width) of each level as a list and as a `(num_levels, 2)` tensor, and where each level
        starts in the sequence.
    """
    spatial_shapes_list = [tuple(level.shape[-2:]) for level in levels]
    sequence = torch.cat([level.flatten(2).transpose(1, 2) for level in levels], 1)
    spatial_shapes = sizes_tensor(spatial_shapes_list, torch.long, sequence.device)
    level_start_index = torch.cat((spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1]))
    return sequence, spatial_shapes_list, spatial_shapes, level_start_index


class MaskDinoPixelDecoderEncoder(MaskDinoPreTrainedModel):
    """Stack of deformable encoder layers over the flattened multi-scale features."""

    _can_record_outputs = {
        "hidden_states": MaskDinoPixelDecoderEncoderLayer,
        "attentions": OutputRecorder(MaskDinoMultiscaleDeformableAttention, layer_name="self_attn", index=1),
    }

    def __init__(self, config: MaskDinoConfig):
        super().__init__(config)
        self.layers = nn.ModuleList([MaskDinoPixelDecoderEncoderLayer(config) for _ in range(config.encoder_layers)])
        self.post_init()

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        inputs_embeds: Tensor,
        position_embeddings: Tensor,
        spatial_shapes: Tensor,
        spatial_shapes_list: list[tuple[int, int]],
        level_start_index: Tensor,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutput:
        r"""
        Args:
            inputs_embeds (`torch.Tensor` of shape `(batch_size, sequence_length, feature_size)`):
                Flattened multi-scale features, levels in encoder order.
            position_embeddings (`torch.Tensor` of shape `(batch_size, sequence_length, feature_size)`):
                Sine position embeddings plus level embeddings.
            spatial_shapes (`torch.LongTensor` of shape `(num_levels, 2)`), spatial_shapes_list (`list`):
                (height, width) of each level.
            level_start_index (`torch.LongTensor` of shape `(num_levels,)`):
                Start of each level in the sequence.
        """
        reference_points = self.get_reference_points(
            spatial_shapes_list, inputs_embeds.device, float32_or_wider(inputs_embeds.dtype)
        )
        reference_points = reference_points.expand(inputs_embeds.shape[0], -1, len(spatial_shapes_list), -1)
        hidden_states = inputs_embeds
        for layer in self.layers:
            hidden_states = layer(
                hidden_states,
                position_embeddings,
                reference_points,
                spatial_shapes,
                spatial_shapes_list,
                level_start_index,
                **kwargs,
            )
        return BaseModelOutput(last_hidden_state=hidden_states)

    @staticmethod
    def get_reference_points(spatial_shapes_list, device, dtype) -> Tensor:
        """Pixel centres of every level, normalised by the (padded) level size: `(1, sequence_length, 1, 2)`."""
        points = []
        for height, width in spatial_shapes_list:
            ref_y, ref_x = torch.meshgrid(
                (torch.arange(height, dtype=torch.float32, device=device) + 0.5) / height,
                (torch.arange(width, dtype=torch.float32, device=device) + 0.5) / width,
                indexing="ij",
            )
            points.append(torch.stack((ref_x.reshape(-1), ref_y.reshape(-1)), -1))
        return torch.cat(points, 0)[None, :, None].to(dtype)


class MaskDinoPixelDecoder(nn.Module):
    """
    Multi-scale deformable encoder over the backbone features (plus extra stride-2 levels), followed by an FPN path to
    the stride-`common_stride` mask features.
    """

    def __init__(self, config: MaskDinoConfig, backbone_channels: dict[str, int]):
        super().__init__()
        self.config = config
        # backbone levels from high to low resolution
        self.encoder_in_features = sorted(config.encoder_in_features, key=stage_stride)
        self.num_extra_levels = config.num_feature_levels - len(self.encoder_in_features)
        self.low_resolution_first = config.encoder_low_resolution_first
        feature_size = config.feature_size

        projections = [
            nn.Sequential(
                nn.Conv2d(backbone_channels[name], feature_size, kernel_size=1), nn.GroupNorm(32, feature_size)
            )
            for name in self.encoder_in_features
        ]
        in_channels = backbone_channels[self.encoder_in_features[-1]]
        for _ in range(self.num_extra_levels):
            projections.append(
                nn.Sequential(
                    nn.Conv2d(in_channels, feature_size, kernel_size=3, stride=2, padding=1),
                    nn.GroupNorm(32, feature_size),
                )
            )
            in_channels = feature_size
        # backbone levels (high to low resolution), then extra levels (each from the previous one)
        self.input_projections = nn.ModuleList(projections)
        self.level_embed = nn.Parameter(torch.empty(config.num_feature_levels, feature_size))
        self.encoder = MaskDinoPixelDecoderEncoder(config)

        # FPN levels: the highest-resolution backbone stages between the encoder and the mask stride
        min_encoder_stride = stage_stride(self.encoder_in_features[0])
        num_fpn_levels = max(int(math.log2(min_encoder_stride) - math.log2(config.common_stride)), 1)
        all_stages = sorted(backbone_channels, key=stage_stride)
        # applied top-down: lowest resolution first
        self.fpn_features = all_stages[:num_fpn_levels][::-1]
        self.lateral_convs = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(backbone_channels[name], feature_size, kernel_size=1, bias=False),
                nn.GroupNorm(32, feature_size),
            )
            for name in self.fpn_features
        )
        self.output_convs = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(feature_size, feature_size, kernel_size=3, padding=1, bias=False),
                nn.GroupNorm(32, feature_size),
                nn.ReLU(inplace=True),
            )
            for _ in self.fpn_features
        )
        self.mask_projection = nn.Conv2d(feature_size, config.mask_feature_size, kernel_size=1)

    def forward(self, features: dict[str, Tensor], **kwargs: Unpack[TransformersKwargs]) -> MaskDinoPixelDecoderOutput:
        num_backbone_levels = len(self.encoder_in_features)
        levels = [self.input_projections[i](features[name]) for i, name in enumerate(self.encoder_in_features)]
        extra_input = features[self.encoder_in_features[-1]]
        for i in range(self.num_extra_levels):
            extra_input = self.input_projections[num_backbone_levels + i](extra_input)
            levels.append(extra_input)
        if self.low_resolution_first:
            levels = levels[::-1]

        batch_size = levels[0].shape[0]
        inputs_embeds, spatial_shapes_list, spatial_shapes, level_start_index = flatten_feature_levels(levels)
        position_embeddings = torch.cat(
            [
                sine_position_embedding_2d(
                    batch_size, height, width, self.config.feature_size // 2, inputs_embeds.device, inputs_embeds.dtype
                )
                .flatten(2)
                .transpose(1, 2)
                + self.level_embed[i].view(1, 1, -1)
                for i, (height, width) in enumerate(spatial_shapes_list)
            ],
            1,
        )
        encoder_outputs = self.encoder(
            inputs_embeds=inputs_embeds,
            position_embeddings=position_embeddings,
            spatial_shapes=spatial_shapes,
            spatial_shapes_list=spatial_shapes_list,
            level_start_index=level_start_index,
            **kwargs,
        )
        sequence = encoder_outputs.last_hidden_state
        outputs = [
            chunk.transpose(1, 2).reshape(batch_size, -1, height, width)
            for chunk, (height, width) in zip(
                sequence.split([h * w for h, w in spatial_shapes_list], dim=1), spatial_shapes_list
            )
        ]
        multi_scale_features = tuple(outputs)

        for name, lateral_conv, output_conv in zip(self.fpn_features, self.lateral_convs, self.output_convs):
            lateral = lateral_conv(features[name])
            # The original upsamples `out[0]` (low2high) or `out[-1]` (high2low) of a list it keeps appending FPN
            # outputs to: the highest-resolution encoder level, or in high2low order the previous FPN output.
            coarser = outputs[-1] if self.low_resolution_first else outputs[0]
            # copied first, in the FPN's layout: the encoder levels are views of its token sequence, on which CPU
            # bilinear upsampling is 4-9x slower
            upsampled = F.interpolate(
                coarser.clone(memory_format=memory_format_of(lateral)),
                size=lateral.shape[-2:],
                mode="bilinear",
                align_corners=False,
            )
            # in place: every full-size temporary is a fresh mapping to page in (25 ms each at 800x1216 on CPU)
            outputs.append(output_conv(upsampled.add_(lateral)))
        return MaskDinoPixelDecoderOutput(
            mask_features=self.mask_projection(outputs[-1]),
            multi_scale_features=multi_scale_features,
            encoder_inputs=tuple(levels),
            fpn_output=outputs[-1],
            encoder_last_hidden_state=sequence,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


class MaskDinoDecoder(MaskDinoPreTrainedModel):
    """
    Deformable decoder with iterative box refinement, and the prediction heads shared by every layer, the initial
    queries and the encoder proposals (one box head, one class head, one mask-embedding head, one final LayerNorm).
    """

    _can_record_outputs = {
        "hidden_states": MaskDinoDecoderLayer,
        "attentions": OutputRecorder(MaskDinoSelfAttention, layer_name="self_attn", index=1),
        "cross_attentions": OutputRecorder(MaskDinoMultiscaleDeformableAttention, layer_name="encoder_attn", index=1),
    }

    def __init__(self, config: MaskDinoConfig):
        super().__init__(config)
        hidden_dim = config.hidden_dim
        self.layers = nn.ModuleList([MaskDinoDecoderLayer(config) for _ in range(config.decoder_layers)])
        self.query_position_head = MaskDinoMLPPredictionHead(2 * hidden_dim, hidden_dim, hidden_dim, 2)
        self.layernorm = nn.LayerNorm(hidden_dim)
        self.class_embed = MaskDinoLinear(hidden_dim, config.num_class_logits)
        self.mask_embed = MaskDinoMLPPredictionHead(hidden_dim, hidden_dim, config.mask_feature_size, 3)
        self.bbox_embed = MaskDinoMLPPredictionHead(hidden_dim, hidden_dim, 4, 3)
        self.post_init()

    def predict(self, queries: Tensor, mask_features: Tensor, predict_masks: bool = True):
        """Class logits and (optionally) mask logits and mask embeddings of `queries` (batch_size, num_queries,
        hidden_dim)."""
        normed = self.layernorm(queries)
        class_logits = self.class_embed(normed)
        mask_logits = mask_embeddings = None
        if predict_masks:
            mask_embeddings = self.mask_embed(normed)
            mask_logits = mask_logits_from(mask_embeddings, mask_features)
        return class_logits, mask_logits, mask_embeddings

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        inputs_embeds: Tensor,
        reference_points: Tensor,
        encoder_hidden_states: Tensor,
        spatial_shapes: Tensor,
        spatial_shapes_list: list[tuple[int, int]],
        level_start_index: Tensor,
        self_attention_mask: Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MaskDinoDecoderOutput:
        r"""
        Args:
            inputs_embeds (`torch.Tensor` of shape `(batch_size, num_queries, hidden_dim)`):
                Content queries (denoising queries first when present).
            reference_points (`torch.Tensor` of shape `(batch_size, num_queries, 4)`):
                Sigmoid anchor boxes (center_x, center_y, width, height).
            encoder_hidden_states (`torch.Tensor` of shape `(batch_size, sequence_length, hidden_dim)`):
                Projected encoder tokens, levels in decoder order.
            spatial_shapes (`torch.LongTensor` of shape `(num_levels, 2)`), spatial_shapes_list (`list`):
                (height, width) of each level, decoder order.
            level_start_index (`torch.LongTensor` of shape `(num_levels,)`):
                Start of each level in `encoder_hidden_states`.
            self_attention_mask (`torch.Tensor` of shape `(1, 1, num_queries, num_queries)`, *optional*):
                Additive mask (0 or -inf) keeping denoising groups and matching queries apart.
        """
        num_levels = len(spatial_shapes_list)
        hidden_states = inputs_embeds
        intermediate = []
        references = [reference_points]
        for layer in self.layers:
            # valid ratios are all 1: the original never masks padding
            level_reference_points = reference_points[:, :, None].expand(-1, -1, num_levels, -1)
            query_position_embeddings = self.query_position_head(
                box_sine_embedding(reference_points, self.config.hidden_dim // 2).to(hidden_states.dtype)
            )
            hidden_states = layer(
                hidden_states,
                query_position_embeddings,
                level_reference_points,
                spatial_shapes,
                spatial_shapes_list,
                level_start_index,
                encoder_hidden_states,  # as a positional argument for gradient checkpointing
                self_attention_mask,
                **kwargs,
            )
            # Refinement uses the layer output before the final LayerNorm, as the original does
            new_reference_points = (self.bbox_embed(hidden_states) + inverse_sigmoid(reference_points)).sigmoid()
            references.append(new_reference_points)
            reference_points = new_reference_points.detach()
            intermediate.append(self.layernorm(hidden_states))

        return MaskDinoDecoderOutput(
            last_hidden_state=hidden_states,
            intermediate_hidden_states=torch.stack(intermediate, dim=1),
            intermediate_reference_points=torch.stack(references, dim=1),
        )


# ---- Denoising queries ----


def noise_denoising_labels(labels: Tensor, label_noise_ratio: float, num_labels: int) -> Tensor:
    """Replaces each label, with probability `label_noise_ratio * 0.5`, by one drawn uniformly from
    `[0, num_labels)`. Draws `rand(len(labels))`, then `randint(num_labels, (flipped,))`."""
    if label_noise_ratio <= 0:
        return labels
    flip = torch.rand(labels.shape, device=labels.device) < (label_noise_ratio * 0.5)
    flipped_positions = torch.nonzero(flip).view(-1)
    new_labels = torch.randint(0, num_labels, flipped_positions.shape, dtype=torch.long, device=labels.device)
    return labels.scatter(0, flipped_positions, new_labels)


def noise_denoising_boxes(boxes: Tensor, box_noise_scale: float) -> Tensor:
    """Moves each (center_x, center_y, width, height) box by `(u * w / 2, u * h / 2, u * w, u * h) *
    box_noise_scale` with independent `u ~ U(-1, 1)` and clamps it to `[0, 1]`. Draws `rand(num_boxes, 4)`."""
    if box_noise_scale <= 0:
        return boxes
    # centre moves by up to half the size, size changes by up to the size itself
    max_shift = torch.cat([boxes[:, 2:] / 2, boxes[:, 2:]], dim=1)
    jitter = (torch.rand(boxes.shape, device=boxes.device) * 2 - 1.0) * max_shift
    return (boxes + jitter * box_noise_scale).clamp(min=0.0, max=1.0)


def denoising_self_attention_mask(
    num_denoising_groups: int, max_targets_per_image: int, num_queries: int, device: torch.device
) -> Tensor:
    """
    `(num_denoising_queries + num_queries,) * 2` boolean mask, `True` where query `i` (row) may NOT attend to query
    `j` (column): denoising groups don't see each other and matching queries don't see any denoising query;
    denoising queries see the matching queries.
    """
    num_denoising_queries = num_denoising_groups * max_targets_per_image
    total_queries = num_denoising_queries + num_queries
    mask = torch.zeros(total_queries, total_queries, dtype=torch.bool, device=device)
    # matching queries must not see the ground truth hidden in the denoising queries
    mask[num_denoising_queries:, :num_denoising_queries] = True
    for group in range(num_denoising_groups):
        start, end = group * max_targets_per_image, (group + 1) * max_targets_per_image
        mask[start:end, :start] = True
        mask[start:end, end:num_denoising_queries] = True
    return mask


def denoising_matching_indices(
    num_targets_per_image: list[int], num_denoising_groups: int, max_targets_per_image: int, device: torch.device
) -> list[tuple[Tensor, Tensor]]:
    """Per image, the fixed assignment (denoising query indices, target indices), group by group: slot `t` of group
    `g` (query `g * max_targets_per_image + t`) reconstructs target `t`."""
    matching_indices = []
    for num_targets in num_targets_per_image:
        target_index = torch.arange(num_targets, device=device).repeat(num_denoising_groups)
        group_start = torch.arange(num_denoising_groups, device=device).repeat_interleave(num_targets)
        matching_indices.append((group_start * max_targets_per_image + target_index, target_index))
    return matching_indices


def build_denoising_queries(
    targets: list[dict[str, Tensor]],
    num_queries: int,
    num_labels: int,
    num_denoising: int,
    label_noise_ratio: float,
    box_noise_scale: float,
    label_embedding: nn.Embedding,
    hidden_dim: int,
) -> tuple[Tensor | None, Tensor | None, Tensor | None, dict | None]:
    """
    Builds the denoising queries of Mask DINO (DN-DETR style, one positive query per target and group): noised
    ground-truth labels embedded by `label_embedding` as content, noised ground-truth boxes as anchors.

    The queries form `num_denoising_groups = num_denoising // max_targets_per_image` groups of
    `max_targets_per_image` slots. Slot `t` of group `g` (query `g * max_targets_per_image + t`) of image `b`
    reconstructs target `t` of image `b`; the slots past an image's number of targets are padding (zero content, zero
    unsigmoided box) and are trained as "no object".

    Noise: each label is replaced, with probability `label_noise_ratio * 0.5`, by a class drawn uniformly from
    `[0, num_labels)`; each box `(cx, cy, w, h)` moves by `(u * w / 2, u * h / 2, u * w, u * h) * box_noise_scale`
    with independent `u ~ U(-1, 1)`, and is clamped to `[0, 1]`.

    Random draws, in the original's order: `rand(G * T)` and `randint(num_labels, (flipped,))` for the labels,
    then `rand(G * T, 4)` for the boxes, where `T` is the number of targets in the batch and the flat order is group,
    then image, then target.

    Args:
        targets (`list[dict]`):
            Per image, `"labels"` (`torch.LongTensor` of shape `(num_targets,)`) and `"boxes"` (`torch.FloatTensor`
            of shape `(num_targets, 4)`, normalised (center_x, center_y, width, height)).
        num_queries (`int`):
            Number of matching queries that follow the denoising queries in the decoder.
        num_labels (`int`):
            Number of classes (replacement labels are drawn from them).
        num_denoising (`int`):
            Budget of denoising queries (`config.num_denoising`).
        label_noise_ratio (`float`):
            Twice the probability of flipping a label.
        box_noise_scale (`float`):
            Scale of the box jitter.
        label_embedding (`nn.Embedding` of `num_labels` embeddings):
            Embeds the noised labels into content queries.
        hidden_dim (`int`):
            Width of the content queries.

    Returns:
        `tuple` of four elements, all `None` when there is no denoising group (`num_denoising == 0`, no target in the
        batch, or more targets in one image than `num_denoising`):
        - **content** (`torch.FloatTensor` of shape `(batch_size, num_denoising_queries, hidden_dim)`).
        - **boxes_unsigmoided** (`torch.FloatTensor` of shape `(batch_size, num_denoising_queries, 4)`): anchors
          before the sigmoid.
        - **self_attention_mask** (`torch.BoolTensor` of shape `(num_denoising_queries + num_queries,) * 2`): `True`
          where query `i` (row) may NOT attend to query `j` (column). Groups don't see each other and matching
          queries don't see any denoising query; denoising queries see the matching queries.
        - **denoising_meta_values** (`dict`):
            - `num_denoising_groups` (`int`): number of groups `G`.
            - `max_targets_per_image` (`int`): slots per group `T_max`.
            - `num_denoising_queries` (`int`): `G * T_max`; the decoder's queries are split at this index.
            - `matching_indices` (`list[tuple[torch.LongTensor, torch.LongTensor]]`): per image, the fixed assignment
              (denoising query indices, target indices), group by group; the criterion uses it instead of the
              Hungarian matching.
            - `noised_labels` (`torch.LongTensor` of shape `(batch_size, num_denoising_queries)`): label fed to each
              query, `-1` for padding slots.
            - `noised_boxes` (`torch.FloatTensor` of shape `(batch_size, num_denoising_queries, 4)`): box fed to each
              query (after noise and clamping, before `inverse_sigmoid`), zeros for padding slots.
    """
    if num_denoising <= 0 or len(targets) == 0:
        return None, None, None, None
    num_targets_per_image = [len(target["labels"]) for target in targets]
    max_targets_per_image = max(num_targets_per_image)
    if max_targets_per_image == 0:
        return None, None, None, None
    num_denoising_groups = num_denoising // max_targets_per_image
    if num_denoising_groups == 0:
        return None, None, None, None

    device = label_embedding.weight.device
    batch_size = len(targets)
    num_denoising_queries = num_denoising_groups * max_targets_per_image

    labels = torch.cat([target["labels"] for target in targets]).to(device=device, dtype=torch.long)
    boxes = torch.cat([target["boxes"] for target in targets]).to(device=device, dtype=torch.float32)
    image_index = torch.cat(
        [torch.full((n,), i, dtype=torch.long, device=device) for i, n in enumerate(num_targets_per_image)]
    )
    slot_in_group = torch.cat([torch.arange(n, device=device) for n in num_targets_per_image])

    # flat order: group, image, target (the order of the original's random draws)
    noised_labels = labels.repeat(num_denoising_groups)
    noised_boxes = boxes.repeat(num_denoising_groups, 1)
    image_index = image_index.repeat(num_denoising_groups)
    group_offset = torch.arange(num_denoising_groups, device=device).repeat_interleave(len(labels))
    query_index = group_offset * max_targets_per_image + slot_in_group.repeat(num_denoising_groups)

    noised_labels = noise_denoising_labels(noised_labels, label_noise_ratio, num_labels)
    noised_boxes = noise_denoising_boxes(noised_boxes, box_noise_scale)

    content = torch.zeros(
        batch_size, num_denoising_queries, hidden_dim, dtype=label_embedding.weight.dtype, device=device
    )
    content[image_index, query_index] = label_embedding(noised_labels)
    boxes_unsigmoided = torch.zeros(batch_size, num_denoising_queries, 4, dtype=noised_boxes.dtype, device=device)
    boxes_unsigmoided[image_index, query_index] = inverse_sigmoid(noised_boxes)
    noised_labels_per_query = torch.full((batch_size, num_denoising_queries), -1, dtype=torch.long, device=device)
    noised_labels_per_query[image_index, query_index] = noised_labels
    noised_boxes_per_query = torch.zeros(batch_size, num_denoising_queries, 4, dtype=noised_boxes.dtype, device=device)
    noised_boxes_per_query[image_index, query_index] = noised_boxes

    self_attention_mask = denoising_self_attention_mask(
        num_denoising_groups, max_targets_per_image, num_queries, device
    )
    denoising_meta_values = {
        "num_denoising_groups": num_denoising_groups,
        "max_targets_per_image": max_targets_per_image,
        "num_denoising_queries": num_denoising_queries,
        "matching_indices": denoising_matching_indices(
            num_targets_per_image, num_denoising_groups, max_targets_per_image, device
        ),
        "noised_labels": noised_labels_per_query,
        "noised_boxes": noised_boxes_per_query,
    }
    return content, boxes_unsigmoided, self_attention_mask, denoising_meta_values


# ---- Models ----


def encoder_output_proposals(spatial_shapes_list, batch_size: int, device, dtype) -> tuple[Tensor, Tensor]:
    """
    Unsigmoided proposal boxes of every encoder token (decoder level order): the token's pixel centre, with width and
    height `0.05 * 2**level`. Proposals not strictly inside (0.01, 0.99) are invalid and get `+inf`. The proposals
    are in `dtype`, at least float32 (see `float32_or_wider`).

    Returns:
        proposals `(batch_size, sequence_length, 4)` and the validity mask `(batch_size, sequence_length, 1)`.
    """
    proposals = []
    for level, (height, width) in enumerate(spatial_shapes_list):
        grid_y, grid_x = torch.meshgrid(
            torch.arange(height, dtype=torch.float32, device=device),
            torch.arange(width, dtype=torch.float32, device=device),
            indexing="ij",
        )
        grid = torch.stack([(grid_x + 0.5) / width, (grid_y + 0.5) / height], -1)
        size = torch.full_like(grid, 0.05 * (2.0**level))
        proposals.append(torch.cat((grid, size), -1).view(-1, 4))
    proposals = torch.cat(proposals, 0)[None].expand(batch_size, -1, -1)
    valid = ((proposals > 0.01) & (proposals < 0.99)).all(-1, keepdim=True)
    proposals = torch.log(proposals / (1 - proposals)).masked_fill(~valid, float("inf"))
    return proposals.to(float32_or_wider(dtype)), valid


def masks_to_boxes(masks: Tensor) -> Tensor:
    """
    Tight pixel boxes of binary masks, `[x_min, y_min, x_max + 1, y_max + 1]` (the box covers the last pixel, as
    detectron2's `BitMasks.get_bounding_boxes`). Empty masks give `[0, 0, 0, 0]`.

    Args:
        masks (`torch.Tensor` of shape `(num_masks, height, width)`):
            Masks; non-zero pixels are foreground.

    Returns:
        `torch.FloatTensor` of shape `(num_masks, 4)`: (x_min, y_min, x_max, y_max) in pixels.
    """
    masks = masks.bool()
    if masks.shape[0] == 0:
        return torch.zeros((0, 4), dtype=torch.float32, device=masks.device)
    x_min, y_min, x_end, y_end, non_empty = mask_extents(masks)
    boxes = torch.stack([x_min, y_min, x_end, y_end], dim=1).float()
    return boxes * non_empty[:, None]


def mask_extents(masks: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """First and one-past-last occupied column and row of each boolean mask `(num_masks, height, width)`, and
    whether it has any pixel (the extents of empty masks are meaningless). Reduces the masks to their occupied
    columns and rows first: nothing of the masks' full size is allocated (one byte copy in exports)."""
    height, width = masks.shape[-2:]
    # the amax of 0/1 bytes is `any`, 3-14x faster on CPU (bool `any` along the last dimension does not vectorise);
    # ONNX Runtime has no boolean ReduceMax; eager views the bytes (ONNX has no bitcast of bool)
    occupied = masks.to(torch.uint8) if exporting_or_tracing() else masks.view(torch.uint8)
    columns = occupied.amax(dim=1).bool()  # num_masks, width
    rows = occupied.amax(dim=2).bool()  # num_masks, height
    # argmax returns the first maximal index: the first occupied column/row from either end
    x_min = columns.int().argmax(dim=1)
    x_end = width - columns.flip(1).int().argmax(dim=1)
    y_min = rows.int().argmax(dim=1)
    y_end = height - rows.flip(1).int().argmax(dim=1)
    return x_min, y_min, x_end, y_end, columns.any(dim=1)


def mask_enhanced_anchor_boxes(mask_logits: Tensor, box_init: str) -> Tensor:
    """
    Anchor boxes (normalised cx, cy, w, h) of the masks `mask_logits > 0`, with the original's two conventions:
    `"bitmask"` covers the last pixel (`max + 1`) and gives zero boxes for empty masks; `"mask2box"` uses the
    inclusive `max` and a 1e8 sentinel minimum for empty masks (kept for parity with released checkpoints).
    """
    batch_size, num_queries, height, width = mask_logits.shape
    masks = mask_logits.flatten(0, 1) > 0
    if box_init == "bitmask":
        boxes = masks_to_boxes(masks)
    else:
        # the original's min/max over `mask * coordinate`, with 1e8 where `~mask` for the minimum: the inclusive
        # extents, and (1e8, 1e8, 0, 0) for an empty mask
        x_min, y_min, x_end, y_end, non_empty = mask_extents(masks)
        extents = torch.stack([x_min, y_min, x_end - 1, y_end - 1], dim=1).float()
        empty_box = torch.tensor([1e8, 1e8, 0.0, 0.0], device=masks.device)
        boxes = torch.where(non_empty[:, None], extents, empty_box)
    scale = sizes_tensor([width, height, width, height], torch.float32, boxes.device)
    return (corners_to_center_format(boxes) / scale).reshape(batch_size, num_queries, 4)


@dataclass
class MaskDinoQuerySelection:
    """
    Result of two-stage query selection (see `MaskDinoModel._select_queries`).

    Args:
        content (`torch.FloatTensor` of shape `(batch_size, num_queries, hidden_dim)`):
            Content queries: the selected encoder tokens (detached), or the learned ones with
            `learnable_query_content`.
        anchors_unsigmoided (`torch.FloatTensor` of shape `(batch_size, num_queries, 4)`):
            Anchor boxes before the sigmoid (detached): the selected proposals' boxes, or the mask-enhanced ones.
        proposal_outputs (`dict`):
            `class_queries_logits`, `masks_queries_logits` and `pred_boxes` of the selected tokens (the criterion's
            `encoder_proposal_outputs`).
        encoder_class_logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, num_class_logits)`):
            Class logits of every encoder token.
        topk_indices (`torch.LongTensor` of shape `(batch_size, num_queries)`):
            Indices of the selected tokens.
    """

    content: Tensor
    anchors_unsigmoided: Tensor
    proposal_outputs: dict[str, Tensor]
    encoder_class_logits: Tensor
    topk_indices: Tensor


class MaskDinoModel(MaskDinoPreTrainedModel):
    """
    Backbone, pixel decoder and decoder of Mask DINO. The prediction heads live in the decoder because query
    selection and mask-enhanced anchors need them before the first decoder layer.
    """

    def __init__(self, config: MaskDinoConfig):
        super().__init__(config)
        self.backbone = load_backbone(config)
        if config.freeze_backbone_batch_norm:
            replace_batch_norm(self.backbone)
            use_fusable_resnet_layers(self.backbone)
        backbone_channels = dict(zip(self.backbone.out_features, self.backbone.channels))
        self.pixel_decoder = MaskDinoPixelDecoder(config, backbone_channels)

        hidden_dim = config.hidden_dim
        needs_projection = config.feature_size != hidden_dim or config.enforce_input_projection
        # one per encoder level, indexed in encoder level order
        self.input_projections = nn.ModuleList(
            nn.Conv2d(config.feature_size, hidden_dim, kernel_size=1) if needs_projection else nn.Identity()
            for _ in range(config.num_feature_levels)
        )
        if config.init_queries_from_encoder:
            self.encoder_output_projection = MaskDinoLinear(hidden_dim, hidden_dim)
            self.encoder_output_layernorm = nn.LayerNorm(hidden_dim)
        if not config.init_queries_from_encoder or config.learnable_query_content:
            self.query_content_embeddings = nn.Embedding(config.num_queries, hidden_dim)
        if not config.init_queries_from_encoder:
            self.query_anchor_embeddings = nn.Embedding(config.num_queries, 4)
        # present even without denoising, so that checkpoints keep one layout
        self.denoising_label_embeddings = nn.Embedding(config.num_labels, hidden_dim)
        self.decoder = MaskDinoDecoder(config)
        self.post_init()

    def _select_queries(
        self, encoder_hidden_states: Tensor, spatial_shapes_list: list[tuple[int, int]], mask_features: Tensor
    ) -> MaskDinoQuerySelection:
        """Two-stage query selection: top-`num_queries` encoder tokens, their predictions and anchors."""
        batch_size, _, hidden_dim = encoder_hidden_states.shape
        proposals, valid = encoder_output_proposals(
            spatial_shapes_list, batch_size, encoder_hidden_states.device, encoder_hidden_states.dtype
        )
        tokens = self.encoder_output_layernorm(
            self.encoder_output_projection(encoder_hidden_states.masked_fill(~valid, 0.0))
        )
        # the class head sees the tokens without the decoder's LayerNorm here, as in the original
        encoder_class_logits = self.decoder.class_embed(tokens)
        encoder_boxes_unsigmoided = self.decoder.bbox_embed(tokens) + proposals
        topk_indices = torch.topk(encoder_class_logits.max(-1)[0], self.config.num_queries, dim=1)[1]
        selected_boxes = torch.gather(encoder_boxes_unsigmoided, 1, topk_indices.unsqueeze(-1).expand(-1, -1, 4))
        selected_tokens = torch.gather(tokens, 1, topk_indices.unsqueeze(-1).expand(-1, -1, hidden_dim))
        proposal_class_logits, proposal_mask_logits, proposal_mask_embeddings = self.decoder.predict(
            selected_tokens, mask_features
        )
        proposal_outputs = MaskDinoPredictionOutput(
            class_queries_logits=proposal_class_logits,
            masks_queries_logits=proposal_mask_logits,
            pred_boxes=selected_boxes.sigmoid(),
            mask_embeddings=proposal_mask_embeddings,
        )
        content = selected_tokens.detach()
        if self.config.learnable_query_content:
            content = self.query_content_embeddings.weight[None].expand(batch_size, -1, -1)
        anchors_unsigmoided = selected_boxes.detach()
        if self.config.mask_enhanced_box_init != "none":
            anchors = mask_enhanced_anchor_boxes(proposal_mask_logits.detach(), self.config.mask_enhanced_box_init)
            anchors_unsigmoided = inverse_sigmoid(anchors)
        return MaskDinoQuerySelection(
            content, anchors_unsigmoided, proposal_outputs, encoder_class_logits, topk_indices
        )

    def _add_denoising_queries(
        self, content: Tensor, anchors_unsigmoided: Tensor, denoising_targets: list[dict[str, Tensor]]
    ) -> tuple[Tensor, Tensor, Tensor | None, dict | None]:
        """Puts the denoising queries built from `denoising_targets` before the matching queries. Returns the
        content and unsigmoided anchors of all queries, the additive `(1, 1, num_queries, num_queries)` decoder
        self-attention mask, and `denoising_meta_values`; the inputs unchanged and `None, None` when no denoising
        group fits (see `build_denoising_queries`)."""
        config = self.config
        dn_content, dn_anchors, dn_mask, denoising_meta_values = build_denoising_queries(
            denoising_targets,
            num_queries=config.num_queries,
            num_labels=config.num_labels,
            num_denoising=config.num_denoising,
            label_noise_ratio=config.label_noise_ratio,
            box_noise_scale=config.box_noise_scale,
            label_embedding=self.denoising_label_embeddings,
            hidden_dim=config.hidden_dim,
        )
        if denoising_meta_values is None:
            return content, anchors_unsigmoided, None, None
        content = torch.cat([dn_content.to(content.dtype), content], dim=1)
        anchors_unsigmoided = torch.cat([dn_anchors.to(anchors_unsigmoided.dtype), anchors_unsigmoided], dim=1)
        self_attention_mask = torch.zeros(dn_mask.shape, dtype=content.dtype, device=content.device)
        self_attention_mask = self_attention_mask.masked_fill(dn_mask, float("-inf"))[None, None]
        return content, anchors_unsigmoided, self_attention_mask, denoising_meta_values

    def _prediction_set(self, class_logits, mask_logits, mask_embeddings, boxes, start: int, end: int | None) -> dict:
        return {
            "class_queries_logits": class_logits[:, start:end],
            "masks_queries_logits": None if mask_logits is None else mask_logits[:, start:end],
            "pred_boxes": boxes[:, start:end],
            "mask_embeddings": None if mask_embeddings is None else mask_embeddings[:, start:end],
        }

    @can_return_tuple
    def forward(
        self,
        pixel_values: Tensor,
        pixel_mask: Tensor | None = None,
        denoising_targets: list[dict[str, Tensor]] | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MaskDinoModelOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
                Normalised images, zero-padded at the bottom/right to a multiple of 32.
            pixel_mask (`torch.LongTensor` of shape `(batch_size, height, width)`, *optional*):
                1 for image pixels, 0 for padding. Like the original, the network itself does not mask padding; the
                mask only tells the valid image sizes (see [`MaskDinoForUniversalSegmentation`]).
            denoising_targets (`list[dict]`, *optional*):
                In training, per image `labels` and normalised `boxes` from which denoising queries are built.
        """
        config = self.config
        check_input_size(config, pixel_values)
        output_hidden_states = kwargs.get("output_hidden_states")
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        if pixel_values.device.type == "cpu":
            # oneDNN's convolutions compute in channels-last and would convert every output back to NCHW (bfloat16:
            # 1.6x the forward's time at 800x1216, float32: ~10%); the layout carries on through the backbone and
            # the FPN, and the encoder's token sequence reads it without a transpose
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        backbone_outputs = self.backbone(pixel_values)
        features = dict(zip(self.backbone.out_features, backbone_outputs.feature_maps))
        pixel_decoder_outputs = self.pixel_decoder(features, **kwargs)
        mask_features = pixel_decoder_outputs.mask_features
        multi_scale_features = pixel_decoder_outputs.multi_scale_features
        batch_size = pixel_values.shape[0]

        # The decoder reads the encoder levels in reverse order (decoder level i = encoder level n-1-i).
        num_levels = len(multi_scale_features)
        decoder_levels = [
            self.input_projections[level](multi_scale_features[level]) for level in reversed(range(num_levels))
        ]
        encoder_hidden_states, spatial_shapes_list, spatial_shapes, level_start_index = flatten_feature_levels(
            decoder_levels
        )

        proposal_outputs = encoder_class_logits = topk_indices = None
        if config.init_queries_from_encoder:
            selection = self._select_queries(encoder_hidden_states, spatial_shapes_list, mask_features)
            content, anchors_unsigmoided = selection.content, selection.anchors_unsigmoided
            proposal_outputs = selection.proposal_outputs
            encoder_class_logits, topk_indices = selection.encoder_class_logits, selection.topk_indices
        else:
            content = self.query_content_embeddings.weight[None].expand(batch_size, -1, -1)
            anchors = self.query_anchor_embeddings.weight.to(float32_or_wider(content.dtype))
            anchors_unsigmoided = anchors[None].expand(batch_size, -1, -1)

        num_denoising_queries = 0
        self_attention_mask = denoising_meta_values = None
        if self.training and config.num_denoising > 0 and denoising_targets is not None:
            content, anchors_unsigmoided, self_attention_mask, denoising_meta_values = self._add_denoising_queries(
                content, anchors_unsigmoided, denoising_targets
            )
            if denoising_meta_values is not None:
                num_denoising_queries = denoising_meta_values["num_denoising_queries"]

        # every step's masks are needed for the loss (also for an eval-mode loss); at plain inference only the last
        predict_all_masks = self.training or denoising_targets is not None
        predictions = []  # (class logits, mask logits, mask embeddings) per prediction step
        if config.initial_prediction:
            predictions.append(self.decoder.predict(content, mask_features, predict_masks=predict_all_masks))

        decoder_outputs = self.decoder(
            inputs_embeds=content,
            reference_points=anchors_unsigmoided.sigmoid(),
            encoder_hidden_states=encoder_hidden_states,
            spatial_shapes=spatial_shapes,
            spatial_shapes_list=spatial_shapes_list,
            level_start_index=level_start_index,
            self_attention_mask=self_attention_mask,
            **kwargs,
        )
        layer_states = decoder_outputs.intermediate_hidden_states
        references = decoder_outputs.intermediate_reference_points
        for i in range(config.decoder_layers):
            is_last = i == config.decoder_layers - 1
            # the class and mask heads apply the LayerNorm again on the already normed states, as the original does
            predictions.append(
                self.decoder.predict(layer_states[:, i], mask_features, predict_masks=predict_all_masks or is_last)
            )
        # boxes reported per layer use the normed states on the layer's input reference (refinement inside the
        # decoder used the un-normed ones)
        boxes = [
            (self.decoder.bbox_embed(layer_states[:, i]) + inverse_sigmoid(references[:, i])).sigmoid()
            for i in range(config.decoder_layers)
        ]
        if config.initial_prediction:
            boxes.insert(0, anchors_unsigmoided.sigmoid())

        prediction_sets = [
            self._prediction_set(*prediction, box, num_denoising_queries, None)
            for prediction, box in zip(predictions, boxes)
        ]
        denoising_outputs = None
        if num_denoising_queries > 0:
            denoising_sets = [
                self._prediction_set(*prediction, box, 0, num_denoising_queries)
                for prediction, box in zip(predictions, boxes)
            ]
            denoising_outputs = {**denoising_sets[-1], "auxiliary_outputs": denoising_sets[:-1]}
        elif self.training:
            # keeps the denoising embeddings in the graph, so DDP needs no `find_unused_parameters`
            prediction_sets[-1]["class_queries_logits"] = (
                prediction_sets[-1]["class_queries_logits"] + 0.0 * self.denoising_label_embeddings.weight.sum()
            )

        final = prediction_sets[-1]
        return MaskDinoModelOutput(
            class_queries_logits=final["class_queries_logits"],
            masks_queries_logits=final["masks_queries_logits"],
            pred_boxes=final["pred_boxes"],
            auxiliary_outputs=prediction_sets[:-1],
            encoder_proposal_outputs=proposal_outputs,
            denoising_outputs=denoising_outputs,
            denoising_meta_values=denoising_meta_values,
            last_hidden_state=layer_states[:, -1, num_denoising_queries:],
            intermediate_hidden_states=layer_states[:, :, num_denoising_queries:],
            intermediate_reference_points=references[:, :, num_denoising_queries:],
            encoder_class_logits=encoder_class_logits,
            encoder_topk_indices=topk_indices,
            mask_features=mask_features,
            # intermediate feature maps, as transformers models return them: only when asked for
            multi_scale_features=multi_scale_features if output_hidden_states else None,
            backbone_features=tuple(backbone_outputs.feature_maps) if output_hidden_states else None,
            encoder_inputs=pixel_decoder_outputs.encoder_inputs if output_hidden_states else None,
            fpn_output=pixel_decoder_outputs.fpn_output if output_hidden_states else None,
            encoder_last_hidden_state=pixel_decoder_outputs.encoder_last_hidden_state,
            encoder_hidden_states=pixel_decoder_outputs.encoder_hidden_states,
            encoder_attentions=pixel_decoder_outputs.encoder_attentions,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            mask_embeddings=final["mask_embeddings"],
        )


def target_boxes_from_masks(masks: Tensor, image_height: int, image_width: int) -> Tensor:
    """
    Box targets as the original feeds its criterion: `masks_to_boxes`, converted to (center_x, center_y, width,
    height) and normalised by the UNPADDED image size (the predicted boxes are relative to the padded input).

    Args:
        masks (`torch.Tensor` of shape `(num_masks, padded_height, padded_width)`):
            Target masks, zero-padded at the bottom/right.
        image_height (`int`), image_width (`int`):
            Size of the image before padding.

    Returns:
        `torch.FloatTensor` of shape `(num_masks, 4)`.
    """
    boxes = masks_to_boxes(masks)
    scale = torch.tensor(
        [image_width, image_height, image_width, image_height], dtype=boxes.dtype, device=boxes.device
    )
    return corners_to_center_format(boxes) / scale


def validate_training_inputs(
    pixel_values: Tensor,
    mask_labels: list[Tensor] | None,
    class_labels: list[Tensor] | None,
    target_boxes: list[Tensor] | None,
    num_labels: int,
    training: bool,
) -> None:
    """
    Refuses, with a `ValueError` naming the image and the field, training targets the loss would misread, and (in
    `training` mode, where a forward updates BatchNorm statistics, or with targets) non-finite pixels, before the
    model runs. Masks must be binary (0/1 or bool: 0/255 masks would count as 255 times the mask), class
    labels integers in `[0, num_labels)` (float labels would be truncated), `target_boxes` finite normalised
    `(num_targets, 4)` boxes with as many rows as masks. Float64 masks and boxes are fine (the loss casts them).
    The values are checked with one device synchronisation; the message is built only on failure.
    """
    if (mask_labels is None) != (class_labels is None):
        raise ValueError("`mask_labels` and `class_labels` must be given together.")
    if target_boxes is not None and mask_labels is None:
        raise ValueError("`target_boxes` needs `mask_labels` and `class_labels`.")
    if pixel_values.dtype == torch.float64:
        raise ValueError(
            "`pixel_values` is float64; the model computes in float32 or lower: pass `pixel_values.float()` (or "
            "`.to(model.dtype)`)."
        )
    checks = []  # (flag tensor that is True when the check fails, message builder)
    if training or mask_labels is not None:
        non_finite = ~torch.isfinite(pixel_values).flatten(1).all(dim=1)
        checks.append(
            (
                non_finite.any(),
                lambda: (
                    f"`pixel_values[{non_finite.nonzero()[0].item()}]` holds NaN or infinite values; nothing was "
                    "run (a training step would have spread them into the BatchNorm statistics and the weights)."
                ),
            )
        )
    if mask_labels is None:
        _raise_first_failure(checks)
        return
    batch_size, height, width = pixel_values.shape[0], pixel_values.shape[-2], pixel_values.shape[-1]
    lists = {"mask_labels": mask_labels, "class_labels": class_labels}
    if target_boxes is not None:
        lists["target_boxes"] = target_boxes
    for name, values in lists.items():
        if not isinstance(values, (list, tuple)) or len(values) != batch_size:
            raise ValueError(
                f"`{name}` must be a list with one entry per image ({batch_size}), got "
                f"{len(values) if isinstance(values, (list, tuple)) else type(values).__name__}."
            )
        for i, value in enumerate(values):
            if not isinstance(value, Tensor):
                raise ValueError(f"`{name}[{i}]` must be a tensor, got {type(value).__name__}.")
    for i, (masks, labels) in enumerate(zip(mask_labels, class_labels)):
        if masks.dim() != 3 or tuple(masks.shape[-2:]) != (height, width):
            raise ValueError(
                f"`mask_labels[{i}]` must have shape (num_targets, {height}, {width}) (the padded input size), got "
                f"{tuple(masks.shape)}."
            )
        if labels.shape != (masks.shape[0],):
            raise ValueError(
                f"`class_labels[{i}]` must have shape ({masks.shape[0]},) to match `mask_labels[{i}]` (one label per "
                f"mask), got {tuple(labels.shape)}."
            )
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ValueError(
                f"`class_labels[{i}]` must hold integer class ids (torch.long), got {labels.dtype}: float labels "
                "would be truncated."
            )
        if masks.numel() and masks.dtype != torch.bool:
            checks.append(
                (
                    ((masks != 0) & (masks != 1)).any(),
                    lambda i=i, masks=masks: (
                        f"`mask_labels[{i}]` must be binary (0/1 or bool), got values "
                        f"{masks.unique()[:6].tolist()}{' ...' if masks.unique().numel() > 6 else ''}; 0/255 masks must "
                        "be divided by 255 (e.g. `masks > 127`)."
                    ),
                )
            )
        if labels.numel():
            checks.append(
                (
                    (labels < 0).any() | (labels >= num_labels).any(),
                    lambda i=i, labels=labels: (
                        f"`class_labels[{i}]` must be in [0, {num_labels - 1}] (the model has "
                        f"{num_labels} labels), got {labels.tolist()}."
                    ),
                )
            )
        if target_boxes is None:
            continue
        boxes = target_boxes[i]
        if boxes.shape != (masks.shape[0], 4):
            raise ValueError(
                f"`target_boxes[{i}]` must have shape ({masks.shape[0]}, 4) to match `mask_labels[{i}]` (one "
                f"(center_x, center_y, width, height) box per mask), got {tuple(boxes.shape)}."
            )
        if not boxes.is_floating_point():
            raise ValueError(f"`target_boxes[{i}]` must be a floating-point tensor, got {boxes.dtype}.")
        if boxes.numel():
            checks.append(
                (
                    ~torch.isfinite(boxes).all() | (boxes < 0).any() | (boxes > 1).any(),
                    lambda i=i, boxes=boxes: (
                        f"`target_boxes[{i}]` must hold finite (center_x, center_y, width, "
                        "height) boxes normalised by the unpadded image size, all in [0, 1]; got values from "
                        f"{boxes.min().item():g} to {boxes.max().item():g} (pixel boxes must be divided by the image "
                        "width and height)."
                    ),
                )
            )
    _raise_first_failure(checks)


def _raise_first_failure(checks: list) -> None:
    if not checks:
        return
    failed = torch.stack([flag for flag, _ in checks]).tolist()  # one synchronisation for every check
    for (_, message), fails in zip(checks, failed):
        if fails:
            raise ValueError(message())


def raise_if_non_finite_loss(loss_dict: dict[str, Tensor]) -> None:
    """Raises before the loss reaches `backward()` (and the optimizer) when any term is NaN or infinite."""
    finite = torch.stack([torch.isfinite(value).all() for value in loss_dict.values()]).tolist()
    bad = [name for name, ok in zip(loss_dict, finite) if not ok]
    if bad:
        raise ValueError(
            f"The loss is not finite ({', '.join(bad)}): the step was stopped before any gradient or optimizer "
            "update. Lower the learning rate, check the targets, or train in float32."
        )


def encoder_level_shapes(config: MaskDinoConfig, height: int, width: int) -> list[tuple[int, int]]:
    """(height, width) of every encoder level for a padded input of `height x width` (multiples of 32)."""
    strides = sorted(stage_stride(name) for name in config.encoder_in_features)
    shapes = [(height // stride, width // stride) for stride in strides]
    for _ in range(config.num_feature_levels - len(strides)):
        # the extra levels are 3x3 stride-2 convolutions with padding 1 of the previous one
        shapes.append(((shapes[-1][0] + 1) // 2, (shapes[-1][1] + 1) // 2))
    return shapes


def _input_size_problem(config: MaskDinoConfig, height: int, width: int, batch_size: int = 1) -> str | None:
    shapes = encoder_level_shapes(config, height, width)
    # GroupNorm(32) over each level needs more than one value per group over the batch, also in eval mode
    channels_per_group = config.feature_size // 32
    if batch_size * min(h * w for h, w in shapes) * channels_per_group < 2:
        return "its smallest encoder level has too few pixels for the GroupNorm of the pixel decoder"
    num_tokens = sum(h * w for h, w in shapes)
    if config.init_queries_from_encoder and num_tokens < config.num_queries:
        return (
            f"its encoder levels have {num_tokens} tokens but the decoder selects `num_queries={config.num_queries}`"
        )
    return None


def minimum_input_size(config: MaskDinoConfig) -> int:
    """The smallest side (a multiple of 32) of a square padded input that the model can take as a single image."""
    side = 32
    while _input_size_problem(config, side, side) is not None:
        side += 32
    return side


def check_input_size(config: MaskDinoConfig, pixel_values: Tensor) -> None:
    """Raises a `ValueError` naming the minimum input size when `pixel_values` is too small for the model."""
    height, width = pixel_values.shape[-2:]
    if not isinstance(height, int) or not isinstance(width, int) or not isinstance(pixel_values.shape[0], int):
        # symbolic sizes (torch.export, torch.compile with dynamic shapes): testing them would specialise the graph
        # to the traced size; `export_onnx.dynamic_shapes` starts its ranges at `minimum_input_size` instead
        return
    problem = _input_size_problem(config, int(height), int(width), pixel_values.shape[0])
    if problem is not None:
        side = minimum_input_size(config)
        raise ValueError(
            f"`pixel_values` of size {int(height)}x{int(width)} (batch of {pixel_values.shape[0]}) is too small for "
            f"this model: {problem}. Inputs must be at least {side}x{side} pixels (or as many encoder tokens); resize "
            "the image up (e.g. the image processor's `size`)."
        )


def valid_image_sizes(pixel_values: Tensor, pixel_mask: Tensor | None) -> Tensor:
    """(height, width) of the valid region of each image: the extent of `pixel_mask`'s ones, or the padded size."""
    batch_size, _, height, width = pixel_values.shape
    if pixel_mask is None:
        # expanded, not a list of batch_size rows: keeps the batch size symbolic under torch.export
        size = sizes_tensor([height, width], torch.long, pixel_values.device)
        return size[None].expand(batch_size, -1)
    mask = pixel_mask.bool()
    rows = mask.any(dim=2).long()
    columns = mask.any(dim=1).long()
    # the valid region is the top-left block: its extent is the last occupied row / column + 1
    heights = (rows * torch.arange(1, height + 1, device=mask.device)).max(dim=1).values
    widths = (columns * torch.arange(1, width + 1, device=mask.device)).max(dim=1).values
    return torch.stack([heights, widths], dim=1)


class MaskDinoForUniversalSegmentation(MaskDinoPreTrainedModel):
    """
    Mask DINO with its training loss: class, box and mask predictions for every query, for object detection and
    instance, panoptic and semantic segmentation (see `MaskDinoImageProcessor`'s post-processing methods).
    """

    accepts_loss_kwargs = False

    def __init__(self, config: MaskDinoConfig):
        super().__init__(config)
        self.model = MaskDinoModel(config)
        self.criterion = MaskDinoLoss(config)
        self.post_init()

    def _check_inputs(self, pixel_values: Tensor, pixel_mask: Tensor | None) -> None:
        if pixel_values.dim() != 4 or pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(
                f"`pixel_values` must have shape (batch_size, {self.config.num_channels}, height, width), got "
                f"{tuple(pixel_values.shape)}."
            )
        if not pixel_values.is_floating_point():
            raise ValueError(
                f"`pixel_values` must be a floating-point tensor of normalised pixels, got {pixel_values.dtype}; use "
                "MaskDinoImageProcessor to prepare images."
            )
        if pixel_values.shape[-2] % 32 or pixel_values.shape[-1] % 32:
            raise ValueError(
                f"`pixel_values` height and width must be multiples of 32 (pad at the bottom/right), got "
                f"{tuple(pixel_values.shape[-2:])}."
            )
        if pixel_mask is not None and tuple(pixel_mask.shape) != (pixel_values.shape[0], *pixel_values.shape[-2:]):
            raise ValueError(
                f"`pixel_mask` must have shape {(pixel_values.shape[0], *pixel_values.shape[-2:])}, got "
                f"{tuple(pixel_mask.shape)}."
            )

    def build_targets(
        self,
        mask_labels: list[Tensor],
        class_labels: list[Tensor],
        image_sizes: Tensor,
        target_boxes=None,
        target_has_masks=None,
    ) -> list[dict[str, Tensor]]:
        """Criterion targets; boxes come from the masks normalised by the unpadded size, unless given. With
        `target_has_masks`, targets without a mask keep their given box and get `"has_masks"` False (no mask loss),
        the others take their mask's box."""
        targets = []
        for i, (masks, labels) in enumerate(zip(mask_labels, class_labels)):
            height, width = (int(size) for size in image_sizes[i])
            boxes = target_boxes[i] if target_boxes is not None else target_boxes_from_masks(masks, height, width)
            target = {"labels": labels.long(), "masks": masks.float(), "boxes": boxes.float()}
            if target_has_masks is not None:
                if target_boxes is None and not bool(target_has_masks[i].all()):
                    raise ValueError(
                        f"Image {i} has targets without masks (`target_has_masks` False) but no `target_boxes`: "
                        "box-only targets need their boxes."
                    )
                has_masks = target_has_masks[i].to(device=masks.device, dtype=torch.bool)
                mask_boxes = target_boxes_from_masks(masks, height, width).to(boxes.dtype)
                target["boxes"] = torch.where(has_masks[:, None], mask_boxes, boxes.to(mask_boxes.device)).float()
                target["has_masks"] = has_masks
            targets.append(target)
        return targets

    @can_return_tuple
    def forward(
        self,
        pixel_values: Tensor,
        pixel_mask: Tensor | None = None,
        mask_labels: list[Tensor] | None = None,
        class_labels: list[Tensor] | None = None,
        # not named `*_labels`: Trainer treats every such argument as a label it must find in each eval batch
        target_boxes: list[Tensor] | None = None,
        target_has_masks: list[Tensor] | None = None,
        output_auxiliary_logits: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MaskDinoForUniversalSegmentationOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
                Normalised images zero-padded to a multiple of 32 ([`MaskDinoImageProcessor`]).
            pixel_mask (`torch.LongTensor` of shape `(batch_size, height, width)`, *optional*):
                1 for image pixels, 0 for padding; gives each image's valid size (for box targets and
                post-processing).
            mask_labels (`list[torch.Tensor]`, *optional*):
                Per image, binary masks `(num_targets, height, width)` at the padded input size.
            class_labels (`list[torch.LongTensor]`, *optional*):
                Per image, labels `(num_targets,)`.
            target_boxes (`list[torch.FloatTensor]`, *optional*):
                Per image, normalised (center_x, center_y, width, height) boxes relative to the unpadded image, used
                instead of the boxes derived from `mask_labels`.
            target_has_masks (`list[torch.BoolTensor]`, *optional*):
                Per image, `(num_targets,)`: False for box-only targets (detection data), whose `mask_labels` rows
                are ignored: they train the class and box heads and add no mask loss; their box is the one in
                `target_boxes`. The other targets take their box from their mask.
            output_auxiliary_logits (`bool`, *optional*):
                Also return the earlier layers' predictions (`auxiliary_outputs`). Defaults to
                `config.output_auxiliary_logits` when set, else `False` (as Mask2Former).
        """
        self._check_inputs(pixel_values, pixel_mask)
        validate_training_inputs(
            pixel_values, mask_labels, class_labels, target_boxes, self.config.num_labels, self.training
        )
        check_input_size(self.config, pixel_values)
        image_sizes = valid_image_sizes(pixel_values, pixel_mask)
        targets = None
        if mask_labels is not None:
            targets = self.build_targets(mask_labels, class_labels, image_sizes, target_boxes, target_has_masks)

        outputs = self.model(pixel_values, pixel_mask=pixel_mask, denoising_targets=targets, **kwargs)

        loss = loss_dict = None
        if targets is not None:
            loss_dict = self.criterion(outputs, targets, outputs.denoising_meta_values)
            loss = sum(loss_dict.values())
            raise_if_non_finite_loss(loss_dict)

        if output_auxiliary_logits is None:
            output_auxiliary_logits = getattr(self.config, "output_auxiliary_logits", None) or False
        fields = dict(outputs)
        if not output_auxiliary_logits:
            # a list over layers: pipelines slice every output field by image, which a per-layer list defeats
            fields.pop("auxiliary_outputs", None)
        padded = sizes_tensor(pixel_values.shape[-2:], torch.long, pixel_values.device)
        return MaskDinoForUniversalSegmentationOutput(
            loss=loss,
            loss_dict=loss_dict,
            image_sizes=image_sizes,
            padded_image_sizes=padded[None].expand(pixel_values.shape[0], -1),
            **fields,
        )


__all__ = [
    "MaskDinoForUniversalSegmentation",
    "MaskDinoModel",
    "MaskDinoPreTrainedModel",
    "MaskDinoPredictionOutput",
    "MultiScaleDeformableAttention",
]
