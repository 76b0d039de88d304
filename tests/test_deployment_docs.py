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
