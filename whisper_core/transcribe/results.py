"""What a transcription gives: a file's transcript and its timestamped segments (openai-whisper's
result dict, as attributes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .word_timing import WordTiming


@dataclass
class TranscriptSegment:
    """One timestamped piece of a transcript (openai-whisper's segment dict, as attributes)."""

    id: int
    seek: int  # mel frame where the window that produced it starts
    start: float
    end: float
    text: str
    tokens: list[int]  # text and timestamp ids
    text_tokens: list[int]  # ``tokens`` without the timestamps
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[WordTiming] = field(default_factory=list)
    token_timestamps: list[float] | None = None  # start of each text token, with return_token_timestamps


@dataclass
class Transcription:
    """The transcript of one file."""

    text: str
    segments: list[TranscriptSegment]
    language: str | None
