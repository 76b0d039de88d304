// Multi-scale deformable attention on CPU (float32, float64, float16 and bfloat16 values; float32 accumulation, float64
// for float64 values), registered as the CPU kernels of
// maskdino_msda::ms_deform_attn_forward / ms_deform_attn_backward (the schemas are defined from Python, in
// transformers_maskdino/msda_kernels.py).
//
// Build with -fopenmp for both compile and link: at::parallel_for is inline and only runs in parallel when _OPENMP is
// defined in this translation unit.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "msda_aten.h"
#include "msda_common.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__)
#define MSDA_TARGET_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#define MSDA_FORWARD_TARGET_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MSDA_TARGET_CLONES
#define MSDA_FORWARD_TARGET_CLONES
#endif
#if defined(__GNUC__)
#define MSDA_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define MSDA_ALWAYS_INLINE inline
#endif

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

// The four corners of a location are processed in one pass over the channels. Corners outside the level read a
// row of zeros (and, in the backward, write to a scratch row), so the loop has no branches and vectorizes.
template <typename scalar_t, typename acc_t>
struct CornerRows {
  const scalar_t* value[4];
  acc_t weight[4];
};

template <typename scalar_t, typename acc_t>
inline CornerRows<scalar_t, acc_t> corner_rows(const BilinearFootprint<acc_t>& fp, acc_t attention_weight,
                                               const scalar_t* value_bh, const scalar_t* zeros) {
  CornerRows<scalar_t, acc_t> rows;
  for (int corner = 0; corner < 4; ++corner) {
    const bool inside = fp.offset[corner] >= 0;
    rows.value[corner] = inside ? value_bh + fp.offset[corner] : zeros;
    rows.weight[corner] = inside ? attention_weight * fp.weight[corner] : static_cast<acc_t>(0);
  }
  return rows;
}

// `scalar_t` is the type of value, output and grad_output; everything else (locations, weights, sums, gradients,
// grad_value while it is accumulated) is `acc_t`: float for float32/float16/bfloat16, double for float64. So
// reduced-precision values are rounded only once, when the output is stored, as in msda_cuda.cu.
template <typename scalar_t, typename acc_t>
struct KernelArgs {
  ProblemSize size;
  const scalar_t* value;
  const int64_t* shapes;
  const int64_t* starts;
  const acc_t* sampling_locations;
  const acc_t* attention_weights;
  const scalar_t* grad_output;  // backward only
  scalar_t* output;             // forward only
  acc_t* grad_value;            // backward only, and the two below
  acc_t* grad_locations;
  acc_t* grad_weights;
  int64_t num_chunks;
};

// Output rows [begin, end) of the forward. One row is one (batch, query): its task owns output[b, q, :], so no
// synchronisation is needed. A `kHeadDim` above 0 fixes the head size at compile time, so the sums stay in registers.
template <int kHeadDim, typename scalar_t, typename acc_t>
MSDA_ALWAYS_INLINE void forward_rows(const KernelArgs<scalar_t, acc_t>& args, int64_t begin, int64_t end) {
  const ProblemSize& size = args.size;
  const scalar_t* value = args.value;
  const int64_t* shapes = args.shapes;
  const int64_t* starts = args.starts;
  const acc_t* sampling_locations = args.sampling_locations;
  const acc_t* attention_weights = args.attention_weights;
  scalar_t* output = args.output;
  const int64_t num_heads = size.num_heads;
  const int64_t head_dim = kHeadDim > 0 ? kHeadDim : size.head_dim;
  const int64_t num_levels = size.num_levels;
  const int64_t num_points = size.num_points;
  const int64_t token_stride = num_heads * head_dim;
  const int64_t batch_stride = size.num_tokens * token_stride;
  const std::vector<scalar_t> zeros(head_dim, static_cast<scalar_t>(0));
  std::vector<acc_t> sums(kHeadDim > 0 ? 0 : head_dim);
  acc_t fixed_sums[kHeadDim > 0 ? kHeadDim : 1];
  for (int64_t row = begin; row < end; ++row) {
    const scalar_t* value_b = value + (row / size.num_queries) * batch_stride;
    for (int64_t head = 0; head < num_heads; ++head) {
      const int64_t item = row * num_heads + head;
      const scalar_t* value_bh = value_b + head * head_dim;
      const acc_t* locations = sampling_locations + item * num_levels * num_points * 2;
      const acc_t* weights = attention_weights + item * num_levels * num_points;
      acc_t* __restrict__ out = kHeadDim > 0 ? fixed_sums : sums.data();
      std::fill(out, out + head_dim, static_cast<acc_t>(0));
      for (int64_t level = 0; level < num_levels; ++level) {
        const int64_t height = shapes[2 * level];
        const int64_t width = shapes[2 * level + 1];
        for (int64_t point = 0; point < num_points; ++point) {
          const int64_t level_point = level * num_points + point;
          const auto fp = bilinear_footprint<acc_t>(locations[2 * level_point], locations[2 * level_point + 1],
                                                    height, width, starts[level], token_stride);
          if (!fp.any_inside) {
            continue;
          }
          const auto rows = corner_rows(fp, weights[level_point], value_bh, zeros.data());
          const scalar_t* __restrict__ v0 = rows.value[0];
          const scalar_t* __restrict__ v1 = rows.value[1];
          const scalar_t* __restrict__ v2 = rows.value[2];
          const scalar_t* __restrict__ v3 = rows.value[3];
          const acc_t w0 = rows.weight[0], w1 = rows.weight[1], w2 = rows.weight[2], w3 = rows.weight[3];
#pragma omp simd
          for (int64_t c = 0; c < head_dim; ++c) {
            out[c] += w0 * static_cast<acc_t>(v0[c]) + w1 * static_cast<acc_t>(v1[c]) +
                      w2 * static_cast<acc_t>(v2[c]) + w3 * static_cast<acc_t>(v3[c]);
          }
        }
      }
      scalar_t* __restrict__ output_row = output + item * head_dim;
      for (int64_t c = 0; c < head_dim; ++c) {
        output_row[c] = static_cast<scalar_t>(out[c]);  // round to nearest even, like __float2bfloat16_rn
      }
    }
  }
}

