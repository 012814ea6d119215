"""A two-node Ray cluster on this machine (``ray.cluster_utils.Cluster``): jobs, Serve replicas and queue workers
spread over both nodes; then the worker node is killed. Prints one JSON report for the test to check.

Run on its own (it starts and stops its own cluster): ``python tests/multinode/two_nodes.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: the repo root holds `tests`
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
FAILING = ROOT / "tests" / "fixtures" / "plugins" / "failing"
HELLO = ROOT / "plugins" / "hello"


def main() -> dict:
    import httpx
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster
    from ray.job_submission import JobStatus, JobSubmissionClient
    from ray.util.state import list_actors

    import ray_runtime as rr
    from ray_runtime._net import free_port
    from ray_runtime.plugins import spawn_workers
    from ray_runtime.plugins.serve import ActionDeployment

    root = tempfile.mkdtemp(prefix="rr2n-", dir="/tmp")
    os.environ["RAY_RUNTIME_STORAGE"] = os.path.join(root, "storage")
    os.environ["RAY_TMPDIR"] = root  # Cluster writes its address file there, not in the machine-wide /tmp/ray
    os.makedirs(os.path.join(root, "ray"))

    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    dashboard_port = free_port()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "resources": {"head": 10},
            "gcs_server_port": free_port(),
            "include_dashboard": True,
            "dashboard_host": "127.0.0.1",
            "dashboard_port": dashboard_port,
            "dashboard_agent_listen_port": free_port(),
            "ray_client_server_port": free_port(),
            "temp_dir": os.path.join(root, "ray"),
            # notice a lost node in ~3 s, not the default ~30 s
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 6},
        },
    )
    report: dict = {}
    try:
        worker_node = cluster.add_node(
            num_cpus=2, resources={"worker_node": 10}, dashboard_agent_listen_port=free_port()
        )
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        head_id, worker_id = cluster.head_node.node_id, worker_node.node_id
        name = {head_id: "head", worker_id: "worker"}
        coord = rr.connect(sweep_interval_s=0.05, retry_backoff_s=0.05, retry_backoff_max_s=0.2)
        report["coordinator_node"] = name[coord.info()["node_id"]]

        # jobs on both nodes (entrypoint resources pick the node), and one long job on the worker node
        jobs = JobSubmissionClient(f"http://127.0.0.1:{dashboard_port}")
        placed = {
            where: jobs.submit_job(entrypoint="echo placed", entrypoint_resources={where: 1})
            for where in ("head", "worker_node")
        }
        for submission_id in placed.values():
            wait_until(
                lambda s=submission_id: jobs.get_job_status(s) == JobStatus.SUCCEEDED,
                120,
                interval_s=0.2,
                what="placed jobs",
            )
        report["job_nodes"] = sorted(name[jobs.get_job_info(s).driver_node_id] for s in placed.values())
        doomed_job = jobs.submit_job(entrypoint="sleep 600", entrypoint_resources={"worker_node": 1})
        wait_until(
            lambda: jobs.get_job_status(doomed_job) == JobStatus.RUNNING, 120, interval_s=0.2, what="the long job"
        )

        # a plugin action on Serve with a replica on each node
        serve_port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": serve_port})
        app = ActionDeployment.options(
            num_replicas=2, max_replicas_per_node=1, ray_actor_options={"num_cpus": 0.1}
        ).bind("hello", "greet", "hello:greet", None, str(HELLO))
        serve.run(app, name="hello-2n", route_prefix="/hello")
        replicas = [a for a in list_actors(detail=True) if a.class_name.startswith("ServeReplica:hello-2n")]
        report["replica_nodes"] = sorted(name[a.node_id] for a in replicas if a.state == "ALIVE")
        url = f"http://127.0.0.1:{serve_port}/hello"
        report["served_before"] = httpx.post(url, json={"name": "two nodes"}, timeout=30).json()["message"]

        # queue workers on both nodes
        pool = spawn_workers(FAILING, "slow", workers=2, concurrency=2, lease_s=2.0)
        quick = coord.enqueue_many("slow", [{"seconds": 0.3}] * 8)
        assert not coord.wait(quick, timeout_s=120).pending
        nodes_of = {w.worker_id: w.node_id for w in coord.workers()}
        report["worker_nodes"] = sorted({name[nodes_of[t.worker_id]] for t in coord.wait(quick, timeout_s=1).done})

        # four long tasks: two leased on each node; then the worker node dies
        long = coord.enqueue_many("slow", [{"seconds": 6}] * 4)

        def all_leased() -> list | None:
            tasks = [coord.get(task_id) for task_id in long]
            return tasks if all(task.status == "leased" for task in tasks) else None

        leased = wait_until(all_leased, 120, interval_s=0.2, what="four leases")

        on_worker = [t.id for t in leased if nodes_of[t.worker_id] == worker_id]
        report["leased_on_worker_node"] = len(on_worker)
        cluster.remove_node(worker_node, allow_graceful=False)
        killed_at = time.monotonic()

        finished = coord.wait(long, timeout_s=120)
        assert not finished.pending, finished.pending
        by_id = {t.id: t for t in finished.done}
        report["long_tasks"] = sorted(t.status.value for t in finished.done)
        report["moved"] = [
            {"attempts": by_id[i].attempts, "finished_on": name[nodes_of.get(by_id[i].worker_id, head_id)]}
            for i in on_worker
        ]
        report["requeued_after_s"] = round(time.monotonic() - killed_at, 1)

        failed = wait_until(
            lambda: jobs.get_job_status(doomed_job) == JobStatus.FAILED, 120, interval_s=0.2, what="the job's failure"
        )
        report["job_after_kill"] = {"status": str(jobs.get_job_status(doomed_job).value), "failed": failed}
        report["job_failure_reason"] = jobs.get_job_info(doomed_job).message
        report["served_after"] = httpx.post(url, json={"name": "one node"}, timeout=30).json()["message"]
        pool.stop()
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    return report


if __name__ == "__main__":
    print(json.dumps(main()))
