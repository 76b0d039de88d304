// Multi-scale deformable attention on CPU (float32 and float64), registered as the CPU kernels of
// maskdino_msda::ms_deform_attn_forward / ms_deform_attn_backward (the schemas are defined from Python, in
// transformers_maskdino/msda_kernels.py).
//
// Build with -fopenmp for both compile and link: at::parallel_for is inline and only runs in parallel when _OPENMP is
// defined in this translation unit.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "msda_aten.h"
#include "msda_common.h"

namespace maskdino_msda {
namespace {

void check_levels(const at::Tensor& spatial_shapes, const at::Tensor& level_start_index, int64_t num_tokens) {
  const int64_t* shapes = spatial_shapes.data_ptr<int64_t>();
  const int64_t* starts = level_start_index.data_ptr<int64_t>();
  for (int64_t level = 0; level < spatial_shapes.size(0); ++level) {
    const int64_t height = shapes[2 * level];
    const int64_t width = shapes[2 * level + 1];
    const int64_t start = starts[level];
    TORCH_CHECK(height >= 0 && width >= 0 && start >= 0 && start + height * width <= num_tokens,
                "ms_deform_attn: level ", level, " of shape (", height, ", ", width, ") starting at token ", start,
                " does not fit in the ", num_tokens, " tokens of `value`");
  }
}

template <typename scalar_t>
void forward_kernel(const ProblemSize& size, const scalar_t* value, const int64_t* shapes, const int64_t* starts,
                    const scalar_t* sampling_locations, const scalar_t* attention_weights, scalar_t* output) {
  const int64_t num_heads = size.num_heads;
  const int64_t head_dim = size.head_dim;
  const int64_t num_levels = size.num_levels;
  const int64_t num_points = size.num_points;
  const int64_t token_stride = num_heads * head_dim;
  const int64_t batch_stride = size.num_tokens * token_stride;
  // One task per (batch, query) row: it owns output[b, q, :], so no synchronisation is needed.
  at::parallel_for(0, size.batch * size.num_queries, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const scalar_t* value_b = value + (row / size.num_queries) * batch_stride;
      for (int64_t head = 0; head < num_heads; ++head) {
        const int64_t item = row * num_heads + head;
        const scalar_t* value_bh = value_b + head * head_dim;
        const scalar_t* locations = sampling_locations + item * num_levels * num_points * 2;
        const scalar_t* weights = attention_weights + item * num_levels * num_points;
        scalar_t* out = output + item * head_dim;
        std::fill(out, out + head_dim, static_cast<scalar_t>(0));
        for (int64_t level = 0; level < num_levels; ++level) {
          const int64_t height = shapes[2 * level];
          const int64_t width = shapes[2 * level + 1];
          for (int64_t point = 0; point < num_points; ++point) {
            const int64_t lp = level * num_points + point;
            const auto fp = bilinear_footprint<scalar_t>(locations[2 * lp], locations[2 * lp + 1], height, width,
                                                         starts[level], token_stride);
            if (!fp.any_inside) {
              continue;
            }
            const scalar_t weight = weights[lp];
            for (int corner = 0; corner < 4; ++corner) {
              if (fp.offset[corner] < 0) {
                continue;
              }
              const scalar_t w = weight * fp.weight[corner];
              const scalar_t* v = value_bh + fp.offset[corner];
              for (int64_t c = 0; c < head_dim; ++c) {
                out[c] += w * v[c];
              }
            }
          }
        }
      }
    }
  });
}

