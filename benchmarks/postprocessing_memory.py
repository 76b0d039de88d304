"""Peak memory that post-processing adds over the forward's peak, at 800x1216 with 100 instances.

The R50 model (`MaskDinoConfig(num_queries=100)`: ResNet-50, 80 classes, 100 queries) with random weights, on one
random 3x800x1216 input, 2 threads. Each case runs in its own fresh process: one forward under `no_grad`, then the
peak RSS (VmHWM) is read, then the post-processing runs and the peak is read again; the growth is what
post-processing needs beyond the forward's peak. Instance keeps its `top_k=100` pairs (threshold none), panoptic
every query (threshold 0), semantic returns the class map only. `--implementation FILE` measures another version of
`post_processing_maskdino.py` (e.g. an older one from git) in place of the installed one.

    python benchmarks/postprocessing_memory.py
    python benchmarks/postprocessing_memory.py --implementation /tmp/old_post_processing.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CASES = ("instance", "panoptic", "semantic")


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not in /proc/self/status")


def child(case: str, implementation: str | None, height: int, width: int) -> dict:
    import torch

    torch.set_num_threads(2)
    from transformers_maskdino import MaskDinoConfig, MaskDinoForUniversalSegmentation, MaskDinoImageProcessor

    processor_class = MaskDinoImageProcessor
    if implementation:
        import importlib.util

        spec = importlib.util.spec_from_file_location("other_post_processing", implementation)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        processor_class = type("Processor", (module.MaskDinoPostProcessingMixin, MaskDinoImageProcessor), {})
    processor = processor_class(detections_per_image=100)
    torch.manual_seed(0)
    model = MaskDinoForUniversalSegmentation(MaskDinoConfig(num_queries=100)).eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, height, width))
    forward_peak = peak_rss_bytes()
    start = time.perf_counter()
    if case == "instance":
        result = processor.post_process_instance_segmentation(outputs)[0]
        count = len(result["segments_info"])
    elif case == "panoptic":
        result = processor.post_process_panoptic_segmentation(outputs, threshold=0.0)[0]
        count = int(outputs.class_queries_logits.shape[1])
    else:
        result = processor.post_process_semantic_segmentation(outputs)[0]
        count = int(outputs.class_queries_logits.shape[1])
    seconds = time.perf_counter() - start
    return {
        "case": case,
        "queries_or_instances": count,
        "forward_peak_gb": forward_peak / 1e9,
        "extra_peak_gb": (peak_rss_bytes() - forward_peak) / 1e9,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--implementation", default=None)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1216)
    parser.add_argument("--child", choices=CASES, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.implementation, args.height, args.width)))
        return
    print(f"load average before: {os.getloadavg()}")
    print("| case | queries / instances | forward peak RSS | post-processing extra peak | post-processing time |")
    print("|---|---|---|---|---|")
    for case in CASES:
        command = [sys.executable, __file__, "--child", case, "--height", str(args.height), "--width", str(args.width)]
        if args.implementation:
            command += ["--implementation", args.implementation]
        completed = subprocess.run(command, capture_output=True, text=True, check=True)
        row = json.loads(completed.stdout.strip().splitlines()[-1])
        print(
            f"| {row['case']} | {row['queries_or_instances']} | {row['forward_peak_gb']:.2f} GB | "
            f"{row['extra_peak_gb']:.3f} GB | {row['seconds']:.1f} s |"
        )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
