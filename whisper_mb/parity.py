"""Numerical parity of one checkpoint across backends: the check behind ``whisper-mb parity``.

Every backend loads the same checkpoint in float32 and sees the same log-mel features. Each one
decodes greedily; then every backend runs one teacher-forced pass over the *first* backend's
tokens, so encoder states and logits are compared on identical inputs. For each pair of backends
the report gives the largest absolute difference, the same relative to the reference's largest
magnitude, and whether the greedy ids are identical. Frameworks are imported only for the
backends asked for.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from weights_bridge.fetching import resolve_model
from whisper_core.audio import load_audio
from whisper_core.feature_extraction import WhisperFeatureExtractor

from .registry import BACKENDS, load_backend

DEFAULT_TOLERANCE = 1e-4  # DESIGN.md: encoder states and logits of real checkpoints, float32
# float32 rounding grows with the magnitude being accumulated: base's encoder residual stream reaches
# ~500, where float32 itself is ~6e-4 from float64; PyTorch and XLA then differ by 1.4e-3 on final
# states whose largest magnitude is ~24 (measured on jfk). A difference within this fraction of the
# reference's largest magnitude is float32 noise, not a disagreement (the parity suite's criterion).
DEFAULT_RELATIVE_TOLERANCE = 1e-4
PROBE_SECONDS = 4.0  # length of the built-in probe signal used when no audio is given
MAX_NEW_TOKENS = 64  # enough to compare decoding without waiting on a hallucinating model


@dataclass
class Comparison:
    """One output compared between two backends."""

    output: str
    pair: str
    max_abs: float
    max_rel: float
    within: bool
    detail: str = ""


@dataclass
class ParityReport:
    backends: list[str]
    tolerance: float
    relative_tolerance: float = DEFAULT_RELATIVE_TOLERANCE
    seconds: dict[str, float] = field(default_factory=dict)  # load + decode + forward time per backend
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.within for c in self.comparisons)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "passed": self.passed}, indent=2)

    def table(self) -> str:
        """A Markdown table: one row per (output, backend pair)."""
        lines = ["| output | backends | max abs | max rel | within |", "| --- | --- | --- | --- | --- |"]
        for c in self.comparisons:
            verdict = ("yes" if c.within else "NO") + (f" ({c.detail})" if c.detail else "")
            lines.append(f"| {c.output} | {c.pair} | {c.max_abs:.2e} | {c.max_rel:.2e} | {verdict} |")
        timing = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())
        lines.append(
            f"\nwithin: max abs <= {self.tolerance:g} or max rel <= {self.relative_tolerance:g}; time per backend: {timing}"
        )
        return "\n".join(lines)


def probe_signal(sampling_rate: int = 16000) -> np.ndarray:
    """A deterministic speech-like test signal (harmonic chirps under a syllable envelope, with a little
    noise), for parity runs that have no audio file: parity needs identical inputs, not words."""
    t = np.arange(int(PROBE_SECONDS * sampling_rate)) / sampling_rate
    pitch = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sampling_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None)
    noise = np.random.default_rng(0).standard_normal(t.shape) * 0.01
    return (0.3 * voiced * envelope + noise).astype(np.float32)


def run_parity(
    checkpoint: str,
    backends: list[str],
    audio: str | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    language: str | None = None,
    relative_tolerance: float = DEFAULT_RELATIVE_TOLERANCE,
) -> ParityReport:
    """Compare ``backends`` (at least two of "pt", "tf", "flax") on ``checkpoint``; see the module doc."""
    if len(backends) < 2:
        raise ValueError("parity needs at least two backends")
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        raise ValueError(f"unknown backends {unknown}: choose from {sorted(BACKENDS)}")
    samples = load_audio(audio) if audio else probe_signal()
    extractor = WhisperFeatureExtractor.for_checkpoint(checkpoint)
    features = extractor(samples, sampling_rate=extractor.sampling_rate, return_tensors="np").input_features
    features = features.astype(np.float32)

    report = ParityReport(backends=list(backends), tolerance=tolerance, relative_tolerance=relative_tolerance)
    outputs: dict[str, dict[str, np.ndarray]] = {}
    reference_ids: np.ndarray | None = None
    for name in backends:
        start = time.perf_counter()
        adapter = load_backend(name, checkpoint)
        kwargs: dict[str, Any] = {"max_new_tokens": MAX_NEW_TOKENS}
        if language is not None:
            kwargs["language"] = language
        ids = _numpy(adapter.model.generate(adapter.tensor(features), **kwargs))
        reference_ids = ids if reference_ids is None else reference_ids
        forward = adapter.model(
            input_features=adapter.tensor(features), decoder_input_ids=adapter.tensor(reference_ids)
        )
        outputs[name] = {
            "encoder_states": _numpy(forward.encoder_last_hidden_state),
            "logits": _numpy(forward.logits),
            "greedy_ids": ids,
        }
        report.seconds[name] = time.perf_counter() - start
    for first, second in itertools.combinations(backends, 2):
        pair = f"{first}~{second}"
        for output in ("encoder_states", "logits"):
            report.comparisons.append(
                _compare_values(output, pair, outputs[first][output], outputs[second][output], report)
            )
        report.comparisons.append(_compare_ids(pair, outputs[first]["greedy_ids"], outputs[second]["greedy_ids"]))
    return report


def _compare_values(
    output: str, pair: str, reference: np.ndarray, other: np.ndarray, report: ParityReport
) -> Comparison:
    if reference.shape != other.shape:
        return Comparison(output, pair, float("inf"), float("inf"), False, f"shapes {reference.shape} vs {other.shape}")
    difference = float(np.abs(reference.astype(np.float64) - other.astype(np.float64)).max())
    scale = float(np.abs(reference).max()) or 1.0
    relative = difference / scale
    within = difference <= report.tolerance or relative <= report.relative_tolerance
    return Comparison(output, pair, difference, relative, within)


def _compare_ids(pair: str, reference: np.ndarray, other: np.ndarray) -> Comparison:
    if reference.shape == other.shape and (reference == other).all():
        return Comparison("greedy_ids", pair, 0.0, 0.0, True, f"{reference.shape[-1]} tokens identical")
    width = min(reference.shape[-1], other.shape[-1])
    mismatch = np.argwhere(reference[:, :width] != other[:, :width])
    where = f"first differs at row {mismatch[0][0]}, position {mismatch[0][1]}" if len(mismatch) else "lengths differ"
    return Comparison("greedy_ids", pair, float("nan"), float("nan"), False, where)


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch: leave autograd and the accelerator
        x = x.detach().cpu()
    return np.asarray(x)


def _parity(args: argparse.Namespace) -> int:
    """Run the parity check and print its table (or JSON); exit 1 when a difference is past tolerance."""
    report = run_parity(
        resolve_model(args.checkpoint),
        args.backends.split(","),
        args.audio,
        args.tolerance,
        args.language,
        args.rel_tolerance,
    )
    print(report.to_json() if args.json else report.table())
    if not report.passed:
        print("whisper-mb parity: differences past tolerance", file=sys.stderr)
        return 1
    return 0


def add_parity(subparsers: argparse._SubParsersAction) -> None:
    """Register ``whisper-mb parity`` (for users' CI)."""
    parser = subparsers.add_parser("parity", help="compare a checkpoint's outputs across backends")
    parser.add_argument("checkpoint", help="tiny.en, base, or a checkpoint directory")
    parser.add_argument("--backends", default="pt,tf,flax", help="comma-separated, at least two (default pt,tf,flax)")
    parser.add_argument("--audio", help="audio file to feed (default: a built-in synthetic probe signal)")
    parser.add_argument("--language", help="force the language (multilingual checkpoints)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="max abs difference allowed")
    parser.add_argument(
        "--rel-tolerance",
        type=float,
        default=DEFAULT_RELATIVE_TOLERANCE,
        help="or max difference relative to the reference's largest magnitude (float32 noise on large states)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=_parity)
