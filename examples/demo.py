"""The end-to-end demo behind `make demo`, on a local Ray started for it (own temp dir, free ports).

1. Coordinator: publish resources, enqueue arithmetic problems, run two `rollout` plugin workers as Ray actors,
   publish cooler LLM settings mid-run, kill the coordinator once, and show that nothing was lost.
2. Plugins: `hello` as a Ray task, `wordcount` as a Ray job with live progress and its result read back as data,
   `textstats` as a Serve endpoint (JSON and a per-sentence stream).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import httpx
import ray
from rich.console import Console
from rich.table import Table

import ray_runtime as rr
import ray_runtime.plugins as plugins
from ray_runtime.plugins.serve_deploy import serve_plugin, wait_for_apps
from ray_runtime.plugins.submit import follow_logs

console = Console()
PLUGINS = Path(__file__).resolve().parent.parent / "plugins"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    root = tempfile.mkdtemp(prefix="rrd-", dir="/tmp")
    os.environ["RAY_RUNTIME_STORAGE"] = os.path.join(root, "storage")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # jobs run `python`
    with console.status("starting a local Ray cluster with its dashboard"):
        context = ray.init(
            num_cpus=4,
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            dashboard_port=free_port(),
            _temp_dir=os.path.join(root, "ray"),
            log_to_driver=False,
        )
    try:
        coord = rr.connect(retry_backoff_s=0.1, sweep_interval_s=0.05)
        coordinator_tour(coord, root)
        plugin_tour(coord, f"http://{context.dashboard_url}")
    finally:
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    console.print("[bold green]demo finished[/]")


def coordinator_tour(coord: rr.Coordinator, root: str) -> None:
    console.rule("coordinator: queues, leases, resources, durability")
    info = coord.info()
    console.print(f"coordinator pid {info['pid']}, journal {info['journal'].replace(root, '<tmp>')}")
    v1 = coord.resources.add(
        {
            "llm": rr.LLM(endpoint="http://localhost:8000/v1", model="tiny", sampling_parameters={"temperature": 0.9}),
            "prompt": rr.PromptTemplate(template="Compute {question} and answer with a number."),
        }
    )
    console.print(f"resources v{v1.version} published (temperature 0.9)")
    problems = [{"question": f"{a} * {b} + {a}", "expected": a * b + a} for a in range(2, 7) for b in range(2, 6)]
    pool = plugins.spawn_workers(PLUGINS / "rollout", "solve", workers=2, lease_s=10)
    ids = coord.enqueue_many("rollouts", problems[:10])
    ids += coord.enqueue_many("rollouts", problems[10:], priority=5)
    again = coord.enqueue("rollouts", {"question": "1 + 1", "expected": 2}, idempotency_key="order-42")
    assert coord.enqueue("rollouts", {"question": "1 + 1"}, idempotency_key="order-42") == again
    poison = coord.enqueue("rollouts", {"question": "1 +"}, max_attempts=2)
    console.print(f"round 1: {len(problems) + 2} tasks (10 at priority 5, a repeated idempotency key, a poison task)")
    first = coord.wait([*ids, again], timeout_s=180)

    v2 = coord.resources.update(
        {"llm": rr.LLM(endpoint="http://localhost:8000/v1", model="tiny", sampling_parameters={"temperature": 0.1})}
    )
    console.print(f"resources v{v2.version} published (temperature 0.1); the same workers keep running")
    ids = coord.enqueue_many("rollouts", problems)
    console.print(f"round 2: {len(ids)} tasks, the same problems")
    pid = coord.info()["pid"]
    ray.kill(coord.actor, no_restart=False)
    console.print(f"[yellow]killed the coordinator (pid {pid})[/]; Ray restarts it and it replays its journal")
    second = coord.wait(ids, timeout_s=180)
    dead = coord.wait([poison], timeout_s=60).done[0]
    console.print(f"coordinator is back as pid {coord.info()['pid']}; round 2: {len(second.done)} of {len(ids)} done")
    stats = pool.stop()
    result = type(second)(done=first.done + second.done, pending=second.pending)

    by_version: dict[str, list[float]] = {}
    for task in result.done:
        by_version.setdefault(task.result["resources_id"], []).append(task.result["reward"])
    table = Table(title="rewards by the resources version each attempt used")
    for column in ("version", "temperature", "tasks", "mean reward"):
        table.add_column(column)
    for update, temperature in ((v1, 0.9), (v2, 0.1)):
        rewards = by_version.get(update.resources_id, [])
        mean = f"{sum(rewards) / len(rewards):.2f}" if rewards else "-"
        table.add_row(f"v{update.version}", str(temperature), str(len(rewards)), mean)
    console.print(table)
    console.print(f"per worker: {stats}")
    console.print(f"dead letter {dead.id[-8:]} after {dead.attempts} attempts: {dead.error.type}: {dead.error.message}")
    counts = coord.stats("rollouts").counts
    console.print("queue: " + ", ".join(f"{status.value}={n}" for status, n in counts.items() if n))


def plugin_tour(coord: rr.Coordinator, dashboard: str) -> None:
    console.rule("plugins: one action, four ways to run")
    for attempt in ("first run (packs, uploads, starts a worker)", "warm run"):
        started = time.perf_counter()
        reply = plugins.run(PLUGINS / "hello", "greet", {"name": "Ada", "excited": True})
        elapsed = (time.perf_counter() - started) * 1e3
        console.print(f"task mode  hello/greet -> {reply.message!r} in {elapsed:.0f} ms, {attempt}")

    submission_id = plugins.submit_job(PLUGINS / "wordcount", "count", {"top": 3}, address=dashboard)
    console.print(f"job mode   wordcount/count submitted as {submission_id}; its log:")
    status = asyncio.run(
        follow_logs(dashboard, submission_id, lambda line: console.print(f"   | {line}", markup=False, highlight=False))
    )
    run = coord.runs.get(submission_id)
    console.print(
        f"           job {status}; recorded run: {run.status}, {len(run.events)} progress events, "
        f"result {run.result['total_words']} words, top {run.result['top']}"
    )

    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    with console.status("serve mode: deploying textstats"):
        wait_for_apps(serve_plugin(PLUGINS / "textstats", dashboard_url=dashboard), dashboard_url=dashboard)
    base = f"http://127.0.0.1:{port}/plugins/textstats"
    text = "Plugins run as jobs. They run as tasks! Do they serve? They stream, too."
    stats = httpx.post(f"{base}/analyze", json={"text": text}, timeout=30).json()
    console.print(f"serve mode POST {base}/analyze -> {json.dumps(stats)}")
    with httpx.stream("POST", f"{base}/sentences", json={"text": text}, timeout=30) as response:
        for line in response.iter_lines():
            if line:
                chunk = json.loads(line)
                console.print(f"           stream: sentence {chunk['index']}: {chunk['words']} words")


if __name__ == "__main__":
    main()
