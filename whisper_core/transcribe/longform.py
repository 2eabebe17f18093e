"""Long-form transcription: openai-whisper's sequential 30 s windows, written once for every backend.

Audio of any length becomes one log-mel spectrogram (normalised over the whole file, as
openai-whisper does). A window of 30 s starts at ``seek``; it is decoded with timestamps (and the
previous text as prompt), cut into segments at each pair of consecutive timestamps, and ``seek``
moves to the last complete segment's end (or to the window's end when the model closed the window
with a lone timestamp, or when it heard no speech). Several files are decoded together: each
batch holds the current window of every unfinished file. With ``vad_filter`` only the speech that
voice activity detection finds is heard (silences cut out), and times are mapped back to the file.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from ..decoding.prefix import PrefixIds, decoder_prefix
from ..feature_extraction import WhisperFeatureExtractor
from ..languages import language_code
from ..tokenizer import WhisperTokenizer
from ..vad import VadOptions, get_speech_timestamps
from .backends import ModelBackend
from .batched import transcribe_batched
from .fallback import WindowDecoder, WindowResult, is_silent
from .guards import earliest_end, fit_to_audio
from .options import TranscribeOptions
from .results import Transcription, TranscriptSegment
from .speech_chunks import SpeechChunk, map_to_file
from .windows import WindowSplit, clip_ranges, split_window
from .word_timing import (
    APPEND_PUNCTUATIONS,
    PREPEND_PUNCTUATIONS,
    Alignment,
    WordTiming,
    assign_words,
    clip_long_words,
    find_alignment,
    merge_punctuations,
)

PUNCTUATION = PREPEND_PUNCTUATIONS + APPEND_PUNCTUATIONS


class Transcriber:
    """Long-form transcription with any backend: ``Transcriber.from_pretrained(backend, directory).transcribe(audios)``."""

    def __init__(
        self,
        backend: ModelBackend,
        tokenizer: WhisperTokenizer,
        feature_extractor: WhisperFeatureExtractor,
    ) -> None:
        self.backend = backend
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor
        self.ids = PrefixIds.from_generation_config(backend.generation_config)
        self.timestamp_begin = self.ids.no_timestamps_token_id + 1
        self.eot = tokenizer.eos_token_id
        self.window_frames = feature_extractor.nb_max_frames
        self.input_stride = self.window_frames // backend.config.max_source_positions  # mel frames per token: 2
        self.frames_per_second = feature_extractor.sampling_rate // feature_extractor.hop_length
        self.time_precision = self.input_stride / self.frames_per_second

    @classmethod
    def from_pretrained(cls, backend: ModelBackend, directory: str) -> Transcriber:
        return cls(
            backend, WhisperTokenizer.from_pretrained(directory), WhisperFeatureExtractor.for_checkpoint(directory)
        )

    def segment(
        self, start: float, end: float, tokens: list[int], result: WindowResult, seek: int, index: int = 0
    ) -> TranscriptSegment:
        """One decoded piece of a window (``start``/``end`` in seconds) as a transcript segment: the window's
        decoding figures, and the text of its tokens below ``<|endoftext|>`` (timestamps dropped)."""
        text_tokens = [token for token in tokens if token < self.eot]
        return TranscriptSegment(
            id=index,
            seek=seek,
            start=start,
            end=end,
            text=self.tokenizer.decode(text_tokens),
            tokens=list(tokens),
            text_tokens=text_tokens,
            temperature=result.temperature,
            avg_logprob=result.avg_logprob,
            compression_ratio=result.compression_ratio,
            no_speech_prob=result.no_speech_prob,
        )

    def windows_of(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """``[b, mels, 3000]``: each clip of at most one window as the sequential loop hears a window: its
        log-mel (:meth:`log_mel`), the frames past its end zero, as openai-whisper and faster-whisper pad."""
        windows = np.zeros((len(clips), self.feature_extractor.feature_size, self.window_frames), np.float32)
        for row, clip in enumerate(clips):
            mel = self.log_mel(clip[: self.feature_extractor.n_samples])
            frames = min(mel.shape[-1] - self.window_frames, self.window_frames)
            windows[row, :, :frames] = mel[:, :frames]
        return windows

    def prompt_ids(self, initial_prompt: str | None) -> list[int]:
        """The ids of ``initial_prompt`` (with the leading space the model expects), or none."""
        if not initial_prompt:
            return []
        return self.tokenizer.encode(" " + initial_prompt.strip(), add_special_tokens=False)

    def log_mel(self, audio: np.ndarray) -> np.ndarray:
        """``[mels, frames + 3000]``: the whole file followed by 30 s of silence, normalised as one."""
        padded = np.concatenate([np.asarray(audio, np.float32), np.zeros(self.feature_extractor.n_samples, np.float32)])
        return self.feature_extractor.log_mel(padded[None])[0]

    def transcribe(
        self,
        audios: Sequence[np.ndarray],
        options: TranscribeOptions = TranscribeOptions(),  # noqa: B008  # frozen: shared safely
        *,
        batch_size: int = 1,
        progress: bool = False,
    ) -> list[Transcription]:
        """Transcribe 16 kHz mono clips of any length. Sequentially (``batch_size`` 1): one window per clip per
        batch; with a larger ``batch_size``, pieces cut in advance, ``batch_size`` at a time (:mod:`.batched`)."""
        if batch_size != 1:
            return transcribe_batched(self, audios, options, batch_size=batch_size, progress=progress)
        if options.hallucination_silence_threshold is not None and not options.word_timestamps:
            raise ValueError("hallucination_silence_threshold needs word_timestamps=True")
        if options.vad_filter and options.clip_timestamps:
            raise ValueError("vad_filter and clip_timestamps both choose what to decode: give one of them")
        speech = [self.speech(audio, options) for audio in audios] if options.vad_filter else None
        if speech is not None:
            audios = [
                chunk.audio(audio) if chunk else np.zeros(0, np.float32)
                for chunk, audio in zip(speech, audios, strict=True)
            ]
        mels = [self.log_mel(audio) for audio in audios]
        prompt = self.prompt_ids(options.initial_prompt)
        files = [_FileSeek(self, mel, None, options, prompt) for mel in mels]
        decoder = WindowDecoder(
            self.backend,
            self.tokenizer,
            options.fallback(),
            task=options.task,
            seed=options.seed,
            longest_prompt=max((file_seek.longest_prompt() for file_seek in files), default=0),
        )
        for file_seek, language in zip(files, self.languages(mels, options.language, decoder), strict=True):
            file_seek.language = language
        total = sum(file_seek.content_frames for file_seek in files)
        with tqdm(total=total, unit="frames", disable=not progress) as bar:
            while active := [
                (file_seek, window) for file_seek in files if (window := file_seek.next_window()) is not None
            ]:
                features = np.stack([window for _, window in active])
                prompts = [file_seek.prompt() for file_seek, _ in active]
                multilingual = self.ids.is_multilingual
                languages = [s.language if multilingual else None for s, _ in active]
                # speech that voice activity detection kept runs to the end of the file's clip: held to it
                ends = [earliest_end(s.audio_end()) if speech is not None else None for s, _ in active]
                results = decoder.decode(features, prompts, languages, earliest_ends=ends)
                timed = options.word_timestamps or options.return_token_timestamps
                for row, ((file_seek, window), result) in enumerate(zip(active, results, strict=True)):
                    before = file_seek.seek
                    file_seek.accept(result, window, decoder.row_states(row) if timed else None)
                    bar.update(min(file_seek.content_frames, file_seek.seek) - before)
        results = [file_seek.finish() for file_seek in files]
        for result, chunk in zip(results, speech or [], strict=False):
            for segment in result.segments if chunk else ():
                map_to_file(segment, chunk)
        return results

    def speech(self, audio: np.ndarray, options: TranscribeOptions) -> SpeechChunk | None:
        """All the speech of ``audio`` as one chunk (silences cut out), or None when there is none."""
        rate = self.feature_extractor.sampling_rate
        spans = get_speech_timestamps(audio, options.vad_options or VadOptions(), rate)
        return SpeechChunk(tuple((span.start, span.end) for span in spans), rate) if spans else None

    def fixed_language(self, language: str | None) -> str | None:
        """The language every file is decoded in, or None when each file's must be detected: English on
        English-only models (another language asked for is warned about, as openai-whisper does), else the
        one asked for."""
        if not self.ids.is_multilingual:
            if language is not None and language_code(language) != "en":
                warnings.warn(
                    f"this model is English-only: language {language!r} is ignored and English is used",
                    stacklevel=3,
                )
            return "en"
        return None if language is None else language_code(language)

    def languages(
        self, mels: list[np.ndarray], language: str | None, decoder: WindowDecoder | None = None
    ) -> list[str | None]:
        """The given language, or the one detected on each file's first 30 s (English for English-only models).
        The ``decoder`` is told the encoder states of those 30 s: the files' first windows where they are as
        long (:meth:`WindowDecoder.know`)."""
        fixed = self.fixed_language(language)
        if fixed is not None or not mels:
            return [fixed] * len(mels)
        first = np.stack([mel[:, : self.window_frames] for mel in mels])
        states = self.backend.encode(first)
        if decoder is not None:
            decoder.know(first, states)
        detected = self.backend.detect_language(first, states)
        return [max(probabilities, key=probabilities.get) for probabilities in detected]

    def word_alignment(
        self,
        window: np.ndarray,
        text_tokens: list[int],
        num_frames: int,
        language: str | None,
        task: str | None,
        states: Any = None,
        probabilities: bool = True,
    ) -> tuple[Alignment, np.ndarray]:
        """The alignment of ``text_tokens`` on one window (one decoder pass with the alignment heads' cross
        attentions), and those attentions ``[heads, tokens, frames]`` with the text from row
        ``len(prefix) - 1``; with the window's encoder ``states`` only the decoder runs again. Without
        ``probabilities`` the words' probabilities are NaN and the pass skips the output projection."""
        language_token = self.ids.language_token(language) if self.ids.is_multilingual and language else None
        prefix = decoder_prefix(self.ids, language_token, task, return_timestamps=False)
        tokens = np.asarray([[*prefix, *text_tokens, self.eot]], dtype=np.int64)
        heads = self.backend.generation_config.alignment_heads
        if not heads:
            raise ValueError("word timestamps need generation_config.alignment_heads, which this checkpoint lacks")
        logits, weights = self.backend.forward_attentions(window[None], tokens, heads, states, probabilities)
        alignment = find_alignment(self.tokenizer, text_tokens, weights, logits, num_frames, len(prefix) - 1, language)
        return alignment, weights[:, len(prefix) - 1 :]

    def align(
        self,
        segments: list[TranscriptSegment],
        window: np.ndarray,
        num_frames: int,
        language: str | None,
        options: TranscribeOptions,
        last_speech: float,
        time_offset: float,
        states: Any = None,
    ) -> None:
        """Word (and token) timestamps for one window's segments, in place; with the window's encoder
        ``states`` (from its decoding) only the decoder runs again."""
        text_tokens = [token for segment in segments for token in segment.text_tokens]
        if not text_tokens:
            return
        alignment, _ = self.word_alignment(window, text_tokens, num_frames, language, options.task, states)
        if options.return_token_timestamps:
            starts = iter(alignment.token_starts)
            for segment in segments:
                segment.token_timestamps = [round(time_offset + next(starts), 2) for _ in segment.text_tokens]
        if options.word_timestamps:
            median = clip_long_words(alignment.words)
            merge_punctuations(alignment.words, options.prepend_punctuations, options.append_punctuations)
            assign_words(segments, alignment.words, time_offset, median, last_speech)


