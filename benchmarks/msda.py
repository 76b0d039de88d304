"""Multi-scale deformable attention on CPU: PyTorch (grid_sample) path vs the compiled C++ kernel.

Times forward and forward+backward at the Mask DINO encoder size (4 levels 100x152 ... 13x19 = 20,197 tokens,
8 heads x 32, 4 points, batch 1, one query per token) and decoder size (300 + 100 queries), with the two
implementations interleaved in one process (order alternating every repetition), and reports medians and the median
of the per-repetition ratios. Peak extra memory of one call is measured in a fresh child process per cell: the
process's peak RSS (VmHWM, reset through /proc/self/clear_refs after a small warm-up call) minus its RSS before the
call. So it counts every buffer the call allocates, its output and gradients included; the workspace columns
subtract the returned tensors (output, and in forward+backward the three gradients), which any implementation
must allocate. Linux only for the memory columns.

    python benchmarks/msda.py                 # both sizes, 2 threads
    python benchmarks/msda.py --case decoder --repeats 9
    python benchmarks/msda.py --dtypes        # C++ kernel with float32 vs bfloat16 / float16 values, interleaved

With `--dtypes`, the value tensor is cast to each dtype while locations and weights stay float32 (what the kernel
sees under autocast); the grid_sample path under bf16 autocast (what bf16 autocast ran before the kernel took
bfloat16) is timed beside it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch


REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from msda_reference import make_inputs, max_relative_error, pytorch_path  # noqa: E402

from transformers_maskdino import msda_kernels  # noqa: E402


ENCODER_LEVELS = [(100, 152), (50, 76), (25, 38), (13, 19)]
NUM_TOKENS = sum(h * w for h, w in ENCODER_LEVELS)
CASES = {"decoder": 300 + 100, "encoder": NUM_TOKENS}
IMPLEMENTATIONS = ("pytorch", "cpp")
MODES = ("forward", "forward+backward")


def build_inputs(case: str, requires_grad: bool):
    return make_inputs(
        ENCODER_LEVELS,
        batch_size=1,
        num_heads=8,
        head_dim=32,
        num_queries=CASES[case],
        num_points=4,
        location_range=(-0.05, 1.05),
        requires_grad=requires_grad,
    )


def run(implementation: str, inputs):
    if implementation == "pytorch":
        return pytorch_path(
            inputs["value"],
            inputs["value_spatial_shapes"],
            inputs["value_spatial_shapes_list"],
            inputs["level_start_index"],
            inputs["sampling_locations"],
            inputs["attention_weights"],
        )
    if not msda_kernels.use_compiled_kernel(inputs["value"]):
        raise RuntimeError("the C++ kernel is not available")
    return msda_kernels.multi_scale_deformable_attention(
        inputs["value"],
        inputs["value_spatial_shapes"],
        inputs["level_start_index"],
        inputs["sampling_locations"],
        inputs["attention_weights"],
    )


def one_call(implementation: str, mode: str, inputs, grad_output):
    if mode == "forward":
        with torch.no_grad():
            return run(implementation, inputs)
    leaves = [inputs[name] for name in ("value", "sampling_locations", "attention_weights")]
    for leaf in leaves:
        leaf.grad = None
    output = run(implementation, inputs)
    output.backward(grad_output)
    return output.detach(), *(leaf.grad for leaf in leaves)


def read_status(field: str) -> int:
    """A field of /proc/self/status in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_probe(implementation: str, case: str, mode: str) -> dict:
    """Peak RSS growth during one call, and the bytes of the tensors it returns (run in a fresh child process).

    The warm-up call uses 16 queries: it starts the thread pool and loads libraries without leaving freed
    full-size buffers in the heap for the measured call to reuse."""
    warm_up = make_inputs(
        ENCODER_LEVELS,
        batch_size=1,
        num_heads=8,
        head_dim=32,
        num_queries=16,
        num_points=4,
        requires_grad=mode != "forward",
    )
    one_call(implementation, mode, warm_up, torch.randn(1, 16, 256))
    inputs = build_inputs(case, requires_grad=mode != "forward")
    grad_output = torch.randn(1, CASES[case], 256)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets VmHWM to the current RSS
    before = read_status("VmRSS")
    result = one_call(implementation, mode, inputs, grad_output)
    peak = read_status("VmHWM")
    returned = result if isinstance(result, tuple) else (result,)
    return {"extra_bytes": peak - before, "returned_bytes": sum(t.numel() * t.element_size() for t in returned)}


