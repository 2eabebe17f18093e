"""What a fine-tuning run is asked to do, and the learning-rate schedule every backend follows.

The schedule is transformers' "linear" one without its zero-rate first step, as
:func:`whisper_flax.training.make_schedule` computes it inside JAX: a linear rise to ``learning_rate``
over ``warmup`` updates (the first update already moves), then a linear fall to 0 at ``total_steps``.
PyTorch and TensorFlow set their optimizer's rate from :func:`learning_rate` before each update, so
the three backends take the same steps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

TRAIN_DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class FinetuneOptions:
    """``whisper-mb finetune``'s options (the same names, without the dashes)."""

    epochs: int = 1
    max_steps: int | None = None  # wins over epochs when given
    batch_size: int = 8  # rows per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer update
    lr: float = 1e-5
    warmup: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    freeze_encoder: bool = False
    spec_augment: bool = False
    dtype: str = "float32"
    eval_every: int | None = None  # updates between evaluations (and one at the end when eval data is given)
    save_every: int | None = None  # updates between checkpoints
    seed: int = 0
    language: str | None = None
    task: str | None = None

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "grad_accum": self.grad_accum}
        positive.update({k: v for k, v in (("max_steps", self.max_steps), ("eval_every", self.eval_every),
                                           ("save_every", self.save_every)) if v is not None})  # fmt: skip
        bad = [f"{name}={value}" for name, value in positive.items() if value <= 0]
        if bad or self.lr <= 0 or self.warmup < 0 or self.weight_decay < 0:
            raise ValueError(f"fine-tuning options out of range: {', '.join(bad) or 'lr, warmup or weight_decay'}")
        if self.dtype not in TRAIN_DTYPES:
            raise ValueError(f"dtype must be one of {TRAIN_DTYPES}, got {self.dtype!r}")

    @property
    def rows_per_update(self) -> int:
        return self.batch_size * self.grad_accum

    def total_steps(self, rows: int) -> int:
        """Updates in the run: ``max_steps``, or enough for ``epochs`` passes over ``rows``."""
        if self.max_steps is not None:
            return self.max_steps
        return self.epochs * -(-rows // self.rows_per_update)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def learning_rate(step: int, base: float, total_steps: int, warmup: int) -> float:
    """The rate of update ``step`` (0-based): see the module docstring."""
    if not 0 <= warmup < total_steps:
        raise ValueError(f"need 0 <= warmup ({warmup}) < total_steps ({total_steps})")
    rising = (step + 1) / max(warmup, 1)
    falling = (total_steps - step) / (total_steps - warmup)
    return base * min(max(min(rising, falling), 0.0), 1.0)
