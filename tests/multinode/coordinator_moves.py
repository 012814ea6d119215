"""The coordinator on its PostgreSQL journal, in a cluster of three nodes on this machine
(``ray.cluster_utils.Cluster``) of which two offer the custom resource ``RAY_RUNTIME_COORDINATOR_RESOURCE`` names:
the node it runs on is removed under load, and the coordinator comes back on the other with every task, live lease,
resources version, paused session (resumable, with its memory) and key. Prints one JSON report for the test to check.

(A preferred node, ``RAY_RUNTIME_COORDINATOR_NODE``, is a soft affinity: Ray may place the actor elsewhere while
its view of that node lags, so the move is shown with the resource, which Ray honours.)

Run on its own: ``python tests/multinode/coordinator_moves.py postgresql://...`` (an empty database).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: the repo root holds `tests`
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_PLUGINS = ROOT / "tests" / "fixtures" / "plugins"


def main(url: str) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    import ray_runtime as rr
    from ray_runtime._net import free_port

    root = tempfile.mkdtemp(prefix="rrmv-", dir="/tmp")
    os.environ["RAY_TMPDIR"] = root
    os.environ["RAY_RUNTIME_PLUGINS_DIR"] = str(FIXTURE_PLUGINS)
    os.makedirs(os.path.join(root, "ray"))
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "gcs_server_port": free_port(),
            "include_dashboard": True,
            "dashboard_host": "127.0.0.1",
            "dashboard_port": free_port(),
            "dashboard_agent_listen_port": free_port(),
            "ray_client_server_port": free_port(),
            "temp_dir": os.path.join(root, "ray"),
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 6},
        },
    )
    report: dict = {}
    try:
        able = {"rr_coordinator": 1}
        first = cluster.add_node(num_cpus=1, resources=able, dashboard_agent_listen_port=free_port())
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        os.environ["RAY_RUNTIME_COORDINATOR_RESOURCE"] = "rr_coordinator"
        coord = rr.connect(journal_url=url, sweep_interval_s=0.05, retry_backoff_s=0.05, retry_backoff_max_s=0.2)
        standby = cluster.add_node(num_cpus=1, resources=able, dashboard_agent_listen_port=free_port())
        cluster.wait_for_nodes()
        name = {cluster.head_node.node_id: "head", first.node_id: "first", standby.node_id: "standby"}
        report["coordinator_before"] = name[coord.info()["node_id"]]

        resources = coord.resources.add({"cfg": {"resource_type": "json", "value": {"k": 1}}})
        coord.kv.put("api_keys", "moving-key", {"tenant": "default", "scope": "admin"})
        coord.enqueue("held", {"n": 1})
        held = coord.claim("held", "w-held", lease_s=600)  # a live lease, held across the move
        session = coord.sessions.create("agents.counter")
        coord.sessions.invoke(session.id, "one")
        coord.sessions.invoke(session.id, "two")
        coord.sessions.pause(session.id)

        acked: list[str] = []
        completed: dict[str, int] = {}
        errors: list[str] = []
        stop = threading.Event()

        def produce() -> None:
            n = 0
            while not stop.is_set():
                try:
                    acked.extend(coord.enqueue_many("load", list(range(n, n + 20))))
                    n += 20
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    time.sleep(0.1)

        def work() -> None:
            while not stop.is_set():
                try:
                    for lease in coord.claim("load", "w-load", max_tasks=20, wait_s=0.2):
                        completed[coord.complete(lease.attempt_id, lease.task.input * 2).id] = lease.task.input * 2
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    time.sleep(0.1)

        threads = [threading.Thread(target=produce, daemon=True), threading.Thread(target=work, daemon=True)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(completed) >= 200, 120, what="the load to get going")
        cluster.remove_node(first, allow_graceful=False)
        removed_at = time.monotonic()
        wait_until(lambda: name.get(coord.info()["node_id"]) == "standby", 180, interval_s=0.2, what="the move")
        report["moved_in_s"] = round(time.monotonic() - removed_at, 1)
        seen = len(completed)
        wait_until(lambda: len(completed) >= seen + 200, 180, what="the load to go on after the move")
        stop.set()
        for thread in threads:
            thread.join(timeout=120)

        report["coordinator_after"] = name[coord.info()["node_id"]]
        report["acked"] = len(acked)
        report["acked_found"] = sum(1 for task_id in acked if coord.get(task_id) is not None)
        report["completed_kept"] = all(
            coord.get(task_id).result == result for task_id, result in list(completed.items())
        )
        report["caller_errors"] = errors
        report["lease_still_live"] = coord.complete(held[0].attempt_id, "after the move").status.value
        report["resources_kept"] = coord.resources.latest().resources_id == resources.resources_id
        report["key_kept"] = coord.kv.get("api_keys", "moving-key") == {"tenant": "default", "scope": "admin"}
        coord.sessions.resume(session.id)
        report["session_memory"] = coord.sessions.invoke(session.id, "three").result["count"]
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    return report


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
