# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Issue 13: the converter says what is wrong with a malformed input, naming the file and the entry (a text file as
checkpoint, metadata that is not an object, invalid JSON, NaN or integer weights), and writes its output directory
all at once: a failed, interrupted or killed conversion leaves the previous directory as it was and no directory
that looks like a converted model.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REFERENCE_DIR, REPO
from conversion_helpers import one_torch_thread  # noqa: F401  (fixture)
from convert_maskdino_to_hf import ConversionError, load_original_state_dict, main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SOURCE = REFERENCE_DIR / "r50_instance"


def run_main(
    output_dir, checkpoint=SOURCE / "model.pth", metadata=SOURCE / "metadata.json", config=SOURCE / "config.yaml"
):
    args = [
        "--config-file",
        str(config),
        "--checkpoint",
        str(checkpoint),
        "--output-dir",
        str(output_dir),
        "--no-progress",
    ]
    if metadata is not None:
        args += ["--metadata", str(metadata)]
    main(args)


def reference_state_dict():
    return torch.load(SOURCE / "model.pth", map_location="cpu", weights_only=True)["model"]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def siblings(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.parent.iterdir() if p != directory)


# ------------------------------------------------------------------------------------------------ malformed inputs


def test_text_file_as_checkpoint_names_the_file(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("these are my notes, not a checkpoint\n" * 10)
    with pytest.raises(
        ConversionError, match=r"notes\.pth cannot be read as a PyTorch checkpoint .*Expected the original's"
    ):
        load_original_state_dict(text)


@pytest.mark.parametrize(
    "content, message",
    [
        ({"model": {"a": torch.zeros(1), "b": "text"}}, r"entries are not tensors: b"),
        ([torch.zeros(1)], "holds no state dict"),
        ({}, "holds no state dict"),
    ],
)
def test_checkpoint_that_is_no_state_dict_names_the_entries(tmp_path, content, message):
    torch.save(content, tmp_path / "odd.pth")
    with pytest.raises(ConversionError, match=message) as error:
        load_original_state_dict(tmp_path / "odd.pth")
    assert "odd.pth" in str(error.value)


def test_non_finite_weights_are_reported_by_name(tmp_path):
    original = reference_state_dict()
    original["sem_seg_head.predictor.class_embed.weight"] = original[
        "sem_seg_head.predictor.class_embed.weight"
    ].clone()
    original["sem_seg_head.predictor.class_embed.weight"][0, 0] = float("nan")
    original["backbone.stem.conv1.weight"] = original["backbone.stem.conv1.weight"].clone()
    original["backbone.stem.conv1.weight"][0, 0, 0, 0] = float("inf")
    torch.save({"model": original}, tmp_path / "nan.pth")
    with pytest.raises(ConversionError) as error:
        run_main(tmp_path / "out", checkpoint=tmp_path / "nan.pth")
    message = str(error.value)
    assert "nan.pth holds non-finite values (NaN or infinity) in 2 tensors" in message
    assert "backbone.stem.conv1.weight, sem_seg_head.predictor.class_embed.weight" in message
    assert not (tmp_path / "out").exists() and siblings(tmp_path / "out") == ["nan.pth"]


def test_integer_weights_are_refused(tmp_path):
    original = reference_state_dict()
    original["sem_seg_head.predictor.class_embed.bias"] = torch.zeros_like(
        original["sem_seg_head.predictor.class_embed.bias"], dtype=torch.long
    )
    torch.save({"model": original}, tmp_path / "int.pth")
    with pytest.raises(
        ConversionError,
        match=r"integer or boolean tensors where the model has floating-point weights .*\n  model\.decoder\.class_embed\.bias \(torch\.int64\)",
    ):
        run_main(tmp_path / "out", checkpoint=tmp_path / "int.pth")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "text, message",
    [
        ('["thing_0", "thing_1"]', r"meta\.json holds a JSON list; expected an object with `thing_classes`"),
        ('{"thing_classes": [1, 2]', r"meta\.json is not valid JSON: Expecting"),
        (
            '{"thing_classes": "cat, dog"}',
            r"meta\.json: `thing_classes` must be a list of class names, got 'cat, dog'",
        ),
        (
            '{"thing_dataset_id_to_contiguous_id": {"1": "a"}}',
            r"meta\.json: `thing_dataset_id_to_contiguous_id` must map dataset ids to contiguous integer ids",
        ),
        (
            '{"thing_classes": ["a", "b"]}',
            r"meta\.json: neither `stuff_classes` \(0 names\) nor `thing_classes` \(2\) names as many classes as the model has \(7",
        ),
        (
            '{"thing_classes": ["a", "b", "c", "d", "e", "f", "g"], "thing_dataset_id_to_contiguous_id": {"1": 9}}',
            r"meta\.json: the `\*_dataset_id_to_contiguous_id` maps give contiguous ids \[9\], outside 0\.\.6",
        ),
    ],
)
def test_malformed_metadata_names_the_file_and_key(tmp_path, text, message):
    (tmp_path / "meta.json").write_text(text)
    with pytest.raises(ConversionError, match=message):
        run_main(tmp_path / "out", metadata=tmp_path / "meta.json")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ atomic output


