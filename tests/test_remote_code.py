# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Acceptance of issue 6: a converted directory works where `transformers_maskdino` is not installed, through the code
files and `auto_map` entries the converter writes (`trust_remote_code=True`), with the same results as the package;
when the package is imported, its registered classes are the ones used; and a directory the package saves from such
a model (e.g. after fine-tuning) works without the package too.

Each side runs in a fresh interpreter. The remote-code side installs an import hook that makes `transformers_maskdino`
unimportable (the editable install would otherwise be found) and checks at the end that it was never imported. Both
sides run with `MASKDINO_KERNELS=off`, so both use the same PyTorch deformable attention and agree bit for bit.
"""

import ast
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import REFERENCE_DIR
from conversion_helpers import copy_with_reference_image_size
from convert_maskdino_to_hf import CONFIG_AUTO_MAP, REMOTE_CODE_MODULES, convert, remote_code_files
from safetensors.torch import load_file
from transformers.utils import is_torchvision_available

SCRIPT = textwrap.dedent(
    """
    import builtins
    import importlib.abc
    import json
    import sys

    # transformers asks on stdin before running remote code it was not told to trust; record any such question
    prompts = []

    def no_input(prompt=""):
        prompts.append(prompt)
        raise EOFError

    builtins.input = no_input

    if sys.argv[1] == "remote":
        class BlockPackage(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] == "transformers_maskdino":
                    raise ModuleNotFoundError(f"{name} is hidden in this test")
                return None

        sys.meta_path.insert(0, BlockPackage())
    else:
        import transformers_maskdino  # noqa: F401

    import logging

    import numpy as np
    import torch
    from PIL import Image

    # transformers' warnings, e.g. an image-processor backend falling back to another
    warnings = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())
    logging.getLogger("transformers").addHandler(handler)
    from safetensors.torch import load_file, save_file
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModel,
        AutoModelForImageSegmentation,
        AutoModelForObjectDetection,
        AutoModelForUniversalSegmentation,
        pipeline,
    )

    directory, image_path, pixel_values_path, output_path = sys.argv[2:6]
    classes = {
        "config": AutoConfig.from_pretrained(directory, trust_remote_code=True),
        "processor": AutoImageProcessor.from_pretrained(directory, trust_remote_code=True),
        "model": AutoModelForUniversalSegmentation.from_pretrained(directory, trust_remote_code=True),
        "base": AutoModel.from_pretrained(directory, trust_remote_code=True),
        "segmentation": AutoModelForImageSegmentation.from_pretrained(directory, trust_remote_code=True),
        "detection": AutoModelForObjectDetection.from_pretrained(directory, trust_remote_code=True),
    }
    model = classes["model"].eval()
    with torch.no_grad():
        outputs = model(load_file(pixel_values_path)["pixel_values"])
    tensors = {
        "class_queries_logits": outputs.class_queries_logits,
        "masks_queries_logits": outputs.masks_queries_logits,
        "pred_boxes": outputs.pred_boxes,
    }

    image = Image.open(image_path)
    segmenter = pipeline("image-segmentation", model=directory, trust_remote_code=True)
    results = {}
    for subtask in ("panoptic", "instance", "semantic"):
        segments = segmenter(image, subtask=subtask, threshold=0.1)
        results[subtask] = [(s["label"], s["score"]) for s in segments]
        for i, segment in enumerate(segments):
            tensors[f"{subtask}.{i}"] = torch.from_numpy(np.array(segment["mask"]))
    detector = pipeline("object-detection", model=directory, trust_remote_code=True)
    results["detection"] = detector(image, threshold=0.1)
    if sys.argv[1] == "package":
        # with the package imported, nothing needs trust_remote_code
        untrusted = pipeline("image-segmentation", model=directory)
        assert untrusted(image, subtask="panoptic", threshold=0.1) == segmenter(image, subtask="panoptic", threshold=0.1)
        AutoImageProcessor.from_pretrained(directory)
    save_file(tensors, output_path)
    report = {
        "modules": {name: type(obj).__module__ for name, obj in classes.items()},
        "pipeline_model": type(segmenter.model).__module__,
        "pipeline_processor": type(segmenter.image_processor).__module__,
        "processor_backend": classes["processor"].backend,
        "fallback_warnings": [w for w in warnings if "backend" in w],
        "results": results,
        "package_imported": "transformers_maskdino" in sys.modules,
        "prompts": prompts,
    }
    print("REPORT " + json.dumps(report))
    """
)


def start_side(side, directory, tmp_path):
    env = dict(
        os.environ,
        MASKDINO_KERNELS="off",
        HF_MODULES_CACHE=str(tmp_path / f"modules_{side}"),
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",  # two interpreters on two cores
    )
    output = tmp_path / f"{side}.safetensors"
    arguments = [
        side,
        str(directory),
        str(REFERENCE_DIR / "r50_panoptic" / "image.png"),
        str(REFERENCE_DIR / "r50_panoptic" / "inputs.safetensors"),
        str(output),
    ]
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, *arguments],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    return process, output


def finish_side(process, output):
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-4000:]
    report = next(line for line in stdout.splitlines() if line.startswith("REPORT "))
    return json.loads(report[len("REPORT ") :]), load_file(output)


@pytest.fixture(scope="module")
def panoptic_directory(converted_reference, tmp_path_factory):
    """The converted r50_panoptic fixture, with its processor at the reference images' size."""
    target = tmp_path_factory.mktemp("remote_code") / "r50_panoptic"
    return copy_with_reference_image_size(converted_reference("r50_panoptic"), target)


