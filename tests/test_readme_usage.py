# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""The README's Usage snippet runs verbatim, from an empty directory, after the README's commands before it."""

import os
import re
import subprocess
import sys

from conftest import REPO


def test_the_usage_snippet_runs_verbatim(tmp_path):
    readme = (REPO / "README.md").read_text()
    usage = readme[readme.index("## Usage") :]
    snippet = re.search(r"```python\n(.+?)\n```", usage, re.DOTALL).group(1)
    completed = subprocess.run(
        [sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    # the panoptic labels it prints are the demo model's classes
    assert completed.stdout.strip().startswith("[") and "'" in completed.stdout
