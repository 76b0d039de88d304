# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""scripts/gpu_device_plugin.py, the pytest plugin with which scripts/gpu_check.sh runs the parity tests on a GPU:
checked here through `cpu:0`, which takes the same moves on the CPU."""

import sys

import pytest
import torch
from conftest import REPO
from tiny_checkpoint import save_tiny_checkpoint

from transformers_maskdino import MaskDinoForUniversalSegmentation
from transformers_maskdino.modeling_maskdino import MaskDinoPreTrainedModel

sys.path.insert(0, str(REPO / "scripts"))
import gpu_device_plugin


class _Config:
    def addinivalue_line(self, name, line):
        pass


@pytest.mark.parametrize("output_loading_info", [False, True])
def test_models_loaded_under_the_plugin_run_and_return_cpu_outputs(output_loading_info, tmp_path, monkeypatch):
    # restored after the test: the plugin replaces `from_pretrained` on the class
    monkeypatch.setattr(MaskDinoPreTrainedModel, "from_pretrained", MaskDinoPreTrainedModel.from_pretrained)
    monkeypatch.setattr(gpu_device_plugin, "DEVICE", "cpu:0")
    gpu_device_plugin.pytest_configure(_Config())
    directory = save_tiny_checkpoint(tmp_path)
    loaded = MaskDinoForUniversalSegmentation.from_pretrained(directory, output_loading_info=output_loading_info)
    if output_loading_info:  # the parity tests' form: (model, loading_info), both as transformers returns them
        model, loading_info = loaded
        assert not any(loading_info.values())
    else:
        model = loaded
    assert isinstance(model, MaskDinoForUniversalSegmentation)
    # a CPU tensor moved to cpu:0 reports plain `cpu`, so check for the moves themselves
    assert gpu_device_plugin._inputs_to_model_device in model._forward_pre_hooks.values()
    assert gpu_device_plugin._outputs_to_cpu in model._forward_hooks.values()
    with torch.no_grad():
        outputs = model.eval()(pixel_values=torch.rand(1, 3, 128, 128))
    assert outputs.class_queries_logits.device == torch.device("cpu")
    assert torch.isfinite(outputs.masks_queries_logits).all()
