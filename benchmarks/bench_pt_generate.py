"""Short-form greedy generate in PyTorch: whisper_pt against transformers 4.57.6, same weights and audio.

Each (implementation, model) pair runs in its own process so peak memory is its own. Prints the
encoder time, the per-token decode time, the whole generate time (best of N after a warm-up) at
batch 1 and at batch 16 (the sample repeated), the peak resident memory, and the ratios.

    .venv/bin/python benchmarks/bench_pt_generate.py [--models tiny.en base] [--repeats 5] [--batch 16] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

from timing import best_time

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "jfk.flac"


def worker(implementation: str, model_name: str, repeats: int, batch: int, device: str) -> dict:
    import torch

    from weights_bridge import fetch
    from whisper_core import WhisperFeatureExtractor, load_audio

    directory = fetch(model_name)
    features = WhisperFeatureExtractor()(load_audio(SAMPLE), sampling_rate=16000, return_tensors="pt").input_features
    features = features.to(device)
    language = {} if model_name.endswith(".en") else {"language": "en"}
    if implementation == "ours":
        from whisper_pt import WhisperForConditionalGeneration
    else:
        from transformers import WhisperForConditionalGeneration
    model = WhisperForConditionalGeneration.from_pretrained(directory, torch_dtype=torch.float32).to(device).eval()
    synchronize = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def encode():
        with torch.inference_mode():
            model.get_encoder()(features)
        synchronize()

    def generate(inputs=features):
        with torch.inference_mode():
            result = model.generate(inputs, **language)
        synchronize()
        return result

    tokens = generate()
    prefix = 4 if language else 2  # <|startoftranscript|> [<|en|> <|transcribe|>] <|notimestamps|>
    starts_with_prefix = int(tokens[0, 0]) == model.generation_config.decoder_start_token_id
    generated = tokens.shape[-1] - (prefix if starts_with_prefix else 0)  # the same count on both sides
    encoder_time = best_time(encode, repeats)
    generate_time = best_time(generate, repeats)
    batch_time = best_time(lambda: generate(features.repeat(batch, 1, 1)), max(1, repeats // 2))
    return {
        "batch_generate_s": batch_time,
        "encoder_s": encoder_time,
        "generate_s": generate_time,
        "per_token_ms": 1000 * (generate_time - encoder_time) / max(generated, 1),
        "tokens": generated,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", nargs=2, metavar=("IMPLEMENTATION", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.repeats, args.batch, args.device)))
        return
    print(
        f"| model | implementation | encoder (ms) | per token (ms) | generate (ms) | generate b={args.batch} (ms) "
        "| peak RSS (MB) | generate speed-up | batch speed-up |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for model_name in args.models:
        results = {}
        for implementation in ("ours", "transformers"):
            command = [
                sys.executable,
                __file__,
                "--worker",
                implementation,
                model_name,
                "--repeats",
                str(args.repeats),
                "--batch",
                str(args.batch),
                "--device",
                args.device,
            ]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            results[implementation] = json.loads(output.strip().splitlines()[-1])
        for implementation, result in results.items():
            ratio = results["transformers"]["generate_s"] / result["generate_s"]
            batch_ratio = results["transformers"]["batch_generate_s"] / result["batch_generate_s"]
            print(
                f"| {model_name} | {implementation} | {1000 * result['encoder_s']:.1f} | {result['per_token_ms']:.2f} | "
                f"{1000 * result['generate_s']:.1f} | {1000 * result['batch_generate_s']:.0f} | "
                f"{result['peak_rss_mb']:.0f} | {ratio:.2f}x | {batch_ratio:.2f}x |"
            )


if __name__ == "__main__":
    main()
