"""``make bench``: every benchmark in one run, collected into benchmarks/RESULTS.md and a PNG chart.

Each benchmark script runs ours and its peers and prints a Markdown table with a speed-up over the
peer ("1.53x"; the alternating ones add the range over pairs, "1.53x (1.40-1.61)", DESIGN §8). This
runner calls them one after another (each in its own process, so memory and threads are their own),
writes their tables under a header naming the machine, and draws every speed-up as a bar (1.0 = as
fast as the peer) with its range as an error bar where there is one.

    .venv/bin/python benchmarks/report.py [--only features pt_generate ...] [--out benchmarks] [--quick]
    .venv/bin/python benchmarks/report.py --redraw   # the chart from RESULTS.md's newest rows, nothing run
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parents[1] / "shared" / "data" / "jfk.flac"
QUICK_OUT = Path(tempfile.gettempdir()) / "whisper-mb-bench-quick"
# name -> (script and its arguments, what it measures); order = order in the report
BENCHMARKS = {
    "features": (["bench_features.py"], "Log-mel feature extraction, batch 16 × 30 s (NumPy vs transformers)"),
    "pt_generate": (["bench_pt_generate.py"], "Short-form greedy generate, PyTorch (vs transformers PyTorch)"),
    "flax_generate": (
        ["bench_flax_generate.py"],
        "Short-form greedy generate, JAX (vs transformers Flax under jax.jit)",
    ),
    "floors": (
        ["bench_floors.py"],
        "Batch-1 generate of each backend against this machine's floors (matrix-product rate, weight streaming)",
    ),
    "tf_generate": (["bench_tf_generate.py"], "Short-form greedy generate, TensorFlow XLA (vs transformers TF + XLA)"),
    "shortform": (
        ["bench_longform.py", "--audio", str(SAMPLE)],
        "Short-form transcription of jfk, 11 s (vs openai-whisper and faster-whisper)",
    ),
    "conversion": (
        ["bench_conversion.py"],
        "Checkpoint conversion time and peak memory (vs transformers and CTranslate2's converter)",
    ),
    "finetune": (
        ["bench_finetune.py"],
        "Fine-tuning throughput, tiny.en, batch 8 (vs transformers' Seq2SeqTrainer)",
    ),
    "runtimes": (
        ["bench_runtimes.py"],
        "jfk in whisper.cpp, faster-whisper int8 and mlx-whisper from the files we write, beside ours",
    ),
    "longform": (["bench_longform.py"], "Long-form transcription (vs openai-whisper and faster-whisper)"),
    "transcribe": (
        ["bench_transcribe.py"],
        "`whisper-mb transcribe` processes, first and second, base on ~2 min (vs faster-whisper, same precision)",
    ),
    "batched": (
        ["bench_batched.py"],
        "Batched VAD long-form, batch 8, base on ~2 min, warm (vs faster-whisper's BatchedInferencePipeline, "
        "and vs our sequential mode)",
    ),
    "streaming": (
        ["bench_streaming.py"],
        "Streaming in simulated real time, LocalAgreement-2 and AlignAtt, tiny.en and base on ~2 min "
        "(vs whisper_streaming's LocalAgreement over faster-whisper, WhisperLiveKit's)",
    ),
    "server": (
        ["load_server.py"],
        "`whisper-mb serve` under load: 8 live WebSocket streams and 20 OpenAI-client uploads at once, tiny.en",
    ),
}
# --quick: each benchmark at its smallest honest size (one model, 3 pairs, short inputs), to check that
# the scripts run; its figures are noisy and go elsewhere than the report's.
QUICK_MODEL = ["--models", "tiny.en", "--pairs", "3"]
QUICK = {
    "pt_generate": [*QUICK_MODEL, "--batches", "1"],
    "flax_generate": [*QUICK_MODEL, "--batches", "1"],
    "tf_generate": [*QUICK_MODEL, "--batches", "1"],
    "floors": [*QUICK_MODEL, "--repeats", "3"],
    "transcribe": ["--model", "tiny.en", "--pairs", "3", "--audio", str(SAMPLE)],
    "batched": ["--model", "tiny.en", "--pairs", "3", "--audio", str(SAMPLE)],
    "streaming": [*QUICK_MODEL, "--audio", str(SAMPLE)],
    "server": ["--streams", "2", "--uploads", "4"],
}
NUMBER = r"([0-9]+(?:\.[0-9]+)?)"
RATIO = re.compile(rf"^{NUMBER}x(?: \({NUMBER}-{NUMBER}\))?")  # "1.53x" or "1.53x (1.40-1.61)"
PEERS = {"transformers", "openai-whisper", "faster-whisper"}
SCRIPT = re.compile(r"\b(bench_\w+|load_server)\.py")
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")


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


Bar = tuple[str, float, float, float]  # label, speed-up, lowest and highest over pairs


def speed_ups(name: str, output: str) -> list[Bar]:
    """A bar for every table row of ours: the first cell that reads like "1.53x" or "1.53x (1.40-1.61)",
    labelled by the row's leading cells up to the first number; rows that name a peer as their
    implementation are the peers' own."""
    bars = []
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if any(cell in PEERS for cell in cells):
            continue
        ratio = next((RATIO.match(cell) for cell in cells if RATIO.match(cell)), None)
        if ratio:
            value = float(ratio.group(1))
            low, high = (float(ratio.group(2)), float(ratio.group(3))) if ratio.group(2) else (value, value)
            label = " ".join(cell for cell in cells[: next(i for i, c in enumerate(cells) if _number(c))])
            bars.append((f"{name}: {label}", value, low, high))
    return bars