@pytest.fixture(scope="module")
def both_sides(panoptic_directory):
    directory, tmp_path = panoptic_directory, panoptic_directory.parent
    # the two interpreters run side by side (each spends most of its time importing)
    remote, package = start_side("remote", directory, tmp_path), start_side("package", directory, tmp_path)
    return finish_side(*remote), finish_side(*package)


EXPECTED_BACKEND = "torchvision" if is_torchvision_available() else "pil"


def test_remote_code_loads_without_the_package(both_sides):
    (report, _), _ = both_sides
    assert not report["package_imported"]
    assert report["processor_backend"] == EXPECTED_BACKEND and report["fallback_warnings"] == []
    for name, module in report["modules"].items():
        assert module.startswith("transformers_modules."), (name, module)
    assert report["pipeline_model"].startswith("transformers_modules.")
    assert report["pipeline_processor"].startswith("transformers_modules.")
    assert report["results"]["panoptic"] and report["results"]["detection"]
    assert report["prompts"] == []


def test_installed_package_classes_win_over_remote_code(both_sides):
    _, (report, _) = both_sides
    assert report["package_imported"]
    assert report["processor_backend"] == EXPECTED_BACKEND and report["fallback_warnings"] == []
    for name, module in report["modules"].items():
        assert module.startswith("transformers_maskdino."), (name, module)
    assert report["pipeline_model"].startswith("transformers_maskdino.")
    assert report["pipeline_processor"].startswith("transformers_maskdino.")
    assert report["prompts"] == []


def test_remote_code_results_equal_the_package_results(both_sides):
    (remote_report, remote_tensors), (package_report, package_tensors) = both_sides
    assert remote_report["results"] == package_report["results"]
    assert remote_tensors.keys() == package_tensors.keys()
    for key, tensor in package_tensors.items():
        assert torch.equal(remote_tensors[key], tensor), key


