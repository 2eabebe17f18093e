"""Convert a Whisper checkpoint from any supported format to any other: ``convert_checkpoint(src, dst, to=...)``.

Sources: a canonical/HF directory (``model.safetensors`` or shards, ``pytorch_model.bin``,
``tf_model.h5``, ``flax_model.msgpack``), an openai-whisper ``.pt`` file, a CTranslate2 directory
(``model.bin``, float or int8/int16, + its ``config.json`` + ``tokenizer.json``), a whisper.cpp
``ggml-*.bin`` file or an mlx-whisper directory. Targets:

| ``to`` | writes |
| --- | --- |
| ``canonical`` / ``pt`` | the canonical directory (DESIGN.md §1) |
| ``tf`` / ``flax`` | the canonical directory plus ``tf_model.h5`` / ``flax_model.msgpack`` |
| ``openai`` | one ``.pt`` file |
| ``ct2`` | a CTranslate2 directory as faster-whisper loads it: ``model.bin``, ``config.json``, ``tokenizer.json``, ``vocabulary.txt`` |
| ``ggml`` | one whisper.cpp model file |
| ``mlx`` | an mlx-whisper directory: ``config.json``, ``weights.safetensors`` (plus the tokenizer and generation config, which mlx-whisper ignores) |

``dtype`` casts every weight to float32 or float16; ``ct2`` also takes ``int8`` (CTranslate2's int8
weights with float32 scales, what faster-whisper runs with ``compute_type="int8"``) and ``ggml`` takes
``q8_0``. ``ggml`` defaults to float16, as whisper.cpp's own files: its CPU backend cannot run the
float32 convolutions of a float32 file (a GPU backend can).

Config, generation config and feature-extractor settings the source lacks are derived (from CT2's
config and tokenizer, from openai's ``dims``, or from the model config); tokenizer files are copied.
An openai ``.pt`` file has no tokenizer: one is built from a ``.tiktoken`` file (openai-whisper's own,
or the one given) and written with the output.
Weights flow through lazy views (:class:`weights_bridge.engine.LazyTensors`): safetensors, h5 and
msgpack sources are read one tensor at a time and h5, msgpack and CT2 targets written one tensor at a
time; only safetensors and ``.pt`` targets hold every tensor at once, because their writers take a
whole dict. The output is built in a temporary sibling and renamed into place, so a failed
conversion leaves nothing at ``dst``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open

from whisper_core.config import CONFIG_NAME, MULTILINGUAL_VOCAB_SIZE, WhisperConfig
from whisper_core.decoding.suppression import default_begin_suppress_tokens, default_suppress_tokens
from whisper_core.feature_extraction import PREPROCESSOR_CONFIG_NAME, WhisperFeatureExtractor
from whisper_core.fileio import read_json
from whisper_core.generation_config import GENERATION_CONFIG_NAME, MAX_INITIAL_TIMESTAMP_INDEX, GenerationConfig
from whisper_core.languages import LANGUAGES
from whisper_core.tiktoken_conversion import special_token_ids
from whisper_core.tokenizer import (
    NO_TIMESTAMPS,
    START_OF_PREV,
    TIME_PRECISION,
    TOKENIZER_FILE,
    TRANSCRIBE,
    TRANSLATE,
    WhisperTokenizer,
)

from . import canonical, ctranslate2, engine, fetching, flax_msgpack, ggml, mlx, openai_models, openai_pt, tf_h5

TARGETS: tuple[str, ...] = ("canonical", "pt", "tf", "flax", "openai", "ct2", "ggml", "mlx")
DTYPES: tuple[str, ...] = ("float32", "float16")
# Quantized dtypes a target's writer makes itself, from float32 weights.
QUANTIZED_DTYPES: dict[str, tuple[str, ...]] = {"ct2": ("int8",), "ggml": ("q8_0",)}
# Tokenizer files of an HF checkpoint, copied as they are when the source has them.
TOKENIZER_FILES: tuple[str, ...] = (
    TOKENIZER_FILE,
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "special_tokens_map.json",
    "normalizer.json",
)
CT2_VOCABULARY = "vocabulary.txt"  # one token per line, in id order, as CTranslate2's converter writes it


@dataclass
class Checkpoint:
    """A source read into canonical form: tensors may be lazy (loaded from the file on access)."""

    path: Path
    format: (
        str  # "safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "openai", "ct2", "ggml", "mlx"
    )
    config: WhisperConfig
    tensors: Mapping[str, np.ndarray]
    generation_config: GenerationConfig
    feature_extractor: WhisperFeatureExtractor
    tokenizer_dir: Path | None  # where the tokenizer files are, if the source has any
    tokenizer: WhisperTokenizer | None = None  # built for a source without tokenizer files (a .pt file)

    def load_tokenizer(self) -> WhisperTokenizer | None:
        """The source's tokenizer: the one built for it, or the one its files hold."""
        if self.tokenizer is None and self.tokenizer_dir is not None:
            self.tokenizer = WhisperTokenizer.from_pretrained(self.tokenizer_dir)
        return self.tokenizer


