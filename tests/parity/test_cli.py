"""``whisper-mb parity``, the check users run in their CI, on the real checkpoints and the real sample."""

from __future__ import annotations

import json

import pytest

from whisper_mb.cli import main
from whisper_mb.parity import run_parity

pytestmark = pytest.mark.slow


def test_all_three_backends_agree_on_tiny_en(tiny_en_dir, jfk_path, capsys):
    assert main(["parity", str(tiny_en_dir), "--backends", "pt,tf,flax", "--audio", str(jfk_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and {c["pair"] for c in report["comparisons"]} == {"pt~tf", "pt~flax", "tf~flax"}
    for comparison in report["comparisons"]:
        assert comparison["output"] != "greedy_ids" or comparison["detail"].endswith("tokens identical")
        assert comparison["output"] == "greedy_ids" or comparison["max_abs"] <= 1e-4


def test_base_passes_within_float32_noise_and_a_strict_tolerance_fails(base_dir, jfk_path, capsys):
    report = run_parity(str(base_dir), ["pt", "flax"], str(jfk_path), language="en")
    states = next(c for c in report.comparisons if c.output == "encoder_states")
    # base's encoder residual stream reaches ~500: final states differ by more than 1e-4 in absolute terms
    # (1.4e-3 measured), within float32 noise relative to their scale.
    assert report.passed and states.max_abs > 1e-4 and states.max_rel <= 1e-4, report.table()
    strict = ["parity", str(base_dir), "--backends", "pt,flax", "--audio", str(jfk_path), "--language", "en"]
    assert main([*strict, "--tolerance", "1e-9", "--rel-tolerance", "0"]) == 1
    assert "| encoder_states | pt~flax |" in capsys.readouterr().out