def test_written_files_and_auto_map(tmp_path):
    source = REFERENCE_DIR / "r50_instance"
    directory = tmp_path / "converted"
    convert(source / "config.yaml", source / "model.pth", directory, source / "metadata.json")
    config = json.loads((directory / "config.json").read_text())
    assert config["auto_map"] == CONFIG_AUTO_MAP
    assert set(CONFIG_AUTO_MAP) == {
        "AutoConfig",
        "AutoModel",
        "AutoModelForUniversalSegmentation",
        "AutoModelForImageSegmentation",
        "AutoModelForObjectDetection",
        "AutoImageProcessor",
    }
    processor = json.loads((directory / "preprocessor_config.json").read_text())
    assert "auto_map" not in processor and "image_processor_type" not in processor
    for path in remote_code_files():
        assert (directory / path.name).read_text() == path.read_text()
    # the shipped modules import each other with single-dot imports only, and every auto_map target is shipped
    for module in REMOTE_CODE_MODULES:
        tree = ast.parse((directory / f"{module}.py").read_text())
        relative = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level]
        assert all(node.level == 1 and node.module in REMOTE_CODE_MODULES for node in relative)
    # the image processor for each backend, as Mask2Former's are registered
    assert CONFIG_AUTO_MAP["AutoImageProcessor"] == {
        "pil": "image_processing_pil_maskdino.MaskDinoImageProcessorPil",
        "torchvision": "image_processing_maskdino.MaskDinoImageProcessor",
    }
    for reference in [*CONFIG_AUTO_MAP.values(), *CONFIG_AUTO_MAP["AutoImageProcessor"].values()]:
        if isinstance(reference, str):
            assert reference.split(".")[0] in REMOTE_CODE_MODULES
    assert not (directory / "kernels").exists()


def test_a_directory_saved_by_the_package_keeps_working_as_remote_code(panoptic_directory, both_sides, tmp_path):
    """Fine-tuning starts from a converted model; what `save_pretrained` writes (processor first here, model second,
    as in either order) has the code files and loads without the package, with the same results."""
    from transformers import AutoImageProcessor, AutoModelForUniversalSegmentation

    import transformers_maskdino  # noqa: F401

    saved = tmp_path / "saved"
    AutoImageProcessor.from_pretrained(panoptic_directory).save_pretrained(saved)
    AutoModelForUniversalSegmentation.from_pretrained(panoptic_directory).save_pretrained(saved)
    assert json.loads((saved / "config.json").read_text())["auto_map"] == CONFIG_AUTO_MAP
    assert "image_processor_type" not in json.loads((saved / "preprocessor_config.json").read_text())
    for path in remote_code_files():
        assert (saved / path.name).read_text() == path.read_text()

    report, tensors = finish_side(*start_side("remote", saved, tmp_path))
    assert not report["package_imported"] and report["prompts"] == []
    assert all(module.startswith("transformers_modules.") for module in report["modules"].values())
    _, (package_report, package_tensors) = both_sides
    assert report["results"] == package_report["results"]
    for key, tensor in package_tensors.items():
        assert torch.equal(tensors[key], tensor), key


def test_directories_without_auto_map_get_no_code_files(tmp_path):
    from transformers_maskdino import MaskDinoConfig, MaskDinoImageProcessor

    config = MaskDinoConfig(num_labels=3)
    config.save_pretrained(tmp_path)
    MaskDinoImageProcessor().save_pretrained(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["config.json", "preprocessor_config.json"]
    assert json.loads((tmp_path / "preprocessor_config.json").read_text())["image_processor_type"] == (
        "MaskDinoImageProcessor"
    )


def test_remote_code_can_be_added_to_a_directory_saved_by_the_package(tmp_path, capsys):
    from convert_maskdino_to_hf import main

    from transformers_maskdino import MaskDinoConfig, MaskDinoImageProcessor

    # a model trained from scratch has no auto_map, so its directory has no code files until they are asked for
    MaskDinoConfig(num_labels=3).save_pretrained(tmp_path)
    MaskDinoImageProcessor().save_pretrained(tmp_path)
    main(["--add-remote-code", str(tmp_path)])
    assert "Added the remote code files" in capsys.readouterr().out
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"] == CONFIG_AUTO_MAP
    assert "image_processor_type" not in json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert {path.name for path in remote_code_files()} <= {path.name for path in tmp_path.iterdir()}


def test_model_card_lists_what_the_remote_code_imports():
    from model_card import REMOTE_CODE_REQUIREMENTS
    from transformers.dynamic_module_utils import get_imports

    pip_names = {"PIL": "Pillow"}
    # installed with transformers or huggingface_hub themselves
    implied = {"transformers", "huggingface_hub", "numpy", "filelock"}
    required = set()
    for path in remote_code_files():
        required |= {m for m in get_imports(path) if m not in sys.stdlib_module_names}
    listed = {r.split(">")[0].split("=")[0] for r in REMOTE_CODE_REQUIREMENTS}
    assert {pip_names.get(m, m) for m in required} - implied <= listed
