# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""The README's two set-up commands: the test command is the one CI runs, and the main command works as written
from an empty directory (its install step is what CI's test command does too)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO
from PIL import Image


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (REPO / "README.md").read_text())


def test_ci_runs_the_readme_test_command():
    test_command = readme_commands()[1]
    assert "pytest" in test_command
    assert test_command in (REPO / ".ci" / "run").read_text()


def test_the_main_command_runs_from_an_empty_directory(tmp_path):
    install, main_command = readme_commands()[0].split(" && ")
    assert install.startswith("pip install") and main_command.startswith("maskdino-segment ")
    # the console script of the environment running the tests (a venv's bin directory need not be on PATH)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    assert shutil.which("maskdino-segment", path=path), "the package's console script is not installed"
    completed = subprocess.run(
        main_command, shell=True, cwd=tmp_path, env={**os.environ, "PATH": path}, capture_output=True, text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    output = re.search(r"--output (\S+)", main_command).group(1)
    overlay = Image.open(tmp_path / output)  # the output's directory did not exist before
    assert overlay.width > 0 and "panoptic" in completed.stdout
    # nothing that reads as a broken checkpoint (transformers prints a report of missing or unexpected tensors)
    assert "LOAD REPORT" not in completed.stderr and "newly initialized" not in completed.stderr, completed.stderr
