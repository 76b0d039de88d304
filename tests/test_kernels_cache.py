# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""The kernel cache (msda_build): keys, atomic publication, corrupt libraries, killed builds, concurrent environments.

Each test uses its own TORCH_EXTENSIONS_DIR under tmp_path. Most build a stand-in library from a one-function source
(about 2 s instead of the real kernel's 20 s), through the same build path: child process, lock, temporary
directory, completion record, rename.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from transformers_maskdino import msda_build, msda_kernels


STAND_IN_SOURCE = 'extern "C" int maskdino_stand_in_kernel() { return 42; }\n'


@pytest.fixture
def stand_in_sources(tmp_path, monkeypatch):
    """Kernel sources that compile in a second, and an empty cache of this test's own."""
    sources = tmp_path / "sources"
    sources.mkdir()
    for names in msda_build.KERNEL_SOURCE_FILES.values():
        for name in names:
            (sources / name).write_text("// stand-in\n")
    (sources / "msda_cpu.cpp").write_text(STAND_IN_SOURCE)
    monkeypatch.setattr(msda_build, "kernel_source_dir", lambda: sources)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "cache"))
    return sources


@pytest.fixture
def count_builds(monkeypatch):
    builds = []
    original = msda_build._build_in_child_process

    def counting(settings, directory):
        builds.append(directory.name)
        return original(settings, directory)

    monkeypatch.setattr(msda_build, "_build_in_child_process", counting)
    return builds


def published_directories(root: Path) -> list[Path]:
    return sorted(path for path in root.iterdir() if path.is_dir() and ".tmp-" not in path.name)


def test_cache_name_changes_with_everything_that_changes_the_binary(stand_in_sources, monkeypatch):
    settings = msda_build.build_settings("cpu")
    name = msda_build.cache_name(settings)
    assert name.startswith(f"maskdino_msda_cpu_{settings.package_version.replace('.', '_')}_torch")
    assert torch.__version__.replace(".", "_").replace("+", "_") in name
    assert settings.torch_location == str(Path(torch.__file__).resolve().parent)
    assert settings.compiler_version != "unknown"
    assert msda_build.cache_name(msda_build.build_settings("cpu")) == name, "the name must be stable"
    changes = {
        "package_version": "9.9.9",
        "torch_version": "2.99.0",
        "torch_location": "/elsewhere/site-packages/torch",
        "torch_cuda": "11.0",  # no torch this package supports was built with it
        "python": "cpython-399",
        "compiler": "/usr/bin/clang++",
        "compiler_version": "g++ (GCC) 99.1",
        "cflags": ("-O2",),
        "ldflags": (),
        "cuda_cflags": ("-O0",),
        "arch_list": "9.0",
        "nvcc_version": "13.1",
    }
    names = {
        field: msda_build.cache_name(dataclasses.replace(settings, **{field: value}))
        for field, value in changes.items()
    }
    assert name not in names.values() and len(set(names.values())) == len(names), names
    # ... and with the bytes of any source, headers included
    (stand_in_sources / "msda_common.h").write_text("// changed\n")
    assert msda_build.cache_name(settings) != name
    assert msda_build.cache_root() == Path(os.environ["TORCH_EXTENSIONS_DIR"])


def test_build_is_published_with_a_completion_record(stand_in_sources, count_builds, caplog):
    with caplog.at_level(logging.WARNING, logger=msda_kernels.__name__):
        library = msda_build.cached_library("cpu")
        assert msda_build.cached_library("cpu") == library
    assert len(count_builds) == 1
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("Building the deformable-attention cpu kernel, once, about 30 s")
    assert messages[1].startswith("Built the deformable-attention cpu kernel in")
    root = Path(os.environ["TORCH_EXTENSIONS_DIR"])
    assert published_directories(root) == [library.parent]
    assert not list(root.glob("*.tmp-*")), "the temporary build directory was left behind"
    record = (library.parent / msda_build.RECORD_NAME).read_text()
    assert library.name in record and str(library.stat().st_size) in record
    torch.ops.load_library(str(library))  # a verified build loads


def test_two_environments_share_a_cache_folder_without_rebuilding(stand_in_sources, count_builds, monkeypatch):
    """Two environments with the same torch version but their own torch installs (so their own headers): each gets
    its own build, and afterwards neither ever rebuilds, in whatever order they load."""
    real_location = msda_build.torch_install_location()
    environments = {"env_a": real_location, "env_b": str(Path(real_location).parent.parent / "other-venv" / "torch")}
    libraries = {}
    for environment, location in environments.items():
        monkeypatch.setattr(msda_build, "torch_install_location", lambda location=location: location)
        libraries[environment] = msda_build.cached_library("cpu")
    assert len(count_builds) == 2
    assert libraries["env_a"].parent != libraries["env_b"].parent
    stamps = {environment: library.stat().st_mtime_ns for environment, library in libraries.items()}
    for _ in range(3):
        for environment, location in environments.items():
            monkeypatch.setattr(msda_build, "torch_install_location", lambda location=location: location)
            assert msda_build.cached_library("cpu") == libraries[environment]
    assert len(count_builds) == 2, "an environment rebuilt"
    assert {environment: library.stat().st_mtime_ns for environment, library in libraries.items()} == stamps


