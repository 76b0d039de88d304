# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Compiled multi-scale deformable attention (CPU build) against the PyTorch path, the dispatch and its policies.

The CPU kernel is compiled once per session (about 20 s on 2 cores) into TORCH_EXTENSIONS_DIR, which conftest.py points
at a temporary directory unless it is set. The cache itself is tested in test_kernels_cache.py; GPU checks live in
test_kernels_cuda.py (`pytest -m cuda`).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from msda_reference import make_inputs, max_relative_error, pytorch_path

from transformers_maskdino import msda_build, msda_kernels


REPO_ROOT = Path(__file__).resolve().parents[1]
KERNEL_ARGS = ("value", "value_spatial_shapes", "level_start_index", "sampling_locations", "attention_weights")

# Odd level shapes, down to 1x1, as (height, width).
ODD_LEVELS = [(7, 9), (4, 5), (3, 2), (1, 1)]


@pytest.fixture(scope="module")
def cpu_kernel(monkeypatch_module):
    monkeypatch_module.setenv(msda_kernels.KERNELS_ENV_VAR, "require")
    return msda_kernels.load_kernel("cpu")


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture
def fresh_state(monkeypatch):
    """Forget loaded libraries and failures for the duration of a test (the op registrations stay)."""
    monkeypatch.setattr(msda_kernels, "_loaded", {})
    monkeypatch.setattr(msda_kernels, "_failures", {})


def run_kernel(inputs):
    assert msda_kernels.use_compiled_kernel(inputs["value"]), "the compiled kernel was expected to run"
    return msda_kernels.multi_scale_deformable_attention(*(inputs[name] for name in KERNEL_ARGS))


def run_reference(inputs):
    return pytorch_path(
        inputs["value"],
        inputs["value_spatial_shapes"],
        inputs["value_spatial_shapes_list"],
        inputs["level_start_index"],
        inputs["sampling_locations"],
        inputs["attention_weights"],
    )


def forward_and_gradients(function, inputs, grad_output):
    leaves = [inputs[name] for name in ("value", "sampling_locations", "attention_weights")]
    output = function(inputs)
    gradients = torch.autograd.grad(output, leaves, grad_output)
    return (output.detach(), *gradients)


# ---- Numbers ----


@pytest.mark.parametrize(
    "levels, sizes",
    [
        (ODD_LEVELS, {"batch_size": 2, "num_heads": 3, "head_dim": 5, "num_queries": 11, "num_points": 3}),
        # One (batch, head) pair: fewer than the threads, so the backward also splits channels.
        ([(5, 3), (2, 2)], {"batch_size": 1, "num_heads": 1, "head_dim": 16, "num_queries": 6, "num_points": 4}),
        # Model-like: 8 heads x 32 channels, 4 levels, 4 points.
        ([(20, 30), (10, 15), (5, 8), (3, 4)], {"batch_size": 1, "num_heads": 8, "head_dim": 32, "num_queries": 300, "num_points": 4}),
    ],
    ids=["odd-levels", "channel-split", "model-like"],
)
def test_float32_matches_pytorch_path(cpu_kernel, levels, sizes):
    inputs = make_inputs(levels, requires_grad=True, **sizes)
    # Some locations must be outside the image, and some inside.
    locations = inputs["sampling_locations"].detach()
    assert ((locations < 0) | (locations > 1)).any() and ((locations > 0) & (locations < 1)).all(-1).any()
    grad_output = torch.randn(sizes["batch_size"], sizes["num_queries"], sizes["num_heads"] * sizes["head_dim"])

    expected = forward_and_gradients(run_reference, inputs, grad_output)
    actual = forward_and_gradients(run_kernel, inputs, grad_output)
    for name, a, e in zip(("output", "grad_value", "grad_sampling_locations", "grad_attention_weights"), actual, expected):
        assert a.shape == e.shape and a.dtype == e.dtype == torch.float32, name
        assert max_relative_error(a, e) < 1e-5, f"{name}: relative error {max_relative_error(a, e):.2e}"


