"""The journal's checkpointer: a process of its own that folds the log into the snapshot while the coordinator only
appends.

Folding is pure Python (decoding change sets, merging rows) plus SQLite writes. Inside the coordinator it competed
for the interpreter lock with every call, so under load it cost a third of the coordinator's CPU and stretched call
latency. In its own process, reading log files the coordinator appends to and writing a database only it writes, it
shares no lock with the coordinator; it runs at a lower CPU priority, so on a busy machine calls come first.

One checkpointer per journal, ever: a lock file (``<journal>.checkpointer.lock``, ``flock``) makes a new one wait
for an old one to go (two folding the same log could write an older fold over a newer one). It ends with the
coordinator that started it (the kernel's parent-death signal, and a check of the parent each round).

    python -m ray_runtime.coordinator.checkpointer JOURNAL --parent PID [--interval 1.0] [--synchronous FULL]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ray_runtime.coordinator.journal import SQLiteJournal

__all__ = ["Checkpointer", "main", "start"]

logger = logging.getLogger("ray_runtime.checkpointer")
SLICE_ROWS = 50_000  # rows folded in memory before they are written: bounds the checkpointer's memory
NICENESS = 5  # below the coordinator's CPU priority, not so far that a busy machine starves the fold


class Checkpointer:
    """Folds a journal's log into its snapshot, slice by slice."""

    def __init__(self, journal: SQLiteJournal) -> None:
        self.journal = journal

    def run_once(self) -> int:
        """Fold everything the log holds now; how many change sets."""
        folded = 0
        while (piece := self.journal.fold_slice(max_rows=SLICE_ROWS, max_change_sets=1 << 30)) is not None:
            folded += self.journal.apply_slice(piece)
        return folded


@contextlib.contextmanager
def _only_one(journal_path: Path) -> Iterator[None]:
    """Hold the journal's checkpointer lock (waiting for a previous checkpointer to end)."""
    with open(f"{journal_path}.checkpointer.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _die_with(parent: int) -> None:
    """Ask the kernel to end this process when its parent ends (Linux; elsewhere the parent check does it)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        sys.exit(0)  # the parent went before the signal was armed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fold a coordinator journal's log into its snapshot.")
    parser.add_argument("journal", type=Path)
    parser.add_argument("--parent", type=int, required=True, help="End when this process (the coordinator) ends.")
    parser.add_argument("--interval", type=float, default=1.0, help="Seconds between checkpoints.")
    parser.add_argument("--synchronous", default="NORMAL", help="The journal's synchronous setting.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s checkpointer: %(message)s")
    _die_with(args.parent)
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    with _only_one(args.journal):
        journal = SQLiteJournal(args.journal, synchronous=args.synchronous)
        checkpointer = Checkpointer(journal)
        while os.getppid() == args.parent:
            try:
                checkpointer.run_once()
            except Exception:
                logger.exception("checkpoint failed; the log keeps everything and the next round retries")
            time.sleep(args.interval)
        journal.close()


def start(journal_path: Path, interval_s: float, synchronous: str = "NORMAL") -> subprocess.Popen[bytes]:
    """Start the checkpointer of a journal, as a child of this process."""
    import ray_runtime

    home = str(Path(ray_runtime.__file__).resolve().parent.parent)  # also where a shipped copy of ray_runtime is
    path = os.pathsep.join(p for p in (home, os.environ.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "ray_runtime.coordinator.checkpointer", str(journal_path)]
    command += ["--parent", str(os.getpid()), "--interval", str(interval_s), "--synchronous", synchronous]
    return subprocess.Popen(command, env={**os.environ, "PYTHONPATH": path}, stdin=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