def newest_bars(results: str) -> list[Bar]:
    """A bar for every row of ours in a hand-kept RESULTS.md, from its newest measurement, its label
    ending in the date of the section it comes from. Sections run newest first, and each table follows the
    command that measured it: a table belongs to the benchmark scripts named on the last line that names
    any (several scripts: one table for all, named by their common ending), the first row seen for a label
    is the newest, and a script's tables laid out otherwise than its newest one are an older form of it
    (superseded). Bars come out grouped by benchmark."""
    bars: dict[str, Bar] = {}
    newest_header: dict[str, str] = {}
    scripts: list[str] = []
    date, table = "", []
    for line in [*results.splitlines(), ""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table and scripts:
            header = table[0]
            if all(newest_header.setdefault(script, header) == header for script in scripts):
                for label, *figures in speed_ups(_table_name(scripts), "\n".join(table)):
                    bars.setdefault(label, (f"{label} ({date})", *figures))
        table = []
        if line.startswith("## "):
            date = ""
        date = date or next(iter(DATE.findall(line)), "")
        scripts = [name.removeprefix("bench_") for name in SCRIPT.findall(line)] or scripts
    return sorted(bars.values(), key=lambda bar: bar[0].split(":")[0])


def _table_name(scripts: list[str]) -> str:
    """``pt_generate`` for one script; ``generate`` for ``pt_generate``, ``tf_generate`` and ``flax_generate``."""
    if len(scripts) == 1:
        return scripts[0]
    ending: list[str] = []
    for words in zip(*(reversed(name.split("_")) for name in scripts), strict=False):  # up to the shortest
        if len(set(words)) > 1:
            break
        ending.insert(0, words[0])
    return "_".join(ending) or "+".join(scripts)


def _number(cell: str) -> bool:
    """A cell that starts a row's figures (a time, a ratio), ending the row's label."""
    return re.fullmatch(NUMBER, cell) is not None or RATIO.match(cell) is not None


def chart(bars: list[Bar], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 0.4 * len(bars) + 1.5))
    labels, values, lows, highs = zip(*bars, strict=True)
    errors = [
        [v - low for v, low in zip(values, lows, strict=True)],
        [h - v for v, h in zip(values, highs, strict=True)],
    ]
    colors = ["tab:green" if v >= 1 else "tab:red" for v in values]
    axes.barh(range(len(bars)), [v - 1 for v in values], left=1, color=colors)  # from 1x: slower bars point left
    axes.errorbar(values, range(len(bars)), xerr=errors, fmt="none", ecolor="black", capsize=2, linewidth=0.8)
    axes.set_yticks(range(len(bars)), labels, fontsize=8)
    axes.invert_yaxis()
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_xscale("log")  # 0.5x and 2x equally far from 1; conversions at 15x would squash the rest
    ticks = [t for t in (0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32) if min(lows) / 2 <= t <= max(highs) * 2]
    axes.set_xticks(ticks, [f"{t:g}x" for t in ticks])
    axes.set_xlabel(
        "speed-up over the peer (log scale; higher is better, 1x = as fast)\nbars: median, lines: range over pairs"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these benchmarks")
    parser.add_argument("--out", type=Path, help="where RESULTS.md and speedups.png go (default: benchmarks/)")
    parser.add_argument(
        "--quick", action="store_true", help=f"smallest sizes, written to {QUICK_OUT} unless --out is given"
    )
    parser.add_argument(
        "--redraw", action="store_true", help="draw speedups.png from RESULTS.md's newest rows without running anything"
    )
    args = parser.parse_args()
    args.out = args.out or (QUICK_OUT if args.quick else HERE)
    if args.redraw:
        bars = newest_bars((args.out / "RESULTS.md").read_text())
        chart(bars, args.out / "speedups.png")
        print(f"wrote {args.out / 'speedups.png'} ({len(bars)} bars)")
        return
    sections = [
        f"# Benchmark results\n\nMachine: {machine()}. Date: {time.strftime('%Y-%m-%d')}. CPU, float32 unless a row says otherwise.\n"
    ]
    bars: list[Bar] = []
    failed = []
    for name in args.only or BENCHMARKS:
        command, title = BENCHMARKS[name]
        command = [*command, *QUICK.get(name, [])] if args.quick else command
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
