"""Full-size Mask DINO inference on CPU, against the machine's own limits (issue 12).

The R50 instance-segmentation model at its released size (`MaskDinoConfig()` defaults: ResNet-50, 300 queries,
9 decoder layers, 6 encoder layers, 80 classes) with random weights, on one random 800x1216 RGB image (smaller
`--height`/`--width` are resized up to a shorter side of 800). Settings:

- `fp32`: float32 with the compiled deformable-attention kernel (`MASKDINO_KERNELS=require`);
- `fp32-pytorch`: float32 with the pure-PyTorch path (`MASKDINO_KERNELS=off`);
- `bf16`: the model in bfloat16 (`.to(torch.bfloat16)`, what `from_pretrained(..., dtype=torch.bfloat16)` gives),
  kernel on;
- `fp32-malloc`, `bf16-malloc`: `fp32` and `bf16` with glibc's malloc told to keep freed memory for reuse
  (`GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...`, the recipe in docs/deployment.md):
  by default every tensor over 32 MB is a fresh `mmap` whose pages are faulted in again on each forward.

Each setting runs in its own fresh process, interleaved for `--rounds` rounds. A process first measures the machine's
float32 and bfloat16 matmul throughput (GFLOP/s, 2048x2048 products, the best of MKL's and oneDNN's, with the same
thread count), then does one warm-up and `--repeats` timed forwards, then `--repeats` timed whole calls (image
processor + forward + instance post-processing at the image size). The forward's FLOPs are counted once
(`torch.utils.flop_counter`, which counts matrix products and convolutions, not deformable sampling or element-wise
work). Reported per setting: median forward latency, the fraction of the limit it reaches (FLOPs / that process's
matmul throughput in the setting's dtype / latency), the whole call, peak RSS (VmHWM), minor page faults per
forward and the load average; `--profile`: one forward's torch.profiler shares and stage times.

    python benchmarks/inference.py
    python benchmarks/inference.py --rounds 1 --repeats 2 --settings fp32 bf16 --profile
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time

from common import base_parser, full_size_model, load_average, run_json_child, start_run

# setting -> (MASKDINO_KERNELS, dtype, extra environment)
MALLOC_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"
SETTINGS = {
    "fp32": ("require", "fp32", {}),
    "fp32-pytorch": ("off", "fp32", {}),
    "bf16": ("require", "bf16", {}),
    "fp32-malloc": ("require", "fp32", {"GLIBC_TUNABLES": MALLOC_TUNABLES}),
    "bf16-malloc": ("require", "bf16", {"GLIBC_TUNABLES": MALLOC_TUNABLES}),
}


def read_status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def matmul_gflops(dtype, size: int = 2048, repeats: int = 10) -> float:
    """The best of `torch.matmul` (MKL) and oneDNN's matmul, which the model's linears and convolutions use: on AMD
    CPUs MKL's float32 path reaches only 60-70% of oneDNN's, which would understate the limit."""
    import torch

    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    products = [lambda: a @ b]
    onednn = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None
    if onednn is not None:
        products.append(lambda: onednn(a, b, None, "none", [], ""))
    best = 0.0
    with torch.inference_mode():
        for product in products:
            for _ in range(3):
                product()
            for _ in range(repeats):
                start = time.perf_counter()
                product()
                best = max(best, 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return best


# operator -> profile group (the rest: every other operator's self time)
PROFILE_GROUPS = {
    "mkldnn::_linear_pointwise": "linears",
    "aten::addmm": "linears",
    "aten::mm": "linears",
    "aten::bmm": "linears",
    "mkldnn::_convolution_pointwise": "convolutions",
    "mkldnn::_convolution_pointwise_": "convolutions",
    "aten::mkldnn_convolution": "convolutions",
    "maskdino_msda::ms_deform_attn_forward": "deformable attention",
    "aten::grid_sampler_2d": "deformable attention",
}


def profile_forward(model, pixel_values) -> dict:
    """Self CPU seconds of one forward by group; the rest's five largest operators; seconds per stage."""
    from torch.profiler import ProfilerActivity, profile

    starts, stages, hooks = {}, {}, []
    for name in ("backbone", "pixel_decoder", "decoder"):
        module = getattr(model.model, name)
        hooks.append(module.register_forward_pre_hook(lambda *_, n=name: starts.__setitem__(n, time.perf_counter())))
        hooks.append(
            module.register_forward_hook(lambda *_, n=name: stages.__setitem__(n, time.perf_counter() - starts[n]))
        )
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        model(pixel_values=pixel_values)
        stages["the rest (query selection, heads)"] = time.perf_counter() - start - sum(stages.values())
    for hook in hooks:
        hook.remove()
    groups, rest = dict.fromkeys(["linears", "convolutions", "deformable attention", "rest"], 0.0), {}
    for event in prof.key_averages():
        seconds = event.self_cpu_time_total / 1e6
        group = PROFILE_GROUPS.get(event.key, "rest")
        groups[group] += seconds
        if group == "rest":
            rest[event.key] = seconds
    return {"groups": groups, "rest_top": sorted(rest.items(), key=lambda item: -item[1])[:5], "stages": stages}


def test_image(height: int, width: int):
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8))


