"""``make bench``: every benchmark in one run, collected into benchmarks/RESULTS.md and a PNG chart.

Each benchmark script runs ours and its peers side by side and prints a Markdown table whose last
column is a speed-up over the peer ("1.53x"). This runner calls them one after another (each in
its own process, so memory and threads are their own), writes their tables under a header naming
the machine, and draws every speed-up as a bar (1.0 = as fast as the peer).

    .venv/bin/python benchmarks/report.py [--only features pt_generate ...] [--out benchmarks]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parents[1] / "shared" / "data" / "jfk.flac"
# name -> (script and its arguments, what it measures); order = order in the report
BENCHMARKS = {
    "features": (["bench_features.py"], "Log-mel feature extraction, batch 16 × 30 s (NumPy vs transformers)"),
    "pt_generate": (["bench_pt_generate.py"], "Short-form greedy generate, PyTorch (vs transformers PyTorch)"),
    "flax_generate": (
        ["bench_flax_generate.py"],
        "Short-form greedy generate, JAX (vs transformers Flax under jax.jit)",
    ),
    "flax_floors": (
        ["bench_flax_floors.py"],
        "Batch-1 JAX generate against this machine's floors (matrix-product rate, weight streaming)",
    ),
    "tf_generate": (["bench_tf_generate.py"], "Short-form greedy generate, TensorFlow XLA (vs transformers TF + XLA)"),
    "shortform": (
        ["bench_longform.py", "--audio", str(SAMPLE)],
        "Short-form transcription of jfk, 11 s (vs openai-whisper and faster-whisper)",
    ),
    "conversion": (["bench_conversion.py"], "Checkpoint conversion time and peak memory (vs transformers)"),
    "longform": (["bench_longform.py"], "Long-form transcription (vs openai-whisper and faster-whisper)"),
}
RATIO = re.compile(r"^([0-9]+(?:\.[0-9]+)?)x\b")
PEERS = {"transformers", "openai-whisper", "faster-whisper"}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def run(command: list[str]) -> tuple[str, float]:
    """The benchmark's printed output (tables) and how long it took."""
    start = time.perf_counter()
    script, *arguments = command
    result = subprocess.run([sys.executable, str(HERE / script), *arguments], capture_output=True, text=True, cwd=HERE)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        return f"(failed with exit code {result.returncode}: {result.stderr.strip().splitlines()[-1:]})", elapsed
    return result.stdout.strip(), elapsed


def speed_ups(name: str, output: str) -> list[tuple[str, float]]:
    """(label, speed-up) for every table row of ours: the first cell that reads like "1.53x"; rows that
    name a peer as their implementation are the peers' own."""
    bars = []
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if any(cell in PEERS for cell in cells):
            continue
        ratio = next((RATIO.match(cell) for cell in cells if RATIO.match(cell)), None)
        if ratio:
            bars.append((f"{name}: {' '.join(cells[:2])}", float(ratio.group(1))))
    return bars


def chart(bars: list[tuple[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 0.4 * len(bars) + 1.5))
    labels, values = zip(*bars, strict=True)
    axes.barh(range(len(bars)), values, color=["tab:green" if v >= 1 else "tab:red" for v in values])
    axes.set_yticks(range(len(bars)), labels, fontsize=8)
    axes.invert_yaxis()
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_xlabel("speed-up over the peer (higher is better; 1 = as fast)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these benchmarks")
    parser.add_argument("--out", type=Path, default=HERE, help="where RESULTS.md and speedups.png go")
    args = parser.parse_args()
    sections = [f"# Benchmark results\n\nMachine: {machine()}. Date: {time.strftime('%Y-%m-%d')}. CPU, float32.\n"]
    bars: list[tuple[str, float]] = []
    failed = []
    for name in args.only or BENCHMARKS:
        command, title = BENCHMARKS[name]
        print(f"== {title}", flush=True)
        output, elapsed = run(command)
        print(output, flush=True)
        if output.startswith("(failed"):
            failed.append(name)
        shown = " ".join([f"benchmarks/{command[0]}", *command[1:]]).replace(str(HERE.parents[1]), "..")
        sections.append(f"## {title}\n\n`{shown}` ({elapsed:.0f} s)\n\n{output}\n")
        bars += speed_ups(name, output)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "RESULTS.md").write_text("\n".join(sections))
    if bars:
        chart(bars, args.out / "speedups.png")
    print(f"wrote {args.out / 'RESULTS.md'}" + (f" and {args.out / 'speedups.png'}" if bars else ""))
    if failed:  # the report is written either way; make bench still says something broke
        sys.exit(f"benchmarks that failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
