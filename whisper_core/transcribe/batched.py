"""Batched long-form transcription: a file cut into pieces up to 30 s long, decoded side by side.

The sequential mode waits for each window before it knows where the next one starts. Here the
pieces are fixed in advance, so ``batch_size`` of them (from one file or several) are decoded by one
``generate`` call, without the previous text as prompt, as faster-whisper's
``BatchedInferencePipeline`` and WhisperX do. With voice activity detection the pieces are the
speech, cut at silences and gathered into clips of at most 30 s (the silence between spans left
out); without it they are windows that overlap, each keeping the segments in its middle. Times the
model gives in a piece are mapped back to the file (:class:`~.speech_chunks.SpeechChunk`).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from ..vad import VadOptions, get_speech_timestamps
from .fallback import WindowDecoder, WindowResult, is_silent
from .guards import TAIL_SLACK, earliest_end, echoes_an_end, fit_to_audio
from .options import TranscribeOptions
from .results import Transcription, TranscriptSegment
from .speech_chunks import SpeechChunk, group_speech, map_to_file, overlapping_windows, pack_leftovers
from .windows import WindowSplit, split_window

if TYPE_CHECKING:  # the transcriber calls this module; this module only names it
    from .longform import Transcriber

SEQUENTIAL_ONLY = ("clip_timestamps", "hallucination_silence_threshold")
# faster-whisper's for its batched pipeline: cut at every pause of 160 ms, so pieces fill their 30 s
# (with the sequential 2 s, a piece holds fewer, longer spans and ends far from full)
BATCHED_VAD_OPTIONS = VadOptions(min_silence_duration_ms=160)
# In a full 30 s piece the model often closes a segment seconds before the audio ends and stops, and the
# last sentence would be lost. A piece of speech (voice activity detection cut it at a silence) is decoded
# held to its end (:func:`~.guards.earliest_end`), so the model opens another segment for it. What still
# stops this long (s) before its audio ends is decoded again from where it stopped: a file's last window
# without VAD, or speech the hold leaves (a last span after a pause, within its 2 s of slack); the
# file's leftovers are packed into as few windows as fit (a leftover is a few seconds; each window costs a
# whole encoder pass).
MIN_LEFTOVER = 1.0


def speech_chunks(audio: np.ndarray, transcriber: Transcriber, vad_options: VadOptions | None) -> list[SpeechChunk]:
    """The pieces of one file: its speech gathered into clips of at most one window, or (``vad_options`` None)
    overlapping windows over all of it; none for empty audio or audio without speech."""
    rate = transcriber.feature_extractor.sampling_rate
    window_seconds = transcriber.window_frames / transcriber.frames_per_second
    if vad_options is None:
        return overlapping_windows(len(audio), rate, window_seconds) if len(audio) else []
    longest = min(vad_options.max_speech_duration_s, window_seconds)
    spans = get_speech_timestamps(audio, replace(vad_options, max_speech_duration_s=longest), rate)
    return group_speech([(span.start, span.end) for span in spans], _window_samples(transcriber), rate)


def _window_samples(transcriber: Transcriber) -> int:
    """How many samples of audio one window of the model hears."""
    window_seconds = transcriber.window_frames / transcriber.frames_per_second
    return round(window_seconds * transcriber.feature_extractor.sampling_rate)


def transcribe_batched(
    transcriber: Transcriber,
    audios: Sequence[np.ndarray],
    options: TranscribeOptions = TranscribeOptions(),  # noqa: B008  # frozen: shared safely
    *,
    batch_size: int = 8,
    progress: bool = False,
) -> list[Transcription]:
    """Transcribe 16 kHz clips of any length in batches of ``batch_size`` pieces, which several files share.

    ``options.vad_filter`` picks the pieces (speech, or overlapping windows); ``options.vad_options`` default
    to faster-whisper's batched ones (:data:`BATCHED_VAD_OPTIONS`). Pieces are decoded on their
    own, so the options that tie a window to the time before it are refused rather than ignored, and
    previous-text conditioning does not apply; ``initial_prompt`` prompts every piece.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    given = [name for name in SEQUENTIAL_ONLY if getattr(options, name)]
    if given:
        raise ValueError(f"batched transcription decodes pieces independently: it does not take {given}")
    vad_options = (options.vad_options or BATCHED_VAD_OPTIONS) if options.vad_filter else None
    chunks = [speech_chunks(np.asarray(audio, np.float32), transcriber, vad_options) for audio in audios]
    pieces = [(index, chunk) for index, file_chunks in enumerate(chunks) for chunk in file_chunks]
    languages = _languages(transcriber, audios, chunks, options.language)
    prompt = transcriber.prompt_ids(options.initial_prompt)
    decoder = WindowDecoder(
        transcriber.backend, transcriber.tokenizer, options.fallback(), task=options.task, seed=options.seed
    )
    multilingual = transcriber.ids.is_multilingual
    segments: list[list[TranscriptSegment]] = [[] for _ in audios]
    queued = Counter(index for index, _ in pieces)  # each file's pieces not decoded yet
    leftovers: dict[int, list[SpeechChunk]] = defaultdict(list)
    repacked: set[SpeechChunk] = set()
    with tqdm(total=len(pieces), unit="pieces", disable=not progress) as bar:
        while pieces:
            batch, pieces = pieces[:batch_size], pieces[batch_size:]
            windows = transcriber.windows_of([chunk.audio(audios[index]) for index, chunk in batch])
            batch_languages = [languages[index] if multilingual else None for index, _ in batch]
            ends = [earliest_end(chunk.samples / chunk.sampling_rate) if vad_options else None for _, chunk in batch]
            results = decoder.decode(windows, [prompt] * len(batch), batch_languages, earliest_ends=ends)
            timed = options.word_timestamps or options.return_token_timestamps
            for row, ((index, chunk), window, result) in enumerate(zip(batch, windows, results, strict=True)):
                queued[index] -= 1
                if not is_silent(result, decoder.options):
                    states = decoder.row_states(row) if timed else None
                    kept, decoded_until = _chunk_segments(
                        transcriber, chunk, window, result, languages[index], options, states
                    )
                    if chunk in repacked:
                        kept = [segment for segment in kept if not echoes_an_end(segment, segments[index])]
                    segments[index].extend(kept)
                    leftover = _unheard(chunk, decoded_until) if kept and chunk.closed else None
                    if leftover is not None and leftover.samples >= MIN_LEFTOVER * leftover.sampling_rate:
                        leftovers[index].append(leftover)
                if not queued[index] and leftovers[index]:  # the file's leftovers, packed, for a later batch
                    packed = pack_leftovers(leftovers.pop(index), _window_samples(transcriber))
                    repacked.update(packed)
                    pieces.extend((index, leftover) for leftover in packed)
                    queued[index] += len(packed)
                    bar.total += len(packed)
            bar.update(len(batch))
    transcriptions = []
    for file_segments, language in zip(segments, languages, strict=True):
        file_segments.sort(key=lambda segment: segment.start)
        for number, segment in enumerate(file_segments):
            segment.id = number
        transcriptions.append(Transcription("".join(s.text for s in file_segments), file_segments, language))
    return transcriptions