def test_float64_gradcheck(cpu_kernel):
    inputs = make_inputs(
        [(4, 5), (3, 2), (1, 1)], batch_size=2, num_heads=2, head_dim=3, num_queries=5, num_points=2,
        dtype=torch.float64, requires_grad=True, location_range=(-0.15, 1.15),
    )
    # Keep locations away from pixel-cell borders, where the bilinear gradient jumps and finite differences lie.
    with torch.no_grad():
        locations = inputs["sampling_locations"]
        shapes = inputs["value_spatial_shapes"].flip(-1).to(locations.dtype)[:, None, :]  # (levels, 1, (w, h))
        pixel = locations * shapes - 0.5
        too_close = (pixel - pixel.round()).abs() < 1e-3
        locations.add_(too_close * 3e-3 / shapes)

    def function(value, sampling_locations, attention_weights):
        return msda_kernels.multi_scale_deformable_attention(
            value, inputs["value_spatial_shapes"], inputs["level_start_index"], sampling_locations, attention_weights
        )

    leaves = (inputs["value"], inputs["sampling_locations"], inputs["attention_weights"])
    assert torch.autograd.gradcheck(function, leaves, eps=1e-6, atol=1e-8, rtol=1e-6)
    reference = run_reference(inputs)
    assert max_relative_error(function(*leaves), reference) < 1e-12


def test_float64_matches_pytorch_path(cpu_kernel):
    inputs = make_inputs(ODD_LEVELS, dtype=torch.float64, requires_grad=True, location_range=(-0.5, 1.5), seed=3)
    grad_output = torch.randn(2, 7, 15, dtype=torch.float64)
    expected = forward_and_gradients(run_reference, inputs, grad_output)
    actual = forward_and_gradients(run_kernel, inputs, grad_output)
    for a, e in zip(actual, expected):
        assert a.dtype == torch.float64
        assert max_relative_error(a, e) < 1e-12


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_matches_float32_within_rounding(cpu_kernel, dtype):
    """float16/bfloat16 values with float32 locations and weights (as under autocast): the kernel sums in float32
    and rounds once, so the output and grad_value are the float32 path's results rounded to `dtype` (half an ulp,
    plus float32 summation-order noise), and the location and weight gradients are float32 and match to 1e-5."""
    sizes = {"batch_size": 2, "num_heads": 8, "head_dim": 32, "num_queries": 200, "num_points": 4}
    inputs = make_inputs([(20, 30), (10, 15), (5, 8), (3, 4)], seed=13, **sizes)
    inputs["value"] = inputs["value"].to(dtype).requires_grad_()
    inputs["sampling_locations"].requires_grad_()
    inputs["attention_weights"].requires_grad_()
    grad_output = torch.randn(2, 200, 256).to(dtype)
    actual = forward_and_gradients(run_kernel, inputs, grad_output)
    assert [t.dtype for t in actual] == [dtype, dtype, torch.float32, torch.float32]

    # Reference: the float32 path on the same (already rounded) values and output gradient.
    reference_inputs = dict(inputs)
    for name in ("value", "sampling_locations", "attention_weights"):
        reference_inputs[name] = inputs[name].detach().float().requires_grad_()
    expected = forward_and_gradients(run_reference, reference_inputs, grad_output.float())

    half_ulp = torch.finfo(dtype).eps / 2  # relative rounding error of round-to-nearest
    for name, a, e in zip(("output", "grad_value"), actual[:2], expected[:2]):
        error = (a.float() - e).abs()
        assert (error <= e.abs() * half_ulp * 1.01 + 1e-6 * e.abs().max()).all(), f"{name}: beyond {dtype} rounding"
        assert (a == e.to(dtype)).float().mean() > 0.99, f"{name}: not the rounded float32 result"
    for name, a, e in zip(("grad_sampling_locations", "grad_attention_weights"), actual[2:], expected[2:]):
        assert max_relative_error(a, e) < 1e-5, f"{name}: relative error {max_relative_error(a, e):.2e}"


def test_no_grad_and_noncontiguous_inputs(cpu_kernel):
    inputs = make_inputs(ODD_LEVELS, seed=5)
    # A transposed copy of the value: same numbers, non-contiguous memory.
    value = inputs["value"].transpose(2, 3).contiguous().transpose(2, 3)
    assert not value.is_contiguous()
    inputs_nc = dict(inputs, value=value)
    with torch.no_grad():
        output = run_kernel(inputs_nc)
    assert not output.requires_grad
    assert max_relative_error(output, run_reference(inputs)) < 1e-5


