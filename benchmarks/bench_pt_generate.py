"""Short-form greedy generate in PyTorch: whisper_pt against transformers 4.57.6, same weights and audio.

Both sides load in one process per model and run alternately (common.py, DESIGN §8): jfk padded
to 30 s at batch 1 and repeated to batch 16. Prints per (model, batch) both medians, the median
speed-up with its range over pairs, each side's first call (a compile, where ours compiles), the
batch-1 encoder and per-token times, and the generated-token counts.

    .venv/bin/python benchmarks/bench_pt_generate.py [--models tiny.en base] [--batches 1 16] [--pairs 5] [--device cpu]
"""

from __future__ import annotations

import argparse

import common


def worker(model_name: str, args: argparse.Namespace) -> common.Contest:
    import torch
    from transformers import WhisperForConditionalGeneration as Theirs

    from weights_bridge import fetch
    from whisper_pt import WhisperForConditionalGeneration as Ours

    directory = fetch(model_name)
    language = {} if model_name.endswith(".en") else {"language": "en"}
    synchronize = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def side(model_class) -> common.Side:
        model = model_class.from_pretrained(directory, torch_dtype=torch.float32).to(args.device).eval()

        def encode(features: torch.Tensor) -> None:
            with torch.inference_mode():
                model.get_encoder()(features)
            synchronize()

        def generate(features: torch.Tensor):
            with torch.inference_mode():
                return model.generate(features, **language).cpu().numpy()

        return common.Side(encode, generate)

    return common.Contest(
        ours=side(Ours),
        peer=side(Theirs),
        single=torch.from_numpy(common.jfk_features()).to(args.device),
        repeat=lambda features, batch: features.repeat(batch, 1, 1),
        count=common.token_counter(model_name, directory),
    )


if __name__ == "__main__":
    common.main(__doc__, worker, [("--device", {"default": "cpu"})])
