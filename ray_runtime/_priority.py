"""Bulk work below the control plane: threads that run at a lower CPU priority than the rest of their process."""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["BACKGROUND_NICENESS", "background_pool"]

BACKGROUND_NICENESS = 10  # steps below the process: on a busy CPU such a thread gets about a tenth of a normal one's


def background_pool(name: str, workers: int, niceness: int = BACKGROUND_NICENESS) -> ThreadPoolExecutor:
    """A thread pool whose threads run ``niceness`` steps below their process's CPU priority. Linux gives each
    thread its own; elsewhere (or where it is refused) they run at the process's."""

    def lower() -> None:
        with contextlib.suppress(OSError, AttributeError):
            thread = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + niceness))

    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name, initializer=lower)