TRUNCATED_LOAD = """
import importlib.util
import sys
from pathlib import Path

# msda_build alone, by path: the subprocess need not import the model package (which takes seconds)
spec = importlib.util.spec_from_file_location("msda_build", sys.argv[-1])
msda_build = sys.modules["msda_build"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(msda_build)
import torch

msda_build.kernel_source_dir = lambda: Path(sys.argv[1])
if sys.argv[2] == "unprotected":
    torch.ops.load_library(sys.argv[3])  # what the old loader did with a cached library
else:
    torch.ops.load_library(str(msda_build.cached_library("cpu")))
print("loaded")
"""


def test_truncated_library_is_rebuilt_never_loaded(stand_in_sources, count_builds, caplog, tmp_path):
    library = msda_build.cached_library("cpu")
    content = library.read_bytes()
    library.write_bytes(content[: len(content) // 2])  # e.g. a full disk, or a copy cut short
    # Loading the truncated file itself fails or crashes the process (a bus error with the real kernel).
    unprotected = subprocess.run(
        [
            sys.executable,
            "-c",
            TRUNCATED_LOAD,
            str(stand_in_sources),
            "unprotected",
            str(library),
            msda_build.__file__,
        ],
        capture_output=True,
        text=True,
    )
    assert unprotected.returncode != 0 and "loaded" not in unprotected.stdout
    library.write_bytes(content[: len(content) // 2])

    # Through the cache: a one-line warning, a rebuild, and a library that loads, in a fresh process...
    protected = subprocess.run(
        [sys.executable, "-c", TRUNCATED_LOAD, str(stand_in_sources), "protected", msda_build.__file__],
        capture_output=True,
        text=True,
    )
    assert protected.returncode == 0, protected.stderr
    assert protected.stdout.strip().endswith("loaded")
    corrupt_lines = [line for line in protected.stderr.splitlines() if "is corrupt" in line]
    assert len(corrupt_lines) == 1 and "rebuilding it" in corrupt_lines[0], protected.stderr
    assert msda_build.check_published(library.parent) == (library, None)

    # ... and in this one (a zero-byte library too).
    library.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger=msda_kernels.__name__):
        assert msda_build.cached_library("cpu") == library
    assert msda_build.check_published(library.parent) == (library, None)
    assert any("is corrupt" in record.getMessage() for record in caplog.records)


def test_missing_record_counts_as_not_built(stand_in_sources, count_builds):
    library = msda_build.cached_library("cpu")
    (library.parent / msda_build.RECORD_NAME).unlink()
    assert msda_build.check_published(library.parent)[0] is None
    assert msda_build.cached_library("cpu") == library
    assert len(count_builds) == 2


SLOW_COMPILER = """#!/bin/sh
# Compiles like c++, but when $MASKDINO_TEST_SLOW_CXX is set, first marks that a compile started and waits.
case " $* " in
  *" -c "*) if [ -n "$MASKDINO_TEST_SLOW_CXX" ]; then touch "$MASKDINO_TEST_SLOW_CXX"; sleep 120; fi ;;
esac
exec c++ "$@"
"""

BUILD = """
import importlib.util
import sys
from pathlib import Path

# msda_build alone, by path: the subprocess need not import the model package (which takes seconds)
spec = importlib.util.spec_from_file_location("msda_build", sys.argv[-1])
msda_build = sys.modules["msda_build"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(msda_build)

msda_build.kernel_source_dir = lambda: Path(sys.argv[1])
print(msda_build.cached_library("cpu"))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups and shell scripts")
def test_build_killed_midway_publishes_nothing_and_the_next_build_succeeds(stand_in_sources, tmp_path, monkeypatch):
    compiler = tmp_path / "slow-c++"
    compiler.write_text(SLOW_COMPILER)
    compiler.chmod(0o755)
    monkeypatch.setenv("CXX", str(compiler))
    marker = tmp_path / "compiling"
    root = Path(os.environ["TORCH_EXTENSIONS_DIR"])

    builder = subprocess.Popen(
        [sys.executable, "-c", BUILD, str(stand_in_sources), msda_build.__file__],
        env=dict(os.environ, MASKDINO_TEST_SLOW_CXX=str(marker)),
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and builder.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), f"the build never started compiling: {builder.communicate(timeout=5)}"
    finally:
        os.killpg(builder.pid, signal.SIGKILL)  # the caller, its build process, ninja and the compiler
        builder.wait()
    assert published_directories(root) == [], "a killed build published a directory"
    assert list(root.glob("*.tmp-*")), "expected the killed build's temporary directory"

    # The next load does not wait on the dead build's lock, builds, and clears the leftovers.
    result = {}
    thread = threading.Thread(target=lambda: result.update(library=msda_build.cached_library("cpu")), daemon=True)
    thread.start()
    thread.join(timeout=300)
    assert not thread.is_alive(), "the next build hung on the killed build's lock"
    library = result["library"]
    assert published_directories(root) == [library.parent]
    assert msda_build.check_published(library.parent) == (library, None)
    assert not list(root.glob("*.tmp-*"))


def test_concurrent_loads_share_one_build(stand_in_sources, tmp_path):
    """Two processes loading at once: one builds, the other waits on the lock and takes the published build."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", BUILD, str(stand_in_sources), msda_build.__file__],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert all(process.returncode == 0 for process in processes), outputs
    libraries = {stdout.strip().splitlines()[-1] for stdout, _ in outputs}
    assert len(libraries) == 1
    root = Path(os.environ["TORCH_EXTENSIONS_DIR"])
    assert len(published_directories(root)) == 1
