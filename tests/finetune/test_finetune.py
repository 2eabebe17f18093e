"""``whisper-mb finetune``: corpus reading and bad rows, batch order and resume, the three backends'
loss curves against each other, and a real fine-tune of tiny.en whose held-out WER must fall."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from weights_bridge import canonical
from weights_bridge.engine import canonical_shapes
from whisper_core.config import WhisperConfig
from whisper_core.finetune import BatchOrder, FinetuneOptions, SkipReport, learning_rate, prepare, read_corpus
from whisper_core.finetune.data import LABEL_BUCKET, make_batch, micro_batches
from whisper_core.finetune.metrics import word_error_rate
from whisper_core.generation_config import GenerationConfig
from whisper_core.modeling_rules import sinusoids
from whisper_core.tokenizer import WhisperTokenizer
from whisper_mb.cli import main
from whisper_mb.finetune import finetune, latest_checkpoint

from . import corpus


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory) -> Path:
    return corpus.build(tmp_path_factory.mktemp("train"), corpus.TRAIN_FRAMES[:2], "csv")


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory) -> Path:
    return corpus.build(tmp_path_factory.mktemp("eval"), corpus.EVAL_FRAMES[:1], "jsonl")


@pytest.fixture(scope="module")
def small_model(tmp_path_factory, tiny_en_dir) -> Path:
    """A random one-layer model with tiny.en's vocabulary and front end: trains in seconds."""
    config = WhisperConfig.from_pretrained(tiny_en_dir).to_dict()
    config.update(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                  decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32)  # fmt: skip
    config = WhisperConfig.from_dict(config)
    rng = np.random.default_rng(0)
    tensors = {
        name: (rng.standard_normal(shape) * 0.05).astype(np.float32) for name, shape in canonical_shapes(config).items()
    }
    tensors["model.encoder.embed_positions.weight"] = sinusoids(1500, 16)
    directory = tmp_path_factory.mktemp("small")
    canonical.save_checkpoint(
        directory, tensors, config, generation_config=GenerationConfig.from_pretrained(tiny_en_dir)
    )
    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "normalizer.json",
        "preprocessor_config.json",
    ):
        if (tiny_en_dir / name).is_file():
            shutil.copyfile(tiny_en_dir / name, directory / name)
    return directory


def test_corpus_layouts_and_bad_rows_are_counted_not_fatal(tmp_path, train_dir, tiny_en_dir):
    rows = read_corpus(train_dir)
    assert len(rows) == 2 * len(corpus.NAMES) and rows[0].text == "Zorvex opened the meeting this morning."
    (tmp_path / "good.wav").write_bytes((train_dir / "clip000.wav").read_bytes())
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really audio")
    long_audio = tmp_path / "long.wav"
    import subprocess

    subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", str(long_audio), "synth", "31", "sine", "440"], check=True)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join([
        json.dumps({"audio": "good.wav", "text": "Zorvex opened the meeting this morning."}),
        json.dumps({"audio": "broken.wav", "text": "x"}),
        json.dumps({"audio": "missing.wav", "text": "x"}),
        json.dumps({"audio": "long.wav", "text": "too long"}),
        json.dumps({"audio": "good.wav", "text": "word " * 500}),
        json.dumps({"audio": "good.wav"}),
        "{not json",
    ]) + "\n")  # fmt: skip
    tokenizer = WhisperTokenizer.from_pretrained(tiny_en_dir)
    report = SkipReport()
    prepared, _ = prepare(read_corpus(manifest, report), tokenizer, 448, report=report)
    assert len(prepared) == 1
    assert report.reasons == {
        "unreadable audio": 2, "audio over 30 s": 1, "labels longer than the decoder allows": 1,
        "rows without audio or text": 1, "unparsable rows": 1,
    }  # fmt: skip
    assert "manifest.jsonl:4 (31.0 s)" in report.summary()
    labels = prepared[0].labels
    assert labels[0] == tokenizer.convert_tokens_to_ids("<|notimestamps|>") and labels[-1] == tokenizer.eos_token_id
    with pytest.raises(FileNotFoundError, match=r"holds no metadata\.jsonl or metadata\.csv"):
        read_corpus(tmp_path)


