# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Run by `tests/test_examples.py` under `torchrun --nproc_per_node 2`: trains with `examples/finetune_accelerate.py`
for a few steps, then compares the replicas. The main process writes a JSON report to the path given first; the
other arguments go to the example.
"""

import json
import os
import sys
from pathlib import Path

import torch
from accelerate.utils import set_seed
from training_fixtures import import_example

from transformers_maskdino.training.synthetic_data import LABELS, STUFF_LABEL_IDS
from transformers_maskdino.training import build_model_and_image_processor


def main():
    report_path, example_arguments = Path(sys.argv[1]), sys.argv[2:]
    example = import_example("finetune_accelerate")
    args = example.build_parser().parse_args(example_arguments)
    # the example seeds, then builds the model: the same two steps give its initial weights
    set_seed(args.seed)
    initial_model, _, _ = build_model_and_image_processor(
        dict(enumerate(LABELS)), STUFF_LABEL_IDS, config_name=args.config_name
    )
    initial = torch.cat([p.detach().flatten() for p in initial_model.parameters()])
    result = example.train(example_arguments)
    accelerator = result.accelerator
    model = accelerator.unwrap_model(result.model)
    parameters = torch.cat([p.detach().flatten() for p in model.parameters()])[None]
    buffers = torch.cat([b.detach().float().flatten() for b in model.buffers()])[None]
    # every process logs the loss of its own batches
    losses = torch.tensor(result.losses, dtype=torch.float64)[None]
    gathered_parameters = accelerator.gather(parameters)
    gathered_buffers = accelerator.gather(buffers)
    gathered_losses = accelerator.gather(losses)
    if accelerator.is_main_process:
        report = {
            "num_processes": accelerator.num_processes,
            "distributed_type": str(accelerator.distributed_type),
            "backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
            "max_parameter_difference": float((gathered_parameters - gathered_parameters[0]).abs().max()),
            "max_buffer_difference": float((gathered_buffers - gathered_buffers[0]).abs().max()),
            "losses_per_process": gathered_losses.tolist(),
            "num_parameters": parameters.shape[1],
            "max_change_from_initial": float((parameters[0] - initial).abs().max()),
            "final_metrics": result.evaluations[-1],
        }
        report_path.write_text(json.dumps(report, indent=2))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return result  # holds the DDP model: freeing it here could deadlock (below)


if __name__ == "__main__":
    training = main()
    # Leave without tearing down: freeing DDP's reducer can deadlock in gloo, the main thread joining gloo's run loop
    # (GIL held) while that thread waits for the GIL to free the tensors of a finished allgather (torch 2.13.0; seen
    # at interpreter exit, and once when main()'s locals were freed). The report is already written.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
