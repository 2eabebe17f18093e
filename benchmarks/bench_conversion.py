"""Conversion time and peak memory per target format for the real base model, against transformers' own path.

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

if kind.startswith("transformers-"):
    import transformers
    cls = {"transformers-tf": transformers.TFWhisperForConditionalGeneration,
           "transformers-flax": transformers.FlaxWhisperForConditionalGeneration}[kind]
    convert = lambda: cls.from_pretrained(source, from_pt=True).save_pretrained(destination)
else:
    from weights_bridge.conversion import convert_checkpoint
    import torch  # the openai writer needs it; imported up front so it is not counted
    convert = lambda: convert_checkpoint(source, destination, to=kind)
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
    print("| target | ours s | ours peak MiB | peak / size | transformers s | transformers peak MiB | time ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as scratch:
        for target in ("canonical", "tf", "flax", "openai", "ct2"):
            ours = run(target, source, Path(scratch) / (f"{target}.pt" if target == "openai" else target))
            row = [
                target,
                f"{ours['seconds']:.2f}",
                f"{ours['peak_bytes'] / 2**20:.0f}",
                f"{ours['peak_bytes'] / size:.2f}",
            ]
            if target in ("tf", "flax"):
                theirs = run(f"transformers-{target}", source, Path(scratch) / f"transformers-{target}")
                row += [f"{theirs['seconds']:.2f}", f"{theirs['peak_bytes'] / 2**20:.0f}",
                        f"{theirs['seconds'] / ours['seconds']:.1f}x faster"]  # fmt: skip
            else:
                row += ["-", "-", "-"]
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(*sys.argv[1:])