// Each task handles one (batch, head) pair and one range of channels, and is the only writer of
// grad_value[b, :, h, channels], so grad_value needs no atomics. When there are fewer (batch, head) pairs than
// threads, the channels are split too; the per-location gradients are then partial sums over a channel range,
// written to separate slices (`chunk`) and added up by the caller.
template <typename scalar_t, typename acc_t>
MSDA_ALWAYS_INLINE void backward_tasks(const KernelArgs<scalar_t, acc_t>& args, int64_t begin, int64_t end) {
  const ProblemSize& size = args.size;
  const int64_t num_chunks = args.num_chunks;
  const scalar_t* value = args.value;
  const int64_t* shapes = args.shapes;
  const int64_t* starts = args.starts;
  const acc_t* sampling_locations = args.sampling_locations;
  const acc_t* attention_weights = args.attention_weights;
  const scalar_t* grad_output = args.grad_output;
  acc_t* grad_value = args.grad_value;
  acc_t* grad_locations = args.grad_locations;
  acc_t* grad_weights = args.grad_weights;
  const int64_t num_heads = size.num_heads;
  const int64_t head_dim = size.head_dim;
  const int64_t num_levels = size.num_levels;
  const int64_t num_points = size.num_points;
  const int64_t num_queries = size.num_queries;
  const int64_t token_stride = num_heads * head_dim;
  const int64_t batch_stride = size.num_tokens * token_stride;
  const int64_t chunk_size = (head_dim + num_chunks - 1) / num_chunks;
  const int64_t items_per_chunk = size.batch * num_queries * num_heads * num_levels * num_points;

  for (int64_t task = begin; task < end; ++task) {
    const int64_t chunk = task % num_chunks;
    const int64_t head = (task / num_chunks) % num_heads;
    const int64_t batch = task / (num_chunks * num_heads);
    const int64_t c_begin = std::min(head_dim, chunk * chunk_size);
    const int64_t c_end = std::min(head_dim, c_begin + chunk_size);
    const scalar_t* value_bh = value + batch * batch_stride + head * head_dim + c_begin;
    acc_t* grad_value_bh = grad_value + batch * batch_stride + head * head_dim + c_begin;
    acc_t* grad_locations_chunk = grad_locations + chunk * items_per_chunk * 2;
    acc_t* grad_weights_chunk = grad_weights + chunk * items_per_chunk;
    const int64_t width_c = c_end - c_begin;
    const std::vector<scalar_t> zeros(std::max<int64_t>(width_c, 1), static_cast<scalar_t>(0));
    std::vector<acc_t> scratch(4 * std::max<int64_t>(width_c, 1));
    std::vector<acc_t> grad_out_row(std::max<int64_t>(width_c, 1));

    for (int64_t query = 0; query < num_queries; ++query) {
      const int64_t item = (batch * num_queries + query) * num_heads + head;
      const scalar_t* grad_output_row = grad_output + item * head_dim + c_begin;
      for (int64_t c = 0; c < width_c; ++c) {
        grad_out_row[c] = static_cast<acc_t>(grad_output_row[c]);
      }
      const acc_t* __restrict__ grad_out = grad_out_row.data();
      const acc_t* locations = sampling_locations + item * num_levels * num_points * 2;
      const acc_t* weights = attention_weights + item * num_levels * num_points;
      acc_t* grad_loc = grad_locations_chunk + item * num_levels * num_points * 2;
      acc_t* grad_w = grad_weights_chunk + item * num_levels * num_points;
      for (int64_t level = 0; level < num_levels; ++level) {
        const int64_t height = shapes[2 * level];
        const int64_t width = shapes[2 * level + 1];
        for (int64_t point = 0; point < num_points; ++point) {
          const int64_t level_point = level * num_points + point;
          const auto fp = bilinear_footprint<acc_t>(locations[2 * level_point], locations[2 * level_point + 1],
                                                    height, width, starts[level], token_stride);
          acc_t dot[4] = {0, 0, 0, 0};
          if (fp.any_inside) {
            const auto rows = corner_rows(fp, weights[level_point], value_bh, zeros.data());
            const scalar_t* __restrict__ v0 = rows.value[0];
            const scalar_t* __restrict__ v1 = rows.value[1];
            const scalar_t* __restrict__ v2 = rows.value[2];
            const scalar_t* __restrict__ v3 = rows.value[3];
            acc_t* __restrict__ g0 = fp.offset[0] >= 0 ? grad_value_bh + fp.offset[0] : scratch.data();
            acc_t* __restrict__ g1 = fp.offset[1] >= 0 ? grad_value_bh + fp.offset[1] : scratch.data() + width_c;
            acc_t* __restrict__ g2 = fp.offset[2] >= 0 ? grad_value_bh + fp.offset[2] : scratch.data() + 2 * width_c;
            acc_t* __restrict__ g3 = fp.offset[3] >= 0 ? grad_value_bh + fp.offset[3] : scratch.data() + 3 * width_c;
            const acc_t w0 = rows.weight[0], w1 = rows.weight[1], w2 = rows.weight[2], w3 = rows.weight[3];
            acc_t d0 = 0, d1 = 0, d2 = 0, d3 = 0;
#pragma omp simd reduction(+ : d0, d1, d2, d3)
            for (int64_t c = 0; c < width_c; ++c) {
              const acc_t g = grad_out[c];
              d0 += g * static_cast<acc_t>(v0[c]);
              d1 += g * static_cast<acc_t>(v1[c]);
              d2 += g * static_cast<acc_t>(v2[c]);
              d3 += g * static_cast<acc_t>(v3[c]);
              g0[c] += w0 * g;
              g1[c] += w1 * g;
              g2[c] += w2 * g;
              g3[c] += w3 * g;
            }
            dot[0] = d0;
            dot[1] = d1;
            dot[2] = d2;
            dot[3] = d3;
          }
          acc_t grad_x;
          acc_t grad_y;
          bilinear_coordinate_grad(fp, dot, &grad_x, &grad_y);
          const acc_t weight = weights[level_point];
          grad_loc[2 * level_point] = weight * static_cast<acc_t>(width) * grad_x;
          grad_loc[2 * level_point + 1] = weight * static_cast<acc_t>(height) * grad_y;
          grad_w[level_point] =
              fp.weight[0] * dot[0] + fp.weight[1] * dot[1] + fp.weight[2] * dot[2] + fp.weight[3] * dot[3];
        }
      }
    }
  }
}

