"""Kill saves with SIGKILL at random moments and check what is left (run by
tests/test_crash.py; run it directly for a bigger measurement)::

    python tests/crash_worker.py --kills 100 --root /tmp/crash

For each mode a forked child saves (``save``: to a new folder; ``overwrite``: over an existing
SAE; ``stitch``: builds a stitched SAE and saves it over an existing one) and is killed after a
random delay within the operation's duration. Then:

* the destination must be byte for byte the old SAE (or absent, for ``save``) or the new one,
  never a mix;
* the next save to the same place must leave nothing but the destination in its folder.

``--no-exchange`` runs the fallback path (two renames, as on systems without an atomic
exchange): there a kill between the renames can leave the destination missing until the next
save or ``clean`` puts the old SAE back, which the summary reports separately. Prints one JSON
summary on standard output.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))

from conftest import make_sae

from sae_lens_stitch import _atomic
from sae_lens_stitch.io.save import clean_leftovers, save_sae
from sae_lens_stitch.surgery.operations import stitch


def digest(folder: Path) -> dict[str, str] | None:
    if not folder.exists():
        return None
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    } | {p.name + "/": "dir" for p in folder.iterdir() if p.is_dir()}


def reference(sae: Any, where: Path) -> dict[str, str]:
    save_sae(sae, where, overwrite=True)
    first = digest(where)
    save_sae(sae, where, overwrite=True)
    assert digest(where) == first, "saving is not deterministic; the check needs it"
    assert first is not None
    return first


def state(dest: Path, refs: dict[str, dict[str, str]]) -> str:
    found = digest(dest)
    if found is None:
        return "absent"
    for name, ref in refs.items():
        if found == ref:
            return name
    return "mixed"


def others(parent: Path, dest: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name != dest.name)


def run_mode(mode: str, kills: int, root: Path, rng: random.Random) -> dict[str, Any]:
    old_sae = make_sae("standard", 2048, 256, seed=1)
    donor = make_sae("standard", 4096, 256, seed=2)
    new_sae = (
        stitch(old_sae, donor, list(range(0, 4096, 2)))
        if mode == "stitch"
        else make_sae("standard", 2048, 256, seed=3)
    )
    after_sae = make_sae("standard", 1024, 256, seed=4)
    refs = {
        "old": reference(old_sae, root / "ref_old"),
        "new": reference(new_sae, root / "ref_new"),
    }
    after_ref = reference(after_sae, root / "ref_after")
    parent = root / mode
    parent.mkdir()
    dest = parent / "sae"

    def operation() -> None:
        if mode == "stitch":
            save_sae(stitch(old_sae, donor, list(range(0, 4096, 2))), dest, overwrite=True)
        else:
            save_sae(new_sae, dest, overwrite=(mode == "overwrite"))

    def prepare() -> None:
        if mode == "save":
            shutil.rmtree(dest, ignore_errors=True)
        else:
            save_sae(old_sae, dest, overwrite=True)

    def forked(kill_after: float | None) -> tuple[bool, float]:
        """Run the operation in a forked child, killed ``kill_after`` seconds after it started
        (None: let it finish). Returns whether it was killed while running and, when it
        finished, how long the operation took in the child."""
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: say "started", do the operation, send its duration
            os.close(read_fd)
            try:
                os.write(write_fd, b"s")
                t0 = time.perf_counter()
                operation()
                os.write(write_fd, f"{time.perf_counter() - t0:.6f}".encode())
            finally:
                os._exit(0)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            pipe.read(1)  # the child has started the operation
            if kill_after is not None:
                time.sleep(kill_after)
                os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            took = pipe.read()
        return os.WIFSIGNALED(status) and not took, float(took or 0.0)

    timings = []
    for _ in range(3):  # the operation's duration in a child
        prepare()
        timings.append(forked(None)[1])
    duration = sorted(timings)[1]
    states: Counter[str] = Counter()
    recovered: Counter[str] = Counter()
    killed_running = 0
    kills_leaving_leftovers = 0
    leftovers_after_next_save = 0
    next_save_wrong = 0
    for _ in range(kills):
        prepare()
        killed_running += int(forked(rng.uniform(0.0, duration * 1.1))[0])
        found = state(dest, refs)
        states[found] += 1
        kills_leaving_leftovers += int(bool(others(parent, dest)))
        if found == "absent" and mode != "save":  # only on the fallback path
            clean_leftovers(parent)
            recovered[state(dest, refs)] += 1
        save_sae(after_sae, dest, overwrite=True)  # the next save to the same place
        leftovers_after_next_save += len(others(parent, dest))
        next_save_wrong += int(digest(dest) != after_ref)
    allowed = {"absent", "new"} if mode == "save" else {"old", "new"}
    consistent = sum(n for s, n in states.items() if s in allowed)
    return {
        "mode": mode,
        "kills": kills,
        "killed_while_running": killed_running,
        "operation_seconds": round(duration, 4),
        "states": dict(states),
        "consistent": consistent,
        "recovered_by_clean": dict(recovered),
        "kills_leaving_leftovers": kills_leaving_leftovers,
        "leftovers_after_next_save": leftovers_after_next_save,
        "next_save_wrong": next_save_wrong,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="kills per mode")
    parser.add_argument("--root", required=True, help="an empty or missing scratch folder")
    parser.add_argument("--modes", default="save,overwrite,stitch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-exchange", action="store_true", help="use the two-rename fallback")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # forked children must not inherit a thread pool
    if args.no_exchange:
        no_exchange: Callable[[Path, Path], bool] = lambda a, b: False  # noqa: E731
        _atomic._exchange = no_exchange  # pyright: ignore[reportPrivateUsage]
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    results = [run_mode(m, args.kills, root, rng) for m in args.modes.split(",")]
    print(json.dumps({"exchange": not args.no_exchange, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
