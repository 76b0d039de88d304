"""GPU checks of the compiled deformable attention (CUDA build). Run on a machine with an NVIDIA GPU:

    MASKDINO_KERNELS=require pytest -m cuda tests/test_kernels_cuda.py

They are deselected by default (`addopts = -m 'not slow and not cuda'`) and have never run on the project's CI, which
has no GPU; see docs/kernels.md. The first test builds the CUDA kernel for the local GPU (about 30 s).
"""

from __future__ import annotations

import pytest
import torch
from msda_reference import make_inputs, max_relative_error, pytorch_path

from transformers_maskdino import msda_kernels


pytestmark = pytest.mark.cuda

KERNEL_ARGS = ("value", "value_spatial_shapes", "level_start_index", "sampling_locations", "attention_weights")
ODD_LEVELS = [(7, 9), (4, 5), (3, 2), (1, 1)]
MODEL_LEVELS = [(50, 76), (25, 38), (13, 19), (7, 10)]


@pytest.fixture(scope="module")
def cuda_kernel():
    if not torch.cuda.is_available():
        raise RuntimeError("these tests need a CUDA GPU (run them with -m cuda only on a machine that has one)")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(msda_kernels.KERNELS_ENV_VAR, "require")
        yield msda_kernels.load_kernel("cuda")


def run_kernel(inputs):
    assert msda_kernels.use_compiled_kernel(inputs["value"])
    return msda_kernels.multi_scale_deformable_attention(*(inputs[name] for name in KERNEL_ARGS))


def run_reference(inputs):
    names = ("value", "value_spatial_shapes", "value_spatial_shapes_list", "level_start_index")
    return pytorch_path(*(inputs[name] for name in names), inputs["sampling_locations"], inputs["attention_weights"])


def forward_and_gradients(function, inputs, grad_output):
    leaves = [inputs[name] for name in ("value", "sampling_locations", "attention_weights")]
    output = function(inputs)
    return (output.detach(), *torch.autograd.grad(output, leaves, grad_output))


NAMES = ("output", "grad_value", "grad_sampling_locations", "grad_attention_weights")


@pytest.mark.parametrize(
    "levels, sizes",
    [
        (ODD_LEVELS, {"batch_size": 2, "num_heads": 3, "head_dim": 5, "num_queries": 11, "num_points": 3}),
        (MODEL_LEVELS, {"batch_size": 2, "num_heads": 8, "head_dim": 32, "num_queries": 400, "num_points": 4}),
        # Head dims that take the 2- and 4-channels-per-lane kernels, and one that leaves lanes idle.
        (ODD_LEVELS, {"batch_size": 1, "num_heads": 2, "head_dim": 64, "num_queries": 33, "num_points": 4}),
        (ODD_LEVELS, {"batch_size": 1, "num_heads": 2, "head_dim": 100, "num_queries": 33, "num_points": 4}),
        (ODD_LEVELS, {"batch_size": 3, "num_heads": 1, "head_dim": 17, "num_queries": 9, "num_points": 1}),
    ],
    ids=["odd-levels", "model-like", "dim64", "dim100", "dim17"],
)
def test_float32_matches_pytorch_path(cuda_kernel, levels, sizes):
    inputs = make_inputs(levels, device="cuda", requires_grad=True, **sizes)
    grad_output = torch.randn(sizes["batch_size"], sizes["num_queries"], sizes["num_heads"] * sizes["head_dim"], device="cuda")
    expected = forward_and_gradients(run_reference, inputs, grad_output)
    actual = forward_and_gradients(run_kernel, inputs, grad_output)
    for name, a, e in zip(NAMES, actual, expected):
        assert a.dtype == e.dtype == torch.float32, name
        # The backward adds into grad_value with float32 atomics, in a nondeterministic order.
        assert max_relative_error(a, e) < 1e-5, f"{name}: {max_relative_error(a, e):.2e}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_reduced_precision_same_numbers_as_cpu_kernel(cuda_kernel, dtype):
    """Both kernels read half/bf16 values, sum in float32 and round once: the same numbers up to float32 summation
    order (so at most one ulp of `dtype` apart, and almost always equal)."""
    msda_kernels.load_kernel("cpu")
    inputs = make_inputs(MODEL_LEVELS, batch_size=2, num_heads=8, head_dim=32, num_queries=300, num_points=4)
    inputs["value"] = inputs["value"].to(dtype)
    cpu = run_kernel(inputs)
    gpu = run_kernel({k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}).cpu()
    assert gpu.dtype == cpu.dtype == dtype
    assert (gpu == cpu).float().mean() > 0.99
    assert max_relative_error(gpu.float(), cpu.float()) <= torch.finfo(dtype).eps


def test_matches_cpu_kernel(cuda_kernel):
    msda_kernels.load_kernel("cpu")
    inputs = make_inputs(MODEL_LEVELS, batch_size=2, num_heads=8, head_dim=32, num_queries=300, num_points=4, dtype=torch.float64)
    cpu = run_kernel(inputs)
    gpu = run_kernel({k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()})
    assert max_relative_error(gpu.cpu(), cpu) < 1e-12


