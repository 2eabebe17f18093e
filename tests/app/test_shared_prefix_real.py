"""Real tiny.en on jfk, every temperature tried: the window's temperatures share one prefix pass in every backend,
and the transcription is what it is when each temperature runs its own."""

from __future__ import annotations

import contextlib
import importlib

import pytest

from whisper_core.transcribe import TranscribeOptions

# logprob_threshold 0: every decoding counts as too unsure, so the window is decoded at each temperature
EVERY_TEMPERATURE = TranscribeOptions(temperature=(0.0, 0.5, 1.0), best_of=2, logprob_threshold=0.0)
GENERATION = {"pt": "whisper_pt.generation", "tf": "whisper_tf.generation", "flax": "whisper_flax.generation"}


@pytest.mark.parametrize("backend", ["pt", "tf", "flax"])
def test_a_windows_temperatures_share_one_prefix_pass(backend, transcribers, jfk_audio, monkeypatch):
    generation = importlib.import_module(GENERATION[backend])
    shared = generation.shared_prefix_pass
    passes: list[int] = []

    def counting(owner, inputs, same, run):
        return shared(owner, inputs, same, lambda: passes.append(1) or run())

    monkeypatch.setattr(generation, "shared_prefix_pass", counting)
    transcriber = transcribers[backend]
    together = transcriber.transcribe([jfk_audio], EVERY_TEMPERATURE, progress=False)[0]
    assert len(passes) == 1
    passes.clear()
    fallback = importlib.import_module("whisper_core.transcribe.fallback")
    monkeypatch.setattr(fallback, "sharing_prefix_passes", contextlib.nullcontext)
    apart = transcriber.transcribe([jfk_audio], EVERY_TEMPERATURE, progress=False)[0]
    assert len(passes) == 3  # one per temperature: each was tried
    assert together.text == apart.text and "country" in together.text
    assert [s.avg_logprob for s in together.segments] == [s.avg_logprob for s in apart.segments]
