"""Fine-tuning, the framework-neutral part: the corpus, its batches and the run's options and schedule.

The backends train natively (``whisper_pt.finetune``, ``whisper_tf.finetune``, ``whisper_flax.finetune``);
``whisper_mb.finetune`` drives any of them through one loop.
"""

from .data import (
    BatchOrder,
    Example,
    Prepared,
    SkipReport,
    example_audio,
    from_dataset,
    make_batch,
    prepare,
    read_corpus,
)
from .options import FinetuneOptions, learning_rate

__all__ = [
    "BatchOrder",
    "Example",
    "FinetuneOptions",
    "Prepared",
    "SkipReport",
    "example_audio",
    "from_dataset",
    "learning_rate",
    "make_batch",
    "prepare",
    "read_corpus",
]
