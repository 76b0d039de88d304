# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Acceptance of issue 6: each released checkpoint converts by name. A checkpoint in the original's format with the
config's real shapes (random values, `original_checkpoint.py`) goes through
`convert_maskdino_to_hf.py --model-name NAME --checkpoint FILE`, and the written directory reloads with the labels,
test-time resize and card of the release. CI converts the two R50 families' full-size checkpoints (instance, and
ADE20K semantic); `pytest -m slow` converts all eight, Swin-L included. Also: downloads (file:// and a local HTTP
server), and refusing a checkpoint trained with another config.
"""

import dataclasses
import functools
import http.server
import re
import threading
from pathlib import Path

import pytest
import released
import torch
from conversion_helpers import one_torch_thread  # noqa: F401  (fixture)
from convert_maskdino_to_hf import (
    ConversionError,
    convert_state_dict,
    download_checkpoint,
    load_detectron2_yaml,
    main,
    sha256_of,
)
from huggingface_hub import ModelCard
from original_checkpoint import save_original_checkpoint
from released import RELEASED
from transformers import AutoConfig, AutoImageProcessor, AutoModelForUniversalSegmentation

import transformers_maskdino  # noqa: F401  (registers the Auto classes)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CI_NAMES = ["maskdino-r50-coco-instance", "maskdino-r50-ade20k-semantic"]


@pytest.fixture(scope="module")
def original_checkpoints(tmp_path_factory):
    """`get(name)` -> a random original-format checkpoint file with the real shapes of that release (made once)."""
    directory = tmp_path_factory.mktemp("original_checkpoints")
    cache = {}

    def get(name):
        if name not in cache:
            entry = RELEASED[name]
            cache[name] = save_original_checkpoint(load_detectron2_yaml(entry.config_path), directory / entry.file_name)
        return cache[name]

    return get


def check_converted_release(name: str, checkpoint: Path, output_dir: Path, stdout: str) -> None:
    entry = RELEASED[name]
    dataset = entry.load_dataset()
    assert f"sha256 {sha256_of(checkpoint)}" in stdout
    match = re.search(r"Tensors:\s+(\d+) in the checkpoint: (\d+) mapped", stdout)
    original = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    assert match and int(match.group(1)) == len(original)
    assert "reload OK" in stdout

    config = AutoConfig.from_pretrained(output_dir)
    assert [config.id2label[i] for i in range(config.num_labels)] == [label["name"] for label in dataset["labels"]]
    assert config.stuff_label_ids == [label["id"] for label in dataset["labels"] if not label["isthing"]]
    processor = AutoImageProcessor.from_pretrained(output_dir)
    assert dict(processor.size) == dataset["test_resize"]
    model = AutoModelForUniversalSegmentation.from_pretrained(output_dir).eval()
    assert f"Parameters:  {model.num_parameters():,}" in stdout

    # every original tensor landed where the mapping puts it, through the written file
    converted, unused = convert_state_dict(original, model.config, len(model.model.pixel_decoder.fpn_features))
    assert not unused
    state = model.state_dict()
    for key, tensor in converted.items():
        if not key.endswith("relative_position_index"):
            assert torch.equal(state[key], tensor), key

    card = ModelCard.load(output_dir / "README.md")
    assert card.data.license == "apache-2.0" and card.data.library_name == "transformers"
    assert entry.file_name in card.text and sha256_of(checkpoint) in card.text
    assert f"Parameters: {model.num_parameters():,}" in card.text
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 160, 224))  # enough encoder tokens for 300 queries
    assert outputs.class_queries_logits.shape == (1, model.config.num_queries, model.config.num_class_logits)


def run_main(capsys, *args) -> str:
    main([*map(str, args), "--no-progress"])
    return capsys.readouterr().out


@pytest.mark.parametrize("name", CI_NAMES)
def test_released_checkpoint_converts_by_name(name, original_checkpoints, tmp_path, capsys):
    checkpoint = original_checkpoints(name)
    stdout = run_main(capsys, "--model-name", name, "--checkpoint", checkpoint, "--output-dir", tmp_path)
    check_converted_release(name, checkpoint, tmp_path, stdout)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RELEASED))
def test_every_released_checkpoint_converts_by_name(name, tmp_path_factory, capsys):
    directory = tmp_path_factory.mktemp(name)
    checkpoint = save_original_checkpoint(load_detectron2_yaml(RELEASED[name].config_path), directory / "original.pth")
    stdout = run_main(capsys, "--model-name", name, "--checkpoint", checkpoint, "--output-dir", directory / "out")
    check_converted_release(name, checkpoint, directory / "out", stdout)
    checkpoint.unlink()


def test_checkpoint_of_another_config_is_refused(original_checkpoints, tmp_path, capsys):
    # the 3+1-level, FFN-2048 instance checkpoint given as the 3-level, FFN-1024 one
    checkpoint = original_checkpoints("maskdino-r50-coco-instance")
    with pytest.raises(ConversionError) as error:
        run_main(capsys, "--model-name", "maskdino-r50-coco-instance-hid1024", "--checkpoint", checkpoint, "--output-dir", tmp_path)
    message = str(error.value)
    assert "the checkpoint was not trained with this config" in message
    assert "encoder levels (num_feature_levels): checkpoint 4" in message and "encoder feed-forward width: checkpoint 2048" in message
    assert not (tmp_path / "model.safetensors").exists()


def test_download_from_a_file_url_is_cached_and_checked(original_checkpoints, tmp_path, capsys, monkeypatch):
    name = "maskdino-r50-coco-instance"
    checkpoint = original_checkpoints(name)
    cache = tmp_path / "cache"
    stdout = run_main(
        capsys, "--model-name", name, "--checkpoint-url", checkpoint.as_uri(), "--cache-dir", cache, "--output-dir", tmp_path / "out"
    )
    downloaded = cache / RELEASED[name].file_name
    assert sha256_of(downloaded) == sha256_of(checkpoint)
    assert f"Source:      {downloaded}" in stdout
    assert not list(cache.glob("*.partial"))

    # a recorded sha256 is checked, also for a file already in the cache
    monkeypatch.setitem(released.RELEASED, name, dataclasses.replace(RELEASED[name], sha256="0" * 64))
    with pytest.raises(ConversionError, match="not the released checkpoint"):
        run_main(capsys, "--model-name", name, "--cache-dir", cache, "--output-dir", tmp_path / "out2")


def test_download_over_http_with_progress(tmp_path, capsys):
    payload = bytes(range(256)) * 4096
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "file.pth").write_bytes(payload)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "served"))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/file.pth"
        path = download_checkpoint(url, tmp_path / "cache" / "file.pth", progress=True)
        assert path.read_bytes() == payload
        assert "Downloading file.pth" in capsys.readouterr().err
        with pytest.raises(ConversionError, match="Could not download .*--checkpoint FILE"):
            download_checkpoint(url.replace("file.pth", "missing.pth"), tmp_path / "cache" / "missing.pth", progress=False)
        assert not (tmp_path / "cache" / "missing.pth.partial").exists()
    finally:
        server.shutdown()
        server.server_close()
