# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Acceptance of issue 6: `--push-to-hub` goes through `huggingface_hub`'s API (`create_repo`, `upload_folder`) with the
network replaced at the HTTP boundary. huggingface_hub 2.x sends every request through one `httpx2.Client`, built by a
replaceable factory (`set_client_factory`); the test gives it an `httpx2.MockTransport` that plays the Hub and records
what would be sent: the repo creation, the commit's files (every file of the converted directory, byte for byte) and
its message naming the source checkpoint. The mock Hub answers `regular` (inline) upload mode for every file, so the
file contents travel in the commit payload rather than through the Xet storage backend.
"""

import base64
import json

import httpx2
import pytest
from conftest import REFERENCE_DIR
from conversion_helpers import one_torch_thread  # noqa: F401  (fixture)
from convert_maskdino_to_hf import ConversionError, main, push_to_hub
from huggingface_hub import constants, set_client_factory
from huggingface_hub.utils._http import close_session, default_client_factory

import transformers_maskdino  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class FakeHub:
    """The few Hub endpoints an upload touches; anything else is recorded and answered 404."""

    def __init__(self):
        self.requests = []
        self.commits = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = request.read()
        path = request.url.path
        self.requests.append((request.method, path, request.headers.get("authorization")))
        if request.method == "POST" and path == "/api/repos/create":
            payload = json.loads(body)
            return httpx2.Response(200, json={"url": f"https://huggingface.co/{payload['organization']}/{payload['name']}"})
        if request.method == "POST" and path == "/api/validate-yaml":
            return httpx2.Response(200, json={"errors": [], "warnings": []})
        if request.method == "POST" and path.endswith("/preupload/main"):
            files = json.loads(body)["files"]
            return httpx2.Response(
                200, json={"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
            )
        if request.method == "POST" and path.endswith("/commit/main"):
            lines = [json.loads(line) for line in body.decode().splitlines()]
            self.commits.append((path, lines))
            return httpx2.Response(
                200, json={"commitUrl": f"https://huggingface.co{path.replace('/api/models', '')}/0123abcd", "commitOid": "0" * 40}
            )
        return httpx2.Response(404, json={"error": f"not served by the fake Hub: {request.method} {path}"})

    def committed_files(self):
        (_, lines), = self.commits
        return {line["value"]["path"]: base64.b64decode(line["value"]["content"]) for line in lines if line["key"] == "file"}

    def commit_header(self):
        (_, lines), = self.commits
        return next(line["value"] for line in lines if line["key"] == "header")


@pytest.fixture
def fake_hub(monkeypatch):
    hub = FakeHub()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(hub)))
    close_session()  # the next request builds its client from the factory above
    yield hub
    set_client_factory(default_client_factory)
    close_session()


def test_push_sends_every_file_and_names_the_source_checkpoint(fake_hub, tmp_path, capsys):
    source = REFERENCE_DIR / "r50_instance"
    output_dir = tmp_path / "out"
    main(
        [
            "--config-file", str(source / "config.yaml"), "--checkpoint", str(source / "model.pth"),
            "--metadata", str(source / "metadata.json"), "--output-dir", str(output_dir),
            "--push-to-hub", "my-org/maskdino-test", "--token", "hf_not_a_real_token", "--no-progress",
        ]
    )  # fmt: skip
    assert "Pushed:      https://huggingface.co/my-org/maskdino-test/commit/main/0123abcd" in capsys.readouterr().out

    methods_paths = [(method, path) for method, path, _ in fake_hub.requests]
    assert ("POST", "/api/repos/create") in methods_paths
    assert ("POST", "/api/models/my-org/maskdino-test/commit/main") in methods_paths
    assert all(auth == "Bearer hf_not_a_real_token" for _, path, auth in fake_hub.requests if path.startswith("/api/models"))

    written = {path.name: path.read_bytes() for path in output_dir.iterdir()}
    assert fake_hub.committed_files() == written
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "modeling_maskdino.py"} <= set(written)
    header = fake_hub.commit_header()
    assert header["summary"] == "Add Mask DINO converted from model.pth"
    assert "model.pth" in header["description"] and "config.yaml" in header["description"]


def test_push_names_the_released_file(fake_hub, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# card\n")
    (folder / "config.json").write_text("{}")
    message = "Add Mask DINO converted from maskdino_r50_50ep_300q_hid2048_3sd1_panoptic_pq53.0.pth"
    info = push_to_hub(folder, "org/maskdino-r50-coco-panoptic", commit_message=message, token="hf_x", private=True)
    assert info.commit_url.endswith("/0123abcd")
    assert fake_hub.commit_header()["summary"] == message
    assert set(fake_hub.committed_files()) == {"README.md", "config.json"}


def test_push_without_a_token_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no_token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no_tokens"))
    with pytest.raises(ConversionError, match="needs a Hugging Face token with write access: run `hf auth login`"):
        push_to_hub(tmp_path, "org/repo", commit_message="x")
