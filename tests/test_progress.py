"""Progress lines off a terminal."""

from __future__ import annotations

import pytest

from sae_lens_stitch import progress


def test_log_lines_every_tenth_off_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SAE_STITCH_NO_PROGRESS", raising=False)
    monkeypatch.setattr(progress, "LOG_AFTER_S", 0.0)
    assert progress.progress_mode(None) == "log"  # pytest's stderr is not a terminal
    assert list(progress.track(range(50), total=50, description="work")) == list(range(50))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 11  # one per tenth, then the closing line
    assert lines[0].startswith("[sae-stitch] work: 5/50 (10%), ")
    assert "/s, " in lines[0] and "left" in lines[0]
    assert lines[-1].startswith("[sae-stitch] work: finished 50 in ")


def test_short_loops_and_silenced_loops_print_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SAE_STITCH_NO_PROGRESS", raising=False)
    list(progress.track(range(50), total=50, description="quick"))  # under LOG_AFTER_S
    monkeypatch.setattr(progress, "LOG_AFTER_S", 0.0)
    list(progress.track(range(50), total=50, description="off", show=False))
    monkeypatch.setenv("SAE_STITCH_NO_PROGRESS", "1")
    assert progress.progress_mode(None) == "off"
    list(progress.track(range(50), total=50, description="env"))
    assert capsys.readouterr().err == ""


def test_unknown_total_prints_on_time(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SAE_STITCH_NO_PROGRESS", raising=False)
    monkeypatch.setattr(progress, "LOG_AFTER_S", 0.0)
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    list(progress.track(iter(range(3)), total=None, description="stream"))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("[sae-stitch] stream: 1 done, ")
    assert lines[-1].startswith("[sae-stitch] stream: finished 3 in ")
