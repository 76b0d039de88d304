"""Pieces the full-size benchmark scripts share: the model they time, the run's preamble, and running one setting in
a fresh process of the same script."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def base_parser(description: str) -> argparse.ArgumentParser:
    """The options every full-size benchmark takes: rounds, repeats, threads and the image size."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1216)
    return parser


def full_size_model():
    """The R50 instance model at its released size (`MaskDinoConfig()` defaults), random weights from seed 0."""
    import torch

    from transformers_maskdino import MaskDinoConfig, MaskDinoForUniversalSegmentation

    torch.manual_seed(0)
    return MaskDinoForUniversalSegmentation(MaskDinoConfig()).eval()


def load_average() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def start_run(threads: int) -> None:
    """Builds the CPU kernel outside the timed processes and prints the torch version, threads and load average."""
    import torch

    from transformers_maskdino import msda_kernels

    msda_kernels.load_kernel("cpu")
    print(f"# torch {torch.__version__}, {threads} threads; load average before: {load_average()}", flush=True)


def run_json_child(script: str, mode: str, arguments: list[str], env: dict) -> dict:
    """Runs `python script --child mode *arguments` and returns the JSON object on its last stdout line."""
    command = [sys.executable, script, "--child", mode, *arguments]
    completed = subprocess.run(command, check=False, capture_output=True, text=True, env=env)
    if completed.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])