def _lazy_safetensors(directory: Path, config: WhisperConfig) -> engine.LazyTensors:
    """The canonical tensors of a single or sharded safetensors checkpoint, read one at a time."""
    if (directory / canonical.SAFE_WEIGHTS_NAME).is_file():
        files = [directory / canonical.SAFE_WEIGHTS_NAME]
    else:
        files = [directory / shard for shard in canonical._read_index(directory, canonical.SAFE_WEIGHTS_INDEX_NAME)]
    where: dict[str, Path] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="np") as file:
                for name in file.keys():  # noqa: SIM118 (safe_open has no __iter__)
                    where[name], shapes[name] = path, tuple(file.get_slice(name).get_shape())
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{path}: not a readable safetensors file: {error}") from error

    def load(name: str) -> np.ndarray:
        try:
            with safe_open(str(where[name]), framework="np") as file:
                return canonical.read_safetensors_tensor(file, where[name], name)
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{where[name]}: cannot read tensor {name}: {error}") from error

    tensors = engine.LazyTensors({name: (lambda name=name: load(name)) for name in where}, shapes)
    source = str(files[0] if len(files) == 1 else directory / canonical.SAFE_WEIGHTS_INDEX_NAME)
    tensors = engine.drop_tied(tensors, config, source=source)
    engine.check_canonical(tensors, config, source=source)
    return tensors


def _hf_weights(directory: Path, config: WhisperConfig) -> tuple[str, Mapping[str, np.ndarray]]:
    """The weights of an HF-layout directory, in the order transformers prefers them."""
    if (directory / canonical.SAFE_WEIGHTS_NAME).is_file() or (directory / canonical.SAFE_WEIGHTS_INDEX_NAME).is_file():
        return "safetensors", _lazy_safetensors(directory, config)
    if (directory / canonical.PT_WEIGHTS_NAME).is_file() or (directory / canonical.PT_WEIGHTS_INDEX_NAME).is_file():
        return canonical.PT_WEIGHTS_NAME, canonical.load_weights(directory, config)
    if (directory / tf_h5.TF_WEIGHTS_NAME).is_file():
        return tf_h5.TF_WEIGHTS_NAME, tf_h5.to_canonical(directory / tf_h5.TF_WEIGHTS_NAME, config)
    if (directory / flax_msgpack.FLAX_WEIGHTS_NAME).is_file():
        return flax_msgpack.FLAX_WEIGHTS_NAME, flax_msgpack.to_canonical(
            directory / flax_msgpack.FLAX_WEIGHTS_NAME, config
        )
    raise FileNotFoundError(
        f"{directory} holds no weights: expected {canonical.SAFE_WEIGHTS_NAME}, {canonical.PT_WEIGHTS_NAME}, "
        f"{tf_h5.TF_WEIGHTS_NAME} or {flax_msgpack.FLAX_WEIGHTS_NAME}"
    )


def _is_ct2(directory: Path) -> bool:
    """CTranslate2 directories have model.bin and a config.json that is not an HF model config."""
    if not (directory / ctranslate2.MODEL_FILE).is_file():
        return False
    return not (directory / CONFIG_NAME).is_file() or "model_type" not in read_json(directory / CONFIG_NAME)


