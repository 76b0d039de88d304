"""Running one benchmark setting in a fresh process of the same script and reading back its JSON result."""

from __future__ import annotations

import json
import subprocess
import sys


def run_json_child(script: str, mode: str, arguments: list[str], env: dict) -> dict:
    """Runs `python script --child mode *arguments` and returns the JSON object on its last stdout line."""
    command = [sys.executable, script, "--child", mode, *arguments]
    completed = subprocess.run(command, check=False, capture_output=True, text=True, env=env)
    if completed.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])
