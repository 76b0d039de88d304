# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""The compiled multi-scale deformable attention ops (C++ on CPU, CUDA on GPU): policy, op schemas and autograd.

`MultiScaleDeformableAttention.forward` in `modeling_maskdino.py` asks [`use_compiled_kernel`] and, if it says yes,
calls [`multi_scale_deformable_attention`]; otherwise it runs its own `grid_sample` path. Building and caching the
libraries is [`msda_build`]'s job; importing this module compiles nothing.

The environment variable `MASKDINO_KERNELS` chooses:

- `auto` (default): use a kernel when it can be built and supports the inputs, else fall back; a failed build is
  reported once, with its reason, as a warning.
- `off`: always fall back to the PyTorch path.
- `require`: raise a `RuntimeError` instead of falling back.

Under `torch.compile`, the kernels are `torch.library` ops with fake (meta) implementations, called from a
`torch.autograd.Function`, so they trace without graph breaks once built. The policy is evaluated once per compiled
graph: changing `MASKDINO_KERNELS` afterwards does not recompile.
"""

from __future__ import annotations

import os
import threading

import torch
from torch.autograd.function import once_differentiable
from transformers.utils import logging

from transformers_maskdino import msda_build
from transformers_maskdino.msda_build import KernelSourcesMissingError, KernelUnavailableError


logger = logging.get_logger(__name__)

KERNELS_ENV_VAR = "MASKDINO_KERNELS"
KERNEL_MODES = ("auto", "off", "require")

_OP_NAMESPACE = "maskdino_msda"
_FORWARD_SCHEMA = (
    "ms_deform_attn_forward(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
    "Tensor sampling_locations, Tensor attention_weights) -> Tensor"
)
_BACKWARD_SCHEMA = (
    "ms_deform_attn_backward(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
    "Tensor sampling_locations, Tensor attention_weights, Tensor grad_output) -> (Tensor, Tensor, Tensor)"
)
# Values in any of these; locations, weights and all accumulation in float32 (float64 for float64 values).
SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
# The CUDA kernel keeps up to 4 channels per lane in registers (see msda_cuda.cu).
MAX_CUDA_HEAD_DIM = 128


def kernel_mode() -> str:
    """Returns the `MASKDINO_KERNELS` policy: `"auto"` (default), `"off"` or `"require"`."""
    mode = os.environ.get(KERNELS_ENV_VAR, "auto").strip().lower() or "auto"
    if mode not in KERNEL_MODES:
        raise ValueError(f"`{KERNELS_ENV_VAR}` must be one of {', '.join(KERNEL_MODES)}, got {mode!r}.")
    return mode


# ---- Operator schemas and fake implementations (no compilation involved) ----

_library = None


def _ops_defined() -> bool:
    return hasattr(getattr(torch.ops, _OP_NAMESPACE), "ms_deform_attn_forward")


def _define_ops() -> None:
    """Defines the op schemas and their fake implementations, once per process.

    The compiled libraries only register CPU or CUDA implementations (`TORCH_LIBRARY_IMPL`), so the CPU and CUDA
    builds load independently and in any order. A second copy of this module reuses the ops.
    """
    global _library
    if _library is not None or _ops_defined():
        return
    library = torch.library.Library(_OP_NAMESPACE, "FRAGMENT")
    library.define(_FORWARD_SCHEMA)
    library.define(_BACKWARD_SCHEMA)

    def forward_fake(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        batch_size, _, num_heads, head_dim = value.shape
        return value.new_empty((batch_size, sampling_locations.shape[1], num_heads * head_dim))

    def backward_fake(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_output):
        return torch.empty_like(value), torch.empty_like(sampling_locations), torch.empty_like(attention_weights)

    torch.library.register_fake(f"{_OP_NAMESPACE}::ms_deform_attn_forward", forward_fake, lib=library)
    torch.library.register_fake(f"{_OP_NAMESPACE}::ms_deform_attn_backward", backward_fake, lib=library)
    _library = library


# ---- Loading, once per process and device type ----

_state_lock = threading.RLock()
_loaded: dict[str, str] = {}  # device type -> path of the loaded library
_failures: dict[str, str] = {}  # device type -> reason the build or load failed


def load_kernel(device_type: str) -> str:
    """Builds (or finds in the cache) and loads the kernel library for `device_type` ("cpu" or "cuda"), once per
    process.

    Returns the library path; raises `KernelUnavailableError` (with the reason) if it cannot be built or loaded.
    Failures are remembered: the build is not retried in the same process."""
    with _state_lock:
        if device_type in _loaded:
            return _loaded[device_type]
        if device_type in _failures:
            raise KernelUnavailableError(_failures[device_type])
        try:
            library = msda_build.cached_library(device_type)
            _define_ops()
            torch.ops.load_library(str(library))
        except KernelSourcesMissingError as error:
            _failures[device_type] = str(error)
            logger.info(f"Multi-scale deformable attention: {error}; using the PyTorch path.")
            raise
        except KernelUnavailableError as error:
            reason = str(error)
        except Exception as error:  # a library that verifies but does not load (e.g. a missing runtime library)
            reason = f"loading the {device_type} kernel failed: {type(error).__name__}: {error}"
        else:
            _loaded[device_type] = str(library)
            return _loaded[device_type]
        _failures[device_type] = reason
        if kernel_mode() == "auto":
            logger.warning(
                f"Multi-scale deformable attention: no compiled {device_type} kernel ({reason}); using the slower "
                f"PyTorch path. Set {KERNELS_ENV_VAR}=off to silence this warning."
            )
        raise KernelUnavailableError(reason)


def _unavailable_reason(device_type: str, dtype: torch.dtype, head_dim: int) -> str | None:
    """`None` if the kernel can run on these inputs (building it if needed), else why not."""
    if device_type not in msda_build.KERNEL_SOURCE_FILES:
        return f"no kernel for device type {device_type!r}"
    if dtype not in SUPPORTED_DTYPES:
        return f"the {device_type} kernel does not support {dtype}"
    if device_type == "cuda" and head_dim > MAX_CUDA_HEAD_DIM:
        return f"the cuda kernel supports head dims up to {MAX_CUDA_HEAD_DIM}, got {head_dim}"
    try:
        load_kernel(device_type)
    except KernelUnavailableError as error:
        return str(error)
    return None


@torch.compiler.assume_constant_result
def _kernel_decision(device_type: str, dtype: torch.dtype, head_dim: int) -> bool:
    # Evaluated eagerly even while torch.compile traces (the build must not be traced), then baked into the graph.
    mode = kernel_mode()
    if mode == "off":
        return False
    reason = _unavailable_reason(device_type, dtype, head_dim)
    if reason is None:
        return True
    if mode == "require":
        raise RuntimeError(f"{KERNELS_ENV_VAR}=require, but the compiled deformable attention cannot run: {reason}.")
    return False


def use_compiled_kernel(value: torch.Tensor) -> bool:
    """Whether [`multi_scale_deformable_attention`] should run for a `value` of this device, dtype and head dim,
    under the `MASKDINO_KERNELS` policy (building the kernel on first use). With `require`, raises instead of
    returning `False`."""
    return _kernel_decision(value.device.type, value.dtype, value.shape[-1])


class MultiScaleDeformableAttentionFunction(torch.autograd.Function):
    """Autograd for the compiled ops. Inputs must already be contiguous, with locations and weights in the
    accumulation dtype (float64 for a float64 `value`, float32 otherwise)."""

    @staticmethod
    def forward(ctx, value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        return torch.ops.maskdino_msda.ms_deform_attn_forward(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights
        )

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights = ctx.saved_tensors
        grad_value, grad_sampling_locations, grad_attention_weights = torch.ops.maskdino_msda.ms_deform_attn_backward(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_output.contiguous()
        )
        return grad_value, None, None, grad_sampling_locations, grad_attention_weights


def multi_scale_deformable_attention(
    value: torch.Tensor,
    value_spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Multi-scale deformable attention through the compiled kernel (load it first: [`use_compiled_kernel`]).

    Same semantics as `grid_sample` (bilinear, zeros padding, `align_corners=False`) on `2 * sampling_locations - 1`.
    float16 and bfloat16 values are read as such; locations, weights and sums are float32 (float64 for float64
    values), and only the output is rounded to `value`'s dtype.

    Args:
        value (`torch.Tensor` of shape `(batch_size, num_tokens, num_heads, head_dim)`):
            Flattened multi-scale features.
        value_spatial_shapes (`torch.LongTensor` of shape `(num_levels, 2)`):
            (height, width) of each level.
        level_start_index (`torch.LongTensor` of shape `(num_levels,)`):
            Index of each level's first token in `value`.
        sampling_locations (`torch.Tensor` of shape `(batch_size, num_queries, num_heads, num_levels, num_points, 2)`):
            Normalized (x, y) locations; points outside [0, 1] read zeros.
        attention_weights (`torch.Tensor` of shape `(batch_size, num_queries, num_heads, num_levels, num_points)`):
            Softmaxed weights of the sampled values.

    Returns:
        `torch.Tensor` of shape `(batch_size, num_queries, num_heads * head_dim)` in `value`'s dtype. Gradients of
        locations and weights come back in their own dtypes.
    """
    # Locations and weights are read in the accumulation dtype: a half-precision location is off by up to
    # 0.0005 * width pixels.
    accumulation_dtype = torch.float64 if value.dtype == torch.float64 else torch.float32
    return MultiScaleDeformableAttentionFunction.apply(
        value.contiguous(),
        value_spatial_shapes.to(device=value.device, dtype=torch.int64).contiguous(),
        level_start_index.to(device=value.device, dtype=torch.int64).contiguous(),
        sampling_locations.to(accumulation_dtype).contiguous(),
        attention_weights.to(accumulation_dtype).contiguous(),
    )


__all__ = [
    "KERNELS_ENV_VAR",
    "KernelSourcesMissingError",
    "KernelUnavailableError",
    "MultiScaleDeformableAttentionFunction",
    "kernel_mode",
    "load_kernel",
    "multi_scale_deformable_attention",
    "use_compiled_kernel",
]
