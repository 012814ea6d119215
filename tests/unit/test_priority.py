"""Bulk work runs below its process's CPU priority, and only the pool's threads do."""

from __future__ import annotations

import os
import threading

from ray_runtime._priority import BACKGROUND_NICENESS, background_pool


def niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_a_background_pools_threads_run_below_the_process_and_the_rest_do_not():
    own = niceness()
    pool = background_pool("test-bulk", workers=2)
    try:
        seen = {pool.submit(niceness).result() for _ in range(4)}
    finally:
        pool.shutdown()
    assert seen == {min(19, own + BACKGROUND_NICENESS)}
    assert niceness() == own  # the caller's thread, and with it the process's others, keep their priority
    other = []
    thread = threading.Thread(target=lambda: other.append(niceness()))
    thread.start()
    thread.join()
    assert other == [own]
