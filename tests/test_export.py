# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Exported graphs (issue 11): ONNX made with the default `MASKDINO_KERNELS` setting and run in onnxruntime and
OpenVINO at input sizes and batch sizes other than the traced ones, and `torch.compile(dynamic=True)` without
recompiling for a new size (`torch.export` with dynamic dims is checked in `test_deployment_docs.py`, which runs the
documented recipe). Outputs match PyTorch within
1e-3 x max(1, |reference|) and the post-processed results are equal.

The graphs are exported from the trained demo model (tiny, so CI can afford it, and with trained weights, so that
post-processed results are meaningful); `test_onnx_full_size_fixture` (slow) repeats the ONNX check on a full-size
fixture conversion."""

import contextlib
import io

import numpy as np
import onnxruntime
import openvino
import pytest
import torch
from conftest import REFERENCE_DIR
from PIL import Image
from safetensors.torch import load_file

from transformers_maskdino import MaskDinoForUniversalSegmentation, MaskDinoImageProcessorPil
from transformers_maskdino.cli import DEMO_DIR
from transformers_maskdino.export_onnx import (
    OUTPUT_NAMES,
    OnnxOutputs,
    export_onnx,
    main,
)

TRACED_SIZE = (128, 160)


def assert_close_to_reference(actual, reference, name):
    actual = torch.as_tensor(np.asarray(actual))
    reference = reference.detach()
    assert actual.shape == reference.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(reference.shape)}"
    excess = (actual - reference).abs() - 1e-3 * reference.abs().clamp(min=1)
    assert excess.max() <= 0, f"{name}: off by {excess.max().item():.3g} more than 1e-3 x max(1, |ref|)"


def demo_batches(processor):
    """Two processed batches whose padded sizes differ from the traced one: 1 image at 160x160, 2 at 160x224."""
    sample = Image.open(DEMO_DIR / "sample.png").convert("RGB")
    wide = sample.crop((0, 40, 320, 280))  # 320 x 240: resized to 213 x 160, padded to 224 x 160
    return [processor(images=[sample], return_tensors="pt"), processor(images=[sample, wide], return_tensors="pt")]


def post_processed(processor, outputs, image_count):
    """Every post-processing of `outputs`, in plain comparable values."""
    target_sizes = [(320, 320)] * image_count
    results = {}
    for index, result in enumerate(processor.post_process_semantic_segmentation(outputs, target_sizes=target_sizes)):
        results[f"semantic{index}"] = result.numpy()
    for kind in ("instance", "panoptic"):
        method = getattr(processor, f"post_process_{kind}_segmentation")
        for index, result in enumerate(method(outputs, threshold=0.25, target_sizes=target_sizes)):
            results[f"{kind}{index}.map"] = result["segmentation"].numpy()
            results[f"{kind}{index}.segments"] = [
                (info["id"], info["label_id"], round(info["score"], 4)) for info in result["segments_info"]
            ]
    for index, result in enumerate(
        processor.post_process_object_detection(outputs, threshold=0.25, target_sizes=target_sizes)
    ):
        results[f"detection{index}"] = (result["labels"].tolist(), result["scores"].numpy().round(4).tolist())
        results[f"detection{index}.boxes"] = result["boxes"].numpy()
    return results


def assert_same_results(actual: dict, expected: dict):
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        if key.endswith(".boxes"):
            np.testing.assert_allclose(actual[key], value, atol=1e-2, err_msg=key)
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(actual[key], value, err_msg=key)
        else:
            assert actual[key] == value, key
    # the demo model finds its objects on the sample: the comparison is not between two empty results
    assert expected["panoptic0.segments"] and expected["detection0"][0]


@pytest.fixture(scope="module")
def demo_model():
    return MaskDinoForUniversalSegmentation.from_pretrained(DEMO_DIR).eval()


@pytest.fixture(scope="module")
def demo_processor():
    return MaskDinoImageProcessorPil.from_pretrained(DEMO_DIR)


@pytest.fixture(scope="module")
def demo_onnx(tmp_path_factory):
    """The demo exported by the documented command, with the default kernel setting (no MASKDINO_KERNELS=off)."""
    output = tmp_path_factory.mktemp("onnx") / "nested" / "demo.onnx"
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(io.StringIO()) as printed:
        patch.delenv("MASKDINO_KERNELS", raising=False)
        main([str(DEMO_DIR), str(output), "--sample-size", *map(str, TRACED_SIZE)])
    assert output.is_file() and printed.getvalue().strip().splitlines()[-1] == f"wrote {output}"
    return output


def reference_outputs(model, batch):
    with torch.no_grad():
        return model(pixel_values=batch["pixel_values"], pixel_mask=batch["pixel_mask"])


def test_onnx_graph_names_and_dynamic_dims(demo_onnx):
    session = onnxruntime.InferenceSession(str(demo_onnx), providers=["CPUExecutionProvider"])
    (graph_input,) = session.get_inputs()
    assert graph_input.name == "pixel_values"
    assert [output.name for output in session.get_outputs()] == list(OUTPUT_NAMES)
    batch, channels, height, width = graph_input.shape
    assert channels == 3 and all(isinstance(dim, str) for dim in (batch, height, width)), graph_input.shape


def test_onnxruntime_matches_pytorch_at_other_sizes(demo_onnx, demo_model, demo_processor):
    session = onnxruntime.InferenceSession(str(demo_onnx), providers=["CPUExecutionProvider"])
    for batch in demo_batches(demo_processor):
        image_count, _, height, width = batch["pixel_values"].shape
        assert (height, width) != TRACED_SIZE
        reference = reference_outputs(demo_model, batch)
        raw = session.run(None, {"pixel_values": batch["pixel_values"].numpy()})
        for name, value in zip(OUTPUT_NAMES, raw):
            assert_close_to_reference(value, reference[name], f"{name} at {image_count}x{height}x{width}")
        onnx_outputs = OnnxOutputs.from_session_outputs(raw, batch["pixel_mask"].numpy())
        assert onnx_outputs.image_sizes.tolist() == reference.image_sizes.tolist()
        assert_same_results(
            post_processed(demo_processor, onnx_outputs, image_count),
            post_processed(demo_processor, reference, image_count),
        )


def test_openvino_runs_the_onnx_graph(demo_onnx, demo_model, demo_processor):
    # OpenVINO's CPU plugin computes in bfloat16 on CPUs with AMX unless asked for float32
    compiled = openvino.Core().compile_model(str(demo_onnx), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for batch in demo_batches(demo_processor):
        reference = reference_outputs(demo_model, batch)
        result = compiled(batch["pixel_values"].numpy())
        raw = [result[name] for name in OUTPUT_NAMES]
        for name, value in zip(OUTPUT_NAMES, raw):
            assert_close_to_reference(value, reference[name], f"OpenVINO {name}")
        image_count = batch["pixel_values"].shape[0]
        assert_same_results(
            post_processed(
                demo_processor, OnnxOutputs.from_session_outputs(raw, batch["pixel_mask"].numpy()), image_count
            ),
            post_processed(demo_processor, reference, image_count),
        )


def test_export_onnx_refuses_sizes_that_are_not_multiples_of_32(tmp_path, demo_model):
    with pytest.raises(ValueError, match="multiples of 32"):
        export_onnx(demo_model, tmp_path / "x.onnx", sample_size=(100, 160))


def test_torch_compile_dynamic_does_not_recompile_for_a_new_size(demo_model, demo_processor):
    """One graph for every size. The sizes are large enough that torch's choice of convolution backend does not
    depend on them: for a batch of 1, a 1x1 or 3x3 convolution uses oneDNN only above 20480 input elements, which the
    demo's narrow layers (16-128 channels) cross at small sizes but converted checkpoints (256-2048) do not."""
    from torch._dynamo.utils import counters

    sample = demo_processor(images=Image.open(DEMO_DIR / "sample.png").convert("RGB"), return_tensors="pt")
    torch._dynamo.reset()
    counters.clear()
    # aot_eager traces as inductor does (the same guards) without inductor's minutes of code generation
    compiled = torch.compile(demo_model, dynamic=True, backend="aot_eager")
    with torch.no_grad():
        for size in [(448, 480), (480, 448), (512, 512), (448, 640)]:
            pixel_values = torch.nn.functional.interpolate(sample["pixel_values"], size, mode="bilinear")
            reference = demo_model(pixel_values=pixel_values)
            outputs = compiled(pixel_values=pixel_values)
            for name in OUTPUT_NAMES:
                assert_close_to_reference(outputs[name], reference[name], f"torch.compile {name} at {size}")
    assert counters["stats"]["unique_graphs"] == 1, "torch.compile(dynamic=True) compiled more than one graph"
    torch._dynamo.reset()


