# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Building and caching the compiled deformable-attention libraries (C++ for CPU, CUDA for NVIDIA GPUs).

Not model code, and not shipped as Hub remote code: [`msda_kernels`] calls [`cached_library`] the first time a device
type needs its kernel.

The cache is a directory per build under `$TORCH_EXTENSIONS_DIR` (or torch's default extension root). Its name ends
in a hash of everything that changes the binary: package version, torch version and install location, CUDA version,
Python version, compiler and its version, flags, CUDA arch list and the sources. So environments never share (and
never rebuild) one another's builds.

A build runs in a child process (`python msda_build.py REQUEST`) that holds a file lock per cache name, compiles into
a temporary directory with `torch.utils.cpp_extension.load` (which also loads the library in the child, so a broken
library fails there and not in the caller), writes a completion record (library name, size and SHA-256) and renames
the directory into place. Readers accept a cached library only if its record matches it byte for byte, and only
then `dlopen` it: a truncated or half-written library is rebuilt (with a one-line warning), never loaded. A build
killed midway leaves a temporary directory that the next build removes; the lock dies with its process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

KERNEL_SOURCE_FILES = {
    "cpu": ("msda_common.h", "msda_aten.h", "msda_cpu.cpp"),
    "cuda": ("msda_common.h", "msda_aten.h", "msda_cuda_ops.cpp", "msda_cuda.cu"),
}
RECORD_NAME = "maskdino_build.json"
# How long a build waits for another process's build of the same library before giving up.
LOCK_TIMEOUT_S = 30 * 60

if sys.platform == "win32":
    CFLAGS, LDFLAGS = ["/O2", "/openmp"], []
elif sys.platform == "darwin":
    # Apple clang has no OpenMP runtime by default: build serial rather than fail.
    CFLAGS, LDFLAGS = ["-O3"], []
else:
    # -fopenmp is needed for compile and link: at::parallel_for is inline and runs serially without _OPENMP.
    CFLAGS, LDFLAGS = ["-O3", "-fopenmp"], ["-fopenmp"]
CUDA_CFLAGS = ["-O3", "-lineinfo"]
DEFAULT_CUDA_HOME = "/usr/local/cuda"


class KernelUnavailableError(RuntimeError):
    """The compiled kernel cannot be used; the message says why."""


class KernelSourcesMissingError(KernelUnavailableError):
    """This copy of the package has no kernel sources: fall back without a warning."""


# ---- Sources and toolchain ----


def kernel_source_dir() -> Path | None:
    """The directory holding the kernel sources: `<package>/kernels/ms_deform_attn` in an installed wheel,
    `<repo>/kernels/ms_deform_attn` in a source checkout, or `None`."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "kernels" / "ms_deform_attn", here.parent.parent / "kernels" / "ms_deform_attn"):
        if all((candidate / name).is_file() for names in KERNEL_SOURCE_FILES.values() for name in names):
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
            [nvcc, "-v", "--dryrun", "-c", "-x", "cu", os.devnull],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
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
    for candidate in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), DEFAULT_CUDA_HOME):
        if _is_cuda_home(candidate):
            return os.path.normpath(candidate)
    candidate = _cuda_home_from_nvcc_dryrun()
    return candidate if _is_cuda_home(candidate) else None


def _first_output_line(command: list[str]) -> str | None:
    try:
        result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0].strip() if result.returncode == 0 and lines else None


def _nvcc_version(cuda_home: str) -> str | None:
    nvcc = os.path.join(cuda_home, "bin", "nvcc.exe" if sys.platform == "win32" else "nvcc")
    try:
        output = subprocess.run([nvcc, "--version"], check=False, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"release (\d+\.\d+)", output)
    return match.group(1) if match else None


def torch_install_location() -> str:
    """The directory torch is imported from: two environments with the same torch version still have their own
    headers and libraries, which end up in the build."""
    return str(Path(torch.__file__).resolve().parent)


@dataclasses.dataclass(frozen=True)
class BuildSettings:
    """Everything a build depends on; [`cache_name`] hashes all of it."""

    device_type: str
    source_dir: str
    package_version: str
    torch_version: str
    torch_location: str
    torch_cuda: str | None
    python: str
    platform: str
    compiler: str
    compiler_version: str
    cflags: tuple[str, ...]
    ldflags: tuple[str, ...]
    cuda_cflags: tuple[str, ...] = ()
    cuda_home: str | None = None
    nvcc_version: str | None = None
    arch_list: str | None = None

    @property
    def sources(self) -> list[Path]:
        return [Path(self.source_dir) / name for name in KERNEL_SOURCE_FILES[self.device_type]]


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("transformers-maskdino")
    except Exception:  # not installed (e.g. a copied module): the source hash still keys the cache
        return "0"


def build_settings(device_type: str) -> BuildSettings:
    """The settings a build of `device_type` would use. Raises `KernelUnavailableError` when a build is doomed (no
    sources, ninja, compiler or matching CUDA toolkit), before anything is compiled."""
    from torch.utils import cpp_extension

    if device_type not in KERNEL_SOURCE_FILES:
        raise KernelUnavailableError(f"no kernel for device type {device_type!r}")
    source_dir = kernel_source_dir()
    if source_dir is None:
        raise KernelSourcesMissingError("the kernel sources (kernels/ms_deform_attn) are not shipped with this copy")
    if not cpp_extension.is_ninja_available():
        raise KernelUnavailableError("ninja is not available (pip install ninja)")
    compiler_name = os.environ.get("CXX", "cl" if sys.platform == "win32" else "c++")
    compiler = shutil.which(compiler_name)
    if compiler is None:
        raise KernelUnavailableError(f"no C++ compiler found (looked for `{compiler_name}`)")
    compiler_version = _first_output_line([compiler] if sys.platform == "win32" else [compiler, "--version"])
    settings = {
        "device_type": device_type,
        "source_dir": str(source_dir),
        "package_version": _package_version(),
        "torch_version": torch.__version__,
        "torch_location": torch_install_location(),
        "torch_cuda": torch.version.cuda,
        "python": f"{sys.implementation.cache_tag}",
        "platform": f"{sys.platform}-{os.uname().machine if hasattr(os, 'uname') else ''}",
        "compiler": os.path.realpath(compiler),
        "compiler_version": compiler_version or "unknown",
        "cflags": tuple(CFLAGS),
        "ldflags": tuple(LDFLAGS),
    }
    if device_type != "cuda":
        return BuildSettings(**settings)

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
    return BuildSettings(
        **settings,
        cuda_cflags=tuple(CUDA_CFLAGS),
        cuda_home=cuda_home,
        nvcc_version=nvcc_version,
        arch_list=arch_list,
    )


# ---- The cache ----


def cache_name(settings: BuildSettings) -> str:
    """`maskdino_msda_<device>_<package>_torch<version>_<cuda>_<hash>`: readable versions, then a hash of every
    setting and of the sources' bytes."""
    digest = hashlib.sha256(json.dumps(dataclasses.asdict(settings), sort_keys=True).encode())
    for source in settings.sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    cuda_tag = f"cu{settings.torch_cuda}" if settings.torch_cuda else "nocuda"
    name = (
        f"maskdino_msda_{settings.device_type}_{settings.package_version}_torch{settings.torch_version}_{cuda_tag}_"
        f"{digest.hexdigest()[:16]}"
    )
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def cache_root() -> Path:
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root:
        return Path(root)
    from torch.utils.cpp_extension import get_default_build_root

    accelerator = f"cu{torch.version.cuda.replace('.', '')}" if torch.version.cuda else "cpu"
    return Path(get_default_build_root()) / f"py{sys.version_info.major}{sys.version_info.minor}_{accelerator}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_published(directory: Path) -> tuple[Path | None, str | None]:
    """(library, None) if `directory` holds a complete build whose library matches its completion record, else
    (None, why not). Reads the library once to hash it (about 1 ms); never loads it."""
    record_file = directory / RECORD_NAME
    if not directory.is_dir():
        return None, "missing"
    try:
        record = json.loads(record_file.read_text())
        library = directory / record["library"]
        expected_size, expected_hash = int(record["size"]), str(record["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, f"{record_file} is missing or unreadable"
    try:
        size = library.stat().st_size
        if size != expected_size:
            return None, f"{library.name} has {size} bytes, its build recorded {expected_size}"
        if _sha256(library) != expected_hash:
            return None, f"{library.name} does not match the SHA-256 its build recorded"
    except OSError as error:
        return None, f"{library.name} cannot be read ({error})"
    return library, None


def cached_library(device_type: str) -> Path:
    """The path of a verified build of the `device_type` library, building it first if the cache has none (or a
    corrupt one). Raises `KernelUnavailableError` with the reason when it cannot be built; never loads anything."""
    from transformers.utils import logging

    logger = logging.get_logger("transformers_maskdino.msda_kernels")
    settings = build_settings(device_type)
    directory = cache_root() / cache_name(settings)
    library, problem = check_published(directory)
    if library is not None:
        return library
    if problem != "missing":
        logger.warning(
            f"The cached deformable-attention {device_type} kernel in {directory} is corrupt ({problem}); "
            "rebuilding it."
        )
    logger.warning(f"Building the deformable-attention {device_type} kernel, once, about 30 s (cache: {directory}).")
    start = time.monotonic()
    _build_in_child_process(settings, directory)
    library, problem = check_published(directory)
    if library is None:
        raise KernelUnavailableError(f"the {device_type} build finished, but {problem}")
    logger.warning(f"Built the deformable-attention {device_type} kernel in {time.monotonic() - start:.0f} s.")
    return library


def _build_in_child_process(settings: BuildSettings, directory: Path) -> None:
    """Runs `_build_and_publish` in a fresh interpreter with the same torch (see the module docstring)."""
    request = json.dumps({"settings": dataclasses.asdict(settings), "directory": str(directory)})
    env = dict(os.environ)
    # The child must import this torch, whatever the caller's sys.path was.
    env["PYTHONPATH"] = os.pathsep.join(
        path for path in (str(Path(settings.torch_location).parent), env.get("PYTHONPATH")) if path
    )
    if settings.cuda_home is not None:
        env["CUDA_HOME"] = settings.cuda_home
        env["TORCH_CUDA_ARCH_LIST"] = settings.arch_list
    directory.parent.mkdir(parents=True, exist_ok=True)
    # Run as a file, not `-m`: the package's __init__ (and transformers) need not be importable there. cwd and -c
    # keep this package's directory off sys.path.
    command = [sys.executable, "-c", _CHILD_ENTRY, str(Path(__file__).resolve()), request]
    result = subprocess.run(command, env=env, cwd=directory.parent, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        output = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        # The compiler's diagnostics ("file:line:col: error: ..."), else the last line (the exception).
        diagnostics = [line for line in output if re.search(r"(^|: )(fatal )?error: ", line)]
        detail = " | ".join(diagnostics[:3]) or (output[-1] if output else "no output")
        raise KernelUnavailableError(
            f"building the {settings.device_type} kernel failed (exit code {result.returncode}): {detail}"
        )


_CHILD_ENTRY = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"


def _build_and_publish(settings: BuildSettings, directory: Path) -> None:
    """In the child: under the cache name's lock, build into a temporary directory and rename it into place, unless
    another process published a valid build meanwhile."""
    from filelock import FileLock, Timeout
    from torch.utils import cpp_extension

    root = directory.parent
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / f"{directory.name}.lock"))
    try:
        lock.acquire(timeout=LOCK_TIMEOUT_S)
    except Timeout:
        raise KernelUnavailableError(
            f"another process has been building {directory.name} for {LOCK_TIMEOUT_S // 60} min "
            f"(lock {lock.lock_file})"
        ) from None
    try:
        if check_published(directory)[0] is not None:
            return
        # Holding the lock, so any temporary directory of this name belongs to a build that died.
        for leftover in root.glob(f"{directory.name}.tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        if directory.exists():
            _remove_directory(directory)
        staging = Path(tempfile.mkdtemp(prefix=f"{directory.name}.tmp-", dir=root))
        try:
            _build_into(settings, staging, directory.name, cpp_extension)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        os.replace(staging, directory)
    finally:
        lock.release()


def _build_into(settings: BuildSettings, staging: Path, name: str, cpp_extension) -> None:
    """Compiles and links into `staging` (loading the library in this process) and writes the completion record."""
    library = cpp_extension.load(
        name=name,
        sources=[str(path) for path in settings.sources if path.suffix != ".h"],
        extra_cflags=list(settings.cflags),
        extra_ldflags=list(settings.ldflags),
        extra_cuda_cflags=list(settings.cuda_cflags) if settings.device_type == "cuda" else None,
        extra_include_paths=[settings.source_dir],
        build_directory=str(staging),
        with_cuda=settings.device_type == "cuda",
        is_python_module=False,
        verbose=False,
    )
    library = Path(library)
    record = {
        "library": library.name,
        "size": library.stat().st_size,
        "sha256": _sha256(library),
        "settings": dataclasses.asdict(settings),
    }
    (staging / RECORD_NAME).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def _remove_directory(directory: Path) -> None:
    # Renamed first, so no reader ever sees a half-deleted build under the published name.
    trash = directory.with_name(f"{directory.name}.tmp-removed-{os.getpid()}")
    os.replace(directory, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _main(request_json: str) -> None:
    request = json.loads(request_json)
    settings = request["settings"]
    settings = BuildSettings(**{key: tuple(v) if isinstance(v, list) else v for key, v in settings.items()})
    _build_and_publish(settings, Path(request["directory"]))


if __name__ == "__main__":
    _main(sys.argv[1])