def test_locations_and_weights_in_another_dtype(cpu_kernel):
    # float64 locations with a float32 value: read as float32, gradients come back in the inputs' dtypes.
    inputs = make_inputs(ODD_LEVELS, seed=7)
    inputs["sampling_locations"] = inputs["sampling_locations"].double().requires_grad_()
    inputs["attention_weights"] = inputs["attention_weights"].double().requires_grad_()
    output = run_kernel(inputs)
    assert output.dtype == torch.float32
    output.sum().backward()
    assert inputs["sampling_locations"].grad.dtype == torch.float64
    assert inputs["attention_weights"].grad.dtype == torch.float64


def test_all_locations_outside_give_zeros(cpu_kernel):
    inputs = make_inputs(ODD_LEVELS, requires_grad=True, location_range=(1.6, 3.0))
    output = run_kernel(inputs)
    assert torch.count_nonzero(output) == 0
    output.sum().backward()
    for name in ("value", "sampling_locations", "attention_weights"):
        assert torch.count_nonzero(inputs[name].grad) == 0, name


def test_empty_queries(cpu_kernel):
    inputs = make_inputs(ODD_LEVELS, num_queries=0, requires_grad=True)
    output = run_kernel(inputs)
    assert output.shape == (2, 0, 15)
    output.sum().backward()
    assert torch.count_nonzero(inputs["value"].grad) == 0


def test_bad_inputs_raise(cpu_kernel):
    inputs = make_inputs(ODD_LEVELS)
    bad_shapes = inputs["value_spatial_shapes"] * 2  # more tokens than `value` holds
    with pytest.raises(RuntimeError, match="does not fit"):
        msda_kernels.multi_scale_deformable_attention(
            inputs["value"], bad_shapes, inputs["level_start_index"], inputs["sampling_locations"], inputs["attention_weights"]
        )
    with pytest.raises(RuntimeError, match="attention_weights"):
        msda_kernels.multi_scale_deformable_attention(
            inputs["value"], inputs["value_spatial_shapes"], inputs["level_start_index"], inputs["sampling_locations"],
            inputs["attention_weights"][:, :-1],
        )


def test_torch_compile_fullgraph(cpu_kernel):
    """The ops have fake implementations, so torch.compile traces forward and backward without graph breaks."""
    inputs = make_inputs(ODD_LEVELS, requires_grad=True, seed=11)
    shapes, starts = inputs["value_spatial_shapes"], inputs["level_start_index"]

    def attention(value, sampling_locations, attention_weights):
        output = msda_kernels.multi_scale_deformable_attention(value, shapes, starts, sampling_locations, attention_weights)
        return (output * output).sum()

    torch._dynamo.reset()
    compiled = torch.compile(attention, backend="aot_eager", fullgraph=True)
    leaves = [inputs[name] for name in ("value", "sampling_locations", "attention_weights")]
    loss = compiled(*leaves)
    gradients = torch.autograd.grad(loss, leaves)
    expected_loss = attention(*leaves)
    expected_gradients = torch.autograd.grad(expected_loss, leaves)
    assert max_relative_error(loss, expected_loss) < 1e-6
    for a, e in zip(gradients, expected_gradients):
        assert max_relative_error(a, e) < 1e-6
    torch._dynamo.reset()


# ---- Policy: MASKDINO_KERNELS, fallbacks, warnings ----


def call_kernel(inputs):
    """What the model's dispatch asks: True if the compiled kernel runs for these inputs."""
    return msda_kernels.use_compiled_kernel(inputs["value"])


def test_mode_off_uses_the_pytorch_path(cpu_kernel, monkeypatch):
    monkeypatch.setenv("MASKDINO_KERNELS", "off")
    assert not call_kernel(make_inputs(ODD_LEVELS))
    monkeypatch.setenv("MASKDINO_KERNELS", "require")
    assert call_kernel(make_inputs(ODD_LEVELS))


def test_invalid_mode_raises(monkeypatch):
    monkeypatch.setenv("MASKDINO_KERNELS", "sometimes")
    with pytest.raises(ValueError, match="MASKDINO_KERNELS"):
        msda_kernels.kernel_mode()
    monkeypatch.delenv("MASKDINO_KERNELS")
    assert msda_kernels.kernel_mode() == "auto"


