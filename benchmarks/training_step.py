"""One training step of the full-size model on CPU (issue 12): forward + loss + backward + AdamW step, batch 2 at
512x512, denoising on, in training mode.

The R50 instance model at its released size (`MaskDinoConfig()`: 300 queries, 100 denoising queries, 12,544 sampled
points per mask) with random weights, on two random images with 6 and 9 random box-shaped instances each. One
warm-up step, then `--repeats` timed steps; the step is also split into forward (with the loss), backward and the
optimizer. `--profile` adds a torch.profiler table of the step's operators, and the matcher's and criterion's share.

    python benchmarks/training_step.py
    python benchmarks/training_step.py --repeats 2 --profile
"""

from __future__ import annotations

import statistics
import time

import torch
from common import base_parser, full_size_model, load_average, start_run


def random_targets(batch_size: int, size: int, num_labels: int, generator: torch.Generator):
    mask_labels, class_labels = [], []
    for count in (6, 9)[:batch_size]:
        masks = torch.zeros(count, size, size)
        for mask in masks:
            y0, x0 = torch.randint(0, size // 2, (2,), generator=generator).tolist()
            h, w = torch.randint(size // 8, size // 2, (2,), generator=generator).tolist()
            mask[y0 : y0 + h, x0 : x0 + w] = 1
        mask_labels.append(masks)
        class_labels.append(torch.randint(0, num_labels, (count,), generator=generator))
    return mask_labels, class_labels


def main():
    parser = base_parser(__doc__)
    parser.set_defaults(height=512, width=512, repeats=3)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    start_run(args.threads)
    torch.set_num_threads(args.threads)

    model = full_size_model().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(args.batch_size, 3, args.height, args.width, generator=generator)
    mask_labels, class_labels = random_targets(args.batch_size, args.height, model.config.num_labels, generator)

    def step(parts=None):
        start = time.perf_counter()
        outputs = model(pixel_values=pixel_values, mask_labels=mask_labels, class_labels=class_labels)
        forwarded = time.perf_counter()
        outputs.loss.backward()
        backwarded = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        end = time.perf_counter()
        if parts is not None:
            parts.append((forwarded - start, backwarded - forwarded, end - backwarded))
        return outputs.loss.item()

    step()
    parts = []
    for _ in range(args.repeats):
        step(parts)
    totals = [sum(p) for p in parts]
    print(
        f"\n## training step, batch {args.batch_size} at {args.height}x{args.width}, {args.threads} threads, "
        f"{model.config.num_denoising} denoising queries"
    )
    print("| step (median) | steps (s) | forward + loss | backward | optimizer |")
    print("|---|---|---|---|---|")
    medians = [statistics.median(p[i] for p in parts) for i in range(3)]
    print(
        f"| **{statistics.median(totals):.2f} s** | {', '.join(f'{t:.2f}' for t in totals)} | "
        f"{medians[0]:.2f} s | {medians[1]:.2f} s | {medians[2]:.2f} s |"
    )
    if args.profile:
        from torch.profiler import ProfilerActivity, profile, record_function

        criterion_forward, matcher_forward = model.criterion.forward, model.criterion.matcher.forward

        def timed(name, function):
            def wrapper(*a, **k):
                with record_function(name):
                    return function(*a, **k)

            return wrapper

        model.criterion.forward = timed("## criterion", criterion_forward)
        model.criterion.matcher.forward = timed("## matcher", matcher_forward)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        averages = prof.key_averages()
        print(averages.table(sort_by="self_cpu_time_total", row_limit=25))
        for event in averages:
            if event.key.startswith("## "):
                print(f"# {event.key[3:]}: {event.cpu_time_total / 1e6:.2f} s over {event.count} calls")
    print(f"\n# load average after: {load_average()}")


if __name__ == "__main__":
    main()