// The row/task loops compiled for x86-64-v3 (AVX2 + FMA) and the baseline, and the forward also for x86-64-v4
// (AVX-512: a head of 32 bfloat16 values is one register, which makes the bf16 forward 1.5x faster), picked at load
// time by the CPU (GCC function multi-versioning). No -march flag is needed, so a cached build stays valid on any
// x86-64 CPU. The forward sums each channel in the same order in every clone, so its results do not depend on the
// CPU; the backward's channel reductions would, so it has no AVX-512 clone.
#define MSDA_DEFINE_ENTRY_POINTS(scalar_t, acc_t)                                                                      \
  MSDA_FORWARD_TARGET_CLONES void run_forward_rows(const KernelArgs<scalar_t, acc_t>& args, int64_t begin,          \
                                                   int64_t end) {                                                   \
    if (args.size.head_dim == 32) { /* Mask DINO's 256 channels in 8 heads */                                       \
      forward_rows<32, scalar_t, acc_t>(args, begin, end);                                                          \
    } else {                                                                                                         \
      forward_rows<0, scalar_t, acc_t>(args, begin, end);                                                           \
    }                                                                                                                \
  }                                                                                                                  \
  MSDA_TARGET_CLONES void run_backward_tasks(const KernelArgs<scalar_t, acc_t>& args, int64_t begin, int64_t end) { \
    backward_tasks<scalar_t, acc_t>(args, begin, end);                                                              \
  }
