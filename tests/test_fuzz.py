"""The seeded structure-aware fuzz run (tests/fuzz.py): 2,000 mutated models, no crash, hang or traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FUZZ = Path(__file__).parent / "fuzz.py"


def test_2000_structure_aware_cases_end_in_a_result_or_a_tinytrain_error():
    # -P: the installed package, as the other tests use. The run bounds its own memory and each case's time.
    result = subprocess.run(
        [sys.executable, "-P", str(FUZZ), "--cases", "2000", "--seed", "0"], capture_output=True, text=True, timeout=3600
    )
    summary = [line for line in result.stdout.splitlines() if not line.startswith("case ")]
    last_case = next((line for line in reversed(result.stdout.splitlines()) if line.startswith("case ")), "")
    assert result.returncode == 0, f"signal or failure after {last_case!r}: {summary} {result.stderr[-2000:]}"
    assert summary[0].startswith("2000 cases, seed 0") and "TRACEBACK" not in summary[0] and "HANG" not in summary[0]
    assert "refused (TinyTrainError)" in summary[0] and "accepted" in summary[0]  # both paths were exercised
