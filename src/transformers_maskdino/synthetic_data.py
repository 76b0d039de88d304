# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Deprecated location: moved to `transformers_maskdino.training.synthetic_data`; this alias goes in the next release."""

import warnings

from .training.synthetic_data import *  # noqa: F403
from .training.synthetic_data import __all__  # noqa: F401

warnings.warn(
    "`transformers_maskdino.synthetic_data` moved to `transformers_maskdino.training.synthetic_data`; the old name will be removed in the"
    " next release.",
    FutureWarning,
    stacklevel=2,
)

if __name__ == "__main__":
    from .training.synthetic_data import main

    raise SystemExit(main())
