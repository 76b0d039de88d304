"""Full-size Mask DINO inference on CPU with the compiled deformable-attention kernels on and off.

The R50 instance-segmentation model at its released size (`MaskDinoConfig()` defaults: ResNet-50, 300 queries,
9 decoder layers, 6 encoder layers, 80 classes) with random weights, on one random 3x800x1216 image, 2 threads. Each
setting runs in its own fresh process (so peak RSS is that process's VmHWM: Python, torch, the model and the forward),
alternating kernels on / off for `--rounds` rounds; every process does one warm-up forward and `--repeats` timed ones.
Reports median latency, peak RSS, and the largest difference between the two settings' outputs.

    python benchmarks/inference.py
    python benchmarks/inference.py --rounds 1 --repeats 2 --height 512 --width 768
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def read_status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def process_cpu_seconds() -> float:
    """User + system CPU time of this process, all threads: less sensitive than wall time to other load."""
    times = os.times()
    return times.user + times.system


def child(args) -> None:
    import torch

    from transformers_maskdino import MaskDinoConfig, MaskDinoForUniversalSegmentation

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MaskDinoForUniversalSegmentation(MaskDinoConfig()).eval()
    pixel_values = torch.randn(1, 3, args.height, args.width, generator=torch.Generator().manual_seed(1))
    rss_model = read_status_bytes("VmRSS")
    times, cpu_times = [], []
    with torch.inference_mode():
        start = time.perf_counter()
        outputs = model(pixel_values)
        warm_up = time.perf_counter() - start
        for _ in range(args.repeats):
            start, start_cpu = time.perf_counter(), process_cpu_seconds()
            model(pixel_values)
            times.append(time.perf_counter() - start)
            cpu_times.append(process_cpu_seconds() - start_cpu)
    torch.save(
        {name: getattr(outputs, name) for name in ("class_queries_logits", "masks_queries_logits", "pred_boxes")},
        args.output,
    )
    print(
        json.dumps(
            {
                "times": times,
                "cpu_times": cpu_times,
                "warm_up": warm_up,
                "rss_after_model_init": rss_model,
                "peak_rss": read_status_bytes("VmHWM"),
            }
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1216)
    parser.add_argument("--child", choices=["require", "off"], help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import torch

    from transformers_maskdino import msda_kernels

    msda_kernels.load_kernel("cpu")  # build outside the timed processes
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    results = {"require": [], "off": []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(args.rounds):
            for mode in ("require", "off"):
                output = os.path.join(tmp, f"{mode}.pt")
                command = [sys.executable, __file__, "--child", mode, "--output", output]
                command += ["--repeats", str(args.repeats), "--threads", str(args.threads)]
                command += ["--height", str(args.height), "--width", str(args.width)]
                env = dict(os.environ, MASKDINO_KERNELS=mode)
                completed = subprocess.run(command, env=env, capture_output=True, text=True)
                if completed.returncode != 0:
                    raise RuntimeError(completed.stderr)
                result = json.loads(completed.stdout.strip().splitlines()[-1])
                results[mode].append(result)
                print(f"# round {round_index} kernels {mode}: {json.dumps(result)}", flush=True)
        on, off = torch.load(os.path.join(tmp, "require.pt")), torch.load(os.path.join(tmp, "off.pt"))
        differences = {name: (on[name] - off[name]).abs().max().item() for name in on}
        scales = {name: off[name].abs().max().item() for name in off}

    print(f"\n# torch {torch.__version__}, {args.threads} threads, input 1x3x{args.height}x{args.width}")
    print(f"# load average before/after: {load_before} / {Path('/proc/loadavg').read_text().split()[:3]}")
    print("| kernels | median latency | latencies (s) | median CPU time (all threads) | peak RSS | RSS after model init |")
    print("|---|---|---|---|---|---|")
    for mode, label in (("require", "on (C++)"), ("off", "off (PyTorch)")):
        times = [t for result in results[mode] for t in result["times"]]
        cpu_times = [t for result in results[mode] for t in result["cpu_times"]]
        peak = max(result["peak_rss"] for result in results[mode])
        init = max(result["rss_after_model_init"] for result in results[mode])
        print(
            f"| {label} | **{statistics.median(times):.2f} s** | {', '.join(f'{t:.2f}' for t in times)} | "
            f"{statistics.median(cpu_times):.2f} s | {peak / 2**30:.2f} GB | {init / 2**30:.2f} GB |"
        )
    print("\nmax |on - off| (max |off|): " + ", ".join(f"{k} {differences[k]:.1e} ({scales[k]:.1e})" for k in differences))


if __name__ == "__main__":
    main()
