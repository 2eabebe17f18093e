"""Conversion time and peak memory per target format for the real base model, against the peers' own tools.

Peers: transformers' ``from_pretrained(from_pt=True).save_pretrained`` for TF and Flax, and
CTranslate2's ``TransformersConverter(...).convert(quantization="int8")`` for the int8 ``model.bin``.
whisper.cpp's and mlx-examples' conversion scripts are not installable packages, so the GGML and mlx
rows have no peer.

Each conversion runs in a fresh subprocess so its peak memory is its own: the child imports what it
needs, resets the kernel's peak-RSS mark (``/proc/self/clear_refs`` = 5, Linux) and reports
``VmHWM - VmRSS before`` after converting, i.e. the extra resident memory the conversion itself
needed (file pages it maps count too). One run each; the checkpoint size is the bytes of its tensors.

    .venv/bin/python benchmarks/bench_conversion.py [base]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
kind, source, destination = sys.argv[1:4]

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

if kind == "ctranslate2-int8":
    from ctranslate2.converters import TransformersConverter
    import torch, transformers  # imported up front, as ours imports torch
    convert = lambda: TransformersConverter(source).convert(destination, quantization="int8")
elif kind.startswith("transformers-"):
    import transformers
    cls = {"transformers-tf": transformers.TFWhisperForConditionalGeneration,
           "transformers-flax": transformers.FlaxWhisperForConditionalGeneration}[kind]
    convert = lambda: cls.from_pretrained(source, from_pt=True).save_pretrained(destination)
else:
    from weights_bridge.conversion import convert_checkpoint
    import torch  # the openai writer needs it; imported up front so it is not counted
    target, _, dtype = kind.partition(":")  # "ggml:q8_0": target ggml, dtype q8_0
    convert = lambda: convert_checkpoint(source, destination, to=target, dtype=dtype or None)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status("VmRSS:")
start = time.perf_counter()
convert()
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_bytes": status("VmHWM:") - before}))
"""


def run(kind: str, source: Path, destination: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(source), str(destination)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(name: str = "base") -> None:
    from weights_bridge import canonical, fetch

    source = fetch(name)
    _, tensors = canonical.load_checkpoint(source)
    size = sum(array.nbytes for array in tensors.values())
    dtype = next(iter(tensors.values())).dtype
    print(f"{name}: {len(tensors)} tensors, {size / 2**20:.1f} MiB ({dtype}), source {source}\n")
    print("| target | ours s | ours peak MiB | peak / size | peer s | peer peak MiB | time ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as scratch:
        for target in ("canonical", "tf", "flax", "openai", "ct2", "ct2:int8", "ggml", "ggml:q8_0", "mlx"):
            name = target.replace(":", "-") + (".pt" if target == "openai" else ".bin" if "ggml" in target else "")
            ours = run(target, source, Path(scratch) / name)
            row = [
                target,
                f"{ours['seconds']:.2f}",
                f"{ours['peak_bytes'] / 2**20:.0f}",
                f"{ours['peak_bytes'] / size:.2f}",
            ]
            peer = {"tf": "transformers-tf", "flax": "transformers-flax", "ct2:int8": "ctranslate2-int8"}.get(target)
            if peer is not None:
                theirs = run(peer, source, Path(scratch) / peer)
                row += [f"{theirs['seconds']:.2f}", f"{theirs['peak_bytes'] / 2**20:.0f}",
                        f"{theirs['seconds'] / ours['seconds']:.1f}x faster"]  # fmt: skip
            else:
                row += ["-", "-", "-"]
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(*sys.argv[1:])