MSDA_DEFINE_ENTRY_POINTS(float, float)
MSDA_DEFINE_ENTRY_POINTS(double, double)
MSDA_DEFINE_ENTRY_POINTS(c10::Half, float)
MSDA_DEFINE_ENTRY_POINTS(c10::BFloat16, float)
#undef MSDA_DEFINE_ENTRY_POINTS

at::Tensor ms_deform_attn_forward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights) {
  const ProblemSize size = check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                                        c10::DeviceType::CPU);
  check_levels(spatial_shapes, level_start_index, size.num_tokens);
  auto output = at::empty({size.batch, size.num_queries, size.num_heads * size.head_dim}, value.options());
  if (output.numel() == 0) {
    return output;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_forward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    KernelArgs<scalar_t, acc_t> args{};
    args.size = size;
    args.value = value.data_ptr<scalar_t>();
    args.shapes = spatial_shapes.data_ptr<int64_t>();
    args.starts = level_start_index.data_ptr<int64_t>();
    args.sampling_locations = sampling_locations.data_ptr<acc_t>();
    args.attention_weights = attention_weights.data_ptr<acc_t>();
    args.output = output.data_ptr<scalar_t>();
    at::parallel_for(0, size.batch * size.num_queries, 1,
                     [&](int64_t begin, int64_t end) { run_forward_rows(args, begin, end); });
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cpu(
    const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights, const at::Tensor& grad_output) {
  const ProblemSize size = check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                                        c10::DeviceType::CPU);
  check_levels(spatial_shapes, level_start_index, size.num_tokens);
  check_grad_output(grad_output, value, size);

  // Accumulated in the accumulation dtype (a copy for float16/bfloat16 values), then cast to value's dtype.
  auto grad_value = at::zeros(value.sizes(), value.options().dtype(sampling_locations.scalar_type()));
  const int64_t pairs = size.batch * size.num_heads;
  // Split channels only when (batch, head) pairs alone cannot keep every thread busy, and keep >= 8 channels a task.
  int64_t num_chunks = 1;
  if (pairs > 0 && pairs < at::get_num_threads()) {
    num_chunks =
        std::min<int64_t>((at::get_num_threads() + pairs - 1) / pairs, std::max<int64_t>(1, size.head_dim / 8));
  }
  auto grad_locations =
      at::empty({num_chunks, size.batch, size.num_queries, size.num_heads, size.num_levels, size.num_points, 2},
                sampling_locations.options());
  auto grad_weights =
      at::empty({num_chunks, size.batch, size.num_queries, size.num_heads, size.num_levels, size.num_points},
                attention_weights.options());
  if (value.numel() > 0 && grad_weights.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_backward_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      KernelArgs<scalar_t, acc_t> args{};
      args.size = size;
      args.num_chunks = num_chunks;
      args.value = value.data_ptr<scalar_t>();
      args.shapes = spatial_shapes.data_ptr<int64_t>();
      args.starts = level_start_index.data_ptr<int64_t>();
      args.sampling_locations = sampling_locations.data_ptr<acc_t>();
      args.attention_weights = attention_weights.data_ptr<acc_t>();
      args.grad_output = grad_output.data_ptr<scalar_t>();
      args.grad_value = grad_value.data_ptr<acc_t>();
      args.grad_locations = grad_locations.data_ptr<acc_t>();
      args.grad_weights = grad_weights.data_ptr<acc_t>();
      at::parallel_for(0, size.batch * size.num_heads * num_chunks, 1,
                       [&](int64_t begin, int64_t end) { run_backward_tasks(args, begin, end); });
    });
  } else {
    grad_locations.zero_();
    grad_weights.zero_();
  }
  grad_value = grad_value.to(value.scalar_type());
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