def test_unsupported_dtype_falls_back_or_raises(cpu_kernel, monkeypatch):
    inputs = {"value": torch.zeros(1, 4, 2, 3, dtype=torch.int32)}
    monkeypatch.setenv("MASKDINO_KERNELS", "auto")
    assert not call_kernel(inputs)
    monkeypatch.setenv("MASKDINO_KERNELS", "require")
    with pytest.raises(RuntimeError, match="does not support torch.int32"):
        call_kernel(inputs)


def test_unsupported_device_falls_back(monkeypatch):
    inputs = make_inputs(ODD_LEVELS, device="meta")
    monkeypatch.setenv("MASKDINO_KERNELS", "auto")
    assert not call_kernel(inputs)
    monkeypatch.setenv("MASKDINO_KERNELS", "require")
    with pytest.raises(RuntimeError, match="no kernel for device type 'meta'"):
        call_kernel(inputs)


def test_missing_ninja_warns_once_and_falls_back(fresh_state, monkeypatch, caplog):
    from torch.utils import cpp_extension

    monkeypatch.setattr(cpp_extension, "is_ninja_available", lambda: False)
    monkeypatch.setenv("MASKDINO_KERNELS", "auto")
    inputs = make_inputs(ODD_LEVELS)
    with caplog.at_level(logging.WARNING, logger=msda_kernels.__name__):
        assert not call_kernel(inputs)
        assert not call_kernel(inputs)
    warnings = [record for record in caplog.records if "ninja is not available" in record.getMessage()]
    assert len(warnings) == 1
    monkeypatch.setenv("MASKDINO_KERNELS", "require")
    with pytest.raises(RuntimeError, match="ninja is not available"):
        call_kernel(inputs)


def test_missing_compiler_falls_back(fresh_state, monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-maskdino")
    monkeypatch.setenv("MASKDINO_KERNELS", "require")
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        call_kernel(make_inputs(ODD_LEVELS))


def test_failed_build_falls_back_with_the_compiler_error(fresh_state, monkeypatch, tmp_path, caplog):
    """A compile error reaches the user in the warning (from the child process that builds), and nothing is
    published in the cache."""
    sources = tmp_path / "sources"
    sources.mkdir()
    for names in msda_build.KERNEL_SOURCE_FILES.values():
        for name in names:
            (sources / name).write_text("// placeholder\n")
    (sources / "msda_cpu.cpp").write_text("#error this kernel source is deliberately broken\n")
    monkeypatch.setattr(msda_build, "kernel_source_dir", lambda: sources)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MASKDINO_KERNELS", "auto")
    with caplog.at_level(logging.WARNING, logger=msda_kernels.__name__):
        assert not call_kernel(make_inputs(ODD_LEVELS))
    messages = [record.getMessage() for record in caplog.records]
    assert any("deliberately broken" in message and "using the slower PyTorch path" in message for message in messages)
    assert not [path for path in (tmp_path / "cache").iterdir() if path.is_dir()], "a failed build left a directory"


def test_missing_sources_fall_back_quietly(fresh_state, monkeypatch, caplog):
    # What a copy of the modules without the kernels/ directory sees.
    monkeypatch.setattr(msda_build, "kernel_source_dir", lambda: None)
    monkeypatch.setenv("MASKDINO_KERNELS", "auto")
    with caplog.at_level(logging.WARNING, logger=msda_kernels.__name__):
        assert not call_kernel(make_inputs(ODD_LEVELS))
    assert not caplog.records
    monkeypatch.setenv("MASKDINO_KERNELS", "require")
    with pytest.raises(RuntimeError, match="sources"):
        call_kernel(make_inputs(ODD_LEVELS))


def test_cuda_toolchain_checks(monkeypatch):
    """Without a CUDA torch the CUDA build is refused up front, before any compiler runs."""
    if torch.version.cuda is None:
        with pytest.raises(msda_build.KernelUnavailableError, match="no CUDA support"):
            msda_build.build_settings("cuda")
    monkeypatch.setattr(torch.version, "cuda", "99.0")
    monkeypatch.setenv("CUDA_HOME", "/nonexistent")
    monkeypatch.delenv("CUDA_PATH", raising=False)
    home = msda_build.find_cuda_home()
    if home is None:
        with pytest.raises(msda_build.KernelUnavailableError, match="no CUDA toolkit"):
            msda_build.build_settings("cuda")
    else:
        assert (Path(home) / "include" / "cuda_runtime.h").is_file()
        with pytest.raises(msda_build.KernelUnavailableError, match="does not match the CUDA version"):
            msda_build.build_settings("cuda")


def test_find_cuda_home_sees_through_wrapper(monkeypatch, tmp_path):
    """The nvcc on PATH may be a wrapper script whose directory is not the toolkit: ask nvcc itself (TOP=)."""
    toolkit = tmp_path / "cuda-13.0"
    (toolkit / "bin").mkdir(parents=True)
    (toolkit / "include").mkdir()
    (toolkit / "include" / "cuda_runtime.h").touch()
    fake_nvcc = toolkit / "bin" / "nvcc"
    fake_nvcc.write_text(f'#!/bin/sh\necho "#$ _HERE_={toolkit}/bin" >&2\necho "#$ TOP={toolkit}/bin/.." >&2\n')
    fake_nvcc.chmod(0o755)
    wrapper_dir = tmp_path / "usr" / "bin"
    wrapper_dir.mkdir(parents=True)
    (wrapper_dir / "nvcc").write_text(f'#!/bin/sh\nexec "{fake_nvcc}" "$@"\n')
    (wrapper_dir / "nvcc").chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setattr(msda_build, "DEFAULT_CUDA_HOME", str(tmp_path / "missing"))
    assert Path(msda_build.find_cuda_home()) == toolkit
    # CUDA_HOME wins when it is a valid toolkit, and is ignored when it is not.
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "missing"))
    assert Path(msda_build.find_cuda_home()) == toolkit
    monkeypatch.setenv("CUDA_HOME", str(toolkit))
    monkeypatch.setenv("PATH", os.defpath)
    assert Path(msda_build.find_cuda_home()) == toolkit


