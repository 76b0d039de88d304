# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Shared test helpers: where the reference fixtures are, converted copies of them (made once per session), and a
recorder of the criterion's Hungarian matchings.

Without the fixtures (`../shared/reference` beside the repository, or `$MASKDINO_REFERENCE_DIR`) the tests that need
them are skipped, with the missing path as the reason, and the rest run. In CI (`CI` set to a true value) missing
fixtures are an error instead, so that a CI run cannot pass by skipping the parity tests."""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# Tests never build into the user's kernel cache (~/.cache/torch_extensions), where other environments may be building
# at the same time: without TORCH_EXTENSIONS_DIR set, the session gets its own, removed at exit. Subprocesses inherit it.
if not os.environ.get("TORCH_EXTENSIONS_DIR"):
    os.environ["TORCH_EXTENSIONS_DIR"] = tempfile.mkdtemp(prefix="maskdino-test-extensions-")
    atexit.register(shutil.rmtree, os.environ["TORCH_EXTENSIONS_DIR"], ignore_errors=True)

REPO = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(os.environ.get("MASKDINO_REFERENCE_DIR", REPO.parent / "shared" / "reference"))
REFERENCE_AVAILABLE = REFERENCE_DIR.is_dir()
MISSING_REFERENCE = (
    f"the reference fixtures are missing: {REFERENCE_DIR} does not exist. Put shared/reference beside the repository "
    "or set MASKDINO_REFERENCE_DIR."
)
if not REFERENCE_AVAILABLE and os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    raise RuntimeError(f"CI: {MISSING_REFERENCE}")
# without the fixtures, one parameter that skips with the reason, so that the tests parametrized over the variants
# say why they did not run
NO_REFERENCE_VARIANTS = [pytest.param("missing", marks=pytest.mark.skip(reason=MISSING_REFERENCE))]
REFERENCE_VARIANTS = (
    sorted(p.name for p in REFERENCE_DIR.iterdir() if (p / "model.pth").is_file())
    if REFERENCE_AVAILABLE
    else NO_REFERENCE_VARIANTS
)
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)

sys.path.insert(0, str(REPO / "conversion"))


def pytest_report_header(config):
    if REFERENCE_AVAILABLE:
        return f"reference fixtures: {REFERENCE_DIR}"
    return f"skipping the tests that need fixtures: {MISSING_REFERENCE}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    # Tests that open a fixture file directly are skipped, not failed, when the whole fixture directory is missing.
    report = yield
    if (
        not REFERENCE_AVAILABLE
        and report.failed
        and call.excinfo is not None
        and call.excinfo.errisinstance(FileNotFoundError)
        and str(REFERENCE_DIR) in str(call.excinfo.value)
    ):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {MISSING_REFERENCE}")
    return report


@pytest.fixture(scope="session")
def converted_reference(tmp_path_factory):
    """`converted_reference(variant, config_name="config.yaml")` -> directory of the converted fixture checkpoint."""
    if not REFERENCE_AVAILABLE:
        pytest.skip(MISSING_REFERENCE)
    from convert_maskdino_to_hf import convert

    cache = {}

    def get(variant: str, config_name: str = "config.yaml") -> Path:
        key = (variant, config_name)
        if key not in cache:
            source = REFERENCE_DIR / variant
            output_dir = tmp_path_factory.mktemp(f"{variant}_{Path(config_name).stem}")
            convert(source / config_name, source / "model.pth", output_dir, source / "metadata.json")
            cache[key] = output_dir
        return cache[key]

    return get


def record_matchings(criterion) -> list:
    """Appends, in call order, every assignment `criterion.matcher` returns (a forward hook on the matcher). A
    criterion's forward matches the final output set, then each auxiliary set (earliest first), then the encoder
    proposals; the denoising queries are not matched (their assignment is `denoising_meta_values["matching_indices"]`).
    """
    matchings = []
    criterion.matcher.register_forward_hook(lambda module, args, output: matchings.append(output))
    return matchings
