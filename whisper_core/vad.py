"""Silero VAD (v6, ONNX) on onnxruntime: where the speech is in 16 kHz audio.

The spans are exactly those of faster-whisper 1.2.1's ``faster_whisper.vad.get_speech_timestamps``:
the same model file (the one its wheel ships), the same framing of the audio, the same batching
of frames per run, and the same walk over the frame probabilities. Matching it sample for sample
lets the VAD-batched transcription be checked against faster-whisper's. Only onnxruntime is used
at run time; faster-whisper is installed for its ONNX file and never imported (it would load
CTranslate2). onnxruntime itself is imported only when the model is loaded.
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

VAD_SAMPLE_RATE = 16000
FRAME_SAMPLES = 512  # Silero's 32 ms frame at 16 kHz
CONTEXT_SAMPLES = 64  # the previous frame's tail the model sees before each frame
FRAMES_PER_RUN = 10000  # faster-whisper's batch: the LSTM state carries over between runs
STATE_SHAPE = (1, 1, 128)
MODEL_FILE = "silero_vad_v6.onnx"
MODEL_DISTRIBUTION = "faster-whisper"
INSTALL_HINT = "install `whisper-multibackend[vad]` (onnxruntime, and faster-whisper for the ONNX file it ships)"
NEG_THRESHOLD_MARGIN = 0.15  # the default neg_threshold sits this far below threshold ...
NEG_THRESHOLD_FLOOR = 0.01  # ... but never below this
CUT_SILENCE_MS = 98  # a silence this long inside an over-long span is a place to cut it


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _require_probability(name: str, value: Any) -> None:
    """Probabilities of exactly 0 or 1 would mark every frame (or no frame) as speech."""
    if not _is_number(value) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}")


def _require_at_least_zero(name: str, value: Any) -> None:
    if not _is_number(value) or not (0 <= value < math.inf):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class VadOptions:
    """faster-whisper's VAD options, with its names and defaults.

    A frame is speech when its probability is at least ``threshold``; an open span ends only at frames
    below ``neg_threshold`` (default: ``threshold - 0.15``, at least 0.01), which keeps spans from
    flickering. A span closes after ``min_silence_duration_ms`` of such silence, is dropped when not
    longer than ``min_speech_duration_ms``, is cut (at a silence of 98 ms or more when there is one)
    once longer than ``max_speech_duration_s``, and is finally widened by ``speech_pad_ms`` each side.
    """

    threshold: float = 0.5
    neg_threshold: float | None = None
    min_speech_duration_ms: int = 0
    max_speech_duration_s: float = math.inf
    min_silence_duration_ms: int = 2000
    speech_pad_ms: int = 400

    def __post_init__(self) -> None:
        _require_probability("threshold", self.threshold)
        if self.neg_threshold is not None:
            _require_probability("neg_threshold", self.neg_threshold)
        _require_at_least_zero("min_speech_duration_ms", self.min_speech_duration_ms)
        _require_at_least_zero("min_silence_duration_ms", self.min_silence_duration_ms)
        _require_at_least_zero("speech_pad_ms", self.speech_pad_ms)
        if not _is_number(self.max_speech_duration_s) or not self.max_speech_duration_s > 0:
            raise ValueError(
                f"max_speech_duration_s must be > 0 (math.inf for no limit), got {self.max_speech_duration_s!r}"
            )

    @property
    def effective_neg_threshold(self) -> float:
        """The threshold below which a frame ends speech (faster-whisper derives it when it is None)."""
        if self.neg_threshold is not None:
            return self.neg_threshold
        return max(self.threshold - NEG_THRESHOLD_MARGIN, NEG_THRESHOLD_FLOOR)


DEFAULT_VAD_OPTIONS = VadOptions()


@dataclass(frozen=True)
class SpeechSpan:
    """A stretch of speech in the audio, in samples: ``audio[start:end]``."""

    start: int
    end: int


def silero_model_path() -> Path:
    """The ``silero_vad_v6.onnx`` inside the installed faster-whisper wheel.

    Found from the wheel's metadata (its RECORD), not by importing ``faster_whisper``, which would
    import CTranslate2 and more. Raises ``FileNotFoundError`` when the wheel or the file is missing.
    """
    try:
        distribution = importlib.metadata.distribution(MODEL_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as error:
        raise FileNotFoundError(f"the Silero VAD model needs the {MODEL_DISTRIBUTION} wheel: {INSTALL_HINT}") from error
    recorded = [entry for entry in distribution.files or () if entry.name == MODEL_FILE]
    candidates = [Path(distribution.locate_file(entry)) for entry in recorded]
    candidates.append(Path(distribution.locate_file(f"faster_whisper/assets/{MODEL_FILE}")))
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{MODEL_DISTRIBUTION} {distribution.version} does not ship {MODEL_FILE} (1.2.1 or later does): {INSTALL_HINT}"
    )


def _frames_with_context(audio: np.ndarray) -> np.ndarray:
    """``[frames, 64 + 512]`` model inputs: each 512-sample frame after the previous frame's last 64 samples.

    As in faster-whisper: the audio is zero-padded by 1 to 512 samples (a whole frame of zeros when it
    already fits), the first frame's context is zeros, and the last frame's own final 64 samples are
    zeroed too (faster-whisper writes that context reset through a view of the audio; keeping the side
    effect keeps the probabilities identical).
    """
    padding = FRAME_SAMPLES - len(audio) % FRAME_SAMPLES
    frames = np.pad(audio, (0, padding)).reshape(-1, FRAME_SAMPLES)
    frames[-1, -CONTEXT_SAMPLES:] = 0.0
    context = np.zeros((len(frames), CONTEXT_SAMPLES), np.float32)
    context[1:] = frames[:-1, -CONTEXT_SAMPLES:]
    return np.concatenate([context, frames], axis=1)


class SileroVad:
    """The Silero VAD ONNX model in an onnxruntime session (CPU, one thread, as faster-whisper runs it)."""

    def __init__(self, model_path: str | Path | None = None) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError(f"Silero VAD runs on onnxruntime: {INSTALL_HINT}") from error
        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.enable_cpu_mem_arena = False
        options.log_severity_level = 4  # fatal only: the model's initializer warnings are noise
        path = Path(model_path) if model_path is not None else silero_model_path()
        self.model_path = path
        self._session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def speech_probabilities(self, audio: np.ndarray) -> np.ndarray:
        """One float32 speech probability per 512-sample frame of 16 kHz mono float32 ``audio``.

        There are ``len(audio) // 512 + 1`` frames (see ``_frames_with_context`` for the padding). Frames
        go through the model 10000 at a time with the LSTM state carried over, as in faster-whisper,
        so long audio gives the same numbers.
        """
        inputs = _frames_with_context(_checked_audio(audio))
        hidden = np.zeros(STATE_SHAPE, np.float32)
        cell = np.zeros(STATE_SHAPE, np.float32)
        probabilities = []
        for first in range(0, len(inputs), FRAMES_PER_RUN):
            batch = inputs[first : first + FRAMES_PER_RUN]
            output, hidden, cell = self._session.run(None, {"input": batch, "h": hidden, "c": cell})
            probabilities.append(output)
        return np.concatenate(probabilities).reshape(-1)


@functools.lru_cache(maxsize=1)
def load_silero_vad() -> SileroVad:
    """The model from the installed faster-whisper wheel, loaded once per process."""
    return SileroVad(silero_model_path())


def _checked_audio(audio: np.ndarray) -> np.ndarray:
    """The audio as a 1-D float32 array; NaN or infinity would silently poison the LSTM state."""
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"audio must be 1-D mono samples, got shape {samples.shape}")
    if not np.isfinite(samples).all():
        raise ValueError("audio holds NaN or infinite samples; the VAD needs finite float samples in [-1, 1]")
    return samples


@dataclass(frozen=True)
class _Limits:
    """The options in samples (floats, as faster-whisper computes them, so comparisons agree)."""

    min_speech: float
    max_speech: float
    min_silence: float
    cut_silence: float
    pad: float

    @classmethod
    def from_options(cls, options: VadOptions, sampling_rate: int) -> _Limits:
        pad = sampling_rate * options.speech_pad_ms / 1000
        return cls(
            min_speech=sampling_rate * options.min_speech_duration_ms / 1000,
            # room for the frame in hand and both pads
            max_speech=sampling_rate * options.max_speech_duration_s - FRAME_SAMPLES - 2 * pad,
            min_silence=sampling_rate * options.min_silence_duration_ms / 1000,
            cut_silence=sampling_rate * CUT_SILENCE_MS / 1000,
            pad=pad,
        )


@dataclass
class _SpanWalker:
    """Silero's walk over frame probabilities, as faster-whisper writes it, giving unpadded spans.

    Positions are frame starts in samples. As in the original, 0 stands for "none" in the three
    remembered positions; that is safe because a silence inside a span never starts at frame 0.
    """

    threshold: float
    neg_threshold: float
    limits: _Limits
    spans: list[tuple[int, int]] = field(default_factory=list)
    start: int | None = None  # the open span's start; None while outside speech
    silence_start: int = 0  # where the current run of silence inside the open span began
    cut_at: int = 0  # the start of the last silence long enough to cut an over-long span at
    resume_at: int = 0  # where speech came back after that silence

    def step(self, position: int, probability: np.floating) -> None:
        """One frame. ``probability`` stays a numpy scalar so it compares with the thresholds as in faster-whisper."""
        is_speech = probability >= self.threshold
        if is_speech and self.silence_start:
            self.silence_start = 0
            if self.resume_at < self.cut_at:
                self.resume_at = position
        if is_speech and self.start is None:
            self.start = position
            return
        if self.start is not None and position - self.start > self.limits.max_speech and self._split(position):
            return
        if probability < self.neg_threshold and self.start is not None:
            self._extend_silence(position)

    def finish(self, audio_length: int) -> list[tuple[int, int]]:
        """Close a span still open at the end of the audio, when long enough."""
        if self.start is not None and audio_length - self.start > self.limits.min_speech:
            self.spans.append((self.start, audio_length))
            self.start = None
        return self.spans

    def _split(self, position: int) -> bool:
        """Close an over-long span: at the last usable silence, reopening where speech resumed after it
        (if it did), or else right here. True when this frame is used up."""
        if self.cut_at:
            self.spans.append((self._open_start(), self.cut_at))
            self.start = None if self.resume_at < self.cut_at else self.resume_at
            self._forget_silence()
            return False
        self.spans.append((self._open_start(), position))
        self.start = None
        self._forget_silence()
        return True

    def _extend_silence(self, position: int) -> None:
        """A quiet frame inside a span: remember where the silence began; close the span once it is long enough."""
        if not self.silence_start:
            self.silence_start = position
        silent_for = position - self.silence_start
        if silent_for > self.limits.cut_silence:
            self.cut_at = self.silence_start
        if silent_for < self.limits.min_silence:
            return
        if self.silence_start - self._open_start() > self.limits.min_speech:
            self.spans.append((self._open_start(), self.silence_start))
        self.start = None
        self._forget_silence()

    def _open_start(self) -> int:
        assert self.start is not None, "no span is open"
        return self.start

    def _forget_silence(self) -> None:
        self.silence_start = self.cut_at = self.resume_at = 0


def _pad_spans(spans: list[tuple[int, int]], pad: float, audio_length: int) -> list[SpeechSpan]:
    """Widen each span by ``pad`` samples each side; spans closer than two pads split the gap between them.

    Every gap is measured between the unpadded spans, as in faster-whisper.
    """
    if not spans:
        return []
    starts = [start for start, _ in spans]
    ends = [end for _, end in spans]
    starts[0] = int(max(0, spans[0][0] - pad))
    for index in range(len(spans) - 1):
        end, next_start = spans[index][1], spans[index + 1][0]
        gap = next_start - end
        if gap < 2 * pad:
            ends[index] = end + int(gap // 2)
            starts[index + 1] = int(max(0, next_start - gap // 2))
        else:
            ends[index] = int(min(audio_length, end + pad))
            starts[index + 1] = int(max(0, next_start - pad))
    ends[-1] = int(min(audio_length, spans[-1][1] + pad))
    return [SpeechSpan(start, end) for start, end in zip(starts, ends, strict=True)]


def get_speech_timestamps(
    audio: np.ndarray, options: VadOptions = DEFAULT_VAD_OPTIONS, sampling_rate: int = VAD_SAMPLE_RATE
) -> list[SpeechSpan]:
    """The speech spans (in samples) of 16 kHz mono float32 ``audio``, as faster-whisper's VAD finds them.

    Empty audio has none. Raises ``ValueError`` for audio that is not 1-D or holds NaN or infinity, and
    for another sampling rate (the model and its 512-sample frames are for 16 kHz only; resample first,
    e.g. with ``whisper_core.load_audio``).
    """
    if sampling_rate != VAD_SAMPLE_RATE:
        raise ValueError(f"Silero VAD runs at {VAD_SAMPLE_RATE} Hz, got sampling_rate={sampling_rate}; resample first")
    samples = _checked_audio(audio)
    if samples.size == 0:
        return []
    probabilities = load_silero_vad().speech_probabilities(samples)
    limits = _Limits.from_options(options, sampling_rate)
    walker = _SpanWalker(options.threshold, options.effective_neg_threshold, limits)
    for index, probability in enumerate(probabilities):  # numpy scalars, as faster-whisper iterates them
        walker.step(index * FRAME_SAMPLES, probability)
    return _pad_spans(walker.finish(len(samples)), limits.pad, len(samples))