def generation_config_from_model_config(
    config: WhisperConfig, tokenizer: WhisperTokenizer | None, *, file_name: str | None = None
) -> GenerationConfig:
    """A generation config from the model config, for a source that has none.

    Special-token ids are named by the tokenizer or, without one, placed by openai-whisper's vocabulary
    layout. The suppression lists need the tokenizer's spelling of symbols, so they are only derived
    with one. Alignment heads come from :func:`weights_bridge.openai_models.alignment_heads`, which
    recognises official models by ``file_name``.
    """
    values = GenerationConfig.from_model_config(config).to_dict()
    multilingual = config.vocab_size >= MULTILINGUAL_VOCAB_SIZE
    values.update(
        is_multilingual=multilingual,
        max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX,
        alignment_heads=openai_models.alignment_heads(config, file_name),
    )
    if tokenizer is not None:
        ids = tokenizer.convert_tokens_to_ids
        languages = {f"<|{code}|>": token_id for code, token_id in tokenizer.language_token_ids().items()}
        values.update(
            suppress_tokens=default_suppress_tokens(tokenizer),
            begin_suppress_tokens=default_begin_suppress_tokens(tokenizer),
        )
    else:
        try:
            table = special_token_ids(config.vocab_size)
        except ValueError:  # not a Whisper vocabulary (a small custom config): no ids to place
            return GenerationConfig(**values)
        ids = table.__getitem__
        languages = {token: token_id for token, token_id in table.items() if token[2:-2] in LANGUAGES}
    values.update(no_timestamps_token_id=ids(NO_TIMESTAMPS), prev_sot_token_id=ids(START_OF_PREV))
    if multilingual:
        values["lang_to_id"] = languages
        values["task_to_id"] = {"transcribe": ids(TRANSCRIBE), "translate": ids(TRANSLATE)}
    return GenerationConfig(**values)


def _openai_tokenizer(config: WhisperConfig, tokenizer: str | os.PathLike | None) -> WhisperTokenizer | None:
    """The tokenizer for an openai-whisper ``.pt`` file: the one given (a tokenizer directory or a
    ``.tiktoken`` file), else openai-whisper's own when it is installed and the vocabulary is one of
    OpenAI's, else none. A given tokenizer must fit the model's embedding."""
    given = Path(tokenizer) if tokenizer is not None else None
    path = given
    if given is not None and given.suffix != ".tiktoken":
        built = WhisperTokenizer.from_pretrained(given)
    else:
        try:
            table = special_token_ids(config.vocab_size)
        except ValueError as error:
            if given is None:
                return None
            raise ValueError(f"{given} cannot be this model's tokenizer: {error}") from None
        path = given or openai_models.bundled_tiktoken(config)
        if path is None:
            return None
        built = WhisperTokenizer.from_pretrained(path, num_languages=sum(t[2:-2] in LANGUAGES for t in table))
    if len(built) > config.vocab_size or built.eos_token_id != config.eos_token_id:
        raise ValueError(
            f"{path} does not fit the model: {len(built)} tokens with <|endoftext|> = {built.eos_token_id}, "
            f"the model has {config.vocab_size} embeddings with <|endoftext|> = {config.eos_token_id}"
        )
    return built


