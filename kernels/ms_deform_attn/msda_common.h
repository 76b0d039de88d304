// Multi-scale deformable attention: code shared by the C++ (g++) and CUDA (nvcc) builds.
//
// This header includes no torch headers, so msda_cuda.cu compiles in seconds. It holds
//   * the bilinear footprint of one sampling location (grid_sample semantics: bilinear, zeros padding,
//     align_corners=False, applied to grid = 2 * location - 1),
//   * the declarations of the raw-pointer CUDA launchers that msda_cuda_ops.cpp calls.
//
// Tensor layouts (all contiguous, batch first):
//   value               (batch, num_tokens, num_heads, head_dim)             tokens of all levels, flattened
//   spatial_shapes      (num_levels, 2) int64, (height, width) per level
//   level_start_index   (num_levels,) int64, first token of each level
//   sampling_locations  (batch, num_queries, num_heads, num_levels, num_points, 2), (x, y) in [0, 1]
//   attention_weights   (batch, num_queries, num_heads, num_levels, num_points)
//   output              (batch, num_queries, num_heads * head_dim)
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define MSDA_INLINE __host__ __device__ __forceinline__
#else
#define MSDA_INLINE inline
#endif

namespace maskdino_msda {

// Where one sampling location reads from, and with which weights.
//
// Corners are ordered (top-left, top-right, bottom-left, bottom-right). `offset[i]` is the element offset of the
// corner's token row in `value` (relative to the (batch, head) base pointer), or -1 if the corner lies outside the
// level, which is how zeros padding is applied. `weight[i]` is the bilinear weight. `frac_x`/`frac_y` are the
// fractional parts of the pixel coordinates, needed for the gradient with respect to the location.
template <typename acc_t>
struct BilinearFootprint {
  int64_t offset[4];
  acc_t weight[4];
  acc_t frac_x;
  acc_t frac_y;
  bool any_inside;
};

// Computes the footprint of location (loc_x, loc_y) in a level of size height x width whose first token is
// `level_start`; `token_stride` is the number of elements between consecutive tokens (num_heads * head_dim).
//
// grid_sample with align_corners=False maps grid coordinate g in [-1, 1] to pixel (g + 1) * size / 2 - 0.5; with
// g = 2 * loc - 1 this is loc * size - 0.5.
template <typename acc_t>
MSDA_INLINE BilinearFootprint<acc_t> bilinear_footprint(acc_t loc_x, acc_t loc_y, int64_t height, int64_t width,
                                                        int64_t level_start, int64_t token_stride) {
  BilinearFootprint<acc_t> fp;
  const acc_t x = loc_x * static_cast<acc_t>(width) - static_cast<acc_t>(0.5);
  const acc_t y = loc_y * static_cast<acc_t>(height) - static_cast<acc_t>(0.5);
  // A corner can be inside only if -1 <= x < width (and the same for y). This also rejects NaN and values whose
  // floor would overflow int64.
  fp.any_inside = (x >= static_cast<acc_t>(-1)) && (x < static_cast<acc_t>(width)) && (y >= static_cast<acc_t>(-1)) &&
                  (y < static_cast<acc_t>(height));
  if (!fp.any_inside) {
    for (int i = 0; i < 4; ++i) {
      fp.offset[i] = -1;
      fp.weight[i] = static_cast<acc_t>(0);
    }
    fp.frac_x = fp.frac_y = static_cast<acc_t>(0);
    return fp;
  }
  // x >= -1 here, so truncation after adding 1 is a floor.
  const int64_t x0 = static_cast<int64_t>(x + static_cast<acc_t>(1)) - 1;
  const int64_t y0 = static_cast<int64_t>(y + static_cast<acc_t>(1)) - 1;
  const int64_t x1 = x0 + 1;
  const int64_t y1 = y0 + 1;
  const acc_t fx = x - static_cast<acc_t>(x0);
  const acc_t fy = y - static_cast<acc_t>(y0);
  const acc_t gx = static_cast<acc_t>(1) - fx;
  const acc_t gy = static_cast<acc_t>(1) - fy;
  fp.frac_x = fx;
  fp.frac_y = fy;

  const bool x0_in = x0 >= 0;
  const bool x1_in = x1 < width;
  const bool y0_in = y0 >= 0;
  const bool y1_in = y1 < height;
  fp.offset[0] = (y0_in && x0_in) ? (level_start + y0 * width + x0) * token_stride : -1;
  fp.offset[1] = (y0_in && x1_in) ? (level_start + y0 * width + x1) * token_stride : -1;
  fp.offset[2] = (y1_in && x0_in) ? (level_start + y1 * width + x0) * token_stride : -1;
  fp.offset[3] = (y1_in && x1_in) ? (level_start + y1 * width + x1) * token_stride : -1;
  fp.weight[0] = gy * gx;
  fp.weight[1] = gy * fx;
  fp.weight[2] = fy * gx;
  fp.weight[3] = fy * fx;
  return fp;
}

// Gradient of the sampled value with respect to the pixel coordinates, given per-corner dot products
// dot[i] = sum_c grad_output[c] * value_corner_i[c] (0 for corners outside the level):
//   d/dx = (1 - fy) * (dot[1] - dot[0]) + fy * (dot[3] - dot[2])
//   d/dy = (1 - fx) * (dot[2] - dot[0]) + fx * (dot[3] - dot[1])
// Multiply by the level's width (height) to get the gradient with respect to the normalized location.
template <typename acc_t>
MSDA_INLINE void bilinear_coordinate_grad(const BilinearFootprint<acc_t>& fp, const acc_t dot[4], acc_t* grad_x,
                                          acc_t* grad_y) {
  const acc_t one = static_cast<acc_t>(1);
  *grad_x = (one - fp.frac_y) * (dot[1] - dot[0]) + fp.frac_y * (dot[3] - dot[2]);
  *grad_y = (one - fp.frac_x) * (dot[2] - dot[0]) + fp.frac_x * (dot[3] - dot[1]);
}

// ---------------------------------------------------------------------------------------------------------------
// CUDA launchers (defined in msda_cuda.cu, called by msda_cuda_ops.cpp). Raw pointers only, so that neither side
// needs the other's headers. `value`, `output` and `grad_output` have the element type `dtype`; locations, attention
// weights, grad_value, grad_sampling_locations and grad_attention_weights use the accumulation type: double for
// kFloat64, float otherwise. grad_value must be zero-filled by the caller. `stream` is a cudaStream_t.
// The launchers return a cudaError_t (0 on success) or kUnsupportedHeadDim.
// ---------------------------------------------------------------------------------------------------------------
enum class ScalarKind : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

constexpr int kMaxCudaHeadDim = 128;
constexpr int kUnsupportedHeadDim = -1;

struct ProblemSize {
  int64_t batch;
  int64_t num_tokens;
  int64_t num_heads;
  int64_t head_dim;
  int64_t num_levels;
  int64_t num_queries;
  int64_t num_points;
};

int launch_ms_deform_attn_forward(ScalarKind dtype, const ProblemSize& size, const void* value,
                                  const int64_t* spatial_shapes, const int64_t* level_start_index,
                                  const void* sampling_locations, const void* attention_weights, void* output,
                                  void* stream);

int launch_ms_deform_attn_backward(ScalarKind dtype, const ProblemSize& size, const void* value,
                                   const int64_t* spatial_shapes, const int64_t* level_start_index,
                                   const void* sampling_locations, const void* attention_weights,
                                   const void* grad_output, void* grad_value, void* grad_sampling_locations,
                                   void* grad_attention_weights, void* stream);

}  // namespace maskdino_msda
