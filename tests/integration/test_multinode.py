"""Two Ray nodes on this machine (see tests/multinode/two_nodes.py, run in its own process since this one is a
driver of the session's cluster): work spreads over both, and losing the worker node loses nothing acknowledged."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ..conftest import ROOT


def test_two_nodes_share_the_work_and_survive_losing_one():
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_RUNTIME_STORAGE")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "multinode" / "two_nodes.py")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])

    assert report["coordinator_node"] == "head"  # pinned there, so a worker node's loss never takes it down
    assert report["job_nodes"] == ["head", "worker"]
    assert report["replica_nodes"] == ["head", "worker"]
    assert report["worker_nodes"] == ["head", "worker"]
    assert report["served_before"] == "Hi, two nodes."

    # the worker node held two leases when it died: both tasks ran again on the head and succeeded
    assert report["leased_on_worker_node"] == 2
    assert report["long_tasks"] == ["succeeded"] * 4
    assert report["moved"] == [{"attempts": 2, "finished_on": "head"}] * 2
    # the job that ran there failed, and says why
    assert report["job_after_kill"]["status"] == "FAILED"
    assert "node has died" in report["job_failure_reason"]
    assert report["served_after"] == "Hi, one node."  # the head's replica still serves


def test_the_coordinator_on_postgres_moves_off_a_lost_node_with_everything(postgres_url):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_RUNTIME_STORAGE")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "multinode" / "coordinator_moves.py"), postgres_url],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])

    assert report["coordinator_before"] == "first" and report["coordinator_after"] == "standby"
    assert report["acked"] > 0 and report["acked_found"] == report["acked"]  # no acknowledged enqueue lost
    assert report["completed_kept"] and report["caller_errors"] == []  # callers waited through the move
    assert report["lease_still_live"] == "succeeded"  # a lease taken before the move is honoured after it
    assert report["resources_kept"] and report["key_kept"]
    assert report["session_memory"] == 3  # the paused session resumed with its memory