// Each task handles one (batch, head) pair and one range of channels, and is the only writer of
// grad_value[b, :, h, channels], so grad_value needs no atomics. When there are fewer (batch, head) pairs than
// threads, the channels are split too; the per-location gradients are then partial sums over a channel range,
// written to separate slices (`chunk`) and added up by the caller.
template <typename scalar_t>
void backward_kernel(const ProblemSize& size, int64_t num_chunks, const scalar_t* value, const int64_t* shapes,
                     const int64_t* starts, const scalar_t* sampling_locations, const scalar_t* attention_weights,
                     const scalar_t* grad_output, scalar_t* grad_value, scalar_t* grad_locations,
                     scalar_t* grad_weights) {
  const int64_t num_heads = size.num_heads;
  const int64_t head_dim = size.head_dim;
  const int64_t num_levels = size.num_levels;
  const int64_t num_points = size.num_points;
  const int64_t num_queries = size.num_queries;
  const int64_t token_stride = num_heads * head_dim;
  const int64_t batch_stride = size.num_tokens * token_stride;
  const int64_t chunk_size = (head_dim + num_chunks - 1) / num_chunks;
  const int64_t items_per_chunk = size.batch * num_queries * num_heads * num_levels * num_points;

  at::parallel_for(0, size.batch * num_heads * num_chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t chunk = task % num_chunks;
      const int64_t head = (task / num_chunks) % num_heads;
      const int64_t batch = task / (num_chunks * num_heads);
      const int64_t c_begin = std::min(head_dim, chunk * chunk_size);
      const int64_t c_end = std::min(head_dim, c_begin + chunk_size);
      const scalar_t* value_bh = value + batch * batch_stride + head * head_dim + c_begin;
      scalar_t* grad_value_bh = grad_value + batch * batch_stride + head * head_dim + c_begin;
      scalar_t* grad_locations_chunk = grad_locations + chunk * items_per_chunk * 2;
      scalar_t* grad_weights_chunk = grad_weights + chunk * items_per_chunk;

      for (int64_t query = 0; query < num_queries; ++query) {
        const int64_t item = (batch * num_queries + query) * num_heads + head;
        const scalar_t* go = grad_output + item * head_dim + c_begin;
        const scalar_t* locations = sampling_locations + item * num_levels * num_points * 2;
        const scalar_t* weights = attention_weights + item * num_levels * num_points;
        scalar_t* grad_loc = grad_locations_chunk + item * num_levels * num_points * 2;
        scalar_t* grad_w = grad_weights_chunk + item * num_levels * num_points;
        for (int64_t level = 0; level < num_levels; ++level) {
          const int64_t height = shapes[2 * level];
          const int64_t width = shapes[2 * level + 1];
          for (int64_t point = 0; point < num_points; ++point) {
            const int64_t lp = level * num_points + point;
            const auto fp = bilinear_footprint<scalar_t>(locations[2 * lp], locations[2 * lp + 1], height, width,
                                                         starts[level], token_stride);
            scalar_t dot[4] = {0, 0, 0, 0};
            if (fp.any_inside) {
              const scalar_t weight = weights[lp];
              for (int corner = 0; corner < 4; ++corner) {
                if (fp.offset[corner] < 0) {
                  continue;
                }
                const scalar_t* v = value_bh + fp.offset[corner];
                scalar_t* gv = grad_value_bh + fp.offset[corner];
                const scalar_t w = weight * fp.weight[corner];
                scalar_t acc = 0;
                for (int64_t c = 0; c < c_end - c_begin; ++c) {
                  acc += go[c] * v[c];
                  gv[c] += w * go[c];
                }
                dot[corner] = acc;
              }
            }
            scalar_t grad_x;
            scalar_t grad_y;
            bilinear_coordinate_grad(fp, dot, &grad_x, &grad_y);
            const scalar_t weight = weights[lp];
            grad_loc[2 * lp] = weight * static_cast<scalar_t>(width) * grad_x;
            grad_loc[2 * lp + 1] = weight * static_cast<scalar_t>(height) * grad_y;
            grad_w[lp] = fp.weight[0] * dot[0] + fp.weight[1] * dot[1] + fp.weight[2] * dot[2] +
                         fp.weight[3] * dot[3];
          }
        }
      }
    }
  });
}

at::Tensor ms_deform_attn_forward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights) {
  const ProblemSize size = check_inputs(value, spatial_shapes, level_start_index, sampling_locations,
                                        attention_weights, c10::DeviceType::CPU);
  check_levels(spatial_shapes, level_start_index, size.num_tokens);
  auto output = at::empty({size.batch, size.num_queries, size.num_heads * size.head_dim}, value.options());
  if (output.numel() == 0) {
    return output;
  }
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_forward_cpu", [&] {
    forward_kernel<scalar_t>(size, value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(),
                             level_start_index.data_ptr<int64_t>(), sampling_locations.data_ptr<scalar_t>(),
                             attention_weights.data_ptr<scalar_t>(), output.data_ptr<scalar_t>());
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cpu(
    const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights, const at::Tensor& grad_output) {
  const ProblemSize size = check_inputs(value, spatial_shapes, level_start_index, sampling_locations,
                                        attention_weights, c10::DeviceType::CPU);
  check_levels(spatial_shapes, level_start_index, size.num_tokens);
  check_grad_output(grad_output, value, size);

  auto grad_value = at::zeros_like(value);
  const int64_t pairs = size.batch * size.num_heads;
  // Split channels only when (batch, head) pairs alone cannot keep every thread busy, and keep >= 8 channels a task.
  int64_t num_chunks = 1;
  if (pairs > 0 && pairs < at::get_num_threads()) {
    num_chunks = std::min<int64_t>((at::get_num_threads() + pairs - 1) / pairs, std::max<int64_t>(1, size.head_dim / 8));
  }
  auto grad_locations = at::empty({num_chunks, size.batch, size.num_queries, size.num_heads, size.num_levels,
                                   size.num_points, 2},
                                  sampling_locations.options());
  auto grad_weights = at::empty({num_chunks, size.batch, size.num_queries, size.num_heads, size.num_levels,
                                 size.num_points},
                                attention_weights.options());
  if (value.numel() > 0 && grad_weights.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_backward_cpu", [&] {
      backward_kernel<scalar_t>(size, num_chunks, value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(),
                                level_start_index.data_ptr<int64_t>(), sampling_locations.data_ptr<scalar_t>(),
                                attention_weights.data_ptr<scalar_t>(), grad_output.data_ptr<scalar_t>(),
                                grad_value.data_ptr<scalar_t>(), grad_locations.data_ptr<scalar_t>(),
                                grad_weights.data_ptr<scalar_t>());
    });
  } else {
    grad_locations.zero_();
    grad_weights.zero_();
  }
  if (num_chunks == 1) {
    return {grad_value, grad_locations.squeeze(0), grad_weights.squeeze(0)};
  }
  return {grad_value, grad_locations.sum(0), grad_weights.sum(0)};
}

}  // namespace

TORCH_LIBRARY_IMPL(maskdino_msda, CPU, m) {
  m.impl("ms_deform_attn_forward", &ms_deform_attn_forward_cpu);
  m.impl("ms_deform_attn_backward", &ms_deform_attn_backward_cpu);
}

}  // namespace maskdino_msda