def test_batches_are_length_sorted_seeded_and_padded(train_dir, tiny_en_dir):
    from whisper_core.feature_extraction import WhisperFeatureExtractor

    tokenizer = WhisperTokenizer.from_pretrained(tiny_en_dir)
    prepared, _ = prepare(read_corpus(train_dir), tokenizer, 448)
    order = BatchOrder([p.seconds for p in prepared], 3, seed=1)
    first = [order.next() for _ in range(order.batches_per_epoch)]
    assert sorted(i for batch in first for i in batch) == list(range(len(prepared)))
    resumed = BatchOrder([p.seconds for p in prepared], 3, seed=1, epoch=order.epoch, position=order.position)
    assert [order.next() for _ in range(4)] == [resumed.next() for _ in range(4)]
    batch = make_batch([prepared[i] for i in first[-1]], WhisperFeatureExtractor.for_checkpoint(str(tiny_en_dir)), 4)
    assert batch["input_features"].shape == (4, 80, 3000) and batch["labels"].shape[1] % LABEL_BUCKET == 0
    short = len(first[-1])
    assert (batch["labels"][short:] == -100).all()  # silent filler rows carry no labels
    parts = micro_batches(batch, 2)
    assert [len(part["labels"]) for part in parts] == [2, 2] and (parts[1]["labels"][0] == batch["labels"][1]).all()


def test_rows_shaped_as_datasets_decodes_them(train_dir, tiny_en_dir):
    """A ``datasets.Dataset``'s rows: decoded audio at its own rate (resampled here), or a path; the text
    column found by name."""
    from whisper_core.audio import load_audio
    from whisper_core.finetune import from_dataset

    samples = load_audio(train_dir / "clip000.wav", sampling_rate=22050)
    rows = [
        {"audio": {"array": samples, "sampling_rate": 22050, "path": None}, "sentence": "Zorvex opened the meeting."},
        {"audio": {"path": str(train_dir / "clip001.wav")}, "transcription": "Kelbrax", "language": "en"},
    ]
    examples = from_dataset(rows)
    assert [e.text for e in examples] == ["Zorvex opened the meeting.", "Kelbrax"] and examples[1].language == "en"
    assert abs(len(examples[0].audio) - len(load_audio(train_dir / "clip000.wav"))) <= 2
    prepared, report = prepare(examples, WhisperTokenizer.from_pretrained(tiny_en_dir), 448)
    assert len(prepared) == 2 and report.total == 0


def test_a_datasets_dataset_trains_as_its_folder(small_model, train_dir, tmp_path):
    """A real ``datasets.Dataset`` whose audio column would decode (through torchcodec, which is not
    installed here) is read undecoded and decoded by PyAV: by path or by embedded bytes, it gives the
    folder's losses."""
    import csv

    import datasets

    with (train_dir / "metadata.csv").open() as file:
        rows = list(csv.DictReader(file))
    paths, texts = [str(train_dir / row["file_name"]) for row in rows], [row["transcription"] for row in rows]
    by_path = datasets.Dataset.from_dict({"audio": paths, "transcription": texts}).cast_column(
        "audio", datasets.Audio(sampling_rate=16000)
    )
    embedded = [{"bytes": Path(path).read_bytes(), "path": None} for path in paths]
    by_bytes = datasets.Dataset.from_dict({"audio": embedded, "sentence": texts}).cast_column("audio", datasets.Audio())
    assert by_path.features["audio"].decode and by_bytes.features["audio"].decode
    options = FinetuneOptions(max_steps=2, batch_size=4, lr=1e-3, seed=5)
    curves = []
    for name, data in (("folder", train_dir), ("path", by_path), ("bytes", by_bytes)):
        finetune("pt", small_model, data, tmp_path / name, options=options, log=lambda line: None)
        curves.append(_losses(tmp_path / name))
    assert len(curves[0]) == 2 and curves[1] == curves[0] and curves[2] == curves[0]


def test_schedule_and_wer():
    rates = [learning_rate(step, 1.0, 5, 2) for step in range(5)]
    assert rates == [0.5, 1.0, 1.0, 2 / 3, 1 / 3]
    assert word_error_rate(["Ask not what your country can do"], ["ask not what our country can do!"]) == 1 / 7
    with pytest.raises(ValueError, match="out of range"):
        FinetuneOptions(batch_size=0)