def measure_memory(implementation: str, case: str, mode: str) -> dict | None:
    if not Path("/proc/self/clear_refs").exists():
        return None
    command = [sys.executable, __file__, "--probe", implementation, case, mode]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def time_interleaved(case: str, mode: str, repeats: int):
    inputs = build_inputs(case, requires_grad=mode != "forward")
    grad_output = torch.randn(1, CASES[case], 256)
    results = {name: one_call(name, mode, inputs, grad_output) for name in IMPLEMENTATIONS}  # warm-up
    results = {name: value if isinstance(value, tuple) else (value,) for name, value in results.items()}
    errors = [max_relative_error(a, e) for a, e in zip(results["cpp"], results["pytorch"])]
    times = {name: [] for name in IMPLEMENTATIONS}
    for repeat in range(repeats):
        order = IMPLEMENTATIONS if repeat % 2 == 0 else IMPLEMENTATIONS[::-1]
        for name in order:
            gc.collect()
            start = time.perf_counter()
            one_call(name, mode, inputs, grad_output)
            times[name].append(time.perf_counter() - start)
    ratios = [p / c for p, c in zip(times["pytorch"], times["cpp"])]
    return {
        "pytorch_ms": 1e3 * statistics.median(times["pytorch"]),
        "cpp_ms": 1e3 * statistics.median(times["cpp"]),
        "ratio": statistics.median(ratios),
        "ratio_range": (min(ratios), max(ratios)),
        "max_relative_error": max(errors),
    }


DTYPE_SETTINGS = {
    "cpp float32": ("cpp", torch.float32),
    "cpp bfloat16": ("cpp", torch.bfloat16),
    "cpp float16": ("cpp", torch.float16),
    "pytorch, bf16 autocast": ("pytorch", torch.bfloat16),
}


def call_with_dtype(implementation: str, mode: str, inputs, grad_output, dtype):
    if implementation == "pytorch" and dtype != torch.float32:
        with torch.autocast("cpu", dtype=dtype):
            return one_call(implementation, mode, inputs, grad_output)
    return one_call(implementation, mode, inputs, grad_output)