def _unheard(chunk: SpeechChunk, decoded_until: float) -> SpeechChunk | None:
    """The speech of a piece after clip time ``decoded_until`` that its decoding never reached: the spans after
    it, and the rest of the span it falls in unless that is shorter than :data:`TAIL_SLACK`."""
    leftover = chunk.after(decoded_until)
    if leftover is None:
        return None
    (start, end), *later = leftover.spans
    cut_inside = all(start != span_start for span_start, _ in chunk.spans)
    if cut_inside and end - start < TAIL_SLACK * chunk.sampling_rate:
        return replace(leftover, spans=tuple(later)) if later else None
    return leftover


def _languages(
    transcriber: Transcriber, audios: Sequence[np.ndarray], chunks: list[list[SpeechChunk]], language: str | None
) -> list[str | None]:
    """The given language, or the one detected on each file's first piece (English for English-only models);
    None for a multilingual model's file without speech."""
    fixed = transcriber.fixed_language(language)
    detected: list[str | None] = [fixed] * len(chunks)
    if fixed is not None:
        return detected
    heard = [index for index, file_chunks in enumerate(chunks) if file_chunks]
    if heard:
        first = transcriber.windows_of([chunks[index][0].audio(audios[index]) for index in heard])
        for index, probabilities in zip(heard, transcriber.backend.detect_language(first), strict=True):
            detected[index] = max(probabilities, key=probabilities.get)
    return detected


def _chunk_segments(
    transcriber: Transcriber,
    chunk: SpeechChunk,
    window: np.ndarray,
    result: WindowResult,
    language: str | None,
    options: TranscribeOptions,
    states: Any = None,
) -> tuple[list[TranscriptSegment], float]:
    """The segments of one decoded piece that it owns, in file time, with words when asked for; and how far
    into the piece (clip seconds) the decoding reached."""
    hop = transcriber.feature_extractor.hop_length
    size = min(transcriber.window_frames, math.ceil(chunk.samples / hop))
    split = split_window(
        result.tokens, transcriber.timestamp_begin, 0.0, size, transcriber.input_stride, transcriber.time_precision
    )
    pieces = list(split.segments)
    if chunk.closed:  # no later piece hears what this one cut off
        pieces += _unfinished_piece(split, transcriber, size)
    decoded_until = max((end for _, end, _ in pieces), default=0.0)
    seek = round(chunk.start * transcriber.frames_per_second)
    kept = [
        transcriber.segment(start, end, tokens, result, seek)
        for start, end, tokens in pieces
        if chunk.owns(chunk.file_time(start), chunk.file_time(end, is_end=True))
        and any(token < transcriber.eot for token in tokens)
        and start < end
    ]
    if kept and (options.word_timestamps or options.return_token_timestamps):
        transcriber.align(kept, window, size, language, options, 0.0, 0.0, states)
    kept = fit_to_audio(kept, chunk.samples / chunk.sampling_rate)
    for segment in kept:
        map_to_file(segment, chunk)
    return kept, decoded_until


def _unfinished_piece(split: WindowSplit, transcriber: Transcriber, size: int) -> list[tuple[float, float, list[int]]]:
    """The segment a piece left open (its speech runs to the piece's end), from its opening timestamp to the
    end of the piece's audio; none when the piece closed every segment."""
    tokens = split.unfinished
    if not any(token < transcriber.eot for token in tokens):
        return []
    opening = tokens[0] - transcriber.timestamp_begin if tokens[0] >= transcriber.timestamp_begin else 0
    return [(opening * transcriber.time_precision, size / transcriber.frames_per_second, list(tokens))]
