"""The Flax tests run JAX on the CPU (float32 matmuls at full precision, as the tolerances assume)."""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
