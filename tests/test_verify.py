# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
`--verify ORIGINAL_OUTPUTS.safetensors`: the converted model, reloaded from the written directory, is run on the stored
`pixel_values` and must reproduce every stored `decoder.*` output of the original. The file format is the reference
fixtures' `outputs.safetensors` plus the `pixel_values` of their `inputs.safetensors` (see `conversion/README.md`),
so a fixture variant is a ready-made test case.
"""

import pytest
import torch
from conftest import REFERENCE_DIR
from conversion_helpers import one_torch_thread  # noqa: F401  (fixture)
from convert_maskdino_to_hf import ConversionError, main, verify_outputs
from safetensors.torch import load_file, save_file
from transformers import AutoModelForUniversalSegmentation

import transformers_maskdino  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def verify_file(variant, path, **changes):
    tensors = load_file(REFERENCE_DIR / variant / "outputs.safetensors")
    tensors["pixel_values"] = load_file(REFERENCE_DIR / variant / "inputs.safetensors")["pixel_values"]
    for key, value in changes.items():
        if value is None:
            del tensors[key]
        else:
            tensors[key] = value
    save_file({k: v.contiguous() for k, v in tensors.items()}, path)
    return path


def run(variant, verify, output_dir, capsys):
    source = REFERENCE_DIR / variant
    main(
        [
            "--config-file", str(source / "config.yaml"), "--checkpoint", str(source / "model.pth"),
            "--metadata", str(source / "metadata.json"), "--output-dir", str(output_dir),
            "--verify", str(verify), "--no-progress",
        ]
    )  # fmt: skip
    return capsys.readouterr().out


@pytest.mark.parametrize("variant", ["r50_instance", "r50_semantic"])
def test_verify_passes_on_the_original_outputs(variant, tmp_path, capsys):
    stdout = run(variant, verify_file(variant, tmp_path / "outputs.safetensors"), tmp_path / "out", capsys)
    reference = load_file(REFERENCE_DIR / variant / "outputs.safetensors")
    checked = sorted(k for k in reference if k.startswith("decoder."))
    assert f"Verified:    {len(checked)} outputs match" in stdout
    for key in checked:
        assert f"verify {key}: max |ours - original|" in stdout
    # the batch and image2 runs of the fixtures are not single-image outputs of pixel_values: reported, not compared
    assert "ignored keys batch2." in stdout


def test_verify_fails_on_a_changed_output(tmp_path, capsys):
    reference = load_file(REFERENCE_DIR / "r50_instance" / "outputs.safetensors")
    changed = reference["decoder.aux.1.pred_boxes"].clone()
    changed[0, 3, 2] += 1e-2
    path = verify_file("r50_instance", tmp_path / "outputs.safetensors", **{"decoder.aux.1.pred_boxes": changed})
    with pytest.raises(SystemExit, match=r"Verification failed \(nothing written, nothing pushed\):\n  decoder.aux.1.pred_boxes: max"):
        run("r50_instance", path, tmp_path / "out", capsys)
    # the model is only written once verified
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["outputs.safetensors"]


def test_verify_file_must_hold_inputs_and_final_outputs(converted_reference, tmp_path):
    model = AutoModelForUniversalSegmentation.from_pretrained(converted_reference("r50_instance"))
    without_inputs = verify_file("r50_instance", tmp_path / "a.safetensors", pixel_values=None)
    with pytest.raises(ConversionError, match="has no `pixel_values`"):
        verify_outputs(model, without_inputs)
    without_masks = verify_file("r50_instance", tmp_path / "b.safetensors", **{"decoder.pred_masks": None})
    with pytest.raises(ConversionError, match=r"lacks \['decoder.pred_masks'\]"):
        verify_outputs(model, without_masks)
    unknown = verify_file("r50_instance", tmp_path / "c.safetensors", **{"decoder.aux.7.pred_logits": torch.zeros(1, 20, 7)})
    report = verify_outputs(model, unknown)
    assert not report.ok
    assert report.failures == ["decoder.aux.7.pred_logits: the converted model produces no such output"]
