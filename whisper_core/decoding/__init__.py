"""Decoding written once for every backend: logit rules, prompt/prefix building, language detection, the
beam bookkeeping, and the ``generate``/``detect_language`` front end each backend's loops sit behind."""

from . import beam
from .frontend import GenerationFrontEnd
from .ops import ArrayOps, NumpyOps, first_argmax, invert_distribution, keep_top_k, sampling_draws
from .plan import (
    ROOM_STEP,
    GenerationPlan,
    LoopSpec,
    WhisperGenerateOutput,
    left_pad,
    plan_generation,
    prompts_per_row,
    row_copies,
)
from .prefix import PrefixIds, decoder_prefix, languages_per_row, prompt_tokens
from .rules import LogitRules
from .segments import Segment, split_segments
from .shared_prefix import shared_prefix_pass, sharing_prefix_passes

__all__ = [
    "ROOM_STEP",
    "ArrayOps",
    "GenerationFrontEnd",
    "GenerationPlan",
    "LogitRules",
    "LoopSpec",
    "NumpyOps",
    "PrefixIds",
    "Segment",
    "WhisperGenerateOutput",
    "beam",
    "decoder_prefix",
    "first_argmax",
    "invert_distribution",
    "keep_top_k",
    "languages_per_row",
    "left_pad",
    "plan_generation",
    "prompt_tokens",
    "prompts_per_row",
    "row_copies",
    "sampling_draws",
    "shared_prefix_pass",
    "sharing_prefix_passes",
    "split_segments",
]
