// ATen-side helpers shared by the CPU and CUDA operator wrappers (g++ only; never included by the .cu file).
#pragma once

#include <ATen/ATen.h>

#include "msda_common.h"

namespace maskdino_msda {

// Checks shapes, dtypes, devices and contiguity, and returns the problem size.
inline ProblemSize check_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                                const at::Tensor& attention_weights, c10::DeviceType device_type) {
  const auto device_name = c10::DeviceTypeName(device_type, /*lower_case=*/true);
  const std::pair<const char*, const at::Tensor*> named[] = {
      {"value", &value},
      {"spatial_shapes", &spatial_shapes},
      {"level_start_index", &level_start_index},
      {"sampling_locations", &sampling_locations},
      {"attention_weights", &attention_weights},
  };
  for (const auto& item : named) {
    TORCH_CHECK(item.second->device().type() == device_type && item.second->device() == value.device(),
                "ms_deform_attn: `", item.first, "` must be a ", device_name, " tensor on the device of `value` (",
                value.device(), "), got one on ", item.second->device());
    TORCH_CHECK(item.second->is_contiguous(), "ms_deform_attn: `", item.first, "` must be contiguous");
  }
  TORCH_CHECK(value.dim() == 4,
              "ms_deform_attn: `value` must have shape (batch, num_tokens, num_heads, head_dim), got ", value.sizes());
  TORCH_CHECK(sampling_locations.dim() == 6 && sampling_locations.size(5) == 2,
              "ms_deform_attn: `sampling_locations` must have shape (batch, num_queries, num_heads, num_levels, "
              "num_points, 2), got ",
              sampling_locations.sizes());
  ProblemSize size;
  size.batch = value.size(0);
  size.num_tokens = value.size(1);
  size.num_heads = value.size(2);
  size.head_dim = value.size(3);
  size.num_queries = sampling_locations.size(1);
  size.num_levels = sampling_locations.size(3);
  size.num_points = sampling_locations.size(4);
  TORCH_CHECK(sampling_locations.size(0) == size.batch && sampling_locations.size(2) == size.num_heads,
              "ms_deform_attn: `sampling_locations` ", sampling_locations.sizes(),
              " does not match batch size and number of heads of `value` ", value.sizes());
  TORCH_CHECK(attention_weights.sizes() == sampling_locations.sizes().slice(0, 5),
              "ms_deform_attn: `attention_weights` must have shape ", sampling_locations.sizes().slice(0, 5), ", got ",
              attention_weights.sizes());
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong && level_start_index.scalar_type() == at::kLong,
              "ms_deform_attn: `spatial_shapes` and `level_start_index` must be int64");
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(0) == size.num_levels && spatial_shapes.size(1) == 2,
              "ms_deform_attn: `spatial_shapes` must have shape (", size.num_levels, ", 2), got ",
              spatial_shapes.sizes());
  TORCH_CHECK(level_start_index.dim() == 1 && level_start_index.size(0) == size.num_levels,
              "ms_deform_attn: `level_start_index` must have shape (", size.num_levels, "), got ",
              level_start_index.sizes());
  const auto acc_type = value.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(sampling_locations.scalar_type() == acc_type && attention_weights.scalar_type() == acc_type,
              "ms_deform_attn: `sampling_locations` and `attention_weights` must be ", acc_type, " for a ",
              value.scalar_type(), " `value`, got ", sampling_locations.scalar_type(), " and ",
              attention_weights.scalar_type());
  return size;
}

inline void check_grad_output(const at::Tensor& grad_output, const at::Tensor& value, const ProblemSize& size) {
  TORCH_CHECK(grad_output.device() == value.device() && grad_output.scalar_type() == value.scalar_type(),
              "ms_deform_attn: `grad_output` must match `value` in device and dtype");
  TORCH_CHECK(grad_output.is_contiguous(), "ms_deform_attn: `grad_output` must be contiguous");
  TORCH_CHECK(grad_output.dim() == 3 && grad_output.size(0) == size.batch && grad_output.size(1) == size.num_queries &&
                  grad_output.size(2) == size.num_heads * size.head_dim,
              "ms_deform_attn: `grad_output` must have shape (", size.batch, ", ", size.num_queries, ", ",
              size.num_heads * size.head_dim, "), got ", grad_output.sizes());
}

}  // namespace maskdino_msda
