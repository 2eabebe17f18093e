"""The chart of ``make bench``'s runner redrawn from a hand-kept RESULTS.md: each benchmark's newest rows."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "report.py"

RESULTS = """# Benchmark results

## Batched again (2026-12-06, later session)

`benchmarks/bench_batched.py --pairs 3` on abc1234:

| backend | against | ours (s) | peer (s) | speed-up (range) |
| --- | --- | --- | --- | --- |
| pt | faster-whisper batched | 5.1 | 3.7 | 0.72x (0.68-0.77) |

## Short-form generate and batched (2026-12-05)

`benchmarks/bench_pt_generate.py`, `bench_tf_generate.py` and `bench_flax_generate.py`:

| backend | model | ours (ms) | speed-up (range) |
| --- | --- | --- | --- |
| pt | base | 1071 | 1.30x (1.16-1.33) |
| tf | base | 932 | 1.13x (0.99-1.27) |

`benchmarks/bench_batched.py` on def5678:

| backend | against | ours (s) | peer (s) | speed-up (range) |
| --- | --- | --- | --- | --- |
| pt | faster-whisper batched | 6.0 | 3.7 | 0.62x (0.60-0.65) |
| flax | faster-whisper batched | 5.0 | 3.9 | 0.78x (0.70-0.80) |

## Short-form greedy generate, JAX

`benchmarks/bench_flax_generate.py` (best of 5; 2026-11-30)

| model | implementation | generate (ms) | speed-up |
| --- | --- | --- | --- |
| base | ours | 810 | 1.64x |
| base | transformers | 1325 | 1.00x |
"""


def _report():
    spec = importlib.util.spec_from_file_location("bench_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_row_is_drawn_from_its_newest_measurement_and_dated():
    bars = _report().newest_bars(RESULTS)
    assert bars == [
        ("batched: pt faster-whisper batched (2026-12-06)", 0.72, 0.68, 0.77),
        ("batched: flax faster-whisper batched (2026-12-05)", 0.78, 0.70, 0.80),
        ("generate: pt base (2026-12-05)", 1.30, 1.16, 1.33),
        ("generate: tf base (2026-12-05)", 1.13, 0.99, 1.27),
    ]  # the JAX-only table of 2026-11-30 is an older form of a script the joint table measures newer


def test_redraw_writes_the_chart_and_leaves_results_alone(tmp_path):
    (tmp_path / "RESULTS.md").write_text(RESULTS)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--redraw", "--out", str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert "(4 bars)" in done.stdout
    assert (tmp_path / "speedups.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "RESULTS.md").read_text() == RESULTS
