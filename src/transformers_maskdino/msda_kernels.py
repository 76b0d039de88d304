# Copyright 2025 The transformers-maskdino authors.
# Licensed under the Apache License, Version 2.0.
"""Compiled multi-scale deformable attention (C++ on CPU, CUDA on GPU), with the PyTorch path as fallback.

The model calls [`multi_scale_deformable_attention_kernel`] at the top of `MultiScaleDeformableAttention.forward`. It
returns the kernel's output, or `None` when the caller should run its own `grid_sample` path. The kernels are
JIT-compiled with `torch.utils.cpp_extension.load` (ninja) on the first call for a device type, and the loaded op is
cached for the process and on disk.

The environment variable `MASKDINO_KERNELS` chooses:

- `auto` (default): use a kernel when it can be built and supports the inputs, else fall back; a failed build is
  reported once, with its reason, as a warning.
- `off`: always fall back to the PyTorch path.
- `require`: raise a `RuntimeError` instead of falling back.

Importing this module compiles nothing. It only uses single-dot imports so that it can ship next to the modeling file
as Hub remote code; there the kernel sources are missing, so it falls back.

Under `torch.compile`, the kernels are `torch.library` ops with fake (meta) implementations, called from a
`torch.autograd.Function`, so they trace without graph breaks once built. The policy is evaluated once per compiled
graph: changing `MASKDINO_KERNELS` afterwards does not recompile.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable
from transformers.utils import logging

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

_SOURCE_FILES = {
    "cpu": ("msda_common.h", "msda_aten.h", "msda_cpu.cpp"),
    "cuda": ("msda_common.h", "msda_aten.h", "msda_cuda_ops.cpp", "msda_cuda.cu"),
}
_SUPPORTED_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
}
# The CUDA kernel keeps up to 4 channels per lane in registers (see msda_cuda.cu).
_MAX_CUDA_HEAD_DIM = 128

if sys.platform == "win32":
    _CFLAGS, _LDFLAGS = ["/O2", "/openmp"], []
elif sys.platform == "darwin":
    # Apple clang has no OpenMP runtime by default: build serial rather than fail.
    _CFLAGS, _LDFLAGS = ["-O3"], []
else:
    # -fopenmp is needed for compile and link: at::parallel_for is inline and runs serially without _OPENMP.
    _CFLAGS, _LDFLAGS = ["-O3", "-fopenmp"], ["-fopenmp"]
_CUDA_CFLAGS = ["-O3", "-lineinfo"]
_DEFAULT_CUDA_HOME = "/usr/local/cuda"


def kernel_mode() -> str:
    """Returns the `MASKDINO_KERNELS` policy: `"auto"` (default), `"off"` or `"require"`."""
    mode = os.environ.get(KERNELS_ENV_VAR, "auto").strip().lower() or "auto"
    if mode not in KERNEL_MODES:
        raise ValueError(f"`{KERNELS_ENV_VAR}` must be one of {', '.join(KERNEL_MODES)}, got {mode!r}.")
    return mode


class KernelUnavailableError(RuntimeError):
    """The compiled kernel cannot be used; the message says why."""


class KernelSourcesMissingError(KernelUnavailableError):
    """This copy of the package has no kernel sources (e.g. Hub remote code): fall back without a warning."""


# ---------------------------------------------------------------------------------------------------------------------
# Operator schemas and fake implementations (no compilation involved)
# ---------------------------------------------------------------------------------------------------------------------

_library = None


def _ops_defined() -> bool:
    return hasattr(getattr(torch.ops, _OP_NAMESPACE), "ms_deform_attn_forward")


def _define_ops() -> None:
    """Defines the op schemas and their fake implementations, once per process.

    The compiled libraries only register CPU or CUDA implementations (`TORCH_LIBRARY_IMPL`), so the CPU and CUDA
    builds load independently and in any order. A second copy of this module (e.g. Hub remote code) reuses the ops.
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


