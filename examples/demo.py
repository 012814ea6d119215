"""`make demo`: a complete local runtime (`ray-runtime up`), a tour of every way in, then `ray-runtime down`.

1. CLI: submit `wordcount` as a Ray job and follow its logs with a live progress bar.
2. Client: read the job's typed result back as data, not from its log.
3. Serve HTTP: `textstats` as JSON, as an NDJSON stream and as server-sent events.
4. Queues: `rollout` workers (a `ray-runtime worker` on Ray and a TaskClient over HTTP) share a queue while
   cooler LLM settings are published mid-run; rewards by resources version show the switch.
5. Agent sessions: the `chat` agent streams over the agent protocol's WebSocket, calls a tool, is paused and
   resumed with its memory, and forked; the CLI lists them.

Everything runs in its own folder on free ports, so it needs nothing else on the machine and leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from ray_runtime import LLM, PromptTemplate
from ray_runtime.client import AgentSocket, RuntimeClient, TaskClient
from ray_runtime.local import LocalRuntime, load_state

ROOT = Path(__file__).resolve().parent.parent
console = Console()


def cli(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    """Run `ray-runtime ...` in front of the user (its output goes straight to the terminal)."""
    console.print(f"[bold]$ ray-runtime {' '.join(args)}[/]", highlight=False)
    done = subprocess.run([sys.executable, "-m", "ray_runtime", *args], env=env, cwd=ROOT)
    if check and done.returncode != 0:
        raise SystemExit(f"`ray-runtime {' '.join(args)}` failed with exit code {done.returncode}")
    return done


def main() -> None:
    directory = tempfile.mkdtemp(prefix="rrdemo-", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**os.environ, "RAY_RUNTIME_LOCAL_DIR": directory}
    for name in ("RAY_ADDRESS", "RAY_RUNTIME_URL", "RAY_RUNTIME_API_KEY", "RAY_RUNTIME_TENANT"):
        env.pop(name, None)
    try:
        console.rule("ray-runtime up: Ray, coordinator, plugins on Serve, API façade")
        ports = ["--ray-port", "0", "--dashboard-port", "0", "--serve-port", "0", "--api-port", "0"]
        cli("up", *ports, env=env)
        state = load_state(Path(directory))
        assert state is not None
        with RuntimeClient(state.api_url, state.api_key) as client:
            job_tour(client, env)
            serve_tour(state.serve_url, state.api_key)
            queue_tour(client, state, env)
            session_tour(client, env)
        cli("status", env=env)
    finally:
        console.rule("ray-runtime down")
        cli("down", env=env, check=False)
        shutil.rmtree(directory, ignore_errors=True)
    console.print("[bold green]demo finished[/]")


def job_tour(client: RuntimeClient, env: dict[str, str]) -> None:
    console.rule("1. a plugin as a Ray job, from the CLI")
    cli(
        "job",
        "submit",
        "wordcount",
        "count",
        "--params",
        '{"top": 3}',
        "--metadata",
        "origin=demo",
        "--follow",
        env=env,
    )
    console.rule("2. its result as data, from the Python client")
    [job] = [j for j in client.iter_jobs(plugin="wordcount") if j.metadata.get("origin") == "demo"]
    run = client.get_job(job.submission_id).run
    assert run is not None
    console.print(
        f"client.get_job({job.submission_id!r}).run: status={run.status.value}, "
        f"{len(run.events)} progress events, total_words={run.result['total_words']}, top={run.result['top']}"
    )


def serve_tour(serve_url: str, key: str) -> None:
    console.rule("3. a plugin as a Serve HTTP endpoint: JSON, NDJSON stream, server-sent events")
    base = f"{serve_url}/plugins/textstats"
    text = "Plugins run as jobs. They run as tasks! Do they serve? They stream, too."
    auth = {"authorization": f"Bearer {key}"}  # plugin endpoints take the façade's keys (serve.auth: keys)
    stats = httpx.post(f"{base}/analyze", json={"text": text}, headers=auth, timeout=30).json()
    console.print(f"POST {base}/analyze -> {json.dumps(stats)}", highlight=False)
    with httpx.stream("POST", f"{base}/sentences", json={"text": text}, headers=auth, timeout=30) as reply:
        for line in reply.iter_lines():
            if line:
                chunk = json.loads(line)
                console.print(f"  NDJSON chunk: sentence {chunk['index']}: {chunk['words']} words")
    events = []
    with httpx.stream(
        "POST", f"{base}/sentences", json={"text": text}, headers={**auth, "accept": "text/event-stream"}, timeout=30
    ) as reply:
        events = [line for line in reply.iter_lines() if line.startswith("event:") or line.startswith("data:")]
    console.print(f"  the same as server-sent events: {len(events)} lines, ending with {events[-2:]}")


def queue_tour(client: RuntimeClient, state: LocalRuntime, env: dict[str, str]) -> None:
    console.rule("4. rollout workers on a queue; cooler LLM settings published mid-run")
    hot = client.add_resources(
        {
            "llm": LLM(endpoint="http://localhost:8000/v1", model="tiny", sampling_parameters={"temperature": 0.9}),
            "prompt": PromptTemplate(template="Compute {question} and answer with a number."),
        }
    )
    console.print(f"resources v{hot.version} published: temperature 0.9 (the policy slips on some multiplications)")
    problems = [{"question": f"{a} * {b} + {a}", "expected": a * b + a} for a in range(2, 12) for b in range(2, 8)]
    batch = Path(state.dir) / "problems.jsonl"  # the same problems in both rounds: a fair comparison
    batch.write_text("".join(json.dumps(problem) + "\n" for problem in problems))

    worker_env = {**env, "RAY_ADDRESS": state.gcs_address}
    console.print("[bold]$ ray-runtime worker plugins/rollout solve --concurrency 2[/] (in the background)")
    worker = subprocess.Popen(
        [sys.executable, "-m", "ray_runtime", "worker", "plugins/rollout", "solve", "--concurrency", "2"],
        env=worker_env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stop = threading.Event()
    outside = threading.Thread(target=http_worker, args=(state, stop), daemon=True)
    outside.start()
    console.print("and a TaskClient worker outside Ray: polls over HTTP, solves through the Serve endpoint")

    cli("queue", "enqueue", "rollouts", "--jsonl", str(batch), env=env)
    wait_all(client)
    cool = client.update_resources(
        {"llm": LLM(endpoint="http://localhost:8000/v1", model="tiny", sampling_parameters={"temperature": 0.1})}
    )
    console.print(f"resources v{cool.version} published: temperature 0.1; the running workers pick it up")
    cli("queue", "enqueue", "rollouts", "--jsonl", str(batch), env=env)

    wait_all(client)
    stop.set()
    worker.send_signal(signal.SIGINT)  # finishes its current tasks, then exits
    worker.wait(timeout=60)
    outside.join(timeout=30)

    rewards: dict[str, list[float]] = defaultdict(list)
    by_worker: Counter[str] = Counter()
    done = [t for t in client.query_tasks(queue="rollouts", status="succeeded", limit=1000).items]
    for task in done:
        rewards[task.result["resources_id"]].append(task.result["reward"])
        by_worker["HTTP (TaskClient)" if task.worker_id.startswith("task-client") else "Ray (ray-runtime worker)"] += 1
    table = Table(title=f"{len(done)} rollouts: reward by the resources version each one used")
    for column in ("version", "temperature", "rollouts", "mean reward"):
        table.add_column(column)
    for update, temperature in ((hot, 0.9), (cool, 0.1)):
        got = rewards.get(update.resources_id, [])
        table.add_row(
            f"v{update.version}", str(temperature), str(len(got)), f"{sum(got) / len(got):.2f}" if got else "-"
        )
    console.print(table)
    console.print("rollouts per worker kind: " + ", ".join(f"{kind} {n}" for kind, n in by_worker.items()))


def session_tour(client: RuntimeClient, env: dict[str, str]) -> None:
    console.rule("5. agent sessions: stream over the agent socket, pause, resume, fork")
    cli("template", "list", "--tag", "chat", env=env)

    def say(socket: AgentSocket, text: str) -> None:
        console.print(f"[bold cyan]you>[/] {text}\n[bold green]agent>[/] ", end="")
        reply = socket.send_message(text)
        for event in reply:
            if event.kind == "text_chunk":
                console.print(event.text, end="", highlight=False)
            elif event.kind in ("tool_call", "tool_result"):
                console.print(f"[dim]\n  {event.kind}: {event.model_dump_json(exclude={'kind'})}[/]")
        console.print(f"\n[dim]  {reply.tokens} tokens in {reply.duration_s * 1e3:.1f} ms[/]")

    session = client.create_session("chat.assistant", config={"persona": "guide"}, metadata={"origin": "demo"})
    with session.socket() as socket:
        say(socket, "My name is Ada")
        say(socket, "What is 6 * 7?")
    session.pause()
    console.print(f"paused {session.id}: {session.record.checkpoint_bytes} bytes checkpointed, its host freed it")
    session.resume()
    with session.socket() as socket:
        say(socket, "What is my name?")
    fork = session.fork(metadata={"origin": "demo", "fork": "yes"})
    with fork.socket() as socket:
        say(socket, "What did I say?")
    cli("session", "list", "--metadata", "origin=demo", env=env)
    for each in (fork, session):
        each.close()


def wait_all(client: RuntimeClient) -> None:
    with console.status("workers are solving"):
        while (stats := client.queue_stats("rollouts")).counts["queued"] + stats.counts["leased"] > 0:
            time.sleep(0.2)


def http_worker(state: LocalRuntime, stop: threading.Event) -> None:
    """A worker outside Ray: lease a task over HTTP, solve it with the Serve endpoint, post the rollout."""
    solve = f"{state.serve_url}/plugins/rollout/solve"
    with TaskClient(state.api_url, state.api_key, queue="rollouts", poll_wait_s=1) as tasks:
        while not stop.is_set():
            lease = tasks.poll_next_task()
            if lease is None:
                continue
            auth = {"authorization": f"Bearer {state.api_key}"}
            rollout = httpx.post(solve, json=lease.task.input, headers=auth, timeout=30).json()
            tasks.post_rollout(lease.attempt_id, rollout)


if __name__ == "__main__":
    main()
