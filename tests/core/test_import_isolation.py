"""``import whisper_core`` must not import any deep-learning framework (DESIGN.md §4)."""

from __future__ import annotations

import subprocess
import sys


def test_whisper_core_imports_no_framework():
    code = (
        "import sys, whisper_core, whisper_core.cli, whisper_core.tiktoken_conversion, whisper_core.normalizers\n"
        "loaded = sorted(m for m in ('torch', 'tensorflow', 'jax', 'flax', 'keras', 'transformers') if m in sys.modules)\n"
        "print(','.join(loaded))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"whisper_core imported {result.stdout.strip()}"
