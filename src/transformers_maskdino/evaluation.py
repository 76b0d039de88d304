# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Deprecated location: moved to `transformers_maskdino.training.evaluation`; this alias goes in the next release."""

import warnings

from .training.evaluation import *  # noqa: F403
from .training.evaluation import __all__  # noqa: F401

warnings.warn(
    "`transformers_maskdino.evaluation` moved to `transformers_maskdino.training.evaluation`; the old name will be removed in the"
    " next release.",
    FutureWarning,
    stacklevel=2,
)