class _FileSeek:
    """The seek state of one file: which window comes next, the prompt, and the segments so far."""

    def __init__(
        self,
        owner: Transcriber,
        mel: np.ndarray,
        language: str | None,
        options: TranscribeOptions,
        initial_prompt: list[int],
    ) -> None:
        self.owner, self.mel, self.language, self.options = owner, mel, language, options
        self.content_frames = mel.shape[-1] - owner.window_frames
        self.clips = clip_ranges(options.clip_timestamps, self.content_frames, owner.frames_per_second)
        self.clip_index = 0
        self.seek = self.clips[0][0]
        self.initial_prompt = initial_prompt
        self.all_tokens: list[int] = list(initial_prompt)
        self.prompt_reset_since = 0
        self.segments: list[TranscriptSegment] = []
        self.last_speech = 0.0
        self.segment_frames = 0

    def next_window(self) -> np.ndarray | None:
        """The next window's features ``[mels, 3000]`` (zero-padded), or None when the file is done."""
        while self.clip_index < len(self.clips):
            start, end = self.clips[self.clip_index]
            self.seek = max(self.seek, start)
            if self.seek < end:
                self.segment_frames = min(self.owner.window_frames, self.content_frames - self.seek, end - self.seek)
                window = np.zeros((self.mel.shape[0], self.owner.window_frames), np.float32)
                window[:, : self.segment_frames] = self.mel[:, self.seek : self.seek + self.segment_frames]
                return window
            self.clip_index += 1
            if self.clip_index < len(self.clips):
                self.seek = self.clips[self.clip_index][0]
        return None

    def audio_end(self) -> float:
        """How far (s) into the current window the file's audio runs when it ends there, else 0."""
        if self.seek + self.segment_frames < self.content_frames:
            return 0.0
        return self.segment_frames / self.owner.frames_per_second

    def prompt(self) -> list[int]:
        """``<|startofprev|>`` and the latest tokens of the text so far (none right after a reset)."""
        previous = self.all_tokens[self.prompt_reset_since :]
        if not previous:
            return []
        return [self.owner.ids.prev_sot_token_id, *previous[-self._prompt_keep :]]

    def longest_prompt(self) -> int:
        """The most tokens :meth:`prompt` may give: the whole kept text when a file longer than one window is
        conditioned on the text before, else the initial prompt's."""
        grows = self.options.condition_on_prev_tokens and self.content_frames > self.owner.window_frames
        text = self._prompt_keep if grows else min(len(self.initial_prompt), self._prompt_keep)
        return 1 + text if text else 0

    @property
    def _prompt_keep(self) -> int:
        """How many text tokens a prompt keeps (openai-whisper's half of the text context, less one)."""
        return self.owner.backend.config.max_target_positions // 2 - 1

    def accept(self, result: WindowResult, window: np.ndarray, states: Any = None) -> None:
        """Turn the window's decoding into segments and move ``seek``."""
        owner, options = self.owner, self.options
        frames_per_second = owner.frames_per_second
        time_offset = self.seek / frames_per_second
        window_end = (self.seek + owner.window_frames) / frames_per_second
        segment_frames = self.segment_frames
        if is_silent(result, options.fallback()):  # skip the whole window
            self.seek += segment_frames
            return
        previous_seek = self.seek
        split = split_window(
            result.tokens, owner.timestamp_begin, time_offset, segment_frames, owner.input_stride, owner.time_precision
        )
        segments = [owner.segment(start, end, tokens, result, previous_seek) for start, end, tokens in split.segments]
        self.seek += split.advance
        if options.word_timestamps or options.return_token_timestamps:
            owner.align(segments, window, segment_frames, self.language, options, self.last_speech, time_offset, states)
        if options.word_timestamps:
            if not split.single_timestamp_ending:
                last_word_end = _last_end(segments)
                if last_word_end is not None and last_word_end > time_offset:
                    self.seek = round(last_word_end * frames_per_second)
            if options.hallucination_silence_threshold is not None:
                skipped = self._skip_hallucinations(segments, split, time_offset, window_end, previous_seek)
                if skipped:
                    return
            last_word_end = _last_end(segments)
            if last_word_end is not None:
                self.last_speech = last_word_end
        for segment in segments:  # an instantaneous or empty segment keeps its times and nothing else
            if segment.start == segment.end or not segment.text.strip():
                segment.text, segment.tokens, segment.text_tokens, segment.words = "", [], [], []
        for segment in fit_to_audio(segments, self.content_frames / frames_per_second):
            segment.id = len(self.segments)
            self.segments.append(segment)
            self.all_tokens.extend(segment.tokens)
        if not options.condition_on_prev_tokens or result.temperature > 0.5:
            self.prompt_reset_since = len(self.all_tokens)  # a high-temperature text is no good prompt

    def _skip_hallucinations(
        self,
        segments: list[TranscriptSegment],
        split: WindowSplit,
        time_offset: float,
        window_end: float,
        previous_seek: int,
    ) -> bool:
        """openai-whisper's ``hallucination_silence_threshold``: skip silence before a likely hallucination.
        Returns True when the window is dropped entirely (decoding resumes after the leading silence)."""
        threshold = self.options.hallucination_silence_threshold
        frames_per_second = self.owner.frames_per_second
        if not split.single_timestamp_ending:
            last_word_end = _last_end(segments)
            if last_word_end is not None and last_word_end > time_offset:
                remaining = window_end - last_word_end
                self.seek = (
                    round(last_word_end * frames_per_second)
                    if remaining > threshold
                    else previous_seek + self.segment_frames
                )
        first = next((segment for segment in segments if segment.words), None)
        if first is not None and _is_anomaly(first):
            gap = first.start - time_offset
            if gap > threshold:
                self.seek = previous_seek + round(gap * frames_per_second)
                return True
        content_duration = self.content_frames / frames_per_second
        last_end = self.last_speech
        for index, segment in enumerate(segments):
            if not segment.words:
                continue
            if _is_anomaly(segment):
                following = next((s for s in segments[index + 1 :] if s.words), None)
                next_start = (
                    following.words[0].start
                    if following is not None
                    else time_offset + self.segment_frames / frames_per_second
                )
                silence_before = (
                    segment.start - last_end > threshold
                    or segment.start < threshold
                    or segment.start - time_offset < 2.0
                )
                silence_after = (
                    next_start - segment.end > threshold or _is_anomaly(following) or window_end - segment.end < 2.0
                )
                if silence_before and silence_after:
                    self.seek = round(max(time_offset + 1, segment.start) * frames_per_second)
                    if content_duration - segment.end < threshold:
                        self.seek = self.content_frames
                    del segments[index:]
                    break
            last_end = segment.end
        return False

    def finish(self) -> Transcription:
        text = self.owner.tokenizer.decode(self.all_tokens[len(self.initial_prompt) :], skip_special_tokens=True)
        return Transcription(text, self.segments, self.language)


def _last_end(segments: list[TranscriptSegment]) -> float | None:
    """End of the last word, else of the last segment (openai-whisper's ``get_end``)."""
    for segment in reversed(segments):
        if segment.words:
            return segment.words[-1].end
    return segments[-1].end if segments else None


def _word_anomaly(word: WordTiming) -> float:
    """How implausible a word is: improbable, very short or very long."""
    duration = word.end - word.start
    score = 1.0 if word.probability < 0.15 else 0.0
    if duration < 0.133:
        score += (0.133 - duration) * 15
    if duration > 2.0:
        score += duration - 2.0
    return score


def _is_anomaly(segment: TranscriptSegment | None) -> bool:
    if segment is None or not segment.words:
        return False
    words = [word for word in segment.words if word.word not in PUNCTUATION][:8]
    score = sum(_word_anomaly(word) for word in words)
    return score >= 3 or score + 0.01 >= len(words)
