# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""The README's test command is the one CI runs."""

import re

from conftest import REPO


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"```bash\n(.+?)\n```", readme)
    test_command = commands[1]
    assert "pytest" in test_command
    assert test_command in (REPO / ".ci" / "run").read_text()