def read_checkpoint(src: str | os.PathLike, *, tokenizer: str | os.PathLike | None = None) -> Checkpoint:
    """Read any supported checkpoint into canonical form (weights lazily where the format allows).

    ``tokenizer`` (a tokenizer directory or ``.tiktoken`` file) is for a source that has no tokenizer
    files; an openai-whisper ``.pt`` file otherwise gets openai-whisper's own when it is installed.
    """
    path = Path(src)
    if path.is_file() and ggml.is_ggml(path):
        return _read_ggml(path, tokenizer)
    if path.is_file():
        config, tensors = openai_pt.read(path)
        built = _openai_tokenizer(config, tokenizer)
        generation_config = generation_config_from_model_config(config, built, file_name=path.name)
        return Checkpoint(path, "openai", config, tensors, generation_config, _extractor(config), None, built)
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint at {path}")
    tokenizer_dir = path if (path / TOKENIZER_FILE).is_file() else None
    if tokenizer is not None:
        if tokenizer_dir is not None:
            raise ValueError(f"{path} has its own {TOKENIZER_FILE}; a tokenizer is only taken for sources without one")
        tokenizer_dir = Path(tokenizer)
        if not (tokenizer_dir / TOKENIZER_FILE).is_file():
            raise FileNotFoundError(f"{tokenizer_dir} holds no {TOKENIZER_FILE}")
    if mlx.is_mlx(path):
        return _read_mlx(path, tokenizer_dir)
    if _is_ct2(path):
        if tokenizer_dir is None:
            raise FileNotFoundError(f"{path}: a CTranslate2 directory needs {TOKENIZER_FILE} to derive the config")
        model = ctranslate2.read_model(path / ctranslate2.MODEL_FILE)
        model = ctranslate2.dequantize(model, source=str(path / ctranslate2.MODEL_FILE))
        ct2_config = ctranslate2.read_config(path)
        text_tokenizer = WhisperTokenizer.from_pretrained(tokenizer_dir)
        source = str(path / ctranslate2.MODEL_FILE)
        config = fetching.config_from_ctranslate2(model, ct2_config, text_tokenizer, source=source)
        tensors = ctranslate2.to_canonical(model, config, source=source)
        generation_config = fetching.generation_config_from_ctranslate2(ct2_config, text_tokenizer, config)
        return Checkpoint(
            path, "ct2", config, tensors, generation_config, _extractor(config), tokenizer_dir, text_tokenizer
        )
    config = WhisperConfig.from_pretrained(path)
    weights_format, tensors = _hf_weights(path, config)
    if (path / GENERATION_CONFIG_NAME).is_file():
        generation_config = GenerationConfig.from_pretrained(path)
    else:
        text_tokenizer = WhisperTokenizer.from_pretrained(tokenizer_dir) if tokenizer_dir is not None else None
        generation_config = generation_config_from_model_config(config, text_tokenizer)
    if (path / PREPROCESSOR_CONFIG_NAME).is_file():
        extractor = WhisperFeatureExtractor.from_pretrained(path)
    else:
        extractor = _extractor(config)
    return Checkpoint(path, weights_format, config, tensors, generation_config, extractor, tokenizer_dir)


def _read_ggml(path: Path, tokenizer: str | os.PathLike | None) -> Checkpoint:
    """A whisper.cpp file: its tokenizer is rebuilt from the file's own vocabulary unless one is given."""
    model = ggml.read(path)
    config, tensors = ggml.to_canonical(model, source=str(path))
    if tokenizer is not None:
        built = _openai_tokenizer(config, tokenizer)
    else:
        built = ggml.vocabulary_tokenizer(model, config, source=str(path))
    official_name = path.name.removeprefix(ggml.FILE_PREFIX)  # ggml-base.en.bin is openai's base.en
    generation_config = generation_config_from_model_config(config, built, file_name=official_name)
    return Checkpoint(path, "ggml", config, tensors, generation_config, _extractor(config), None, built)


def _read_mlx(path: Path, tokenizer_dir: Path | None) -> Checkpoint:
    """An mlx-whisper directory: the tokenizer and generation config a conversion wrote beside the
    weights if there, else openai-whisper's tokenizer; its stored alignment heads win."""
    config, tensors, heads = mlx.read(path)
    built = None if tokenizer_dir is not None else _openai_tokenizer(config, None)
    if (path / GENERATION_CONFIG_NAME).is_file():
        generation_config = GenerationConfig.from_pretrained(path)
    else:
        text_tokenizer = WhisperTokenizer.from_pretrained(tokenizer_dir) if tokenizer_dir is not None else built
        generation_config = generation_config_from_model_config(config, text_tokenizer, file_name=path.name)
    if heads is not None:
        generation_config.alignment_heads = heads
    return Checkpoint(path, "mlx", config, tensors, generation_config, _extractor(config), tokenizer_dir, built)