@pytest.fixture(scope="module")
def previous_conversion(tmp_path_factory):
    """A directory holding a conversion of the panoptic fixture (the 'previous' model), and its bytes."""
    directory = tmp_path_factory.mktemp("previous") / "model"
    source = REFERENCE_DIR / "r50_panoptic"
    run_main(directory, source / "model.pth", source / "metadata.json", source / "config.yaml")
    return directory, snapshot(directory)


def copy_previous(previous_conversion, tmp_path) -> Path:
    _, files = previous_conversion
    target = tmp_path / "model"
    target.mkdir()
    for name, content in files.items():
        (target / name).write_bytes(content)
    return target


def test_reconversion_replaces_the_directory_whole(previous_conversion, tmp_path):
    target = copy_previous(previous_conversion, tmp_path)
    assert json.loads((target / "preprocessor_config.json").read_text())["stuff_label_ids"]
    run_main(target)
    # the instance model has no stuff labels: nothing of the panoptic processor config is left behind
    assert json.loads((target / "preprocessor_config.json").read_text())["stuff_label_ids"] == []
    assert json.loads((target / "config.json").read_text())["num_queries"] == 20
    assert siblings(target) == []


def test_failed_conversion_leaves_the_previous_directory_untouched(previous_conversion, tmp_path, monkeypatch):
    import convert_maskdino_to_hf

    target = copy_previous(previous_conversion, tmp_path)
    before = snapshot(target)
    original_write = convert_maskdino_to_hf.write_model_directory

    def write_then_fail(model, image_processor, output_dir, **kwargs):
        original_write(model, image_processor, output_dir, **kwargs)
        assert (Path(output_dir) / "model.safetensors").is_file()
        raise OSError("No space left on device")

    monkeypatch.setattr(convert_maskdino_to_hf, "write_model_directory", write_then_fail)
    with pytest.raises(OSError, match="No space left"):
        run_main(target)
    assert snapshot(target) == before
    assert siblings(target) == []  # the staging directory is gone


def test_killed_conversion_leaves_the_previous_directory_untouched(previous_conversion, tmp_path):
    target = copy_previous(previous_conversion, tmp_path)
    before = snapshot(target)
    # the converter, SIGKILLed by itself right after the new weights are written into its staging directory
    script = f"""
import os, signal, sys
sys.path.insert(0, {str(REPO / "conversion")!r})
import convert_maskdino_to_hf as converter
from transformers_maskdino import MaskDinoForUniversalSegmentation

save = MaskDinoForUniversalSegmentation.save_pretrained
def save_then_die(self, directory, *args, **kwargs):
    save(self, directory, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
MaskDinoForUniversalSegmentation.save_pretrained = save_then_die
converter.main(["--config-file", {str(SOURCE / "config.yaml")!r}, "--checkpoint", {str(SOURCE / "model.pth")!r},
                "--metadata", {str(SOURCE / "metadata.json")!r}, "--output-dir", {str(target)!r}])
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert snapshot(target) == before
    # what the killed run left is a hidden staging directory without a processor config: not a loadable model
    (left,) = siblings(target)
    assert left.startswith(".model.partial-")
    assert (tmp_path / left / "model.safetensors").is_file() and not (
        tmp_path / left / "preprocessor_config.json"
    ).exists()
    # the next conversion into the same place removes it
    run_main(target)
    assert siblings(target) == []
    assert json.loads((target / "config.json").read_text())["num_queries"] == 20


def test_directory_with_other_files_is_not_replaced(tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(ConversionError, match=r"Refusing to replace .*mine: it holds notes\.txt"):
        run_main(target)
    assert (target / "notes.txt").read_text() == "keep me" and sorted(p.name for p in target.iterdir()) == [
        "notes.txt"
    ]


def test_command_line_fails_on_a_misspelt_key_without_writing(tmp_path):
    # the case: exit 0, "reload OK" and num_queries 100 before
    (tmp_path / "model.yaml").write_text(f"_BASE_: {SOURCE / 'config.yaml'}\nMODEL:\n  MaskDINO:\n    NUM_OBJECT_QUERIEZ: 20\n")
    result = subprocess.run(
        [sys.executable, str(REPO / "conversion" / "convert_maskdino_to_hf.py"), "--config-file", str(tmp_path / "model.yaml"),
         "--checkpoint", str(SOURCE / "model.pth"), "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'model.yaml'} sets keys that detectron2 does not have:",
        "  unknown key MODEL.MaskDINO.NUM_OBJECT_QUERIEZ; did you mean MODEL.MaskDINO.NUM_OBJECT_QUERIES?",
    ]
    assert not (tmp_path / "out").exists()