def flops_child(args) -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from transformers_maskdino import MaskDinoImageProcessorPil

    torch.set_num_threads(args.threads)
    model = full_size_model()
    pixel_values = MaskDinoImageProcessorPil()(images=test_image(args.height, args.width), return_tensors="pt")
    counter = FlopCounterMode(display=False)
    # with gradients enabled, so that every linear layer is an aten matrix product the counter sees (CPU inference
    # fuses them into oneDNN calls it does not count)
    with counter:
        model(pixel_values=pixel_values["pixel_values"])
    print(json.dumps({"flops": counter.get_total_flops()}))


def latency_child(args) -> None:
    import torch

    from transformers_maskdino import MaskDinoImageProcessorPil

    torch.set_num_threads(args.threads)
    throughput = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    dtype = torch.bfloat16 if SETTINGS[args.child][1] == "bf16" else torch.float32
    model = full_size_model().to(dtype)
    processor = MaskDinoImageProcessorPil()
    image = test_image(args.height, args.width)
    pixel_values = processor(images=image, return_tensors="pt")["pixel_values"].to(dtype)
    with torch.inference_mode():
        model(pixel_values=pixel_values)
        forward_times, call_times = [], []
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(args.repeats):
            start = time.perf_counter()
            model(pixel_values=pixel_values)
            forward_times.append(time.perf_counter() - start)
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / args.repeats
        call_parts = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            inputs = processor(images=image, return_tensors="pt")
            processed = time.perf_counter()
            outputs = model(pixel_values=inputs["pixel_values"].to(dtype), pixel_mask=inputs["pixel_mask"])
            forwarded = time.perf_counter()
            processor.post_process_instance_segmentation(outputs, target_sizes=[(image.height, image.width)])
            end = time.perf_counter()
            call_times.append(end - start)
            call_parts.append([processed - start, forwarded - processed, end - forwarded])
        profiled = profile_forward(model, pixel_values) if args.profile else None
    print(
        json.dumps(
            {
                "matmul_gflops": throughput,
                "forward": forward_times,
                "whole_call": call_times,
                "whole_call_parts": call_parts,
                "peak_rss": read_status_bytes("VmHWM"),
                "forward_minor_faults": faults,
                "profile": profiled,
                "input": list(pixel_values.shape),
            }
        )
    )


def run_child(mode: str, args) -> dict:
    arguments = ["--threads", str(args.threads), "--repeats", str(args.repeats)]
    arguments += ["--height", str(args.height), "--width", str(args.width)] + ["--profile"] * args.profile
    kernels, _, environment = SETTINGS.get(mode, ("auto", None, {}))
    return run_json_child(__file__, mode, arguments, dict(os.environ, MASKDINO_KERNELS=kernels, **environment))


def main():
    parser = base_parser(__doc__)
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--profile", action="store_true", help="torch.profiler shares of one forward per setting")
    parser.add_argument("--child", choices=[*SETTINGS, "flops"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "flops":
        return flops_child(args)
    if args.child:
        return latency_child(args)

    start_run(args.threads)
    flops = run_child("flops", args)["flops"]
    print(f"# forward FLOPs (matrix products and convolutions): {flops / 1e9:.1f} G", flush=True)
    results = {setting: [] for setting in args.settings}
    for round_index in range(args.rounds):
        for setting in args.settings:
            result = run_child(setting, args)
            results[setting].append(result)
            print(f"# round {round_index} {setting}: {json.dumps(result)}", flush=True)

    shape = "x".join(map(str, results[args.settings[0]][0]["input"]))
    print(
        f"\n## image {args.height}x{args.width}, input {shape}, {args.threads} threads, {flops / 1e9:.0f} GFLOP per forward"
    )
    print(
        "| setting | median forward | forwards (s) | matmul GFLOP/s in that dtype (median) | fraction of the limit | "
        "whole call (median) | of which processor / forward / post-processing (medians) | peak RSS | "
        "minor faults per forward |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for setting in args.settings:
        forwards = [t for result in results[setting] for t in result["forward"]]
        calls = [t for result in results[setting] for t in result["whole_call"]]
        dtype_key = SETTINGS[setting][1]
        throughput = statistics.median(result["matmul_gflops"][dtype_key] for result in results[setting])
        forward = statistics.median(forwards)
        fraction = flops / (throughput * 1e9) / forward
        peak = max(result["peak_rss"] for result in results[setting])
        parts = [part for result in results[setting] for part in result["whole_call_parts"]]
        part_medians = " / ".join(f"{statistics.median(part[i] for part in parts):.2f}" for i in range(3))
        print(
            f"| {setting} | **{forward:.2f} s** | {', '.join(f'{t:.2f}' for t in forwards)} | {throughput:.0f} | "
            f"**{fraction:.0%}** | {statistics.median(calls):.2f} s | {part_medians} s | {peak / 2**30:.2f} GB | "
            f"{statistics.median(result['forward_minor_faults'] for result in results[setting]):,.0f} |"
        )
    for setting in args.settings if args.profile else []:
        for result in results[setting]:
            groups, total = result["profile"]["groups"], sum(result["profile"]["groups"].values())
            shares = ", ".join(f"{name} {seconds / total:.0%}" for name, seconds in groups.items())
            top = ", ".join(f"{name} {seconds * 1e3:.0f} ms" for name, seconds in result["profile"]["rest_top"])
            stages = ", ".join(f"{name} {seconds:.2f}" for name, seconds in result["profile"]["stages"].items())
            print(f"# profile {setting} ({total:.2f} s): {shares}; largest of the rest: {top}; stages (s): {stages}")
    print(f"\n# load average after: {load_average()}")


if __name__ == "__main__":
    main()