def _extractor(config: WhisperConfig) -> WhisperFeatureExtractor:
    return WhisperFeatureExtractor(feature_size=config.num_mel_bins)


def _cast(checkpoint: Checkpoint, dtype: str | None) -> tuple[WhisperConfig, Mapping[str, np.ndarray]]:
    """The config and tensors to write: cast tensor by tensor (and the config's dtype noted) when asked.
    A quantized dtype leaves the float tensors it does not quantize as they are, as CTranslate2's converter does."""
    if dtype is None:
        return checkpoint.config, checkpoint.tensors
    if any(dtype in quantized for quantized in QUANTIZED_DTYPES.values()):
        return checkpoint.config, checkpoint.tensors  # quantized from float32 by the writer; the rest kept
    config = WhisperConfig.from_dict({**checkpoint.config.to_dict(), "torch_dtype": dtype})
    tensors = engine.lazy(checkpoint.tensors).map(lambda array: array.astype(dtype, copy=False))
    return config, tensors


def _write_canonical(directory: Path, checkpoint: Checkpoint, config: WhisperConfig, tensors: Mapping) -> None:
    canonical.save_checkpoint(
        directory,
        tensors,
        config,
        generation_config=checkpoint.generation_config,
        feature_extractor=checkpoint.feature_extractor,
    )
    _write_tokenizer(directory, checkpoint)


def _write_tokenizer(directory: Path, checkpoint: Checkpoint) -> None:
    if checkpoint.tokenizer_dir is not None:
        for name in TOKENIZER_FILES:
            if (checkpoint.tokenizer_dir / name).is_file():
                shutil.copyfile(checkpoint.tokenizer_dir / name, directory / name)
    elif checkpoint.tokenizer is not None:
        checkpoint.tokenizer.save_pretrained(directory)


def _write_mlx(directory: Path, checkpoint: Checkpoint, config: WhisperConfig, tensors: Mapping) -> None:
    mlx.write(directory, tensors, config, checkpoint.generation_config.alignment_heads, source=str(checkpoint.path))
    checkpoint.generation_config.save_pretrained(directory)
    _write_tokenizer(directory, checkpoint)


def _required_tokenizer(checkpoint: Checkpoint, target: str) -> WhisperTokenizer:
    tokenizer = checkpoint.load_tokenizer()
    if tokenizer is None:
        raise ValueError(
            f"{checkpoint.path} has no tokenizer, which a {target} model needs: pass one (a directory with "
            f"{TOKENIZER_FILE} or a .tiktoken file), or install openai-whisper for its own"
        )
    return tokenizer


def _write_ggml(path: Path, checkpoint: Checkpoint, config: WhisperConfig, tensors: Mapping, dtype: str | None) -> None:
    tokenizer = _required_tokenizer(checkpoint, "whisper.cpp")
    # whisper.cpp's own files are float16, and its CPU backend runs only float16 convolutions (ggml's
    # im2col asserts on a float32 kernel), so float32 is written only when asked for.
    dtype = dtype or "float16"
    model, kinds = ggml.from_canonical(
        tensors,
        config,
        weights_type=dtype,
        mel_filters=checkpoint.feature_extractor.mel_filters.T,
        vocabulary=ggml.vocabulary_of(tokenizer),
        source=str(checkpoint.path),
    )
    ggml.write(path, model, kinds)


