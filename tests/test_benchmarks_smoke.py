"""The benchmark entry point runs end to end at toy scale (no timing assertions)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def test_quick_benchmarks_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.run import main

    out = tmp_path / "bench.json"
    assert main(["--quick", "--only", "match", "stitch", "curves", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    variants = {(r["bench"], r["variant"]) for r in data["rows"]}
    assert ("match", "match_features") in variants
    assert ("stitch", "stitch (explicit indices)") in variants
    assert ("curves", "swap_curve (all points)") in variants
    for row in data["rows"]:
        if row["goal"] is not None:
            assert (
                row["ratio"] is not None and row["ratio"] >= 0
            )  # toy scale: CPU time may round to 0
            assert row["variant"] in printed
    assert data["machine"]["cores"] >= 1
