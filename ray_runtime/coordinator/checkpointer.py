"""The journal's checkpointer: a process of its own that folds the log into the snapshot while the coordinator only
appends (the file journal's log segments into its SQLite snapshot, or PostgreSQL's log table into its tables).

Folding is pure Python (decoding change sets, merging rows) plus SQLite writes. Inside the coordinator it competed
for the interpreter lock with every call, so under load it cost a third of the coordinator's CPU and stretched call
latency. In its own process, reading log files the coordinator appends to and writing a database only it writes, it
shares no lock with the coordinator; it runs at a lower CPU priority, so on a busy machine calls come first.

One checkpointer per file journal, ever: a lock file (``<journal>.checkpointer.lock``, ``flock``) makes a new one
wait for an old one to go (two folding the same log could write an older fold over a newer one). In PostgreSQL a
fold moves the folded position from where it read to where it ended, in the fold's transaction, so a second
checkpointer's fold of the same records changes nothing. It ends with the coordinator that started it (the
kernel's parent-death signal, and a check of the parent each round).

    python -m ray_runtime.coordinator.checkpointer JOURNAL --parent PID [--interval 1.0] [--synchronous FULL]
    python -m ray_runtime.coordinator.checkpointer --postgres COORDINATOR --parent PID   # URL: RAY_RUNTIME_JOURNAL_URL
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

from ray_runtime.coordinator.journal import Journal, SQLiteJournal

__all__ = ["Checkpointer", "main", "start"]

logger = logging.getLogger("ray_runtime.checkpointer")
SLICE_ROWS = 50_000  # rows folded in memory before they are written: bounds the checkpointer's memory
NICENESS = 5  # below the coordinator's CPU priority, not so far that a busy machine starves the fold


class Checkpointer:
    """Folds a journal's log into its snapshot, slice by slice."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def run_once(self) -> int:
        """Fold everything the log holds now; how many change sets."""
        folded = 0
        while (piece := self.journal.fold_slice(max_rows=SLICE_ROWS, max_change_sets=1 << 30)) is not None:
            folded += self.journal.apply_slice(piece)
        return folded


@contextlib.contextmanager
def _only_one(journal_path: Path | None) -> Iterator[None]:
    """Hold a file journal's checkpointer lock (waiting for a previous checkpointer to end)."""
    if journal_path is None:  # PostgreSQL: folds are fenced by the folded position
        yield
        return
    with open(f"{journal_path}.checkpointer.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _open(journal_path: Path | None, postgres: str | None, synchronous: str) -> Journal:
    if postgres is None:
        return SQLiteJournal(journal_path, synchronous=synchronous)
    from ray_runtime.coordinator.postgres import URL_VARIABLE, PostgresJournal

    return PostgresJournal(os.environ[URL_VARIABLE], postgres, take_over=False)


def _die_with(parent: int) -> None:
    """Ask the kernel to end this process when its parent ends (Linux; elsewhere the parent check does it)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        sys.exit(0)  # the parent went before the signal was armed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fold a coordinator journal's log into its snapshot.")
    parser.add_argument("journal", type=Path, nargs="?", help="A file journal's snapshot database.")
    parser.add_argument(
        "--postgres", metavar="COORDINATOR", help="The coordinator's PostgreSQL journal ($RAY_RUNTIME_JOURNAL_URL)."
    )
    parser.add_argument("--parent", type=int, required=True, help="End when this process (the coordinator) ends.")
    parser.add_argument("--interval", type=float, default=1.0, help="Seconds between checkpoints.")
    parser.add_argument("--synchronous", default="NORMAL", help="The journal's synchronous setting.")
    args = parser.parse_args(argv)
    if (args.journal is None) == (args.postgres is None):
        parser.error("name a file journal or --postgres COORDINATOR, one of them")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s checkpointer: %(message)s")
    _die_with(args.parent)
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    with _only_one(args.journal):
        while True:  # PostgreSQL may be away when the coordinator starts: wait for it, as the coordinator does
            try:
                journal = _open(args.journal, args.postgres, args.synchronous)
                break
            except Exception:
                if os.getppid() != args.parent:
                    return
                logger.exception("could not open the journal; trying again")
                time.sleep(args.interval)
        checkpointer = Checkpointer(journal)
        while os.getppid() == args.parent:
            try:
                checkpointer.run_once()
            except Exception:
                logger.exception("checkpoint failed; the log keeps everything and the next round retries")
            time.sleep(args.interval)
        journal.close()


def start(journal: Journal, interval_s: float, synchronous: str = "NORMAL") -> subprocess.Popen[bytes] | None:
    """Start the checkpointer of a journal, as a child of this process (None: the journal has nothing to fold)."""
    import ray_runtime

    opened = journal.checkpointer_arguments()
    if opened is None:
        return None
    arguments, environment = opened
    home = str(Path(ray_runtime.__file__).resolve().parent.parent)  # also where a shipped copy of ray_runtime is
    path = os.pathsep.join(p for p in (home, os.environ.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "ray_runtime.coordinator.checkpointer", *arguments]
    command += ["--parent", str(os.getpid()), "--interval", str(interval_s), "--synchronous", synchronous]
    env = {**os.environ, **environment, "PYTHONPATH": path}
    return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