@pytest.mark.slow
def test_three_backends_follow_one_loss_curve(small_model, train_dir, tmp_path):
    """The same seed and hyperparameters give the same per-update losses in PyTorch, TensorFlow and JAX."""
    options = FinetuneOptions(max_steps=3, batch_size=2, grad_accum=2, lr=1e-3, warmup=1, weight_decay=0.01, seed=3)
    curves = {}
    for backend in ("pt", "tf", "flax"):
        result = finetune(backend, small_model, train_dir, tmp_path / backend, options=options, log=lambda line: None)
        curves[backend] = [entry["loss"] for entry in result.history]
    np.testing.assert_allclose(curves["tf"], curves["pt"], rtol=2e-4)
    np.testing.assert_allclose(curves["flax"], curves["pt"], rtol=2e-4)
    assert curves["pt"][-1] < curves["pt"][0]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["pt", "tf", "flax"])
def test_resume_continues_as_an_uninterrupted_run(backend, small_model, train_dir, tmp_path):
    options = FinetuneOptions(max_steps=4, batch_size=4, lr=1e-3, save_every=2, seed=5)
    whole = finetune(backend, small_model, train_dir, tmp_path / "whole", options=options, log=lambda line: None)
    interrupted = tmp_path / "interrupted"
    finetune(backend, small_model, train_dir, interrupted, options=options, log=lambda line: None)
    shutil.rmtree(interrupted / "checkpoint-4")  # as if the run had stopped after update 2's checkpoint
    assert latest_checkpoint(interrupted).name == "checkpoint-2"
    resumed = finetune(
        backend, small_model, train_dir, interrupted, options=options, resume=True, log=lambda line: None
    )
    assert [e["step"] for e in resumed.history] == [1, 2, 3, 4]
    np.testing.assert_allclose([e["loss"] for e in resumed.history], [e["loss"] for e in whole.history], rtol=1e-5)


@pytest.mark.slow
def test_real_finetune_lowers_held_out_wer_and_ships_to_faster_whisper(tiny_en_dir, tmp_path_factory, tmp_path, capsys):
    """tiny.en on synthesized sentences around made-up names: the held-out WER falls, and the result,
    converted to CTranslate2, runs in faster-whisper."""
    train = corpus.build(tmp_path_factory.mktemp("real_train"), corpus.TRAIN_FRAMES[:4], "csv")
    held_out = corpus.build(tmp_path_factory.mktemp("real_eval"), corpus.EVAL_FRAMES, "jsonl")
    code = main(["finetune", "--backend", "pt", "--model", "tiny.en", "--train", str(train), "--eval", str(held_out),
                 "--output", str(tmp_path / "out"), "--max-steps", "4", "--batch-size", "8", "--lr", "1e-4",
                 "--warmup", "1"])  # fmt: skip
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0
    before, after = report["evaluations"][0]["wer"], report["evaluations"][-1]["wer"]
    assert after < before, report["evaluations"]
    from faster_whisper import WhisperModel

    from weights_bridge.conversion import convert_checkpoint
    from whisper_core.audio import load_audio

    ct2 = convert_checkpoint(tmp_path / "out", tmp_path / "ct2", to="ct2")
    segments, _ = WhisperModel(str(ct2), device="cpu", compute_type="int8").transcribe(
        load_audio(held_out / "clip000.wav"), beam_size=1
    )
    assert "".join(segment.text for segment in segments).strip()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_all(processes: list, logs: list[Path], timeout: float) -> None:
    """Waits for every worker; the first that fails stops the others (which would wait for it forever)."""
    import time

    deadline = time.monotonic() + timeout
    while any(process.poll() is None for process in processes):
        if any(process.returncode not in (None, 0) for process in processes) or time.monotonic() > deadline:
            for process in processes:
                process.kill()
            break
        time.sleep(0.5)
    for process, log in zip(processes, logs, strict=True):
        assert process.wait() == 0, log.read_text(errors="replace")[-3000:]


def _losses(output: Path) -> list[float]:
    return [entry["loss"] for entry in json.loads((output / "finetune_report.json").read_text())["history"]]


def _evaluations(output: Path) -> list[dict[str, float]]:
    return json.loads((output / "finetune_report.json").read_text())["evaluations"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["pt", "tf", "flax"])
