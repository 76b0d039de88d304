"""Helpers shared by the kernel tests and benchmarks: the PyTorch reference path and random problem instances."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _model_reference():
    try:
        from transformers_maskdino.modeling_maskdino import MultiScaleDeformableAttention
    except ImportError:
        return None
    return MultiScaleDeformableAttention()


def grid_sample_reference(value, spatial_shapes_list, sampling_locations, attention_weights):
    """Multi-scale deformable attention with `grid_sample` (bilinear, zeros padding, align_corners=False).

    Stand-in for the model's `MultiScaleDeformableAttention` while `modeling_maskdino.py` does not exist yet.
    """
    batch_size, _, num_heads, head_dim = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    grids = 2 * sampling_locations - 1
    sampled = []
    for level, level_value in enumerate(value.split([h * w for h, w in spatial_shapes_list], dim=1)):
        height, width = spatial_shapes_list[level]
        # batch_size * num_heads, head_dim, height, width
        level_value = level_value.permute(0, 2, 3, 1).reshape(batch_size * num_heads, head_dim, height, width)
        # batch_size * num_heads, num_queries, num_points, 2
        level_grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(level_value, level_grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    # batch_size * num_heads, 1, num_queries, num_levels * num_points
    weights = attention_weights.transpose(1, 2).reshape(batch_size * num_heads, 1, num_queries, num_levels * num_points)
    output = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)
    return output.view(batch_size, num_heads * head_dim, num_queries).transpose(1, 2).contiguous()


_MODEL_REFERENCE = _model_reference()


def pytorch_path(value, spatial_shapes, spatial_shapes_list, level_start_index, sampling_locations, attention_weights):
    """The model's pure-PyTorch path (its own module once it exists, else `grid_sample_reference`), kernels off."""
    if _MODEL_REFERENCE is not None:
        import os
        from unittest import mock

        with mock.patch.dict(os.environ, {"MASKDINO_KERNELS": "off"}):
            return _MODEL_REFERENCE(
                value, spatial_shapes, spatial_shapes_list, level_start_index, sampling_locations, attention_weights, 64
            )
    return grid_sample_reference(value, spatial_shapes_list, sampling_locations, attention_weights)


def make_inputs(
    spatial_shapes_list,
    batch_size=2,
    num_heads=3,
    head_dim=5,
    num_queries=7,
    num_points=2,
    dtype=torch.float32,
    device="cpu",
    location_range=(-0.2, 1.2),
    seed=0,
    requires_grad=False,
):
    """Random inputs; locations are uniform in `location_range`, so some fall outside the image."""
    generator = torch.Generator().manual_seed(seed)
    num_levels = len(spatial_shapes_list)
    num_tokens = sum(h * w for h, w in spatial_shapes_list)
    spatial_shapes = torch.tensor(spatial_shapes_list, dtype=torch.int64)
    level_start_index = torch.cat([spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]])
    value = torch.randn(batch_size, num_tokens, num_heads, head_dim, generator=generator, dtype=torch.float64)
    low, high = location_range
    sampling_locations = low + (high - low) * torch.rand(
        batch_size, num_queries, num_heads, num_levels, num_points, 2, generator=generator, dtype=torch.float64
    )
    attention_weights = torch.randn(
        batch_size, num_queries, num_heads, num_levels * num_points, generator=generator, dtype=torch.float64
    ).softmax(-1)
    attention_weights = attention_weights.view(batch_size, num_queries, num_heads, num_levels, num_points)
    tensors = [t.to(device=device, dtype=dtype).requires_grad_(requires_grad) for t in (value, sampling_locations, attention_weights)]
    value, sampling_locations, attention_weights = tensors
    return {
        "value": value,
        "value_spatial_shapes": spatial_shapes.to(device),
        "value_spatial_shapes_list": list(spatial_shapes_list),
        "level_start_index": level_start_index.to(device),
        "sampling_locations": sampling_locations,
        "attention_weights": attention_weights,
    }


def max_relative_error(actual, expected):
    """max |actual - expected| / max |expected| (norm-wise, so entries near zero don't dominate)."""
    scale = expected.abs().max().clamp_min(torch.finfo(expected.dtype).tiny)
    return ((actual.double() - expected.double()).abs().max() / scale.double()).item()
