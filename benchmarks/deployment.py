"""Deployment latencies on CPU: float32 vs bfloat16 vs ONNX Runtime on the full-size model, and eager vs
`torch.compile(dynamic=True)` on the demo model.

Full size: the R50 instance model at its released size (`MaskDinoConfig()` defaults), random weights (seed 0), one
random 1x3x800x1216 image. The ONNX graph is exported once (traced at 512x512, so the timed runs also check that the
graph takes another size), then every setting runs in its own fresh process, interleaved for `--rounds` rounds, one
warm-up and `--repeats` timed forwards each. Reported: median latency, the range, and the ratio to float32 of each
round (the machine is shared: compare ratios, not seconds).

Compile: in one process, the demo model eager and compiled (inductor, `dynamic=True`) alternately at each size of
`--compile-sizes`: the first compiled call (compilation included), then medians of `--repeats` calls each, and the
number of graphs compiled.

    python benchmarks/deployment.py
    python benchmarks/deployment.py --threads 1 --rounds 2 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

from common import base_parser, full_size_model, load_average, run_json_child, start_run

SETTINGS = ("float32", "bfloat16", "onnxruntime")
OUTPUT_NAMES = ("class_queries_logits", "masks_queries_logits", "pred_boxes")


def export_child(args) -> None:
    from transformers_maskdino.export_onnx import export_onnx

    start = time.perf_counter()
    export_onnx(full_size_model(), args.onnx, sample_size=(512, 512))
    print(json.dumps({"export_seconds": time.perf_counter() - start}))


def latency_child(args) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    pixel_values = torch.randn(1, 3, args.height, args.width, generator=torch.Generator().manual_seed(1))
    if args.child == "onnxruntime":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = onnxruntime.InferenceSession(args.onnx, options, providers=["CPUExecutionProvider"])
        feed = {"pixel_values": pixel_values.numpy()}

        def run():
            return [torch.from_numpy(np.asarray(value)) for value in session.run(None, feed)]

    else:
        model = full_size_model()
        if args.child == "bfloat16":
            model = model.to(torch.bfloat16)
            pixel_values = pixel_values.to(torch.bfloat16)

        def run():
            with torch.inference_mode():
                outputs = model(pixel_values=pixel_values)
            return [outputs[name] for name in OUTPUT_NAMES]

    start = time.perf_counter()
    outputs = run()
    warm_up = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    torch.save(dict(zip(OUTPUT_NAMES, [value.float() for value in outputs])), args.output)
    print(json.dumps({"times": times, "warm_up": warm_up}))


def compile_child(args) -> None:
    import torch
    from torch._dynamo.utils import counters

    from transformers_maskdino import MaskDinoForUniversalSegmentation
    from transformers_maskdino.cli import DEMO_DIR

    torch.set_num_threads(args.threads)
    model = MaskDinoForUniversalSegmentation.from_pretrained(DEMO_DIR).eval()
    compiled = torch.compile(model, dynamic=True)
    rows = []
    with torch.inference_mode():
        for size in args.compile_sizes:
            height, width = map(int, size.split("x"))
            pixel_values = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(1))
            start = time.perf_counter()
            compiled(pixel_values=pixel_values)
            first = time.perf_counter() - start
            eager_times, compiled_times = [], []
            for _ in range(args.repeats):
                for function, times in ((model, eager_times), (compiled, compiled_times)):
                    start = time.perf_counter()
                    function(pixel_values=pixel_values)
                    times.append(time.perf_counter() - start)
            rows.append(
                {
                    "size": size,
                    "first_compiled_call": first,
                    "eager": statistics.median(eager_times),
                    "compiled": statistics.median(compiled_times),
                    "graphs_so_far": counters["stats"]["unique_graphs"],
                }
            )
    print(json.dumps(rows))


def run_child(mode: str, args, **extra) -> dict:
    arguments = ["--threads", str(args.threads), "--repeats", str(args.repeats)]
    arguments += ["--height", str(args.height), "--width", str(args.width), "--compile-sizes", *args.compile_sizes]
    for name, value in extra.items():
        arguments += [f"--{name}", str(value)]
    env = dict(os.environ)
    if mode == "compile":
        # a cold compile: inductor's cache (by default /tmp/torchinductor_$USER) would otherwise shorten it
        env.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="maskdino-inductor-"))
    return run_json_child(__file__, mode, arguments, env)


def main():
    parser = base_parser(__doc__)
    parser.add_argument("--compile-sizes", nargs="+", default=["160x160", "160x224", "480x640", "512x512"])
    parser.add_argument("--skip-full-size", action="store_true")
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--child", choices=[*SETTINGS, "export", "compile"], help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--onnx", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "export":
        return export_child(args)
    if args.child == "compile":
        return compile_child(args)
    if args.child:
        return latency_child(args)

    import torch

    start_run(args.threads)
    if not args.skip_full_size:
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = os.path.join(tmp, "r50.onnx")
            exported = run_child("export", args, onnx=onnx_path)
            print(f"# ONNX export of the full-size model: {exported['export_seconds']:.0f} s", flush=True)
            results = {setting: [] for setting in SETTINGS}
            for round_index in range(args.rounds):
                for setting in SETTINGS:
                    output = os.path.join(tmp, f"{setting}.pt")
                    result = run_child(setting, args, output=output, onnx=onnx_path)
                    results[setting].append(result)
                    print(f"# round {round_index} {setting}: {json.dumps(result)}", flush=True)
            outputs = {setting: torch.load(os.path.join(tmp, f"{setting}.pt")) for setting in SETTINGS}
        print(f"\n## Full size, 1x3x{args.height}x{args.width}, {args.threads} threads")
        print("| setting | median latency | latencies (s) | per-round ratio to float32 |")
        print("|---|---|---|---|")
        for setting in SETTINGS:
            times = [t for result in results[setting] for t in result["times"]]
            ratios = [
                statistics.median(mine["times"]) / statistics.median(base["times"])
                for mine, base in zip(results[setting], results["float32"])
            ]
            print(
                f"| {setting} | **{statistics.median(times):.2f} s** | {', '.join(f'{t:.2f}' for t in times)} | "
                f"{', '.join(f'{r:.2f}' for r in ratios)} |"
            )
        reference = outputs["float32"]
        print(
            "\nmax |onnxruntime - float32| (max |float32|): "
            + ", ".join(
                f"{name} {(outputs['onnxruntime'][name] - reference[name]).abs().max():.1e} "
                f"({reference[name].abs().max():.1e})"
                for name in OUTPUT_NAMES
            )
        )
    if not args.skip_compile:
        rows = run_child("compile", args)
        print(f"\n## Demo model, eager vs torch.compile(dynamic=True), {args.threads} threads")
        print("| size | first compiled call | eager | compiled | compiled / eager | graphs compiled so far |")
        print("|---|---|---|---|---|---|")
        for row in rows:
            print(
                f"| {row['size']} | {row['first_compiled_call']:.1f} s | {row['eager'] * 1000:.0f} ms | "
                f"{row['compiled'] * 1000:.0f} ms | {row['compiled'] / row['eager']:.2f} | {row['graphs_so_far']} |"
            )
    print(f"\n# load average after: {load_average()}")


if __name__ == "__main__":
    main()