def _write_ct2(
    directory: Path, checkpoint: Checkpoint, config: WhisperConfig, tensors: Mapping, dtype: str | None
) -> None:
    tokenizer = _required_tokenizer(checkpoint, "CTranslate2")
    view = engine.foreign_view(tensors, "ct2", config, source=str(checkpoint.path))
    if dtype == "int8":
        view = ctranslate2.quantize(view, engine.foreign_kinds(config, "ct2"))
    settings = {name: np.array(value(config), dtype=dtype) for name, (dtype, value) in ctranslate2.CT2_SCALARS.items()}
    variables = engine.LazyTensors(
        {name: (lambda name=name: view[name]) for name in sorted(view)}
        | {name: (lambda array=array: array) for name, array in settings.items()}
    )
    ordered = engine.LazyTensors({name: (lambda name=name: variables[name]) for name in sorted(variables)})
    ctranslate2.write_model(
        directory / ctranslate2.MODEL_FILE, ctranslate2.Ct2Model(ordered, engine.tied_names(config, "ct2"))
    )
    ctranslate2.write_config(directory, ctranslate2.config_from_generation(checkpoint.generation_config))
    if checkpoint.tokenizer_dir is not None:
        shutil.copyfile(checkpoint.tokenizer_dir / TOKENIZER_FILE, directory / TOKENIZER_FILE)
    else:
        tokenizer.backend_tokenizer.save(str(directory / TOKENIZER_FILE))
    tokens = tokenizer.convert_ids_to_tokens(range(min(len(tokenizer), config.vocab_size)))
    # Like CTranslate2's converter, name the ids the tokenizer file lacks (the timestamp tokens
    # of older HF tokenizers) so the vocabulary covers the model's embedding.
    tokens += [f"<|{(i - len(tokens)) * TIME_PRECISION:.2f}|>" for i in range(len(tokens), config.vocab_size)]
    (directory / CT2_VOCABULARY).write_text("".join(f"{token}\n" for token in tokens), encoding="utf-8")


def convert_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    to: str = "canonical",
    dtype: str | None = None,
    tokenizer: str | os.PathLike | None = None,
) -> Path:
    """Convert the checkpoint at ``src`` into format ``to`` at ``dst`` (which must not exist yet).

    ``dtype`` ("float32" or "float16") casts every weight, and "int8" (``ct2``) or "q8_0" (``ggml``)
    quantizes as that runtime does; by default weights keep their dtype and the conversion is bit-identical. ``tokenizer`` is for a source without tokenizer files (see
    :func:`read_checkpoint`); it is written with the output.
    """
    if to not in TARGETS:
        raise ValueError(f"unknown target format {to!r}; choose one of {TARGETS}")
    allowed = DTYPES + QUANTIZED_DTYPES.get(to, ())
    if dtype is not None and dtype not in allowed:
        raise ValueError(f"dtype for --to {to} must be one of {allowed}, got {dtype!r}")
    destination = Path(dst)
    if destination.exists() and not (destination.is_dir() and not any(destination.iterdir())):
        raise FileExistsError(f"{destination} already exists; convert into a new path")
    checkpoint = read_checkpoint(src, tokenizer=tokenizer)
    config, tensors = _cast(checkpoint, dtype)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if to == "openai":
        return openai_pt.write(destination, tensors, config)
    if to == "ggml":
        _write_ggml(destination, checkpoint, config, tensors, dtype)
        return destination
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent))
    try:
        if to == "ct2":
            _write_ct2(staging, checkpoint, config, tensors, dtype)
        elif to == "mlx":
            _write_mlx(staging, checkpoint, config, tensors)
        else:
            _write_canonical(staging, checkpoint, config, tensors)
            if to == "tf":
                tf_h5.from_canonical(staging / tf_h5.TF_WEIGHTS_NAME, tensors, config)
            elif to == "flax":
                flax_msgpack.from_canonical(staging / flax_msgpack.FLAX_WEIGHTS_NAME, tensors, config)
        staging.chmod(0o755)  # mkdtemp's 0700 is not what a checkpoint directory should have
        if destination.is_dir():
            destination.rmdir()
        staging.rename(destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def read_written(dst: str | os.PathLike, to: str, config: WhisperConfig) -> Mapping[str, np.ndarray]:
    """The canonical tensors of what ``convert_checkpoint(..., to=to)`` wrote, read from its native file."""
    destination = Path(dst)
    if to == "tf":
        return tf_h5.to_canonical(destination / tf_h5.TF_WEIGHTS_NAME, config)
    if to == "flax":
        return flax_msgpack.to_canonical(destination / flax_msgpack.FLAX_WEIGHTS_NAME, config)
    return read_checkpoint(destination).tensors
