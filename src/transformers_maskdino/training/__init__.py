# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Fine-tuning and evaluation helpers, kept apart from the model code (which is what transformers itself would ship):

- `transformers_maskdino.training.data`: dataset rows to model inputs, collation, the original's optimizer settings,
  ImageNet backbone weights;
- `transformers_maskdino.training.formats`: readers for COCO instance / panoptic / detection files and semantic label
  folders, and the examples' data-source arguments;
- `transformers_maskdino.training.evaluation`: PQ, COCO AP and mIoU;
- `transformers_maskdino.training.synthetic_data`: the synthetic shapes dataset the tests and the demo model use.
"""

# the helpers of `data` are also importable from here, as they were when `training` was one module
from .data import *  # noqa: F403
from .data import __all__  # noqa: F401
