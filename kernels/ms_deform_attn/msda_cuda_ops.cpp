// ATen wrappers around the CUDA launchers of msda_cuda.cu, registered as the CUDA kernels of
// maskdino_msda::ms_deform_attn_forward / ms_deform_attn_backward. Compiled by the host compiler, not nvcc.
//
// Only c10/cuda headers (CUDA runtime API), not ATen/cuda/CUDAContext.h, which needs the cuBLAS/cuSPARSE/cuSOLVER
// headers that a minimal CUDA toolkit does not have.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include <tuple>

#include "msda_aten.h"
#include "msda_common.h"

namespace maskdino_msda {
namespace {

ScalarKind scalar_kind(const at::Tensor& value) {
  switch (value.scalar_type()) {
    case at::kFloat:
      return ScalarKind::kFloat32;
    case at::kDouble:
      return ScalarKind::kFloat64;
    case at::kHalf:
      return ScalarKind::kFloat16;
    case at::kBFloat16:
      return ScalarKind::kBFloat16;
    default:
      TORCH_CHECK(false,
                  "ms_deform_attn: the CUDA kernel supports float32, float64, float16 and bfloat16 `value`, got ",
                  value.scalar_type());
  }
}

void check_launch(int status, const char* what, const ProblemSize& size) {
  TORCH_CHECK(status != kUnsupportedHeadDim, "ms_deform_attn: the CUDA kernel supports head dims up to ",
              kMaxCudaHeadDim, ", got ", size.head_dim);
  TORCH_CHECK(status == 0, "ms_deform_attn: launching the CUDA ", what,
              " kernel failed: ", cudaGetErrorString(static_cast<cudaError_t>(status)));
}

at::Tensor ms_deform_attn_forward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                       const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                                       const at::Tensor& attention_weights) {
  const ProblemSize size = check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                                        c10::DeviceType::CUDA);
  const ScalarKind kind = scalar_kind(value);
  const c10::cuda::CUDAGuard device_guard(value.device());
  auto output = at::empty({size.batch, size.num_queries, size.num_heads * size.head_dim}, value.options());
  if (output.numel() == 0) {
    return output;
  }
  const int status = launch_ms_deform_attn_forward(kind, size, value.data_ptr(), spatial_shapes.data_ptr<int64_t>(),
                                                   level_start_index.data_ptr<int64_t>(), sampling_locations.data_ptr(),
                                                   attention_weights.data_ptr(), output.data_ptr(),
                                                   c10::cuda::getCurrentCUDAStream().stream());
  check_launch(status, "forward", size);
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cuda(
    const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights, const at::Tensor& grad_output) {
  const ProblemSize size = check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                                        c10::DeviceType::CUDA);
  check_grad_output(grad_output, value, size);
  const ScalarKind kind = scalar_kind(value);
  const c10::cuda::CUDAGuard device_guard(value.device());
  // grad_value is accumulated with atomics in the accumulation dtype, then cast to value's dtype.
  auto grad_value = at::zeros(value.sizes(), value.options().dtype(sampling_locations.scalar_type()));
  auto grad_sampling_locations = at::zeros_like(sampling_locations);
  auto grad_attention_weights = at::zeros_like(attention_weights);
  if (value.numel() > 0 && attention_weights.numel() > 0) {
    const int status = launch_ms_deform_attn_backward(
        kind, size, value.data_ptr(), spatial_shapes.data_ptr<int64_t>(), level_start_index.data_ptr<int64_t>(),
        sampling_locations.data_ptr(), attention_weights.data_ptr(), grad_output.data_ptr(), grad_value.data_ptr(),
        grad_sampling_locations.data_ptr(), grad_attention_weights.data_ptr(),
        c10::cuda::getCurrentCUDAStream().stream());
    check_launch(status, "backward", size);
  }
  return {grad_value.to(value.scalar_type()), grad_sampling_locations, grad_attention_weights};
}

}  // namespace

TORCH_LIBRARY_IMPL(maskdino_msda, CUDA, m) {
  m.impl("ms_deform_attn_forward", &ms_deform_attn_forward_cuda);
  m.impl("ms_deform_attn_backward", &ms_deform_attn_backward_cuda);
}

}  // namespace maskdino_msda
