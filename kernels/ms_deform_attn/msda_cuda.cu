// Multi-scale deformable attention CUDA kernels (float32, float64, float16, bfloat16 values; float32 accumulation,
// float64 for float64 values).
//
// No torch headers here: this file compiles in seconds with plain nvcc. msda_cuda_ops.cpp (g++) wraps the launchers
// below as the CUDA kernels of the maskdino_msda ops.
//
// Work split: a group of `group_size` consecutive lanes of one warp (a power of two <= 32) handles one
// (batch, query, head) item. Lane i handles channels i, i + group_size, ... (at most kChannelsPerLane <= 4 of them,
// kept in registers, so head dims up to 128). The forward writes each output element once; the backward adds into
// grad_value with atomics (many queries sample the same pixel) and reduces the per-location gradients over channels
// with warp shuffles, so every grad_sampling_locations / grad_attention_weights element is written by exactly one lane,
// without atomics.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "msda_common.h"

namespace maskdino_msda {
namespace {

constexpr int kThreadsPerBlock = 256;

template <typename value_t>
struct Accumulation {
  using type = float;
};
template <>
struct Accumulation<double> {
  using type = double;
};

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(double* p, double v) { *p = v; }
__device__ __forceinline__ void store(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

template <typename value_t, int kChannelsPerLane>
__global__ void forward_kernel(const ProblemSize size, const int group_size, const value_t* __restrict__ value,
                               const int64_t* __restrict__ shapes, const int64_t* __restrict__ starts,
                               const typename Accumulation<value_t>::type* __restrict__ sampling_locations,
                               const typename Accumulation<value_t>::type* __restrict__ attention_weights,
                               value_t* __restrict__ output) {
  using acc_t = typename Accumulation<value_t>::type;
  const int64_t thread = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t item = thread / group_size;  // (batch, query, head), row-major
  const int lane = static_cast<int>(thread % group_size);
  const int64_t num_items = size.batch * size.num_queries * size.num_heads;
  if (item >= num_items) {
    return;
  }
  const int64_t head_dim = size.head_dim;
  const int64_t token_stride = size.num_heads * head_dim;
  const int64_t batch = item / (size.num_queries * size.num_heads);
  const int64_t head = item % size.num_heads;
  const value_t* value_bh = value + batch * size.num_tokens * token_stride + head * head_dim;
  const int64_t num_level_points = size.num_levels * size.num_points;
  const acc_t* locations = sampling_locations + item * num_level_points * 2;
  const acc_t* weights = attention_weights + item * num_level_points;

  acc_t acc[kChannelsPerLane];
#pragma unroll
  for (int k = 0; k < kChannelsPerLane; ++k) {
    acc[k] = 0;
  }
  for (int64_t level = 0; level < size.num_levels; ++level) {
    const int64_t height = shapes[2 * level];
    const int64_t width = shapes[2 * level + 1];
    const int64_t start = starts[level];
    for (int64_t point = 0; point < size.num_points; ++point) {
      const int64_t lp = level * size.num_points + point;
      const auto fp =
          bilinear_footprint<acc_t>(locations[2 * lp], locations[2 * lp + 1], height, width, start, token_stride);
      if (!fp.any_inside) {
        continue;
      }
      const acc_t weight = weights[lp];
#pragma unroll
      for (int corner = 0; corner < 4; ++corner) {
        if (fp.offset[corner] >= 0) {
          const acc_t w = weight * fp.weight[corner];
          const value_t* v = value_bh + fp.offset[corner];
#pragma unroll
          for (int k = 0; k < kChannelsPerLane; ++k) {
            const int64_t c = lane + k * group_size;
            if (c < head_dim) {
              acc[k] += w * to_acc(v[c]);
            }
          }
        }
      }
    }
  }
  value_t* out = output + item * head_dim;
#pragma unroll
  for (int k = 0; k < kChannelsPerLane; ++k) {
    const int64_t c = lane + k * group_size;
    if (c < head_dim) {
      store(out + c, acc[k]);
    }
  }
}

template <typename value_t, int kChannelsPerLane>
__global__ void backward_kernel(const ProblemSize size, const int group_size, const value_t* __restrict__ value,
                                const int64_t* __restrict__ shapes, const int64_t* __restrict__ starts,
                                const typename Accumulation<value_t>::type* __restrict__ sampling_locations,
                                const typename Accumulation<value_t>::type* __restrict__ attention_weights,
                                const value_t* __restrict__ grad_output,
                                typename Accumulation<value_t>::type* grad_value,
                                typename Accumulation<value_t>::type* __restrict__ grad_sampling_locations,
                                typename Accumulation<value_t>::type* __restrict__ grad_attention_weights) {
  using acc_t = typename Accumulation<value_t>::type;
  const int64_t thread = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t num_items = size.batch * size.num_queries * size.num_heads;
  // No early return: every lane of the warp must reach the shuffles. Lanes past the end redo item 0 and write nothing.
  const bool active = thread / group_size < num_items;
  const int64_t item = active ? thread / group_size : 0;
  const int lane = static_cast<int>(thread % group_size);
  const int64_t head_dim = size.head_dim;
  const int64_t token_stride = size.num_heads * head_dim;
  const int64_t batch = item / (size.num_queries * size.num_heads);
  const int64_t head = item % size.num_heads;
  const int64_t bh_offset = batch * size.num_tokens * token_stride + head * head_dim;
  const value_t* value_bh = value + bh_offset;
  acc_t* grad_value_bh = grad_value + bh_offset;
  const int64_t num_level_points = size.num_levels * size.num_points;
  const acc_t* locations = sampling_locations + item * num_level_points * 2;
  const acc_t* weights = attention_weights + item * num_level_points;

  acc_t go[kChannelsPerLane];
#pragma unroll
  for (int k = 0; k < kChannelsPerLane; ++k) {
    const int64_t c = lane + k * group_size;
    go[k] = c < head_dim ? to_acc(grad_output[item * head_dim + c]) : acc_t(0);
  }
  for (int64_t level = 0; level < size.num_levels; ++level) {
    const int64_t height = shapes[2 * level];
    const int64_t width = shapes[2 * level + 1];
    const int64_t start = starts[level];
    for (int64_t point = 0; point < size.num_points; ++point) {
      const int64_t lp = level * size.num_points + point;
      const auto fp =
          bilinear_footprint<acc_t>(locations[2 * lp], locations[2 * lp + 1], height, width, start, token_stride);
      const acc_t weight = weights[lp];
      acc_t dot[4] = {0, 0, 0, 0};
      if (fp.any_inside) {
#pragma unroll
        for (int corner = 0; corner < 4; ++corner) {
          if (fp.offset[corner] < 0) {
            continue;
          }
          const acc_t w = weight * fp.weight[corner];
          const value_t* v = value_bh + fp.offset[corner];
          acc_t* gv = grad_value_bh + fp.offset[corner];
          acc_t d = 0;
#pragma unroll
          for (int k = 0; k < kChannelsPerLane; ++k) {
            const int64_t c = lane + k * group_size;
            if (c < head_dim) {
              d += go[k] * to_acc(v[c]);
              if (active) {
                atomicAdd(gv + c, w * go[k]);
              }
            }
          }
          dot[corner] = d;
        }
      }
      // Per-lane partial sums over this lane's channels; summed over the group below.
      acc_t grad_x;
      acc_t grad_y;
      bilinear_coordinate_grad(fp, dot, &grad_x, &grad_y);
      acc_t grad_w = fp.weight[0] * dot[0] + fp.weight[1] * dot[1] + fp.weight[2] * dot[2] + fp.weight[3] * dot[3];
      for (int offset = group_size / 2; offset > 0; offset /= 2) {
        grad_x += __shfl_xor_sync(0xffffffffu, grad_x, offset);
        grad_y += __shfl_xor_sync(0xffffffffu, grad_y, offset);
        grad_w += __shfl_xor_sync(0xffffffffu, grad_w, offset);
      }
      if (active && lane == 0) {
        acc_t* grad_loc = grad_sampling_locations + (item * num_level_points + lp) * 2;
        grad_loc[0] = weight * static_cast<acc_t>(width) * grad_x;
        grad_loc[1] = weight * static_cast<acc_t>(height) * grad_y;
        grad_attention_weights[item * num_level_points + lp] = grad_w;
      }
    }
  }
}

// Lanes per item and channels per lane for a head dim: a group as small as the head dim when it is <= 32, else a full
// warp with 2 or 4 channels per lane.
bool split_channels(int64_t head_dim, int* group_size, int* channels_per_lane) {
  if (head_dim > kMaxCudaHeadDim) {
    return false;
  }
  if (head_dim <= 32) {
    int group = 1;
    while (group < head_dim) {
      group *= 2;
    }
    *group_size = group;
    *channels_per_lane = 1;
    return true;
  }
  *group_size = 32;
  const int64_t needed = (head_dim + 31) / 32;
  *channels_per_lane = needed <= 2 ? 2 : 4;
  return true;
}

int64_t num_blocks(const ProblemSize& size, int group_size) {
  const int64_t threads = size.batch * size.num_queries * size.num_heads * group_size;
  return (threads + kThreadsPerBlock - 1) / kThreadsPerBlock;
}

#define MSDA_DISPATCH_CHANNELS(channels_per_lane, ...) \
  switch (channels_per_lane) {                         \
    case 1: {                                          \
      constexpr int kChannels = 1;                     \
      __VA_ARGS__;                                     \
    } break;                                           \
    case 2: {                                          \
      constexpr int kChannels = 2;                     \
      __VA_ARGS__;                                     \
    } break;                                           \
    default: {                                         \
      constexpr int kChannels = 4;                     \
      __VA_ARGS__;                                     \
    } break;                                           \
  }

template <typename value_t>
int forward_typed(const ProblemSize& size, const void* value, const int64_t* shapes, const int64_t* starts,
                  const void* sampling_locations, const void* attention_weights, void* output, cudaStream_t stream) {
  using acc_t = typename Accumulation<value_t>::type;
  int group_size;
  int channels_per_lane;
  if (!split_channels(size.head_dim, &group_size, &channels_per_lane)) {
    return kUnsupportedHeadDim;
  }
  const int64_t blocks = num_blocks(size, group_size);
  if (blocks == 0) {
    return cudaSuccess;
  }
  MSDA_DISPATCH_CHANNELS(channels_per_lane,
                         forward_kernel<value_t, kChannels><<<blocks, kThreadsPerBlock, 0, stream>>>(
                             size, group_size, static_cast<const value_t*>(value), shapes, starts,
                             static_cast<const acc_t*>(sampling_locations),
                             static_cast<const acc_t*>(attention_weights), static_cast<value_t*>(output)))
  return static_cast<int>(cudaGetLastError());
}

template <typename value_t>
int backward_typed(const ProblemSize& size, const void* value, const int64_t* shapes, const int64_t* starts,
                   const void* sampling_locations, const void* attention_weights, const void* grad_output,
                   void* grad_value, void* grad_sampling_locations, void* grad_attention_weights, cudaStream_t stream) {
  using acc_t = typename Accumulation<value_t>::type;
  int group_size;
  int channels_per_lane;
  if (!split_channels(size.head_dim, &group_size, &channels_per_lane)) {
    return kUnsupportedHeadDim;
  }
  const int64_t blocks = num_blocks(size, group_size);
  if (blocks == 0) {
    return cudaSuccess;
  }
  MSDA_DISPATCH_CHANNELS(
      channels_per_lane,
      backward_kernel<value_t, kChannels><<<blocks, kThreadsPerBlock, 0, stream>>>(
          size, group_size, static_cast<const value_t*>(value), shapes, starts,
          static_cast<const acc_t*>(sampling_locations), static_cast<const acc_t*>(attention_weights),
          static_cast<const value_t*>(grad_output), static_cast<acc_t*>(grad_value),
          static_cast<acc_t*>(grad_sampling_locations), static_cast<acc_t*>(grad_attention_weights)))
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int launch_ms_deform_attn_forward(ScalarKind dtype, const ProblemSize& size, const void* value,
                                  const int64_t* spatial_shapes, const int64_t* level_start_index,
                                  const void* sampling_locations, const void* attention_weights, void* output,
                                  void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case ScalarKind::kFloat32:
      return forward_typed<float>(size, value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                                  output, s);
    case ScalarKind::kFloat64:
      return forward_typed<double>(size, value, spatial_shapes, level_start_index, sampling_locations,
                                   attention_weights, output, s);
    case ScalarKind::kFloat16:
      return forward_typed<__half>(size, value, spatial_shapes, level_start_index, sampling_locations,
                                   attention_weights, output, s);
    case ScalarKind::kBFloat16:
      return forward_typed<__nv_bfloat16>(size, value, spatial_shapes, level_start_index, sampling_locations,
                                          attention_weights, output, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

int launch_ms_deform_attn_backward(ScalarKind dtype, const ProblemSize& size, const void* value,
                                   const int64_t* spatial_shapes, const int64_t* level_start_index,
                                   const void* sampling_locations, const void* attention_weights,
                                   const void* grad_output, void* grad_value, void* grad_sampling_locations,
                                   void* grad_attention_weights, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case ScalarKind::kFloat32:
      return backward_typed<float>(size, value, spatial_shapes, level_start_index, sampling_locations,
                                   attention_weights, grad_output, grad_value, grad_sampling_locations,
                                   grad_attention_weights, s);
    case ScalarKind::kFloat64:
      return backward_typed<double>(size, value, spatial_shapes, level_start_index, sampling_locations,
                                    attention_weights, grad_output, grad_value, grad_sampling_locations,
                                    grad_attention_weights, s);
    case ScalarKind::kFloat16:
      return backward_typed<__half>(size, value, spatial_shapes, level_start_index, sampling_locations,
                                    attention_weights, grad_output, grad_value, grad_sampling_locations,
                                    grad_attention_weights, s);
    case ScalarKind::kBFloat16:
      return backward_typed<__nv_bfloat16>(size, value, spatial_shapes, level_start_index, sampling_locations,
                                           attention_weights, grad_output, grad_value, grad_sampling_locations,
                                           grad_attention_weights, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace maskdino_msda