# ---- Build cache and packaging ----


def test_library_lives_in_a_temporary_torch_extensions_dir(cpu_kernel):
    path = Path(cpu_kernel)
    assert path.suffix in (".so", ".pyd", ".dylib")
    assert path.parent.name in path.name
    assert path.parent.parent == Path(os.environ["TORCH_EXTENSIONS_DIR"])
    # conftest.py sets it when the user has not: never the user's ~/.cache/torch_extensions.
    assert not path.is_relative_to(Path.home() / ".cache")


def test_importing_compiles_nothing(monkeypatch):
    import importlib.util

    def no_build(*args, **kwargs):
        raise AssertionError("importing msda_kernels must not build anything")

    monkeypatch.setattr(msda_build, "_build_in_child_process", no_build)
    spec = importlib.util.spec_from_file_location("msda_kernels_fresh_copy", msda_kernels.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module._loaded == {} and module._failures == {} and module._library is None


INSTALLED_KERNEL_CHECK = """
import sys
import torch
import transformers_maskdino
from transformers_maskdino import msda_build, msda_kernels
sys.path.insert(0, sys.argv[1])
from msda_reference import make_inputs, max_relative_error, pytorch_path
print(transformers_maskdino.__file__)
from transformers_maskdino import msda_build
print(msda_build.kernel_source_dir())
inputs = make_inputs([(5, 7), (2, 3)], batch_size=1, num_heads=2, head_dim=4, num_queries=6, num_points=2)
names = ("value", "value_spatial_shapes", "level_start_index", "sampling_locations", "attention_weights")
assert msda_kernels.use_compiled_kernel(inputs["value"])
output = msda_kernels.multi_scale_deformable_attention(*(inputs[name] for name in names))
expected = pytorch_path(*(inputs[name] for name in ("value", "value_spatial_shapes", "value_spatial_shapes_list",
                                                    "level_start_index", "sampling_locations", "attention_weights")))
print(max_relative_error(output, expected))
"""


def test_installed_wheel_builds_its_kernel(tmp_path):
    """The wheel carries the kernel sources (pyproject force-includes kernels/ as transformers_maskdino/kernels), and
    an installed, non-editable package builds and runs the C++ kernel from them, away from the source checkout."""
    wheel_dir, site_dir = tmp_path / "wheel", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheel_dir), str(REPO_ROOT)], check=True)
    (wheel,) = wheel_dir.glob("transformers_maskdino-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if name.startswith("transformers_maskdino/kernels/")}
    expected = {
        f"transformers_maskdino/kernels/ms_deform_attn/{name}"
        for names in msda_build.KERNEL_SOURCE_FILES.values()
        for name in names
    }
    assert expected <= shipped, f"missing from the wheel: {sorted(expected - shipped)}"

    subprocess.run([*pip, "install", "--no-deps", "--target", str(site_dir), str(wheel)], check=True)
    env = dict(os.environ, PYTHONPATH=str(site_dir), MASKDINO_KERNELS="require",
               TORCH_EXTENSIONS_DIR=str(tmp_path / "extensions"))
    result = subprocess.run(
        [sys.executable, "-c", INSTALLED_KERNEL_CHECK, str(REPO_ROOT / "tests")],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    module_file, source_dir, error = result.stdout.split("\n")[-4:-1]
    assert Path(module_file).parent == site_dir / "transformers_maskdino"
    assert Path(source_dir) == site_dir / "transformers_maskdino" / "kernels" / "ms_deform_attn"
    assert float(error) < 1e-5
    assert list((tmp_path / "extensions").glob("maskdino_msda_cpu_*/*.so")), "the kernel was not built there"


# ---- The model's dispatch ----


def tiny_model():
    from transformers import ResNetConfig

    from transformers_maskdino import MaskDinoConfig, MaskDinoForUniversalSegmentation

    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], layer_type="basic",
                            out_features=["stage1", "stage2", "stage3", "stage4"])
    config = MaskDinoConfig(backbone_config=backbone, hidden_dim=32, num_queries=10, feature_size=32, mask_feature_size=32,
                            encoder_layers=1, encoder_ffn_dim=32, decoder_layers=2, decoder_ffn_dim=32, num_denoising=0,
                            num_labels=3)
    torch.manual_seed(0)
    return MaskDinoForUniversalSegmentation(config).eval()


