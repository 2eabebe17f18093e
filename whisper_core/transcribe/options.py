"""What a transcription is asked: openai-whisper's ``transcribe`` options and faster-whisper's VAD filter."""

from __future__ import annotations

from dataclasses import dataclass

from ..vad import VadOptions
from .fallback import DEFAULT_TEMPERATURES, FallbackOptions
from .word_timing import APPEND_PUNCTUATIONS, PREPEND_PUNCTUATIONS


@dataclass(frozen=True)
class TranscribeOptions:
    """openai-whisper's ``transcribe`` options (``condition_on_prev_tokens`` is its ``condition_on_previous_text``)."""

    language: str | None = None
    task: str | None = None
    temperature: tuple[float, ...] = DEFAULT_TEMPERATURES
    compression_ratio_threshold: float | None = 2.4
    logprob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    best_of: int = 1
    condition_on_prev_tokens: bool = True
    initial_prompt: str | None = None
    word_timestamps: bool = False
    return_token_timestamps: bool = False
    prepend_punctuations: str = PREPEND_PUNCTUATIONS
    append_punctuations: str = APPEND_PUNCTUATIONS
    clip_timestamps: tuple[float, ...] = ()  # start, end, start, end, ... in seconds; the last end defaults to the end
    hallucination_silence_threshold: float | None = None  # seconds; needs word_timestamps
    seed: int = 0
    vad_filter: bool = False  # faster-whisper's: decode only the speech Silero VAD finds
    vad_options: VadOptions | None = None  # faster-whisper's ``vad_parameters`` (None: VadOptions())
    loop_check: bool = True  # ours: a window caught in a repetition loop is decoded again (fallback.py)

    def fallback(self) -> FallbackOptions:
        return FallbackOptions(
            self.temperature,
            self.compression_ratio_threshold,
            self.logprob_threshold,
            self.no_speech_threshold,
            self.best_of,
            self.loop_check,
        )