def test_float64_gradcheck(cuda_kernel):
    inputs = make_inputs(
        [(4, 5), (3, 2), (1, 1)], batch_size=2, num_heads=2, head_dim=3, num_queries=5, num_points=2,
        dtype=torch.float64, device="cuda", requires_grad=True, location_range=(-0.15, 1.15),
    )
    with torch.no_grad():
        locations = inputs["sampling_locations"]
        shapes = inputs["value_spatial_shapes"].flip(-1).to(locations.dtype)[:, None, :]
        pixel = locations * shapes - 0.5
        locations.add_(((pixel - pixel.round()).abs() < 1e-3) * 3e-3 / shapes)

    def function(value, sampling_locations, attention_weights):
        return msda_kernels.multi_scale_deformable_attention(
            value, inputs["value_spatial_shapes"], inputs["level_start_index"], sampling_locations, attention_weights
        )

    leaves = (inputs["value"], inputs["sampling_locations"], inputs["attention_weights"])
    # nondet_tol: grad_value is summed with atomics, so repeated backwards differ in the last bits.
    assert torch.autograd.gradcheck(function, leaves, eps=1e-6, atol=1e-8, rtol=1e-6, nondet_tol=1e-12)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)])
def test_reduced_precision_values(cuda_kernel, dtype, tolerance):
    """half / bfloat16 values with float32 locations and weights (as under autocast); fp32 accumulation inside."""
    inputs = make_inputs(MODEL_LEVELS, batch_size=2, num_heads=8, head_dim=32, num_queries=400, num_points=4, device="cuda")
    inputs["value"] = inputs["value"].to(dtype).requires_grad_()
    inputs["sampling_locations"].requires_grad_()
    inputs["attention_weights"].requires_grad_()
    grad_output = torch.randn(2, 400, 256, device="cuda", dtype=dtype)
    actual = forward_and_gradients(run_kernel, inputs, grad_output)
    assert actual[0].dtype == dtype and actual[1].dtype == dtype
    assert actual[2].dtype == actual[3].dtype == torch.float32
    # Reference: the same inputs in float32 (the value rounded to `dtype` first).
    reference_inputs = dict(inputs)
    for name in ("value", "sampling_locations", "attention_weights"):
        reference_inputs[name] = inputs[name].detach().float().requires_grad_()
    expected = forward_and_gradients(run_reference, reference_inputs, grad_output.float())
    for name, a, e in zip(NAMES, actual, expected):
        assert max_relative_error(a.float(), e) < tolerance, f"{name}: {max_relative_error(a.float(), e):.2e}"


def test_empty_and_outside(cuda_kernel):
    inputs = make_inputs(ODD_LEVELS, device="cuda", num_queries=0, requires_grad=True)
    assert run_kernel(inputs).shape == (2, 0, 15)
    inputs = make_inputs(ODD_LEVELS, device="cuda", requires_grad=True, location_range=(1.6, 3.0))
    output = run_kernel(inputs)
    assert torch.count_nonzero(output) == 0
    output.sum().backward()
    assert torch.count_nonzero(inputs["value"].grad) == 0
    assert torch.count_nonzero(inputs["sampling_locations"].grad) == 0


def test_head_dim_above_limit_falls_back(cuda_kernel, monkeypatch):
    inputs = make_inputs(ODD_LEVELS, device="cuda", head_dim=msda_kernels.MAX_CUDA_HEAD_DIM + 1, num_heads=1)
    monkeypatch.setenv(msda_kernels.KERNELS_ENV_VAR, "auto")
    assert not msda_kernels.use_compiled_kernel(inputs["value"])


def test_second_device_and_stream(cuda_kernel):
    """Runs on the current stream of the tensors' device (matters with several GPUs)."""
    device = f"cuda:{torch.cuda.device_count() - 1}"
    inputs = make_inputs(ODD_LEVELS, device=device, requires_grad=True)
    stream = torch.cuda.Stream(device=device)
    with torch.cuda.stream(stream):
        output = run_kernel(inputs)
        output.sum().backward()
    stream.synchronize()
    assert max_relative_error(output.detach(), run_reference(inputs)) < 1e-5


def test_torch_compile(cuda_kernel):
    inputs = make_inputs(MODEL_LEVELS, batch_size=1, num_heads=8, head_dim=32, num_queries=100, num_points=4, device="cuda", requires_grad=True)
    shapes, starts = inputs["value_spatial_shapes"], inputs["level_start_index"]

    def attention(value, sampling_locations, attention_weights):
        output = msda_kernels.multi_scale_deformable_attention(value, shapes, starts, sampling_locations, attention_weights)
        return output.square().sum()

    torch._dynamo.reset()
    compiled = torch.compile(attention, fullgraph=True)
    leaves = [inputs[name] for name in ("value", "sampling_locations", "attention_weights")]
    loss = compiled(*leaves)
    gradients = torch.autograd.grad(loss, leaves)
    expected_loss = attention(*leaves)
    expected = torch.autograd.grad(expected_loss, leaves)
    assert max_relative_error(loss, expected_loss) < 1e-5
    for a, e in zip(gradients, expected):
        assert max_relative_error(a, e) < 1e-5
    torch._dynamo.reset()
