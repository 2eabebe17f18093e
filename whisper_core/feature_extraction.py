"""``WhisperFeatureExtractor``: raw 16 kHz mono audio -> Whisper log-mel features ``[batch, mels, frames]``.

Same parameters, padding rules and numbers as transformers 4.57 (within 1e-4), but computed
with NumPy only and fast: the windowed DFT of every frame is one float32 matrix product
against a precomputed cosine/sine basis (the window folded in), and the mel projection is a
second one, so the work runs in BLAS instead of a per-frame FFT loop.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .config import CONFIG_NAME, WhisperConfig
from .fileio import read_json, write_json
from .hub import resolve_file
from .tensors import BatchFeature, check_return_tensors

logger = logging.getLogger(__name__)

PREPROCESSOR_CONFIG_NAME = "preprocessor_config.json"
LOG_MEL_FLOOR = 1e-10  # power floor before log10
DYNAMIC_RANGE_DB = 8.0  # log10 units kept below each utterance's maximum (80 dB)
PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
# Frames per DFT block: bounds the temporary float32 buffers to a few MB.
_FRAMES_PER_BLOCK = 1024
# Checkpoints already reported as lacking preprocessor_config.json: the notice is given once per process.
_NOTED_WITHOUT_PREPROCESSOR: set[str] = set()


def hertz_to_mel(frequencies: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (as librosa and openai-whisper)."""
    frequencies = np.asarray(frequencies, dtype=np.float64)
    linear = 3.0 * frequencies / 200.0
    logarithmic = 15.0 + np.log(np.maximum(frequencies, 1e-10) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(frequencies >= 1000.0, logarithmic, linear)


def mel_to_hertz(mels: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hertz_to_mel`."""
    mels = np.asarray(mels, dtype=np.float64)
    linear = 200.0 * mels / 3.0
    logarithmic = 1000.0 * np.exp(np.log(6.4) / 27.0 * (mels - 15.0))
    return np.where(mels >= 15.0, logarithmic, linear)


def mel_filter_bank(
    sampling_rate: int, n_fft: int, num_mel_filters: int, min_frequency: float = 0.0, max_frequency: float = 8000.0
) -> np.ndarray:
    """Slaney-normalised triangular mel filters, ``[n_fft // 2 + 1, num_mel_filters]`` float64."""
    fft_frequencies = np.linspace(0.0, sampling_rate / 2.0, n_fft // 2 + 1)
    mel_points = np.linspace(hertz_to_mel(min_frequency), hertz_to_mel(max_frequency), num_mel_filters + 2)
    edges = mel_to_hertz(mel_points)  # [mels + 2] filter edges in Hz
    widths = np.diff(edges)
    distance = edges[None, :] - fft_frequencies[:, None]  # [freqs, mels + 2]
    rising = -distance[:, :-2] / widths[:-1]
    falling = distance[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    # Slaney normalisation: each triangle has unit area, so loud bands are not over-weighted.
    return filters * (2.0 / (edges[2:] - edges[:-2]))[None, :]


def _folded_dft_bases(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """Windowed real-DFT bases folded over the frame's mirror symmetry, halving the matrix work.

    The periodic Hann window is symmetric (``w[n] == w[n_fft - n]``), so the real part of bin k
    only needs ``x[n] + x[n_fft - n]`` and the imaginary part only ``x[n] - x[n_fft - n]``:
    returns ``cosines [n_fft // 2 + 1, bins]`` for ``[x0, sums..., x_mid]`` and
    ``sines [(n_fft - 1) // 2, bins]`` for the differences.
    """
    samples = np.arange(n_fft // 2 + 1)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * samples / n_fft)  # periodic Hann, as torch.hann_window
    angles = 2.0 * np.pi * np.outer(samples, np.arange(n_fft // 2 + 1)) / n_fft  # [samples, bins]
    cosines = np.cos(angles) * window[:, None]  # rows: x0, the pairs, and (even n_fft) the middle sample
    num_pairs = (n_fft - 1) // 2
    sines = -np.sin(angles[1 : num_pairs + 1]) * window[1 : num_pairs + 1, None]
    return cosines, sines


class WhisperFeatureExtractor:
    """Log-mel spectrogram features for Whisper (transformers 4.57 ``WhisperFeatureExtractor``)."""

    model_input_names = ("input_features",)

    def __init__(
        self,
        feature_size: int = 80,
        sampling_rate: int = 16000,
        hop_length: int = 160,
        chunk_length: int = 30,
        n_fft: int = 400,
        padding_value: float = 0.0,
        dither: float = 0.0,
        return_attention_mask: bool = False,
        padding_side: str = "right",
        **kwargs: Any,
    ) -> None:
        if feature_size <= 0 or sampling_rate <= 0 or hop_length <= 0 or chunk_length <= 0 or n_fft <= 0:
            raise ValueError("feature_size, sampling_rate, hop_length, chunk_length and n_fft must be positive")
        if padding_side != "right":
            raise ValueError("Whisper features are padded on the right only")
        self.feature_size = feature_size
        self.sampling_rate = sampling_rate
        self.hop_length = hop_length
        self.chunk_length = chunk_length
        self.n_fft = n_fft
        self.padding_value = padding_value
        self.dither = dither
        self.return_attention_mask = return_attention_mask
        self.padding_side = padding_side
        self.n_samples = chunk_length * sampling_rate
        self.nb_max_frames = self.n_samples // hop_length
        self.mel_filters = mel_filter_bank(sampling_rate, n_fft, feature_size, 0.0, 8000.0)  # fixed 8 kHz, as Whisper
        # Keys of preprocessor_config.json this class does not use are kept for the round trip;
        # stored mel filters are recomputed instead of trusted.
        self.extra = {k: v for k, v in kwargs.items() if k not in ("mel_filters", "nb_max_frames", "n_samples")}
        cosines, sines = _folded_dft_bases(n_fft)
        self._cosine_basis, self._sine_basis = cosines.astype(np.float32), sines.astype(np.float32)
        self._mel_basis = self.mel_filters.astype(np.float32)

    # -- features --------------------------------------------------------------------------
    def log_mel(self, waveforms: np.ndarray) -> np.ndarray:
        """``[batch, samples]`` float32 -> ``[batch, mels, frames]`` float32 log-mel features (frames = samples // hop
        for even n_fft).

        Frames are centred (reflect padding of n_fft // 2) and the last STFT frame is dropped,
        as transformers and openai-whisper do.
        """
        waveforms = np.asarray(waveforms, dtype=np.float32)
        if self.dither:
            waveforms = waveforms + np.float32(self.dither) * np.random.standard_normal(waveforms.shape).astype(
                np.float32
            )
        half = self.n_fft // 2
        if waveforms.shape[-1] <= half:
            raise ValueError(f"audio of {waveforms.shape[-1]} samples is too short: need more than {half}")
        padded = np.pad(waveforms, ((0, 0), (half, half)), mode="reflect")
        num_frames = (padded.shape[-1] - self.n_fft) // self.hop_length  # STFT frames less the last one
        frames = np.lib.stride_tricks.sliding_window_view(padded, self.n_fft, axis=-1)[:, :: self.hop_length]
        features = np.empty((waveforms.shape[0], num_frames, self.feature_size), dtype=np.float32)
        for clip in range(waveforms.shape[0]):  # clip by clip and block by block: the work stays in cache
            for start in range(0, num_frames, _FRAMES_PER_BLOCK):
                stop = min(start + _FRAMES_PER_BLOCK, num_frames)
                features[clip, start:stop] = self._mel_power(frames[clip, start:stop])
        np.maximum(features, LOG_MEL_FLOOR, out=features)
        np.log10(features, out=features)
        ceiling = features.max(axis=(1, 2), keepdims=True)
        np.maximum(features, ceiling - DYNAMIC_RANGE_DB, out=features)
        features += 4.0
        features /= 4.0
        return features.transpose(0, 2, 1)  # [batch, mels, frames]

    def _mel_power(self, frames: np.ndarray) -> np.ndarray:
        """``[frames, n_fft]`` strided view -> ``[frames, mels]`` mel power, through the folded DFT bases."""
        num_pairs = self._sine_basis.shape[0]
        head = frames[:, 1 : num_pairs + 1]  # x[n], n = 1 .. pairs
        tail = frames[:, self.n_fft - 1 : self.n_fft - 1 - num_pairs : -1]  # x[n_fft - n]
        sums = np.empty((frames.shape[0], self._cosine_basis.shape[0]), dtype=np.float32)
        sums[:, 0] = frames[:, 0]
        np.add(head, tail, out=sums[:, 1 : num_pairs + 1])
        if self.n_fft % 2 == 0:
            sums[:, -1] = frames[:, self.n_fft // 2]  # the unpaired middle sample
        real = sums @ self._cosine_basis  # [frames, bins]
        imaginary = (head - tail) @ self._sine_basis
        np.square(real, out=real)
        np.square(imaginary, out=imaginary)
        real += imaginary
        return real @ self._mel_basis

    def __call__(
        self,
        raw_speech: np.ndarray | list,
        truncation: bool = True,
        pad_to_multiple_of: int | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool | None = None,
        padding: str | bool = "max_length",
        max_length: int | None = None,
        sampling_rate: int | None = None,
        do_normalize: bool | None = None,
        device: str = "cpu",
        return_token_timestamps: bool | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """Pad or truncate to 30 s (by default) and compute log-mel features for one clip or a batch."""
        check_return_tensors(return_tensors)
        if sampling_rate is None:
            logger.warning(
                "no sampling_rate given: assuming %d Hz; pass sampling_rate to catch mismatches", self.sampling_rate
            )
        elif sampling_rate != self.sampling_rate:
            raise ValueError(
                f"audio sampled at {sampling_rate} Hz, but this feature extractor expects {self.sampling_rate} Hz: "
                "resample first (whisper_core.load_audio(path) decodes and resamples any file)"
            )
        clips = _as_mono_clips(raw_speech)
        padding = {True: "longest", False: "do_not_pad"}.get(padding, padding)
        if padding not in PADDING_STRATEGIES:
            raise ValueError(f"padding must be one of {PADDING_STRATEGIES} or a bool, got {padding!r}")
        target = max_length or self.n_samples
        if pad_to_multiple_of and target % pad_to_multiple_of:
            target = (target // pad_to_multiple_of + 1) * pad_to_multiple_of
        if truncation:
            clips = [clip[:target] for clip in clips]
        lengths = [len(clip) for clip in clips]
        if padding == "longest":
            target = max(lengths)
            if pad_to_multiple_of and target % pad_to_multiple_of:
                target = (target // pad_to_multiple_of + 1) * pad_to_multiple_of
        elif padding == "do_not_pad":
            target = None

        result = BatchFeature()
        if target is None and len(set(lengths)) > 1:
            if return_tensors not in (None, "np") or return_attention_mask:
                raise ValueError(
                    "clips of different lengths with padding='do_not_pad' cannot be batched into one tensor"
                )
            features = [self._features(clip[None], len(clip), do_normalize)[0] for clip in clips]
            result["input_features"] = features
        else:
            width = target if target is not None else lengths[0]
            width = max(width, *lengths)
            batch = np.full((len(clips), width), self.padding_value, dtype=np.float32)
            for row, clip in enumerate(clips):
                batch[row, : len(clip)] = clip
            if do_normalize:
                batch = _zero_mean_unit_var(batch, lengths, self.padding_value)
            result["input_features"] = self.log_mel(batch)
            if return_attention_mask or (return_attention_mask is None and self.return_attention_mask):
                samples = np.arange(width)[None, :] < np.asarray(lengths)[:, None]  # [batch, samples]
                result["attention_mask"] = samples[:, :: self.hop_length][:, : width // self.hop_length].astype(
                    np.int32
                )
        if return_token_timestamps:
            result["num_frames"] = [length // self.hop_length for length in lengths]
        return result.convert_to_tensors(return_tensors, device)

    def _features(self, clips: np.ndarray, length: int, do_normalize: bool | None) -> np.ndarray:
        if do_normalize:
            clips = _zero_mean_unit_var(clips, [length] * len(clips), self.padding_value)
        return self.log_mel(clips)

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        keys = [
            "feature_size",
            "sampling_rate",
            "hop_length",
            "chunk_length",
            "n_fft",
            "padding_value",
            "dither",
            "return_attention_mask",
            "padding_side",
            "n_samples",
            "nb_max_frames",
        ]
        data = {key: getattr(self, key) for key in keys}
        data.update(self.extra)
        data["feature_extractor_type"] = "WhisperFeatureExtractor"
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> WhisperFeatureExtractor:
        data = {**data, **overrides}
        data.pop("feature_extractor_type", None)
        return cls(**data)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **overrides: Any) -> WhisperFeatureExtractor:
        path = Path(name_or_path)
        json_path = path if path.is_file() else resolve_file(name_or_path, PREPROCESSOR_CONFIG_NAME)
        return cls.from_dict(read_json(json_path), **overrides)

    @classmethod
    def for_checkpoint(cls, name_or_path: str | os.PathLike) -> WhisperFeatureExtractor:
        """The feature extractor of a checkpoint directory or hub id, even one without preprocessor_config.json.

        With the file this is :meth:`from_pretrained`. Without it (what ``model.save_pretrained(d)`` plus
        ``tokenizer.save_pretrained(d)`` leave) the extractor is the default one for ``config.json``'s
        ``num_mel_bins`` (80 up to large-v2, 128 for large-v3: transformers' defaults for that many mels),
        and a warning says so once per checkpoint and process. A directory with neither file, or whose
        ``config.json`` is not a transformers Whisper config (a CTranslate2 one), is refused.
        """
        if Path(name_or_path).is_file():
            return cls.from_pretrained(name_or_path)
        json_path = resolve_file(name_or_path, PREPROCESSOR_CONFIG_NAME, required=False)
        if json_path is not None:
            return cls.from_dict(read_json(json_path))
        config_path = resolve_file(name_or_path, CONFIG_NAME, required=False)
        if config_path is None:
            raise FileNotFoundError(
                f"{name_or_path} has neither {PREPROCESSOR_CONFIG_NAME} nor {CONFIG_NAME}, "
                "so the feature extractor it needs is unknown"
            )
        data = read_json(config_path)
        if data.get("model_type") != WhisperConfig.model_type:
            # e.g. a CTranslate2 directory: its config.json does not give the model's mel count
            raise ValueError(
                f"{name_or_path} has no {PREPROCESSOR_CONFIG_NAME} and its {CONFIG_NAME} is not a transformers "
                f"Whisper config (model_type {data.get('model_type')!r}), so the number of mel bins is unknown"
            )
        mels = WhisperConfig.from_dict(data).num_mel_bins
        local = Path(name_or_path)
        key = str(local.resolve()) if local.is_dir() else str(name_or_path)
        if key not in _NOTED_WITHOUT_PREPROCESSOR:
            _NOTED_WITHOUT_PREPROCESSOR.add(key)
            logger.warning(
                "%s has no %s: using the WhisperFeatureExtractor defaults for %d mel bins (%s's num_mel_bins)",
                name_or_path,
                PREPROCESSOR_CONFIG_NAME,
                mels,
                CONFIG_NAME,
            )
        return cls(feature_size=mels)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        path = Path(directory) / PREPROCESSOR_CONFIG_NAME
        write_json(path, self.to_dict())
        return path

    def __repr__(self) -> str:
        return f"WhisperFeatureExtractor({self.to_dict()})"


def _as_mono_clips(raw_speech: Any) -> list[np.ndarray]:
    """Validate the input and return a list of 1-D float32 clips.

    A 2-D array is a batch ``[batch, samples]``, as in transformers; one that looks like
    ``[samples, channels]`` is rejected as multi-channel audio rather than misread.
    """
    if isinstance(raw_speech, np.ndarray) or (
        hasattr(raw_speech, "__array__") and not isinstance(raw_speech, list | tuple)
    ):
        array = np.asarray(raw_speech)
        if array.ndim > 2:
            raise ValueError(f"audio must be 1-D mono or a 2-D batch [batch, samples], got shape {array.shape}")
        if array.ndim == 2 and array.shape[1] <= 8 < array.shape[0]:
            raise ValueError(
                f"audio of shape {array.shape} looks like multi-channel [samples, channels]: "
                "downmix to mono first (e.g. audio.mean(axis=1)) or use whisper_core.load_audio"
            )
        items = list(array) if array.ndim == 2 else [array]
    elif isinstance(raw_speech, list | tuple) and raw_speech and not np.isscalar(raw_speech[0]):
        items = [np.asarray(item) for item in raw_speech]
    else:
        items = [np.asarray(raw_speech)]
    clips = []
    for index, item in enumerate(items):
        if item.ndim != 1:
            raise ValueError(
                f"clip {index} has shape {item.shape}: each clip must be 1-D mono audio (downmix stereo first)"
            )
        if item.size == 0:
            raise ValueError(f"clip {index} is empty: there is no audio to transcribe")
        if np.issubdtype(item.dtype, np.integer):
            raise ValueError(f"clip {index} holds integers ({item.dtype}): give float audio in [-1, 1] (int16 / 32768)")
        clip = item.astype(np.float32, copy=False)
        if not np.isfinite(clip).all():
            raise ValueError(f"clip {index} contains NaN or infinite samples")
        clips.append(clip)
    return clips


def _zero_mean_unit_var(batch: np.ndarray, lengths: list[int], padding_value: float) -> np.ndarray:
    """Normalise each row over its real samples; the padding keeps ``padding_value``."""
    normed = np.full_like(batch, padding_value)
    for row, length in enumerate(lengths):
        clip = batch[row, :length]
        normed[row, :length] = (clip - clip.mean()) / np.sqrt(clip.var() + 1e-7)
    return normed