# ---------------------------------------------------------------------------------------------------------------------
# Finding sources, compilers and CUDA
# ---------------------------------------------------------------------------------------------------------------------


def kernel_source_dir() -> Path | None:
    """The directory holding the kernel sources: `<package>/kernels/ms_deform_attn` in an installed wheel,
    `<repo>/kernels/ms_deform_attn` in a source checkout, or `None` (e.g. Hub remote code)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "kernels" / "ms_deform_attn", here.parent.parent / "kernels" / "ms_deform_attn"):
        if all((candidate / name).is_file() for names in _SOURCE_FILES.values() for name in names):
            return candidate
    return None


def _is_cuda_home(path: str | None) -> bool:
    if not path:
        return False
    nvcc = "nvcc.exe" if sys.platform == "win32" else "nvcc"
    return os.path.isfile(os.path.join(path, "bin", nvcc)) and os.path.isfile(
        os.path.join(path, "include", "cuda_runtime.h")
    )


def _cuda_home_from_nvcc_dryrun() -> str | None:
    # The nvcc on PATH may be a wrapper script, so its location says nothing; nvcc's own TOP variable does.
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    try:
        result = subprocess.run(
            [nvcc, "-v", "--dryrun", "-c", "-x", "cu", os.devnull], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError):
        return None
    for line in (result.stdout + result.stderr).splitlines():
        match = re.match(r"#\$ TOP=(.+)$", line.strip())
        if match:
            return os.path.normpath(match.group(1).strip())
    return None


def find_cuda_home() -> str | None:
    """The CUDA toolkit root: `CUDA_HOME` / `CUDA_PATH`, then `/usr/local/cuda`, then what `nvcc -v --dryrun` reports.
    A candidate counts only if it has `bin/nvcc` and `include/cuda_runtime.h`."""
    for candidate in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), _DEFAULT_CUDA_HOME):
        if _is_cuda_home(candidate):
            return os.path.normpath(candidate)
    candidate = _cuda_home_from_nvcc_dryrun()
    return candidate if _is_cuda_home(candidate) else None


def _nvcc_version(cuda_home: str) -> str | None:
    nvcc = os.path.join(cuda_home, "bin", "nvcc.exe" if sys.platform == "win32" else "nvcc")
    try:
        output = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"release (\d+\.\d+)", output)
    return match.group(1) if match else None


def _check_toolchain(device_type: str) -> dict:
    """Raises `KernelUnavailableError` when a build is doomed; returns the build settings otherwise."""
    from torch.utils import cpp_extension

    if not cpp_extension.is_ninja_available():
        raise KernelUnavailableError("ninja is not available (pip install ninja)")
    compiler = os.environ.get("CXX", "cl" if sys.platform == "win32" else "c++")
    if shutil.which(compiler) is None:
        raise KernelUnavailableError(f"no C++ compiler found (looked for `{compiler}`)")
    if device_type != "cuda":
        return {}

    if torch.version.cuda is None:
        raise KernelUnavailableError(f"this torch build ({torch.__version__}) has no CUDA support")
    cuda_home = find_cuda_home()
    if cuda_home is None:
        raise KernelUnavailableError(
            "no CUDA toolkit found (set CUDA_HOME to a directory with bin/nvcc and include/cuda_runtime.h)"
        )
    nvcc_version = _nvcc_version(cuda_home)
    if nvcc_version is None:
        raise KernelUnavailableError(f"could not read the nvcc version of {cuda_home}")
    if nvcc_version.split(".")[0] != torch.version.cuda.split(".")[0]:
        raise KernelUnavailableError(
            f"nvcc {nvcc_version} in {cuda_home} does not match the CUDA version torch was built with "
            f"({torch.version.cuda}); set CUDA_HOME to a CUDA {torch.version.cuda.split('.')[0]}.x toolkit"
        )
    arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if not arch_list:
        # Only the local GPU: the fastest build, and torch cannot guess without one.
        major, minor = torch.cuda.get_device_capability()
        arch_list = f"{major}.{minor}"
    return {"cuda_home": cuda_home, "arch_list": arch_list, "nvcc_version": nvcc_version}


# ---------------------------------------------------------------------------------------------------------------------
# Building and loading
# ---------------------------------------------------------------------------------------------------------------------


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("transformers-maskdino")
    except Exception:  # not installed (e.g. remote code): the source hash still keys the cache
        return "0"


def _build_name(device_type: str, source_dir: Path, settings: dict) -> str:
    """Cache name carrying package, torch and CUDA versions and a hash of flags, arch list and sources.

    With `TORCH_EXTENSIONS_DIR` set, torch puts every extension directly in DIR/NAME (no Python/CUDA tag), so the
    name itself must tell builds apart."""
    digest = hashlib.sha256()
    digest.update(repr((_CFLAGS, _LDFLAGS, _CUDA_CFLAGS, settings.get("arch_list"), sys.version_info[:2])).encode())
    for name in _SOURCE_FILES[device_type]:
        digest.update((source_dir / name).read_bytes())
    cuda_tag = f"cu{torch.version.cuda}" if torch.version.cuda else "nocuda"
    name = f"maskdino_msda_{device_type}_{_package_version()}_torch{torch.__version__}_{cuda_tag}_{digest.hexdigest()[:12]}"
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _build_root() -> Path:
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root:
        return Path(root)
    from torch.utils.cpp_extension import get_default_build_root

    accelerator = f"cu{torch.version.cuda.replace('.', '')}" if torch.version.cuda else "cpu"
    return Path(get_default_build_root()) / f"py{sys.version_info.major}{sys.version_info.minor}_{accelerator}"


class _EnvOverride:
    """Sets environment variables for the duration of a build and restores them afterwards."""

    def __init__(self, **values):
        self.values = {key: value for key, value in values.items() if value is not None}
        self.saved = {}

    def __enter__(self):
        for key, value in self.values.items():
            self.saved[key] = os.environ.get(key)
            os.environ[key] = value

    def __exit__(self, *exc):
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _torch_uses_file_baton(cpp_extension) -> bool:
    return hasattr(cpp_extension, "FileBaton") and not hasattr(cpp_extension, "FileLock")


def _build_and_load(device_type: str) -> str:
    """Compiles (or reuses) the library for `device_type` and loads it into the process; returns its path."""
    source_dir = kernel_source_dir()
    if source_dir is None:
        raise KernelSourcesMissingError("the kernel sources (kernels/ms_deform_attn) are not shipped with this copy")
    settings = _check_toolchain(device_type)
    name = _build_name(device_type, source_dir, settings)
    build_directory = _build_root() / name
    build_directory.mkdir(parents=True, exist_ok=True)

    if device_type == "cuda":
        # torch.utils.cpp_extension reads CUDA_HOME once, at import; set it before and patch it after.
        os.environ.setdefault("CUDA_HOME", settings["cuda_home"])
    from filelock import FileLock
    from torch.utils import cpp_extension

    if device_type == "cuda":
        cpp_extension.CUDA_HOME = settings["cuda_home"]

    sources = [str(source_dir / file) for file in _SOURCE_FILES[device_type] if not file.endswith(".h")]
    # torch <= 2.13 guards builds with a FileBaton: the file `lock` in the build directory, removed at the end of the
    # build. A killed build leaves it behind and every later load() waits on it forever. Every loader of this package
    # takes the OS-level lock below first (released by the OS if the process dies), so a `lock` found while holding it
    # is stale. (Later torch versions hold an OS-level lock on that file instead, and leave it in place.)
    with FileLock(str(build_directory.parent / f"{name}.maskdino.lock")):
        stale_baton = build_directory / "lock"
        if _torch_uses_file_baton(cpp_extension) and stale_baton.exists():
            logger.warning(f"Removing the stale build lock {stale_baton} left by an interrupted build.")
            stale_baton.unlink(missing_ok=True)
        with _EnvOverride(TORCH_CUDA_ARCH_LIST=settings.get("arch_list")):
            return cpp_extension.load(
                name=name,
                sources=sources,
                # Copies: load() appends to the lists it is given.
                extra_cflags=list(_CFLAGS),
                extra_ldflags=list(_LDFLAGS),
                extra_cuda_cflags=list(_CUDA_CFLAGS) if device_type == "cuda" else None,
                extra_include_paths=[str(source_dir)],
                build_directory=str(build_directory),
                with_cuda=device_type == "cuda",
                is_python_module=False,
                verbose=False,
            )


_state_lock = threading.RLock()
_loaded: dict[str, str] = {}  # device type -> path of the loaded library
_failures: dict[str, str] = {}  # device type -> reason the build or load failed


def load_kernel(device_type: str) -> str:
    """Builds and loads the kernel library for `device_type` ("cpu" or "cuda") once per process.

    Returns the library path; raises `KernelUnavailableError` (with the reason) if it cannot be built or loaded.
    Failures are remembered: the build is not retried in the same process."""
    if device_type not in _SOURCE_FILES:
        raise KernelUnavailableError(f"no kernel for device type {device_type!r}")
    with _state_lock:
        if device_type in _loaded:
            return _loaded[device_type]
        if device_type in _failures:
            raise KernelUnavailableError(_failures[device_type])
        _define_ops()
        try:
            path = _build_and_load(device_type)
        except KernelSourcesMissingError as error:
            _failures[device_type] = str(error)
            logger.info(f"Multi-scale deformable attention: {error}; using the PyTorch path.")
            raise
        except KernelUnavailableError as error:
            reason = str(error)
        except Exception as error:  # compiler errors, bad arch lists, missing CUDA_HOME...: all mean "no kernel"
            reason = f"building the {device_type} kernel failed: {type(error).__name__}: {error}"
        else:
            _loaded[device_type] = path
            return path
        _failures[device_type] = reason
        if kernel_mode() == "auto":
            logger.warning(
                f"Multi-scale deformable attention: no compiled {device_type} kernel ({reason}); using the slower "
                f"PyTorch path. Set {KERNELS_ENV_VAR}=off to silence this warning."
            )
        raise KernelUnavailableError(reason)


def _unavailable_reason(device_type: str, dtype: torch.dtype, head_dim: int) -> str | None:
    """`None` if the kernel can run on these inputs (building it if needed), else why not."""
    if device_type not in _SUPPORTED_DTYPES:
        return f"no kernel for device type {device_type!r}"
    if dtype not in _SUPPORTED_DTYPES[device_type]:
        return f"the {device_type} kernel does not support {dtype}"
    if device_type == "cuda" and head_dim > _MAX_CUDA_HEAD_DIM:
        return f"the cuda kernel supports head dims up to {_MAX_CUDA_HEAD_DIM}, got {head_dim}"
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


def multi_scale_deformable_attention_kernel(
    value: torch.Tensor,
    value_spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    im2col_step: int,
) -> torch.Tensor | None:
    """Multi-scale deformable attention through the compiled kernel, or `None` to ask for the PyTorch path.

    Same semantics as `grid_sample` (bilinear, zeros padding, `align_corners=False`) on `2 * sampling_locations - 1`.

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
        im2col_step (`int`):
            Accepted for signature compatibility; the kernels process the whole batch at once.

    Returns:
        `torch.Tensor` of shape `(batch_size, num_queries, num_heads * head_dim)` in `value`'s dtype, or `None` when
        `MASKDINO_KERNELS=off`, or (with the default `auto`) when no kernel supports the device and dtype or the build
        failed. With `MASKDINO_KERNELS=require` those cases raise a `RuntimeError`.
    """
    if not _kernel_decision(value.device.type, value.dtype, value.shape[-1]):
        return None
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
    "find_cuda_home",
    "kernel_mode",
    "kernel_source_dir",
    "load_kernel",
    "multi_scale_deformable_attention_kernel",
]