def time_dtypes(case: str, mode: str, repeats: int):
    """The C++ kernel with float32, bfloat16 and float16 values (locations and weights float32) and the grid_sample
    path under bf16 autocast, interleaved (order rotating every repetition). Ratios are float32-kernel time / setting
    time."""
    base = build_inputs(case, requires_grad=False)
    grad_output = torch.randn(1, CASES[case], 256)
    per_setting = {}
    for setting, (implementation, dtype) in DTYPE_SETTINGS.items():
        inputs = dict(base)
        inputs["value"] = base["value"].to(dtype).requires_grad_(mode != "forward")
        for name in ("sampling_locations", "attention_weights"):
            inputs[name] = base[name].clone().requires_grad_(mode != "forward")
        if implementation == "pytorch":
            # Under bf16 autocast the grid_sample path gets float32 locations and runs grid_sample in float32
            # (autocast's float32 list). Calling it on bfloat16 tensors directly segfaults in torch 2.13 at this size.
            inputs["value"] = base["value"].clone().requires_grad_(mode != "forward")
        per_setting[setting] = (implementation, inputs, grad_output.to(dtype))
    reference = one_call("cpp", "forward", per_setting["cpp float32"][1], grad_output)
    dtype_of = {setting: dtype for setting, (_, dtype) in DTYPE_SETTINGS.items()}
    errors = {}
    for setting, (implementation, inputs, grad) in per_setting.items():  # warm-up, and the output's error
        output = call_with_dtype(implementation, mode, inputs, grad, dtype_of[setting])
        output = output[0] if isinstance(output, tuple) else output
        errors[setting] = max_relative_error(output.float(), reference)
    names = list(DTYPE_SETTINGS)
    times = {name: [] for name in names}
    for repeat in range(repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in order:
            implementation, inputs, grad = per_setting[name]
            gc.collect()
            start = time.perf_counter()
            call_with_dtype(implementation, mode, inputs, grad, dtype_of[name])
            times[name].append(time.perf_counter() - start)
    return {
        name: {
            "ms": 1e3 * statistics.median(times[name]),
            "speed_vs_cpp_float32": statistics.median([f / t for f, t in zip(times["cpp float32"], times[name])]),
            "max_relative_error_vs_cpp_float32": errors[name],
        }
        for name in names
    }


def main_dtypes(args):
    cases = list(CASES) if args.case == "all" else [args.case]
    print(f"# load average before: {open('/proc/loadavg').read().strip()}")
    rows = []
    for case in cases:
        for mode in MODES:
            repeats = args.repeats or (5 if case == "encoder" else 15)
            result = time_dtypes(case, mode, repeats)
            rows.append((case, mode, repeats, result))
            print(f"# {case} {mode}: {json.dumps(result)}", flush=True)
    print(f"# load average after: {open('/proc/loadavg').read().strip()}")
    print()
    print("| case | pass | " + " | ".join(DTYPE_SETTINGS) + " |")
    print("|---|---|" + "---|" * len(DTYPE_SETTINGS))
    for case, mode, repeats, result in rows:
        cells = [
            f"{result[name]['ms']:.1f} ms (**{result[name]['speed_vs_cpp_float32']:.2f}x**, err "
            f"{result[name]['max_relative_error_vs_cpp_float32']:.1e})"
            for name in DTYPE_SETTINGS
        ]
        print(f"| {case} (Q={CASES[case]}), n={repeats} | {mode} | " + " | ".join(cells) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=[*CASES, "all"], default="all")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions per implementation")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    parser.add_argument("--dtypes", action="store_true", help="C++ kernel: float32 vs bfloat16/float16 values")
    parser.add_argument("--probe", nargs=3, metavar=("IMPL", "CASE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault(msda_kernels.KERNELS_ENV_VAR, "require")

    if args.probe:
        print(json.dumps(memory_probe(*args.probe)))
        return

    start = time.time()
    msda_kernels.load_kernel("cpu")
    print(f"# torch {torch.__version__}, {args.threads} threads, C++ kernel loaded in {time.time() - start:.1f} s")
    if args.dtypes:
        main_dtypes(args)
        return
    cases = list(CASES) if args.case == "all" else [args.case]
    rows = []
    for case in cases:
        for mode in MODES:
            repeats = args.repeats or (7 if case == "encoder" else 21)
            timing = time_interleaved(case, mode, repeats)
            memory = {}
            if not args.no_memory:
                memory = {name: measure_memory(name, case, mode) for name in IMPLEMENTATIONS}
            rows.append((case, mode, repeats, timing, memory))
            print(f"# {case} {mode}: {json.dumps(timing)} memory={memory}", flush=True)

    def mb(probe, workspace=False):
        if probe is None:
            return "n/a"
        value = probe["extra_bytes"] - (probe["returned_bytes"] if workspace else 0)
        if workspace and value < 2**20 // 10:
            return "~0 MB"  # small returned tensors can land in already-mapped heap pages, growing RSS by less
        return f"{value / 2**20:.0f} MB" if abs(value) >= 2**20 else f"{value / 2**20:.1f} MB"

    print()
    print(
        "| case | pass | PyTorch | C++ | speed-up (median, range) | PyTorch extra peak | C++ extra peak "
        "| returned tensors | PyTorch workspace | C++ workspace | max rel. error |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for case, mode, repeats, timing, memory in rows:
        low, high = timing["ratio_range"]
        returned = "n/a" if memory.get("cpp") is None else f"{memory['cpp']['returned_bytes'] / 2**20:.1f} MB"
        print(
            f"| {case} (Q={CASES[case]}) | {mode} | {timing['pytorch_ms']:.1f} ms | {timing['cpp_ms']:.1f} ms | "
            f"**{timing['ratio']:.2f}x** ({low:.2f}-{high:.2f}, n={repeats}) | {mb(memory.get('pytorch'))} | "
            f"{mb(memory.get('cpp'))} | {returned} | {mb(memory.get('pytorch'), workspace=True)} | "
            f"{mb(memory.get('cpp'), workspace=True)} | {timing['max_relative_error']:.1e} |"
        )


if __name__ == "__main__":
    main()