class KernelCalls:
    """Counts calls of the compiled op (by value dtype) and of the grid_sample path."""

    def __init__(self, monkeypatch):
        from transformers_maskdino import modeling_maskdino

        self.kernel_dtypes, self.grid_samples = [], 0
        original = msda_kernels.MultiScaleDeformableAttentionFunction
        calls = self

        class CountingFunction(original):
            @staticmethod
            def forward(ctx, *args):
                calls.kernel_dtypes.append(args[0].dtype)
                return original.forward(ctx, *args)

        original_grid_sample = modeling_maskdino.F.grid_sample

        def counting_grid_sample(*args, **kwargs):
            calls.grid_samples += 1
            return original_grid_sample(*args, **kwargs)

        monkeypatch.setattr(msda_kernels, "MultiScaleDeformableAttentionFunction", CountingFunction)
        monkeypatch.setattr(modeling_maskdino.F, "grid_sample", counting_grid_sample)


def number_of_deformable_attention_calls(model):
    return model.config.encoder_layers + model.config.decoder_layers


def test_bfloat16_autocast_forward_uses_the_kernel(cpu_kernel, monkeypatch):
    """Under CPU bf16 autocast, `value` comes out of a Linear in bfloat16: every deformable attention call must take
    the C++ kernel, none the grid_sample path (before, all of them fell back)."""
    model = tiny_model()
    pixel_values = torch.randn(1, 3, 64, 96)
    calls = KernelCalls(monkeypatch)
    monkeypatch.setenv("MASKDINO_KERNELS", "auto")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(pixel_values)
    assert len(calls.kernel_dtypes) == number_of_deformable_attention_calls(model)
    assert set(calls.kernel_dtypes) == {torch.bfloat16}
    assert calls.grid_samples == 0
    assert torch.isfinite(outputs.masks_queries_logits.float()).all()


def test_dispatch_follows_the_policy(cpu_kernel, monkeypatch):
    model = tiny_model()
    pixel_values = torch.randn(1, 3, 64, 96)
    outputs = {}
    for mode in ("off", "require"):
        calls = KernelCalls(monkeypatch)
        monkeypatch.setenv("MASKDINO_KERNELS", mode)
        with torch.no_grad():
            outputs[mode] = model(pixel_values)
        kernel_calls = len(calls.kernel_dtypes)
        assert kernel_calls == (0 if mode == "off" else number_of_deformable_attention_calls(model)), mode
        assert (calls.grid_samples > 0) == (mode == "off"), mode
    torch.testing.assert_close(outputs["require"].pred_boxes, outputs["off"].pred_boxes, rtol=1e-5, atol=1e-6)


