"""Baselines measured in the same run as ray_runtime: a bare deque actor and an HTTP task server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections import deque
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import BaseModel, Field

from ray_runtime._net import free_port


class DequeQueue:
    """(a) The simplest Ray queue: a plain actor around a deque and a dict of results."""

    def __init__(self) -> None:
        self.queue: deque[tuple[int, Any]] = deque()
        self.results: dict[int, Any] = {}
        self.next_id = 0

    def put_many(self, items: list[Any]) -> int:
        for item in items:
            self.queue.append((self.next_id, item))
            self.next_id += 1
        return len(self.queue)

    def claim(self) -> tuple[int, Any] | None:
        return self.queue.popleft() if self.queue else None

    def complete(self, task_id: int, result: Any) -> None:
        self.results[task_id] = result

    def claim_many(self, n: int) -> list[tuple[int, Any]]:
        return [self.queue.popleft() for _ in range(min(n, len(self.queue)))]

    def complete_many(self, pairs: list[tuple[int, Any]]) -> None:
        self.results.update(pairs)

    def complete_many_and_claim_many(self, pairs: list[tuple[int, Any]], n: int) -> list[tuple[int, Any]]:
        """The same round-trip saving the coordinator's batch workers get: results in, the next batch out."""
        self.results.update(pairs)
        return self.claim_many(n)


# ----------------------------------------------------- (b) HTTP task server, Agent Lightning legacy style


class TaskModel(BaseModel):
    rollout_id: str
    input: Any = None
    resources_id: str | None = None
    create_time: float | None = None
    last_claim_time: float | None = None
    num_claims: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class TaskIfAny(BaseModel):
    is_available: bool
    task: TaskModel | None = None


class Rollout(BaseModel):
    rollout_id: str
    task: TaskModel | None = None
    final_reward: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


def create_http_task_server(task_timeout_s: float = 300.0) -> FastAPI:
    """Async handlers over an asyncio queue, stale claims re-queued on each GET /task, as that server does.

    ``/tasks`` (fill), ``/tasks/batch`` and ``/rollouts`` are batch twins for the batched figures.
    """
    app = FastAPI()
    queue: asyncio.Queue[TaskModel] = asyncio.Queue()
    processing: dict[str, TaskModel] = {}
    rollouts: dict[str, Rollout] = {}
    lock = asyncio.Lock()

    async def requeue_stale() -> None:
        now = time.time()
        for task in list(processing.values()):
            if task.last_claim_time and now - task.last_claim_time > task_timeout_s:
                async with lock:
                    processing.pop(task.rollout_id, None)
                    queue.put_nowait(task)

    async def next_task() -> TaskModel | None:
        async with lock:
            try:
                task = queue.get_nowait()
            except asyncio.QueueEmpty:
                return None
            task = task.model_copy(update={"last_claim_time": time.time(), "num_claims": (task.num_claims or 0) + 1})
            processing[task.rollout_id] = task
            return task

    async def store(rollout: Rollout) -> None:
        async with lock:
            processing.pop(rollout.rollout_id, None)
            rollouts[rollout.rollout_id] = rollout

    @app.post("/tasks")
    async def put_tasks(items: list[Any]) -> int:
        for item in items:
            queue.put_nowait(TaskModel(rollout_id=f"rollout-{uuid.uuid4()}", input=item, create_time=time.time()))
        return queue.qsize()

    @app.get("/task", response_model=TaskIfAny)
    async def get_task() -> TaskIfAny:
        await requeue_stale()
        task = await next_task()
        return TaskIfAny(is_available=task is not None, task=task)

    @app.post("/rollout")
    async def post_rollout(rollout: Rollout) -> dict[str, str]:
        await store(rollout)
        return {"status": "ok", "message": f"Rollout {rollout.rollout_id} received and stored."}

    @app.get("/tasks/batch")
    async def get_tasks(n: int = 100) -> list[TaskModel]:
        await requeue_stale()
        tasks = [await next_task() for _ in range(min(n, queue.qsize()))]
        return [t for t in tasks if t is not None]

    @app.post("/rollouts")
    async def post_rollouts(batch: list[Rollout]) -> dict[str, int]:
        for rollout in batch:
            await store(rollout)
        return {"accepted": len(batch)}

    return app


class HTTPTaskServer:
    """Runs the HTTP task server under uvicorn in a child process for the duration of a ``with`` block."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> HTTPTaskServer:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "bench.baselines:create_http_task_server",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/task", timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("the HTTP task server did not start")

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=10)
