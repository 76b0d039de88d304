# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""docs/deployment.md's recipes run as written (issue 11): every Python block, in order, in one namespace, in a
temporary working directory; then their results are checked against each other and against the eager model."""

import re

import numpy as np
import torch
from conftest import REPO

DOC = REPO / "docs" / "deployment.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_deployment_recipes_run_and_agree(tmp_path, monkeypatch):
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 6, "docs/deployment.md lost recipes: update this test"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MASKDINO_KERNELS", raising=False)
    namespace = {}
    for index, block in enumerate(blocks):
        try:
            exec(compile(block, f"{DOC.name} python block {index}", "exec"), namespace)  # noqa: S102
        except Exception as error:  # name the block that failed
            raise AssertionError(f"docs/deployment.md python block {index} failed:\n{block}") from error

    assert (tmp_path / "model.onnx").is_file()

    # the float32 model of the recipes, post-processed as the ONNX and OpenVINO results are
    model, processor, inputs, image = (namespace[name] for name in ("model", "processor", "inputs", "image"))
    with torch.no_grad():
        outputs = model(**inputs)
    target_sizes = [image.size[::-1]]
    expected = processor.post_process_panoptic_segmentation(outputs, target_sizes=target_sizes)[0]
    assert expected["segments_info"], "the demo finds nothing on its sample: the comparisons below would be empty"
    for name in ("onnx_panoptic", "openvino_panoptic"):
        result = namespace[name]
        np.testing.assert_array_equal(result["segmentation"].numpy(), expected["segmentation"].numpy(), err_msg=name)
        assert [s["label_id"] for s in result["segments_info"]] == [s["label_id"] for s in expected["segments_info"]]

    # bfloat16: the same segments as float32 on >= 99% of the pixels
    half = namespace["panoptic"]
    assert (half["segmentation"] == expected["segmentation"]).float().mean() >= 0.99
    assert sorted(s["label_id"] for s in half["segments_info"]) == sorted(
        s["label_id"] for s in expected["segments_info"]
    )

    # torch.export's program (traced with a batch of 3 at 128x160) gives the eager outputs at the sample's size, and at
    # a batch of 2 at another size
    pixel_values = torch.nn.functional.interpolate(inputs["pixel_values"], (192, 224), mode="bilinear").repeat(
        2, 1, 1, 1
    )
    with torch.no_grad():
        exported_outputs = namespace["exported"].module()(pixel_values)
        eager_outputs = model(pixel_values=pixel_values)
    for index, name in enumerate(("class_queries_logits", "masks_queries_logits", "pred_boxes")):
        torch.testing.assert_close(exported_outputs[index], eager_outputs[name], rtol=1e-4, atol=1e-3)
    for name, value in zip(
        ("class_queries_logits", "masks_queries_logits", "pred_boxes"), ("class_logits", "mask_logits", "boxes")
    ):
        torch.testing.assert_close(namespace[value], outputs[name], rtol=1e-4, atol=1e-3)

    assert callable(namespace["compiled_model"])


def test_malloc_setting_of_the_docs_takes_effect_and_changes_no_output(tmp_path):
    # The documented line in a fresh interpreter: a 64 MB tensor then comes from the heap, not an mmap, and the demo
    # model's outputs are bit-identical to those of a process without it.
    import os
    import subprocess
    import sys

    match = re.search(r"^export (GLIBC_TUNABLES=\S+)$", DOC.read_text(), flags=re.MULTILINE)
    assert match, "docs/deployment.md lost its GLIBC_TUNABLES line"
    name, value = match.group(1).split("=", 1)
    child = r"""
import sys, torch
from PIL import Image
from transformers_maskdino import MaskDinoForUniversalSegmentation, MaskDinoImageProcessor
from transformers_maskdino.cli import DEMO_DIR

def heap_bytes():
    for line in open("/proc/self/maps"):
        if line.rstrip().endswith("[heap]"):
            start, end = (int(x, 16) for x in line.split()[0].split("-"))
            return end - start
    return 0

before = heap_bytes()
block = torch.ones(16 * 2**20)  # 64 MB
grown = heap_bytes() - before
del block
model = MaskDinoForUniversalSegmentation.from_pretrained(DEMO_DIR).eval()
processor = MaskDinoImageProcessor.from_pretrained(DEMO_DIR)
inputs = processor(Image.open(DEMO_DIR / "sample.png").convert("RGB"), return_tensors="pt")
with torch.no_grad():
    outputs = model(**inputs)
torch.save({k: outputs[k] for k in ("class_queries_logits", "masks_queries_logits", "pred_boxes")}, sys.argv[1])
print(grown)
"""
    results = {}
    for setting in ("default", "tuned"):
        environment = {k: v for k, v in os.environ.items() if k != name}
        if setting == "tuned":
            environment[name] = value
        path = tmp_path / f"{setting}.pt"
        completed = subprocess.run(
            [sys.executable, "-c", child, str(path)], env=environment, capture_output=True, text=True, check=False
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        results[setting] = (int(completed.stdout.split()[-1]), torch.load(path))
    # (the heap may already hold some free memory, so it grows by somewhat less than 64 MB)
    assert results["tuned"][0] >= 48 * 2**20, "the setting did not move large allocations to the heap"
    assert results["default"][0] < 16 * 2**20
    for key, expected in results["default"][1].items():
        torch.testing.assert_close(results["tuned"][1][key], expected, rtol=0, atol=0)