def test_two_processes_give_the_one_process_losses(backend, small_model, train_dir, eval_dir, tmp_path):
    """torchrun (DDP over gloo), TensorFlow's MultiWorkerMirroredStrategy (TF_CONFIG) and jax.distributed
    (two CPU processes, gloo) against one process; JAX also over two devices in one process. The first
    process evaluates mid-run while the other waits for the next update: the same evaluations as one
    process."""
    import os
    import subprocess
    import sys

    arguments = ["finetune", "--backend", backend, "--model", str(small_model), "--train", str(train_dir),
                 "--max-steps", "3", "--batch-size", "4", "--grad-accum", "2", "--lr", "1e-3", "--seed", "3",
                 "--eval", str(eval_dir), "--eval-every", "2"]  # fmt: skip
    command = [str(Path(sys.executable).parent / "whisper-mb"), *arguments]
    subprocess.run([*command, "--output", str(tmp_path / "one")], check=True, capture_output=True, timeout=900)
    port = _free_port()
    if backend == "pt":
        torchrun = str(Path(sys.executable).parent / "torchrun")
        two = [torchrun, "--nproc-per-node", "2", f"--master-port={port}", "--no-python", *command,
               "--output", str(tmp_path / "two")]  # fmt: skip
        done = subprocess.run(two, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
    else:
        if backend == "tf":
            workers = [f"127.0.0.1:{port}", f"127.0.0.1:{_free_port()}"]
            environments = [
                {"TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": rank}})}
                for rank in range(2)
            ]
        else:
            environments = [
                {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(rank)}
                for rank in range(2)
            ]
        logs = [tmp_path / f"worker{rank}.log" for rank in range(2)]
        processes = []
        for environment, log in zip(environments, logs, strict=True):
            with log.open("wb") as stderr:
                processes.append(
                    subprocess.Popen(
                        [*command, "--output", str(tmp_path / "two")],
                        stdout=subprocess.DEVNULL,
                        stderr=stderr,
                        env={**os.environ, **environment},
                    )
                )
        _wait_for_all(processes, logs, timeout=900)
    if backend == "flax":
        devices = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
        subprocess.run(
            [*command, "--output", str(tmp_path / "devices")], check=True, capture_output=True, env=devices, timeout=900
        )
        np.testing.assert_allclose(_losses(tmp_path / "devices"), _losses(tmp_path / "one"), rtol=1e-5)
    np.testing.assert_allclose(_losses(tmp_path / "two"), _losses(tmp_path / "one"), rtol=1e-5)
    one, two = _evaluations(tmp_path / "one"), _evaluations(tmp_path / "two")
    assert [entry["step"] for entry in two] == [entry["step"] for entry in one] == [0, 2, 3]
    np.testing.assert_allclose([e["eval_loss"] for e in two], [e["eval_loss"] for e in one], rtol=1e-5)
    assert [entry["wer"] for entry in two] == [entry["wer"] for entry in one]
    assert (tmp_path / "two" / "model.safetensors").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["pt", "tf", "flax"])
def test_freeze_encoder_bfloat16_and_spec_augment(backend, small_model, train_dir, tmp_path):
    """--freeze-encoder leaves every encoder weight as it was and trains the decoder; --dtype bfloat16 and
    --spec-augment train to a finite loss near float32's."""
    from weights_bridge.conversion import read_checkpoint

    frozen = FinetuneOptions(max_steps=2, batch_size=4, lr=1e-2, freeze_encoder=True, seed=1)
    finetune(backend, small_model, train_dir, tmp_path / "frozen", options=frozen, log=lambda line: None)
    before, after = read_checkpoint(small_model).tensors, read_checkpoint(tmp_path / "frozen").tensors
    for name in before:
        unchanged = np.array_equal(before[name], after[name])
        assert unchanged == name.startswith("model.encoder."), name
    plain = finetune(
        backend,
        small_model,
        train_dir,
        tmp_path / "plain",
        options=FinetuneOptions(max_steps=1, batch_size=4),
        log=lambda line: None,
    )
    for changed in ({"dtype": "bfloat16"}, {"spec_augment": True}):
        options = FinetuneOptions(max_steps=1, batch_size=4, **changed)
        result = finetune(
            backend, small_model, train_dir, tmp_path / str(changed), options=options, log=lambda line: None
        )
        assert np.isfinite(result.history[0]["loss"])
        np.testing.assert_allclose(result.history[0]["loss"], plain.history[0]["loss"], rtol=0.02, err_msg=str(changed))
