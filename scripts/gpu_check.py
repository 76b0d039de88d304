# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
The Python steps of scripts/gpu_check.sh (see there for the whole check):

    python scripts/gpu_check.py build     --device cuda --out DIR    # step 2: the timed JIT build
    python scripts/gpu_check.py kernels   --device cuda --out DIR    # step 4: kernel vs PyTorch path, compile, Hub
    python scripts/gpu_check.py benchmark --device cuda --out DIR    # step 5: full-size R50 instance model
    python scripts/gpu_check.py report    --device cuda --out DIR    # step 6: gpu_report.md and gpu_report.json

Each step writes its results as JSON into DIR (`build.json`, `kernels.json`, `benchmark.json`); `report` joins them
with the step statuses that gpu_check.sh recorded (`steps.jsonl`). `--dry-run` shrinks the sizes so that the whole
script runs in minutes on a CPU (the C++ kernel stands in for the CUDA one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # msda_reference: the kernel tests' inputs and pure-PyTorch reference

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# max relative error of the kernel against the PyTorch path, per dtype (fp32: the atomics' summation order only)
KERNEL_TOLERANCES = {"fp32": 1e-5, "bf16": 2e-2, "fp16": 3e-3}
PAPER_FPS_R50_A100 = 14.2


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def write_json(out: Path, name: str, content) -> None:
    (out / name).write_text(json.dumps(content, indent=2) + "\n")


# ----------------------------------------------------------------------------------------------------------- build


def build(args) -> None:
    from transformers_maskdino import msda_kernels

    start = time.perf_counter()
    path = msda_kernels.load_kernel(args.device)
    seconds = time.perf_counter() - start
    result = {"device": args.device, "seconds": round(seconds, 1), "library": str(path)}
    print(json.dumps(result))
    write_json(args.out, "build.json", result)


# ----------------------------------------------------------------------------------------------------------- kernels


def kernel_checks(args) -> None:
    """The compiled kernel against the PyTorch path at the model's decoder and encoder sizes, forward and backward,
    in every dtype; then the kernel inside `torch.compile`; then the Hub kernel if it can be loaded offline."""
    from msda_reference import make_inputs, max_relative_error, pytorch_path

    from transformers_maskdino import msda_kernels

    os.environ[msda_kernels.KERNELS_ENV_VAR] = "require"
    msda_kernels.load_kernel(args.device)
    scale = 4 if args.dry_run else 1
    levels = [(100 // scale, 152 // scale), (50 // scale, 76 // scale), (25 // scale, 38 // scale), (13 // scale, 19 // scale)]
    cases = {"decoder": 400, "encoder": sum(h * w for h, w in levels)}
    checks = []

    def run(function, inputs, grad_output):
        leaves = [inputs[name] for name in ("value", "sampling_locations", "attention_weights")]
        output = function(inputs)
        return (output.detach(), *torch.autograd.grad(output, leaves, grad_output))

    def kernel(inputs):
        if not msda_kernels.use_compiled_kernel(inputs["value"]):  # raises under MASKDINO_KERNELS=require
            raise RuntimeError("the compiled kernel does not run for these inputs")
        return msda_kernels.multi_scale_deformable_attention(
            inputs["value"], inputs["value_spatial_shapes"], inputs["level_start_index"],
            inputs["sampling_locations"], inputs["attention_weights"],
        )

    def reference(inputs):
        return pytorch_path(
            inputs["value"].float(), inputs["value_spatial_shapes"], inputs["value_spatial_shapes_list"],
            inputs["level_start_index"], inputs["sampling_locations"].float(), inputs["attention_weights"].float(),
        )

    for case, num_queries in cases.items():
        for dtype_name, dtype in DTYPES.items():
            check = {"check": f"{case} forward+backward", "dtype": dtype_name, "queries": num_queries}
            try:
                inputs = make_inputs(
                    levels, batch_size=1 if case == "encoder" else 2, num_heads=8, head_dim=32,
                    num_queries=num_queries, num_points=4, device=args.device,
                )
                inputs["value"] = inputs["value"].to(dtype)
                for name in ("value", "sampling_locations", "attention_weights"):
                    inputs[name].requires_grad_()
                grad_output = torch.randn(
                    inputs["value"].shape[0], num_queries, 256, device=args.device, dtype=dtype
                )
                expected = run(reference, inputs, grad_output.float())
                actual = run(kernel, inputs, grad_output)
                errors = {
                    name: max_relative_error(a.float(), e.float())
                    for name, a, e in zip(("output", "grad_value", "grad_locations", "grad_weights"), actual, expected)
                }
                check.update(errors={k: float(f"{v:.3g}") for k, v in errors.items()})
                check["passed"] = all(error <= KERNEL_TOLERANCES[dtype_name] for error in errors.values())
            except Exception as error:  # recorded in the report, the other checks go on
                check.update(passed=False, error=f"{type(error).__name__}: {error}")
            checks.append(check)
            print(json.dumps(check), flush=True)

    checks.append(compiled_kernel_check(args, kernel, reference, make_inputs, max_relative_error, levels))
    print(json.dumps(checks[-1]), flush=True)
    checks.append(hub_kernel_check(args, make_inputs, max_relative_error, reference, levels))
    print(json.dumps(checks[-1]), flush=True)
    write_json(args.out, "kernels.json", checks)
    if not all(check["passed"] in (True, None) for check in checks):
        raise SystemExit("some kernel checks failed")


def compiled_kernel_check(args, kernel, reference, make_inputs, max_relative_error, levels) -> dict:
    check = {"check": "torch.compile(kernel) forward+backward", "dtype": "fp32"}
    try:
        inputs = make_inputs(
            levels, batch_size=2, num_heads=8, head_dim=32, num_queries=300, num_points=4, device=args.device,
            requires_grad=True,
        )
        compiled = torch.compile(kernel, fullgraph=True)
        output = compiled(inputs)
        grads = torch.autograd.grad(output.sum(), [inputs["value"], inputs["sampling_locations"]])
        expected = reference(inputs)
        expected_grads = torch.autograd.grad(expected.sum(), [inputs["value"], inputs["sampling_locations"]])
        errors = [max_relative_error(output.detach(), expected.detach())]
        errors += [max_relative_error(a, e) for a, e in zip(grads, expected_grads)]
        check.update(errors=[float(f"{e:.3g}") for e in errors], passed=max(errors) <= KERNEL_TOLERANCES["fp32"])
    except Exception as error:
        check.update(passed=False, error=f"{type(error).__name__}: {error}")
    return check


def hub_kernel_check(args, make_inputs, max_relative_error, reference, levels) -> dict:
    """kernels-community/deformable-detr through the `kernels` package, when it and a cached copy are there (no
    network on the GPU machine: it is usually skipped)."""
    check = {"check": "Hub kernel (kernels-community/deformable-detr)", "dtype": "fp32"}
    if args.device != "cuda":
        return {**check, "passed": None, "skipped": "CUDA only"}
    try:
        from kernels import get_kernel
    except ImportError:
        return {**check, "passed": None, "skipped": "the `kernels` package is not installed"}
    try:
        hub = get_kernel("kernels-community/deformable-detr")
        inputs = make_inputs(levels, batch_size=2, num_heads=8, head_dim=32, num_queries=300, num_points=4, device="cuda")
        output = hub.ms_deform_attn_forward(
            inputs["value"], inputs["value_spatial_shapes"], inputs["level_start_index"],
            inputs["sampling_locations"], inputs["attention_weights"], 64,
        )
        error = max_relative_error(output, reference(inputs))
        return {**check, "errors": [float(f"{error:.3g}")], "passed": error <= KERNEL_TOLERANCES["fp32"]}
    except Exception as error:  # offline without a cached kernel, most likely
        return {**check, "passed": None, "skipped": f"{type(error).__name__}: {error}"}


# ----------------------------------------------------------------------------------------------------------- benchmark


def benchmark(args) -> None:
    """Full-size R50 instance model (`MaskDinoConfig()`, random weights) at 1x3x800x1216 and 8x3x800x1216: latency,
    images per second and peak memory per dtype, with the compiled kernel and with the grid_sample path. The model
    alone, without pre- or post-processing."""
    from transformers_maskdino import MaskDinoConfig, MaskDinoForUniversalSegmentation, msda_kernels

    if args.dry_run:  # the same code on a CPU in seconds: a shallower model on small images
        config = MaskDinoConfig(encoder_layers=1, decoder_layers=2, num_queries=50)
        (height, width), batch_sizes, repeats, dtype_names = (128, 160), (1, 2), 1, ("fp32", "bf16")
    else:
        config = MaskDinoConfig()
        (height, width), batch_sizes, repeats, dtype_names = (800, 1216), (1, 8), 5, tuple(DTYPES)
    torch.manual_seed(0)
    model = MaskDinoForUniversalSegmentation(config).eval().to(args.device)
    rows = []
    for dtype_name in dtype_names:
        model.to(DTYPES[dtype_name])
        for kernels in ("require", "off"):
            os.environ[msda_kernels.KERNELS_ENV_VAR] = kernels
            for batch_size in batch_sizes:
                pixel_values = torch.randn(batch_size, 3, height, width, device=args.device, dtype=DTYPES[dtype_name])
                row = {"dtype": dtype_name, "kernels": kernels, "batch_size": batch_size, "size": f"{height}x{width}"}
                try:
                    row.update(time_forward(model, pixel_values, args.device, repeats))
                except Exception as error:
                    row.update(error=f"{type(error).__name__}: {error}")
                rows.append(row)
                print(json.dumps(row), flush=True)
                write_json(args.out, "benchmark.json", rows)  # after every row: a timeout keeps what was measured


def time_forward(model, pixel_values, device: str, repeats: int) -> dict:
    with torch.inference_mode():
        model(pixel_values)  # warm-up: kernel loading, cuDNN autotuning, allocator
        synchronize(device)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            outputs = model(pixel_values)
            synchronize(device)
            times.append(time.perf_counter() - start)
    finite = all(torch.isfinite(outputs[name]).all().item() for name in ("class_queries_logits", "pred_boxes"))
    latency = statistics.median(times)
    result = {
        "median_latency_s": round(latency, 4),
        "latencies_s": [round(t, 4) for t in times],
        "images_per_s": round(pixel_values.shape[0] / latency, 2),
        "outputs_finite": finite,
    }
    if device == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


# ----------------------------------------------------------------------------------------------------------- report


def environment(device: str) -> dict:
    try:
        import transformers

        transformers_version = transformers.__version__
    except ImportError:  # the install step failed; the report still says so
        transformers_version = "not installed"
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "transformers": transformers_version,
        "device": device,
        "load_average": Path("/proc/loadavg").read_text().split()[:3],
    }
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
    return info


def read_json(out: Path, name: str, default):
    path = out / name
    return json.loads(path.read_text()) if path.is_file() else default


def report(args) -> None:
    steps = [json.loads(line) for line in (args.out / "steps.jsonl").read_text().splitlines() if line.strip()]
    content = {
        "dry_run": args.dry_run,
        "environment": environment(args.device),
        "steps": steps,
        "build": read_json(args.out, "build.json", None),
        "kernel_checks": read_json(args.out, "kernels.json", []),
        "benchmark": read_json(args.out, "benchmark.json", []),
    }
    write_json(args.out, "gpu_report.json", content)
    (args.out / "gpu_report.md").write_text(markdown_report(content))
    print((args.out / "gpu_report.md").read_text())
    failed = [step["name"] for step in steps if step["status"] != "passed"]
    if failed:
        raise SystemExit(f"gpu_check: failed steps: {', '.join(failed)}")


def markdown_report(content: dict) -> str:
    env = content["environment"]
    lines = [
        "# GPU check" + (" (dry run on CPU)" if content["dry_run"] else ""),
        "",
        f"{env.get('gpu', env['device'])}, torch {env['torch']} (CUDA {env['torch_cuda']}), transformers "
        f"{env['transformers']}, Python {env['python']}, load average {' '.join(env['load_average'])}",
        "",
        "## Steps",
        "",
        "| step | status | seconds | log |",
        "|---|---|---|---|",
    ]
    lines += [f"| {s['name']} | {s['status']} | {s['seconds']} | {s['log']} |" for s in content["steps"]]
    if content["build"]:
        lines += ["", f"Kernel build: {content['build']['seconds']} s ({content['build']['library']})."]
    lines += ["", "## Kernel against the PyTorch path (max relative error)", "", "| check | dtype | result | errors |"]
    lines += ["|---|---|---|---|"]
    for check in content["kernel_checks"]:
        result = {True: "passed", False: "FAILED", None: "skipped"}[check["passed"]]
        detail = check.get("errors") or check.get("error") or check.get("skipped", "")
        lines.append(f"| {check['check']} | {check['dtype']} | {result} | {detail} |")
    title = "R50 instance model, shallower (dry run)" if content["dry_run"] else "Full-size R50 instance model"
    lines += ["", f"## {title}", ""]
    lines += ["| dtype | kernels | batch | input | median latency | images/s | peak memory | finite |"]
    lines += ["|---|---|---|---|---|---|---|---|"]
    for row in content["benchmark"]:
        if "error" in row:
            lines.append(f"| {row['dtype']} | {row['kernels']} | {row['batch_size']} | {row['size']} | {row['error']} | | | |")
            continue
        memory = f"{row['peak_memory_gib']} GiB" if "peak_memory_gib" in row else "n/a"
        lines.append(
            f"| {row['dtype']} | {row['kernels']} | {row['batch_size']} | {row['size']} | {row['median_latency_s'] * 1000:.1f} ms"
            f" | {row['images_per_s']} | {memory} | {row['outputs_finite']} |"
        )
    lines += ["", f"For scale: the paper reports {PAPER_FPS_R50_A100} FPS for R50 on an A100.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["build", "kernels", "benchmark", "report"])
    parser.add_argument("--device", choices=["cuda", "cpu"], required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dry-run", action="store_true", help="small sizes, so that it runs on a CPU in minutes")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch sees no GPU (use --dry-run --device cpu on a machine without one)")
    args.out.mkdir(parents=True, exist_ok=True)
    {"build": build, "kernels": kernel_checks, "benchmark": benchmark, "report": report}[args.step](args)


if __name__ == "__main__":
    main()
