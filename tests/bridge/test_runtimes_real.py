"""The real tiny.en (and base) written for whisper.cpp, mlx-whisper and faster-whisper int8, checked by the
real runtimes transcribing jfk.flac, and read back.

whisper.cpp (the ``pywhispercpp`` wheel) and mlx-whisper (on ``mlx[cpu]``) run in their own processes: a
native assertion in either would otherwise take the test worker down with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import JFK_TEXT
from tests.helpers import english_wer
from weights_bridge import ctranslate2, data_packages
from weights_bridge.conversion import convert_checkpoint, read_checkpoint
from whisper_core.tokenizer import WhisperTokenizer

pytestmark = pytest.mark.slow

WHISPER_CPP = """
import json, sys
import numpy as np
from pywhispercpp.model import Model
model = Model(sys.argv[1], n_threads=2, print_progress=False)
segments = model.transcribe(np.load(sys.argv[2]), language="en")
print(json.dumps(" ".join(segment.text for segment in segments)))
"""
MLX_WHISPER = """
import json, sys
import numpy as np
import mlx_whisper
result = mlx_whisper.transcribe(np.load(sys.argv[2]), path_or_hf_repo=sys.argv[1], language="en", fp16=True)
print(json.dumps(result["text"]))
"""


def _run(script: str, model: Path, audio: Path) -> str:
    """The runtime's transcript of ``audio``, from its own process; its output on failure."""
    done = subprocess.run(
        [sys.executable, "-c", script, str(model), str(audio)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def jfk_npy(tmp_path_factory, jfk_audio) -> Path:
    path = tmp_path_factory.mktemp("audio") / "jfk.npy"
    np.save(path, jfk_audio.astype(np.float32))
    return path


@pytest.fixture(scope="module")
def tiny_en_tensors(tiny_en_dir) -> dict[str, np.ndarray]:
    return dict(read_checkpoint(tiny_en_dir).tensors)


@pytest.mark.parametrize("dtype", ["float16", "q8_0"])
def test_whisper_cpp_transcribes_our_file(tiny_en_dir, tiny_en_tensors, jfk_npy, tmp_path, dtype):
    path = convert_checkpoint(tiny_en_dir, tmp_path / "ggml-tiny.en.bin", to="ggml", dtype=dtype)
    text = _run(WHISPER_CPP, path, jfk_npy)
    assert english_wer(JFK_TEXT, text) <= 0.05, text
    back = read_checkpoint(path)
    assert back.format == "ggml" and back.config.to_dict()["d_model"] == 384
    assert back.generation_config.alignment_heads == [[1, 0], [2, 0], [2, 5], [3, 0], [3, 1], [3, 2], [3, 3], [3, 4]]
    for name, array in back.tensors.items():
        if dtype == "float16":  # tiny.en is float16: the file holds it exactly
            assert array.tobytes() == tiny_en_tensors[name].tobytes(), name
        else:
            step = np.abs(tiny_en_tensors[name]).astype(np.float32).max() / 127
            np.testing.assert_allclose(array, tiny_en_tensors[name].astype(np.float32), atol=0.6 * step, err_msg=name)


def test_whisper_cpp_float32_file_reads_back_exactly(tiny_en_dir, tiny_en_tensors, tmp_path):
    """whisper.cpp's CPU backend cannot run a float32 file's convolutions (ggml's im2col wants float16),
    so this one is only read back."""
    path = convert_checkpoint(tiny_en_dir, tmp_path / "tiny.bin", to="ggml", dtype="float32")
    back = read_checkpoint(path)
    for name, array in back.tensors.items():
        assert array.tobytes() == tiny_en_tensors[name].astype(np.float32).tobytes(), name


def test_a_whisper_cpp_file_comes_back_and_transcribes_here(tiny_en_dir, tiny_en_tokenizer_dir, tmp_path, jfk_audio):
    """ggml -> our canonical checkpoint, with the tokenizer rebuilt from the file's own vocabulary."""
    from whisper_core.transcribe import Transcriber
    from whisper_mb import load_backend

    path = convert_checkpoint(tiny_en_dir, tmp_path / "ggml-tiny.en.bin", to="ggml")
    back = convert_checkpoint(path, tmp_path / "back", to="pt")
    sentence = " And so my fellow Americans, ask not — naïve café 日本語!"
    ours, theirs = WhisperTokenizer.from_pretrained(back), WhisperTokenizer.from_pretrained(tiny_en_tokenizer_dir)
    assert ours(sentence)["input_ids"] == theirs(sentence)["input_ids"]
    transcriber = Transcriber.from_pretrained(load_backend("pt", str(back)), str(back))
    assert english_wer(JFK_TEXT, transcriber.transcribe([jfk_audio])[0].text) <= 0.05


def test_multilingual_vocabulary_round_trips_through_ggml(base_dir, base_tokenizer_dir, tmp_path):
    """base's multilingual vocabulary: 50257 byte-pair tokens (the last one empty), specials placed from n_vocab."""
    path = convert_checkpoint(base_dir, tmp_path / "ggml-base.bin", to="ggml")
    back = read_checkpoint(path)
    theirs = WhisperTokenizer.from_pretrained(base_tokenizer_dir)
    assert len(back.tokenizer) == back.config.vocab_size - 1501  # timestamps are not tokens here, as in HF's
    for sentence in (" Ich bin ein Berliner.", " これは日本語です。", " ¿Dónde está la biblioteca?"):
        assert back.tokenizer(sentence)["input_ids"] == theirs(sentence)["input_ids"], sentence
    assert back.generation_config.lang_to_id == read_checkpoint(base_dir).generation_config.lang_to_id
    assert back.generation_config.alignment_heads == [[3, 1], [4, 2], [4, 3], [4, 7], [5, 1], [5, 2], [5, 4], [5, 6]]


def test_mlx_whisper_transcribes_our_directory(tiny_en_dir, tiny_en_tensors, jfk_npy, tmp_path):
    directory = convert_checkpoint(tiny_en_dir, tmp_path / "mlx", to="mlx")
    text = _run(MLX_WHISPER, directory, jfk_npy)
    assert english_wer(JFK_TEXT, text) <= 0.05, text
    back = read_checkpoint(directory)
    assert back.format == "mlx"
    for name, array in back.tensors.items():
        if name == "model.encoder.embed_positions.weight":  # recomputed, as mlx-whisper does
            np.testing.assert_allclose(array, tiny_en_tensors[name], atol=1e-3)
        else:
            assert array.tobytes() == tiny_en_tensors[name].tobytes(), name
    npz = tmp_path / "npz"  # mlx-whisper reads weights.npz where there is no safetensors file
    npz.mkdir()
    (npz / "config.json").write_bytes((directory / "config.json").read_bytes())
    from safetensors.numpy import load_file

    np.savez(npz / "weights.npz", **load_file(directory / "weights.safetensors"))
    assert english_wer(JFK_TEXT, _run(MLX_WHISPER, npz, jfk_npy)) <= 0.05


def test_faster_whisper_runs_our_int8_model_as_ctranslate2_writes_it(tiny_en_dir, tiny_en_tensors, jfk_audio, tmp_path):
    from faster_whisper import WhisperModel

    directory = convert_checkpoint(tiny_en_dir, tmp_path / "int8", to="ct2", dtype="int8")
    segments, _ = WhisperModel(str(directory), device="cpu", compute_type="int8").transcribe(
        jfk_audio, language="en", beam_size=1
    )
    assert english_wer(JFK_TEXT, " ".join(segment.text for segment in segments)) <= 0.05
    # CTranslate2's own converter, on the same checkpoint: every variable we write is the same, byte for byte
    # (it adds two ALiBi settings, off, that newer versions write).
    reference = tmp_path / "reference"
    done = subprocess.run(
        [Path(sys.executable).parent / "ct2-transformers-converter", "--model", str(tiny_en_dir),
         "--output_dir", str(reference), "--quantization", "int8"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    ours = ctranslate2.read_model(directory / "model.bin").variables
    theirs = ctranslate2.read_model(reference / "model.bin").variables
    assert set(theirs) - set(ours) == {"decoder/scale_alibi", "decoder/alibi_use_positive_positions"}
    assert set(ours) <= set(theirs)
    for name, array in ours.items():
        assert array.dtype == theirs[name].dtype and array.tobytes() == theirs[name].tobytes(), name
    weights = [array for array in ours.values() if array.dtype == np.int8 and array.ndim]  # not the int8 settings
    assert len(weights) == 2 + 4 * 4 + 1 + 4 * 7  # convolutions, encoder layers, embedding, decoder layers
    # Both read back, to the same float values; CTranslate2's newer file included.
    back = read_checkpoint(directory)
    for name, array in back.tensors.items():
        step = np.abs(tiny_en_tensors[name]).astype(np.float32).max() / 127
        np.testing.assert_allclose(
            array, tiny_en_tensors[name].astype(np.float32), atol=0.6 * step, err_msg=name
        )  # and float16 rounding
    (reference / "tokenizer.json").write_bytes((data_packages.metadata_dir("tiny.en") / "tokenizer.json").read_bytes())
    theirs_back = read_checkpoint(reference)
    for name, array in back.tensors.items():
        assert array.tobytes() == theirs_back.tensors[name].astype(array.dtype).tobytes(), name