def test_hub_kernel_replaces_the_whole_forward(cpu_kernel, monkeypatch):
    """`from_pretrained(..., use_kernels=True)` (with `kernels` installed) kernelizes the layer registered as
    "MultiScaleDeformableAttention": kernels binds the Hub layer's forward to each instance, with Deformable DETR's
    signature. Simulated here without network: the Hub layer runs in every deformable attention call and our
    dispatch (compiled kernel or grid_sample) is not consulted."""
    import inspect
    import types

    from transformers.models.deformable_detr import modeling_deformable_detr

    from transformers_maskdino import modeling_maskdino

    ours = modeling_maskdino.MultiScaleDeformableAttention.forward
    theirs = modeling_deformable_detr.MultiScaleDeformableAttention.forward
    assert list(inspect.signature(ours).parameters) == list(inspect.signature(theirs).parameters)

    hub_calls = []

    class MockHubLayer:  # the Hub layer: Deformable DETR's computation (here its grid_sample path), no state
        def forward(self, value, value_spatial_shapes, value_spatial_shapes_list, level_start_index,
                    sampling_locations, attention_weights, im2col_step):
            hub_calls.append(im2col_step)
            return theirs(self, value, value_spatial_shapes, value_spatial_shapes_list, level_start_index,
                          sampling_locations, attention_weights, im2col_step)

    model = tiny_model()
    pixel_values = torch.randn(1, 3, 64, 96)
    monkeypatch.setenv("MASKDINO_KERNELS", "require")
    with torch.no_grad():
        expected = model(pixel_values)
    layers = [module for module in model.modules() if isinstance(module, modeling_maskdino.MultiScaleDeformableAttention)]
    assert layers
    for layer in layers:  # what kernels.kernelize does for a device that has a Hub kernel
        layer.forward = types.MethodType(MockHubLayer.forward, layer)
    calls = KernelCalls(monkeypatch)
    with torch.no_grad():
        outputs = model(pixel_values)
    assert len(hub_calls) == number_of_deformable_attention_calls(model)
    assert calls.kernel_dtypes == []
    torch.testing.assert_close(outputs.pred_boxes, expected.pred_boxes, rtol=1e-5, atol=1e-6)


# ---- The model with kernels on and off ----


def test_model_outputs_same_with_kernels_on_and_off(cpu_kernel, converted_reference, monkeypatch):
    from conftest import REFERENCE_DIR
    from safetensors.torch import load_file
    from transformers import AutoModelForUniversalSegmentation

    variant = "r50_instance"
    model = AutoModelForUniversalSegmentation.from_pretrained(converted_reference(variant)).eval()
    pixel_values = load_file(REFERENCE_DIR / variant / "inputs.safetensors")["pixel_values"]
    reference = load_file(REFERENCE_DIR / variant / "outputs.safetensors")

    calls = []
    original = msda_kernels.MultiScaleDeformableAttentionFunction

    class CountingFunction(original):
        @staticmethod
        def forward(ctx, *args):
            calls.append(args[0].shape)
            return original.forward(ctx, *args)

    monkeypatch.setattr(msda_kernels, "MultiScaleDeformableAttentionFunction", CountingFunction)
    outputs = {}
    for mode in ("off", "require"):
        monkeypatch.setenv("MASKDINO_KERNELS", mode)
        with torch.no_grad():
            outputs[mode] = model(pixel_values)
    num_layers = model.config.encoder_layers + model.config.decoder_layers
    assert len(calls) >= num_layers, f"the kernel ran {len(calls)} times, expected one per deformable layer"

    for field, key in [
        ("class_queries_logits", "decoder.pred_logits"),
        ("masks_queries_logits", "decoder.pred_masks"),
        ("pred_boxes", "decoder.pred_boxes"),
    ]:
        expected = reference[key]
        tolerance = 1e-4 * max(1.0, expected.abs().max().item())
        on, off = getattr(outputs["require"], field), getattr(outputs["off"], field)
        assert (on - off).abs().max().item() <= tolerance, f"{field}: kernels on vs off"
        assert (on - expected).abs().max().item() <= tolerance, f"{field}: kernels on vs the original"
        assert (off - expected).abs().max().item() <= tolerance, f"{field}: kernels off vs the original"
