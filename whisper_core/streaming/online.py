"""The online processor: audio arrives in chunks, words are committed as soon as they are stable.

One processor is one stream; the model behind its :class:`~whisper_core.transcribe.Transcriber` is
shared, so one loaded model serves many streams. Each :meth:`OnlineProcessor.process_iter` decodes the
audio buffer (at most 30 s, one window) with the committed text before the buffer as prompt, and times
every word from the alignment heads. Which words are committed is the policy's choice:

- ``localagreement`` (whisper_streaming's LocalAgreement-2): the words two consecutive passes agree on;
- ``alignatt`` (SimulStreaming's AlignAtt): the words before the first token whose attention on the
  alignment heads reaches the last ``frame_threshold`` encoder frames of the buffer: the model is then
  reading audio it has not heard whole, so what it says from there on may still change. As in
  SimulStreaming, a token whose attention jumps back more than ``rewind_threshold`` frames also stops
  it: the model is reading again what it already said, which is how a hallucinated repeat begins.
  A word whose aligned end lies in those last frames is not committed either.

Each pass continues the words already committed in the buffer, as SimulStreaming's AlignAtt does: they are
forced as the transcript's beginning (decoded without timestamps), so a pass decodes the few tokens that are
new rather than the whole buffer's text again, and every word it returns is new. LocalAgreement then compares
the new words of two consecutive passes (whisper_streaming decodes the whole buffer each pass and drops what
it said again; a buffer with no committed word in it is still decoded so).

AlignAtt commits from a single pass, so a pass that invents text would commit it at once: a pass's text
is cut where a repetition loop starts (after the phrase's first copy), words that are punctuation alone
(Whisper says "." to a buffer that begins in silence) are not words, and an echo of the prompt (the
committed text said again, timed to no time) is not new. When a pass finds nothing new long after the last
committed word, the buffer is cut at the last committed sentence end.

The buffer is trimmed at the end of a committed sentence (or word) once it is longer than
``buffer_trimming_sec``; before it outgrows the window what is pending is committed. With voice activity control
(``vac``), silence is never decoded and the end of an utterance commits what is pending.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..transcribe.fallback import FallbackOptions, WindowDecoder, is_silent
from ..transcribe.guards import loop_start
from ..transcribe.longform import Transcriber
from ..transcribe.word_timing import APPEND_PUNCTUATIONS, PREPEND_PUNCTUATIONS, merge_punctuations
from ..vad import VadOptions, get_speech_timestamps
from .agreement import LocalAgreement, StreamWord, drop_committed, in_order, word_key

POLICIES = ("localagreement", "alignatt")
SENTENCE_ENDS = (".", "?", "!", "。", "？", "！")
MIN_PASS_SECONDS = 0.3  # less audio than this is not worth a pass
# A buffer that never rises above -60 dBFS holds no speech; Whisper says "you" to digital silence.
SILENT_PEAK = 1e-3
STUCK_SECONDS = 3.0  # AlignAtt: audio after the last committed word that a pass found nothing new in
# s: a cut at a word's end lands on a whole sample, so the word may end this little after the buffer starts
CUT_ROUNDING = 1e-3
# A pass decodes at most this many tokens per second of audio its continued text does not cover, plus a few:
# speech rarely reaches 6 tokens a second (fast English is about 4 words), so only a repetition loop meets it,
# and it stops there instead of at half the text context (224 tokens: 6 s of decoding with base here). TF and
# JAX keep 224 (see max_new_tokens): a new length would be a new program.
MAX_TOKENS_PER_SECOND = 10
EXTRA_TOKENS = 16
WINDOW_MARGIN = 1.0  # s: the buffer is cut before it comes this close to the 30 s window
# Voice activity control: short pads and half a second of silence end an utterance.
VAC_OPTIONS = VadOptions(min_silence_duration_ms=500, speech_pad_ms=100)
VAC_END_OF_UTTERANCE = 0.5  # s of silence after the last speech
VAC_KEEP = 0.5  # s of a silent buffer kept, in case speech is starting


@dataclass(frozen=True)
class StreamingOptions:
    """How a stream is decoded and committed (whisper_streaming's and SimulStreaming's names)."""

    policy: str = "localagreement"
    language: str | None = None  # None: detected on each pass (multilingual models)
    task: str | None = None
    buffer_trimming_sec: float = 15.0
    prompt_chars: int = 200  # committed text before the buffer given as prompt
    frame_threshold: int = 25  # AlignAtt: encoder frames (20 ms each) at the end of the buffer
    rewind_threshold: int = 200  # AlignAtt: a jump back of more frames than this (4 s) stops it too
    vac: bool = False
    vac_options: VadOptions = VAC_OPTIONS
    temperatures: tuple[float, ...] = (0.0,)  # a fallback per pass would cost more than it saves

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}")
        if self.buffer_trimming_sec <= 0 or min(self.prompt_chars, self.frame_threshold, self.rewind_threshold) < 0:
            raise ValueError(
                "buffer_trimming_sec must be positive, prompt_chars, frame_threshold and rewind_threshold non-negative"
            )


@dataclass
class Hypothesis:
    """One pass over the buffer: its words, and how many of them the policy lets through (all but AlignAtt's
    late tail)."""

    words: list[StreamWord] = field(default_factory=list)
    stable: int = 0
    continued: bool = False  # the pass continued committed words, so none of its words says them again

    def uncommitted(self, committed: list[StreamWord]) -> list[StreamWord]:
        """The words that are not committed yet: all of a continued pass's, else those :func:`drop_committed`
        finds new (a pass that decodes the buffer afresh says its committed words again)."""
        return list(self.words) if self.continued else drop_committed(self.words, committed)


class OnlineProcessor:
    """One stream: ``insert_audio_chunk`` 16 kHz mono float32, ``process_iter`` -> newly committed words,
    ``finish`` at the end, ``reset`` to start a new stream."""

    def __init__(self, transcriber: Transcriber, options: StreamingOptions = StreamingOptions()) -> None:
        self.transcriber = transcriber
        self.options = options
        self.sampling_rate = transcriber.feature_extractor.sampling_rate
        self.window_seconds = transcriber.window_frames / transcriber.frames_per_second
        heads = transcriber.backend.generation_config.alignment_heads
        if not heads:
            raise ValueError(
                "streaming times words with generation_config.alignment_heads, which this checkpoint lacks"
            )
        self.language = transcriber.fixed_language(options.language)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: an empty buffer at time 0, nothing committed."""
        self.buffer = np.zeros(0, np.float32)
        self.buffer_start = 0.0  # stream time of the buffer's first sample
        self.agreement = LocalAgreement()
        self.tentative: list[StreamWord] = []  # AlignAtt's words after its stopping point
        self.utterance_end = 0  # VAC: buffer sample where the last committed utterance ended
        self.decoder = WindowDecoder(
            self.transcriber.backend,
            self.transcriber.tokenizer,
            FallbackOptions(temperatures=self.options.temperatures),
            task=self.options.task,
            timestamps=False,  # a pass continues committed text (see _continued); words are timed by alignment
        )

    @property
    def committed(self) -> list[StreamWord]:
        return self.agreement.committed

    @property
    def buffer_end(self) -> float:
        return self.buffer_start + len(self.buffer) / self.sampling_rate

    def pending(self) -> list[StreamWord]:
        """The latest hypothesis' words that are not committed yet."""
        return self.agreement.pending() if self.options.policy == "localagreement" else list(self.tentative)

    def insert_audio_chunk(self, samples: np.ndarray) -> None:
        """Append 16 kHz mono float32 samples to the stream."""
        chunk = np.asarray(samples, dtype=np.float32)
        if chunk.ndim != 1:
            raise ValueError(f"audio chunks must be 1-D mono samples, got shape {chunk.shape}")
        if not np.isfinite(chunk).all():
            raise ValueError("audio chunk holds NaN or infinite samples")
        self.buffer = np.concatenate([self.buffer, chunk])

    def process_iter(self) -> list[StreamWord]:
        """Decode the buffer; return the words committed by this pass (never changed or repeated later)."""
        if self.options.vac:
            ended = self._voice_activity()
            if ended is not None:
                return ended
        if len(self.buffer) < MIN_PASS_SECONDS * self.sampling_rate:
            return []
        hypothesis = self._hypothesis(final=False)
        if self.options.policy == "localagreement":
            self.agreement.insert(hypothesis.uncommitted(self.committed))
            new = self.agreement.flush()
        else:
            # what is new is judged on the whole pass: an echo of committed text may straddle the stopping point
            uncommitted = hypothesis.uncommitted(self.committed)
            stable = {id(word) for word in hypothesis.words[: hypothesis.stable]}
            new = in_order([word for word in uncommitted if id(word) in stable], self.committed)
            self.committed.extend(new)
            self.tentative = [word for word in uncommitted if id(word) not in stable]
            if not new and not self.tentative:
                self._unstick()
        return new + self._trim()

    def finish(self) -> list[StreamWord]:
        """The stream ended: decode what is left in the buffer (with voice activity control, its speech
        only) and commit all of it; a buffer longer than one window is committed a window at a time."""
        new = self._commit_overflow()
        end = len(self.buffer)
        if self.options.vac:
            spans = get_speech_timestamps(self.buffer, self.options.vac_options, self.sampling_rate)
            end = spans[-1].end if spans else 0
        new += self._commit_buffer(end) if end else []
        self.agreement.previous, self.tentative = [], []
        self._advance(len(self.buffer))
        return new

    def _commit_overflow(self) -> list[StreamWord]:
        """While the buffer is longer than a pass can hear, commit the words of its first window but the last
        (which the window may cut) and drop the audio up to them."""
        new: list[StreamWord] = []
        span = round((self.window_seconds - WINDOW_MARGIN) * self.sampling_rate)
        while len(self.buffer) > span:
            words = in_order(
                self._hypothesis(final=True, samples=span).uncommitted(self.committed)[:-1], self.committed
            )
            self.committed.extend(words)
            new.extend(words)
            cut = round((words[-1].end - self.buffer_start) * self.sampling_rate) if words else span
            self._advance(max(cut, self.sampling_rate))  # always forward, by a second at least
        return new

    # -- passes ---------------------------------------------------------------------------------
    def _hypothesis(self, final: bool, samples: int | None = None) -> Hypothesis:
        """One pass over the first ``samples`` of the buffer (all by default): words in stream time."""
        transcriber = self.transcriber
        audio = self.buffer[: len(self.buffer) if samples is None else samples]
        if len(audio) < MIN_PASS_SECONDS * self.sampling_rate or np.abs(audio).max() < SILENT_PEAK:
            return Hypothesis()
        window = transcriber.windows_of([audio])
        language = self.language if transcriber.ids.is_multilingual else None
        if transcriber.ids.is_multilingual and language is None:
            probabilities = transcriber.backend.detect_language(window)[0]
            language = max(probabilities, key=probabilities.get)
        continued, covered = self._continued(len(audio))
        duration = len(audio) / self.sampling_rate
        limit = int(np.ceil((duration - covered) * MAX_TOKENS_PER_SECOND)) + EXTRA_TOKENS
        (result,) = self.decoder.decode(window, [self._prompt()], [language], [continued], max_tokens=limit)
        text_tokens = [token for token in result.tokens if token < transcriber.eot]
        text_tokens = text_tokens[: loop_start(text_tokens)]
        if is_silent(result, self.decoder.options) or not text_tokens:
            return Hypothesis()
        words, stops = self._align(window[0], continued, text_tokens, len(audio), language)
        placed = [
            StreamWord(self.buffer_start + word.start, self.buffer_start + min(word.end, duration), word.word)
            for word in words
            if word.start < duration and word_key(word.word)
        ]
        stable = len(placed)
        if not final and self.options.policy == "alignatt":
            late = self.buffer_start + duration - self.options.frame_threshold * transcriber.time_precision
            stable = min(stops, first_late_word(placed, late))
        return Hypothesis(placed, stable, bool(continued))

    def _align(
        self, window: np.ndarray, continued: list[int], text_tokens: list[int], samples: int, language: str | None
    ):
        """Word timings of ``text_tokens`` decoded after the ``continued`` text (one pass with attentions over
        both), and how many of those words come before the first token AlignAtt stops at. Words that begin in
        the continued text are not returned: they are committed already (punctuation decoded after the last
        one is lost with it)."""
        transcriber = self.transcriber
        frames = min(samples // transcriber.feature_extractor.hop_length, transcriber.window_frames)
        states = self.decoder.row_states(0)  # the decoding's encoder pass
        alignment, weights = transcriber.word_alignment(
            window, continued + text_tokens, frames, language, self.options.task, states, probabilities=False
        )
        merge_punctuations(alignment.words, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS)
        options = self.options
        stop = len(continued) + late_token(
            weights,
            len(continued),
            len(text_tokens),
            frames // transcriber.input_stride,
            options.frame_threshold,
            options.rewind_threshold,
        )
        words, used, before_stop = [], 0, 0
        for word in alignment.words:
            first, used = used, used + len(word.tokens)
            if not word.word or first < len(continued):
                continue
            words.append(word)
            if used <= stop:
                before_stop = len(words)
        return words, before_stop

    def _continued(self, samples: int) -> tuple[list[int], float]:
        """The tokens of the committed words inside the buffer's first ``samples``, which a pass continues, and
        the seconds of the buffer they cover."""
        end = self.buffer_start + samples / self.sampling_rate
        inside = [word for word in self._committed_inside() if word.end <= end + CUT_ROUNDING]
        text = "".join(word.text for word in inside)
        if not text.strip():
            return [], 0.0
        tokens = self.transcriber.tokenizer.encode(text, add_special_tokens=False)
        return tokens, max(inside[-1].end - self.buffer_start, 0.0)

    def _prompt(self) -> list[int]:
        """``<|startofprev|>`` and the committed text that precedes the buffer (its last ``prompt_chars``)."""
        before = [word.text for word in self.committed if word.end <= self.buffer_start + CUT_ROUNDING]
        text = "".join(before)[-self.options.prompt_chars :].strip() if self.options.prompt_chars else ""
        if not text:
            return []
        ids = self.transcriber.tokenizer.encode(" " + text, add_special_tokens=False)
        return [self.transcriber.ids.prev_sot_token_id, *ids]

    # -- the buffer -----------------------------------------------------------------------------
    def _commit_buffer(self, samples: int) -> list[StreamWord]:
        """A final pass over the first ``samples`` of the buffer, every new word committed."""
        new = in_order(self._hypothesis(final=True, samples=samples).uncommitted(self.committed), self.committed)
        self.committed.extend(new)
        self.agreement.previous, self.tentative = [], []
        return new

    def _advance(self, samples: int) -> None:
        """Drop the buffer's first ``samples``."""
        samples = max(0, min(samples, len(self.buffer)))
        self.buffer = self.buffer[samples:]
        self.utterance_end = max(0, self.utterance_end - samples)
        self.buffer_start += samples / self.sampling_rate

    def _trim(self) -> list[StreamWord]:
        """Once the buffer is longer than ``buffer_trimming_sec``, cut it at the end of the last committed
        sentence (else of the last committed word): the text before the cut lives on as the prompt. A buffer
        about to outgrow the window commits what is pending first (returned), so no audio is dropped undecoded."""
        length = self.buffer_end - self.buffer_start
        forced: list[StreamWord] = []
        if length <= self.options.buffer_trimming_sec:
            return forced
        if length > self.window_seconds - WINDOW_MARGIN:
            forced = in_order(self.pending(), self.committed)  # pending words are new (Hypothesis.uncommitted)
            self.committed.extend(forced)
            self.agreement.previous, self.tentative = [], []
        inside = self._committed_inside()
        cut = last_sentence_end(inside)
        if cut is None and inside:
            cut = inside[-1].end
        if cut is None and length > self.window_seconds - WINDOW_MARGIN:
            cut = self.buffer_end - self.options.buffer_trimming_sec  # no words at all in 29 s: not speech
        if cut is not None:
            self._advance(round((cut - self.buffer_start) * self.sampling_rate))
        return forced

    def _committed_inside(self) -> list[StreamWord]:
        """The committed words whose audio is still in the buffer."""
        return [word for word in self.committed if word.end > self.buffer_start + CUT_ROUNDING]

    def _unstick(self) -> None:
        """AlignAtt heard nothing new: when more than ``STUCK_SECONDS`` of audio follow the last committed word,
        cut the buffer at the last committed sentence end. Whisper often stops after the first sentence of a
        buffer, so a pass that re-reads committed sentences may never reach the speech after them; AlignAtt
        compares no passes, so the committed audio is only context, which the prompt keeps."""
        inside = self._committed_inside()
        if not inside or self.buffer_end - inside[-1].end <= STUCK_SECONDS:
            return
        cut = last_sentence_end(inside)
        if cut is not None:
            self._advance(round((cut - self.buffer_start) * self.sampling_rate))

    def _voice_activity(self) -> list[StreamWord] | None:
        """Voice activity control before a pass. Silence is not decoded (None: nothing to do); at the end of an
        utterance what is pending is committed and returned; otherwise None and the pass goes on. The ended
        utterance's audio stays in the buffer (until trimmed) as context for the next one: decoded alone, a
        short phrase after a pause loses its words ("ask not" became "Not!")."""
        spans = get_speech_timestamps(self.buffer, self.options.vac_options, self.sampling_rate)
        if not spans:
            self._advance(len(self.buffer) - round(VAC_KEEP * self.sampling_rate))
            self.utterance_end = 0
            return []
        if spans[0].start > 0 and not self.pending() and not self.utterance_end:
            self._advance(spans[0].start)  # leading silence
            spans = get_speech_timestamps(self.buffer, self.options.vac_options, self.sampling_rate)
            if not spans:
                return []
        if spans[-1].end <= self.utterance_end:  # still the silence after an utterance already committed
            if self.buffer_end - self.buffer_start > self.options.buffer_trimming_sec:
                self._advance(self.utterance_end)  # a long pause: the context is too old to help
            return []
        silence_after = (len(self.buffer) - spans[-1].end) / self.sampling_rate
        if silence_after >= VAC_END_OF_UTTERANCE:
            new = self._commit_buffer(spans[-1].end)
            self.utterance_end = spans[-1].end
            return new + self._trim()
        return None


def last_sentence_end(words: list[StreamWord]) -> float | None:
    """When the last of ``words`` that ends a sentence ends (None if none does)."""
    ends = [word.end for word in words if word.text.rstrip().endswith(SENTENCE_ENDS)]
    return ends[-1] if ends else None


def first_late_word(words: list[StreamWord], late: float) -> int:
    """AlignAtt's stop on word times: the index of the first of ``words`` that ends at ``late`` (the start of the
    buffer's last ``frame_threshold`` frames) or after, ``len(words)`` when none does. Such a word may not be
    whole yet, and text the audio does not hold (an echo of the prompt) is squeezed there, each word lasting
    no time."""
    return next((index for index, word in enumerate(words) if word.end >= late), len(words))


def late_token(
    weights: np.ndarray,
    first_row: int,
    count: int,
    frames: int,
    frame_threshold: int,
    rewind_threshold: int | None = None,
) -> int:
    """AlignAtt's stopping point: the index of the first of ``count`` text tokens whose most attended encoder
    frame (attention rows ``first_row`` on, averaged over the alignment heads ``weights [heads, T, frames]``)
    lies in the last ``frame_threshold`` of the buffer's ``frames``, or lies more than ``rewind_threshold``
    frames before the token before's; ``count`` when none does."""
    attended = weights[:, first_row : first_row + count, :frames].mean(axis=0).argmax(axis=-1)
    stops = attended >= frames - frame_threshold
    if rewind_threshold is not None:
        stops[1:] |= attended[1:] < attended[:-1] - rewind_threshold
    late = np.flatnonzero(stops)
    return int(late[0]) if late.size else count