@pytest.mark.slow
def test_onnx_full_size_fixture(tmp_path, converted_reference, monkeypatch):
    """The ONNX check on the full-size converted r50_instance fixture (ResNet-50, 6 encoder and 9 decoder layers),
    traced at 256x256 and run at the fixture's 160x224 input (batch 1) and at 320x320 (batch 2). The reference is the
    PyTorch path the graph was traced from (`MASKDINO_KERNELS=off`): with random weights the top-k query selection
    ranks near-tied scores, which the compiled kernel's different rounding would reorder."""
    model = MaskDinoForUniversalSegmentation.from_pretrained(converted_reference("r50_instance")).eval()
    path = export_onnx(model, tmp_path / "r50.onnx", sample_size=(256, 256))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    fixture_pixels = load_file(REFERENCE_DIR / "r50_instance" / "inputs.safetensors")["pixel_values"]
    resized = torch.nn.functional.interpolate(fixture_pixels, (320, 320), mode="bilinear").repeat(2, 1, 1, 1)
    monkeypatch.setenv("MASKDINO_KERNELS", "off")
    for pixel_values in (fixture_pixels, resized):
        with torch.no_grad():
            reference = model(pixel_values=pixel_values)
        raw = session.run(None, {"pixel_values": pixel_values.numpy()})
        for name, value in zip(OUTPUT_NAMES, raw):
            assert_close_to_reference(value, reference[name], f"{name} at {tuple(pixel_values.shape)}")
