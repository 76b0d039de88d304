# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
pytest plugin for scripts/gpu_check.sh: runs the unchanged parity tests with their models on another device.

`MASKDINO_TEST_DEVICE=cuda pytest -p gpu_device_plugin tests/test_modeling_parity.py` (with `scripts/` on
`PYTHONPATH`) moves every Mask DINO model that a test loads with `from_pretrained` to that device, moves each forward's
tensor inputs there, and brings its outputs back to the CPU, where the tests compare them with the reference fixtures
at their usual tolerances. Forward hooks that tests register themselves see device tensors. With
`MASKDINO_TEST_DEVICE=cpu` (the default) the plugin changes nothing; `cpu:0` runs on the CPU through the same moves
(the dry run exercises them so).
"""

import os

import torch

DEVICE = os.environ.get("MASKDINO_TEST_DEVICE", "cpu")


def _moved(value, device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):  # ModelOutput included: it is an OrderedDict, rebuilt as its own class
        return type(value)(**{key: _moved(item, device) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return type(value)(_moved(item, device) for item in value)
    return value


def _inputs_to_model_device(module, args, kwargs):
    device = next(module.parameters()).device
    return _moved(args, device), _moved(kwargs, device)


def _outputs_to_cpu(module, args, kwargs, output):
    return _moved(output, "cpu")


def pytest_configure(config):
    if DEVICE == "cpu":
        return
    from transformers_maskdino.modeling_maskdino import MaskDinoPreTrainedModel

    original = MaskDinoPreTrainedModel.from_pretrained.__func__

    def from_pretrained(cls, *args, **kwargs):
        loaded = original(cls, *args, **kwargs)
        # `output_loading_info=True` returns (model, loading_info)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model.to(DEVICE)
        model.register_forward_pre_hook(_inputs_to_model_device, with_kwargs=True)
        model.register_forward_hook(_outputs_to_cpu, with_kwargs=True)
        return loaded

    MaskDinoPreTrainedModel.from_pretrained = classmethod(from_pretrained)
    config.addinivalue_line("markers", f"device: tests ran with their models on {DEVICE}")


def pytest_report_header(config):
    return f"gpu_device_plugin: models on {DEVICE}" + (
        f" ({torch.cuda.get_device_name()})" if DEVICE == "cuda" else ""
    )
