"""Soak: mixed traffic against one local cluster for a long while, then the façade's and the coordinator's growth.

For ``--minutes`` (default 30) it keeps, at once: plugin jobs submitted and their logs tailed (WebSocket and HTTP),
queue traffic (enqueue, claim, complete, fail) on several queues, calls to a plugin on Serve, and a new resources
version every few seconds. It prints the resident memory and open files of the façade and the coordinator at the
start (after a warm-up minute) and at the end, with the coordinator's task and run counts, so growth can be read
against retention: finished tasks are kept up to ``RAY_RUNTIME_FINISHED_RETENTION`` (set low here), runs up to
``RAY_RUNTIME_RUNS_RETENTION``.

    python -m bench.soak [--minutes 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from rich.console import Console
from rich.table import Table

import ray_runtime as rr
from bench._cluster import private_ray
from bench.api import start_facade
from ray_runtime._net import free_port
from ray_runtime.keys import KEYS_NAMESPACE, new_key
from ray_runtime.models.api import Scope
from ray_runtime.plugins.serve_deploy import serve_plugin, wait_for_apps

console = Console()
ROOT = Path(__file__).resolve().parent.parent
RETENTION = 5_000


def usage(pid: int) -> dict[str, float]:
    process = psutil.Process(pid)
    return {
        "rss_mb": process.memory_info().rss / 2**20,
        "open_files": len(process.open_files()),
        "fds": process.num_fds(),
    }


async def jobs_and_tails(facade: str, headers: dict[str, str], stop: float, counts: dict[str, int]) -> None:
    async with httpx.AsyncClient(base_url=facade, headers=headers, timeout=120) as client:
        while time.monotonic() < stop:
            reply = await client.post(
                "/api/v1/jobs", json={"plugin": "hello", "action": "greet", "params": {"name": "s"}}
            )
            submission_id = reply.json()["submission_id"]
            async with client.stream("GET", f"/api/v1/jobs/{submission_id}/logs/stream") as stream:
                async for line in stream.aiter_lines():
                    if line and json.loads(line)["type"] in ("end", "limit", "error"):
                        break
            counts["jobs"] += 1


async def queue_traffic(facade: str, headers: dict[str, str], stop: float, counts: dict[str, int]) -> None:
    async with httpx.AsyncClient(base_url=facade, headers=headers, timeout=120) as client:
        while time.monotonic() < stop:
            queue = f"soak-{random.randint(0, 4)}"
            tasks = [{"input": {"n": i}} for i in range(20)]
            await client.post(f"/api/v1/queues/{queue}/tasks/batch", json={"tasks": tasks})
            leases = (
                await client.post(f"/api/v1/queues/{queue}/claim", json={"worker_id": "soak", "max_tasks": 20})
            ).json()
            for n, lease in enumerate(leases):
                verdict = "fail" if n % 10 == 0 else "complete"
                body = {"error": "soaked", "retryable": False} if verdict == "fail" else {"result": n}
                await client.post(f"/api/v1/attempts/{lease['attempt_id']}/{verdict}", json=body)
            counts["tasks"] += len(leases)


async def serve_calls(serve_url: str, headers: dict[str, str], stop: float, counts: dict[str, int]) -> None:
    async with httpx.AsyncClient(timeout=60, headers=headers) as client:
        while time.monotonic() < stop:
            await client.post(f"{serve_url}/plugins/textstats/analyze", json={"text": "One. Two three."})
            counts["serve"] += 1


async def resources_updates(facade: str, headers: dict[str, str], stop: float, counts: dict[str, int]) -> None:
    async with httpx.AsyncClient(base_url=facade, headers=headers, timeout=60) as client:
        while time.monotonic() < stop:
            body = {"resources": {"cfg": {"resource_type": "json", "value": {"at": time.time()}}}}
            await client.patch("/api/v1/resources", json=body)
            counts["resources"] += 1
            await asyncio.sleep(3)


async def load(facade: str, serve_url: str, key: str, seconds: float) -> dict[str, int]:
    headers = {"Authorization": f"Bearer {key}"}
    stop = time.monotonic() + seconds
    counts = {"jobs": 0, "tasks": 0, "serve": 0, "resources": 0}
    await asyncio.gather(
        jobs_and_tails(facade, headers, stop, counts),
        queue_traffic(facade, headers, stop, counts),
        queue_traffic(facade, headers, stop, counts),
        serve_calls(serve_url, headers, stop, counts),
        resources_updates(facade, headers, stop, counts),
    )
    return counts


def soak(context: Any, minutes: float) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
    """Mixed traffic for ``minutes`` after a minute's warm-up; what the façade and the coordinator used before and
    after, and what was done."""
    from ray import serve

    process = None
    try:
        coord = rr.connect()
        key, record = new_key("soak", Scope.ADMIN, "soak")
        coord.kv.put(KEYS_NAMESPACE, record.key_id, record.model_dump(mode="json"))
        serve_port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": serve_port})
        dashboard = f"http://{context.dashboard_url}"
        wait_for_apps(serve_plugin(ROOT / "plugins" / "textstats", tenant="soak", dashboard_url=dashboard))
        process, facade = start_facade(
            context.address_info["address"], {"RAY_RUNTIME_API_PLUGINS_DIR": str(ROOT / "plugins")}
        )
        serve_url = f"http://127.0.0.1:{serve_port}"
        coordinator_pid = coord.info()["pid"]
        with console.status("warming up (1 minute)"):
            asyncio.run(load(facade, serve_url, key, 60))
        start = {"façade": usage(process.pid), "coordinator": usage(coordinator_pid), "counts": coord.info()["counts"]}
        with console.status(f"soaking for {minutes:g} minutes"):
            counts = asyncio.run(load(facade, serve_url, key, minutes * 60))
        end = {"façade": usage(process.pid), "coordinator": usage(coordinator_pid), "counts": coord.info()["counts"]}
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    return start, end, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", 30)))
    args = parser.parse_args()
    with private_ray(RAY_RUNTIME_FINISHED_RETENTION=str(RETENTION)) as (context, _):
        start, end, counts = soak(context, args.minutes)
    table = Table(title=f"soak: {args.minutes:g} minutes of mixed traffic ({counts})")
    for column in ("process", "RSS start", "RSS end", "open files start/end", "fds start/end"):
        table.add_column(column, justify="right")
    for name in ("façade", "coordinator"):
        s, e = start[name], end[name]
        table.add_row(
            name,
            f"{s['rss_mb']:.0f} MB",
            f"{e['rss_mb']:.0f} MB",
            f"{s['open_files']}/{e['open_files']}",
            f"{s['fds']}/{e['fds']}",
        )
    console.print(table)
    console.print(f"coordinator task counts: start {start['counts']}, end {end['counts']} (retention {RETENTION})")
    Path(".bench").mkdir(exist_ok=True)
    Path(".bench/soak.json").write_text(json.dumps({"start": start, "end": end, "counts": counts}, indent=2))


if __name__ == "__main__":
    main()
