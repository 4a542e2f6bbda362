"""Kills during writes leave the old SAE or the new one, never a mix; the next save (or
``sae-stitch clean``) removes what a killed save left, and nothing the package did not make."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_sae

from sae_lens_stitch._atomic import MARKER, find_leftovers, remove_leftovers
from sae_lens_stitch.cli import main
from sae_lens_stitch.io.save import clean_leftovers, save_sae

WORKER = Path(__file__).parent / "crash_worker.py"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the crash test forks")
def test_sigkill_during_save_overwrite_and_stitch(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, str(WORKER), "--kills", "8", "--root", str(tmp_path / "crash")],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env={**os.environ, "SAE_STITCH_NO_PROGRESS": "1"},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads(res.stdout)["results"]
    assert [r["mode"] for r in results] == ["save", "overwrite", "stitch"]
    for r in results:
        assert r["states"].get("mixed", 0) == 0, r
        assert r["consistent"] == r["kills"], r
        assert r["leftovers_after_next_save"] == 0, r
        assert r["next_save_wrong"] == 0, r
    assert sum(r["killed_while_running"] for r in results) > 0


def _marked(parent: Path, name: str, tag: str, *, pid: int, suffix: str = "abcdefgh") -> Path:
    folder = parent / f".{name}{tag}{suffix}"
    (folder / name).mkdir(parents=True)
    (folder / name / "cfg.json").write_text("{}")
    marker = {"pid": pid, "host": socket.gethostname(), "target": name}
    (folder / MARKER).write_text(json.dumps(marker))
    return folder


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_next_save_removes_leftovers_but_never_foreign_folders(tmp_path: Path) -> None:
    save_sae(make_sae(), tmp_path / "sae")
    dead = _dead_pid()
    tmp_left = _marked(tmp_path, "sae", ".tmp-", pid=dead)
    old_left = _marked(tmp_path, "sae", ".old-", pid=dead, suffix="ijklmnop")
    empty = tmp_path / ".sae.tmp-qrstuvwx"
    empty.mkdir()  # a save killed before it wrote its marker
    truncated = tmp_path / ".sae.tmp-trunc123"
    truncated.mkdir()  # ... or while writing it
    (truncated / MARKER).write_text("")
    (truncated / (MARKER + ".partial")).write_text('{"pid"')
    foreign = tmp_path / ".sae.tmp-zzzzzzzz"
    (foreign / "mine").mkdir(parents=True)  # someone else's folder with a similar name
    live = _marked(tmp_path, "sae", ".tmp-", pid=os.getppid(), suffix="livelive")
    other_target = _marked(tmp_path, "other", ".tmp-", pid=dead)
    save_sae(make_sae(seed=1), tmp_path / "sae", overwrite=True)
    remaining = sorted(p.name for p in tmp_path.iterdir())
    assert not tmp_left.exists() and not old_left.exists() and not empty.exists()
    assert not truncated.exists()
    assert foreign.exists() and (foreign / "mine").is_dir()
    assert live.exists(), "a folder of a live process must be left alone"
    assert other_target.exists(), "a save to 'sae' only cleans up after 'sae'"
    assert remaining == sorted(["sae", foreign.name, live.name, other_target.name])
    assert clean_leftovers(tmp_path) == [other_target]
    assert foreign.exists() and live.exists()


def test_a_missing_destination_gets_the_old_sae_back(tmp_path: Path) -> None:
    """A kill between the two renames of the fallback path leaves the old SAE aside; the next
    save or clean puts it back before anything else."""
    old = _marked(tmp_path, "sae", ".old-", pid=_dead_pid())
    assert find_leftovers(tmp_path / "sae") == [old]
    assert remove_leftovers(tmp_path / "sae") == [old]
    assert (tmp_path / "sae" / "cfg.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"]


def test_clean_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_sae(make_sae(), tmp_path / "sae")
    left = _marked(tmp_path, "sae", ".tmp-", pid=_dead_pid())
    assert main(["clean", str(tmp_path), "--dry-run"]) == 0
    assert f"would remove {left}" in capsys.readouterr().out and left.exists()
    assert main(["clean", str(tmp_path / "sae"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == [str(left)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"]
    assert main(["clean", str(tmp_path)]) == 0
    assert "nothing to clean" in capsys.readouterr().out
