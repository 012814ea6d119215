"""The end-to-end demo behind `make demo`: a local Ray, the coordinator, a producer, two workers, resources.

It starts its own Ray (temp dir, nothing shared), then:
  1. publishes resources (a prompt template and LLM settings),
  2. enqueues 40 tasks (priorities, a repeated idempotency key, one poison task),
  3. runs two workers as Ray actors that long-poll, solve, and hand in results with the combined call,
  4. publishes new resources mid-run and kills the coordinator once, to show nothing is lost,
  5. waits for every task, and prints results, the dead letter, queue stats and workers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import ray
from rich.console import Console
from rich.table import Table

import ray_runtime as rr
from ray_runtime.errors import StaleAttemptError, TaskFinishedError

console = Console()
QUEUE = "arithmetic"


@ray.remote(num_cpus=0)
class Worker:
    """A queue worker: claim (long poll), solve with the leased resources version, hand in and claim again."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self.coord = rr.connect(name="demo")

    def run(self, idle_s: float = 3.0) -> list[tuple[str, int]]:
        done: list[tuple[str, int]] = []
        leases = self.coord.claim(QUEUE, self.worker_id, wait_s=idle_s)
        while leases:
            lease = leases[0]
            resources = self.coord.resources.get(lease.resources_id).resources
            try:
                answer = solve(lease.task.input, resources)
            except ValueError as exc:
                self.coord.fail(lease.attempt_id, exc)
                leases = self.coord.claim(QUEUE, self.worker_id, wait_s=idle_s)
                continue
            try:
                _, leases = self.coord.complete_and_claim(
                    lease.attempt_id, answer, queue=QUEUE, worker_id=self.worker_id, wait_s=idle_s
                )
                done.append((lease.task.id, resources["llm"].sampling_parameters["temperature"]))
            except (StaleAttemptError, TaskFinishedError):
                leases = self.coord.claim(QUEUE, self.worker_id, wait_s=idle_s)
        return done


def solve(problem: dict, resources: dict) -> dict:
    """A deterministic stand-in for an LLM call: render the prompt, compute the answer."""
    if problem.get("poison"):
        raise ValueError(f"cannot parse {problem['text']!r}")
    time.sleep(0.02)
    prompt = resources["prompt"].format(a=problem["a"], b=problem["b"])
    return {"prompt": prompt, "answer": problem["a"] + problem["b"], "model": resources["llm"].model}


def main() -> None:
    root = tempfile.mkdtemp(prefix="rrd-", dir="/tmp")
    os.environ["RAY_RUNTIME_STORAGE"] = os.path.join(root, "storage")
    with console.status("starting a local Ray cluster"):
        ray.init(num_cpus=4, include_dashboard=False, _temp_dir=os.path.join(root, "ray"), log_to_driver=False)
    try:
        tour(root)
    finally:
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)


def tour(root: str) -> None:
    coord = rr.connect(name="demo", retry_backoff_s=0.1, sweep_interval_s=0.05)
    info = coord.info()
    console.print(f"[bold]coordinator[/] pid {info['pid']}, journal {info['journal'].replace(root, '<tmp>')}")

    v1 = coord.resources.add(
        {
            "llm": rr.LLM(
                endpoint="http://localhost:8000/v1", model="tiny-math", sampling_parameters={"temperature": 0.7}
            ),
            "prompt": rr.PromptTemplate(template="What is {a} + {b}?"),
        }
    )
    console.print(f"resources v{v1.version} published: {v1.resources_id}")

    problems = [{"a": i, "b": i * i} for i in range(40)]
    ids = coord.enqueue_many(QUEUE, problems[:20])
    ids += coord.enqueue_many(QUEUE, problems[20:], priority=5)
    again = coord.enqueue(QUEUE, {"a": 1, "b": 1}, idempotency_key="order-42")
    assert coord.enqueue(QUEUE, {"a": 1, "b": 1}, idempotency_key="order-42") == again
    poison = coord.enqueue(QUEUE, {"poison": True, "text": "1 +"}, max_attempts=2)
    ids += [again]
    console.print(f"enqueued {len(ids) + 1} tasks (20 at priority 5, a repeated idempotency key, one poison task)")

    workers = [Worker.remote(f"worker-{n}") for n in (1, 2)]
    runs = [w.run.remote() for w in workers]

    time.sleep(0.5)
    v2 = coord.resources.update(
        {
            "llm": rr.LLM(
                endpoint="http://localhost:8000/v1", model="tiny-math", sampling_parameters={"temperature": 0.2}
            )
        }
    )
    console.print(f"resources v{v2.version} published mid-run (temperature 0.7 -> 0.2)")
    pid = coord.info()["pid"]
    ray.kill(coord.actor, no_restart=False)
    console.print(f"[yellow]killed the coordinator (pid {pid})[/]; Ray restarts it and it replays its journal")

    result = coord.wait(ids, timeout_s=120)
    per_worker = ray.get(runs)
    console.print(f"coordinator is back as pid {coord.info()['pid']}; all {len(result.done)} tasks finished")

    table = Table(title="results (first 8)")
    for column in ("task", "prio", "attempts", "answer", "prompt", "worker"):
        table.add_column(column)
    for task in sorted(result.done, key=lambda t: t.finished_at or 0)[:8]:
        table.add_row(
            task.id[-8:],
            str(task.priority),
            str(task.attempts),
            str(task.result["answer"]),
            task.result["prompt"],
            task.worker_id or "",
        )
    console.print(table)

    temperatures = [temp for done in per_worker for _, temp in done]
    console.print(
        f"tasks solved with temperature 0.7: {temperatures.count(0.7)}, with 0.2: {temperatures.count(0.2)} "
        f"(per worker: {[len(done) for done in per_worker]})"
    )
    dead = coord.wait([poison], timeout_s=30).done[0]
    console.print(
        f"dead letter: {dead.id[-8:]} after {dead.attempts} attempts: {dead.error.type}: {dead.error.message}"
    )
    stats = coord.stats(QUEUE)
    console.print(f"queue stats: {', '.join(f'{s.value}={n}' for s, n in stats.counts.items() if n)}")
    console.print(f"workers seen: {[(w.worker_id, w.node_id[:8] if w.node_id else None) for w in coord.workers()]}")
    console.print("[bold green]demo finished[/]")


if __name__ == "__main__":
    main()
