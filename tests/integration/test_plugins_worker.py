"""Worker mode: workers as Ray actors and as the CLI consume a queue, heartbeat, and fail attempts properly."""

from __future__ import annotations

import subprocess
import sys

import ray_runtime as rr
from ray_runtime.models import TaskStatus
from ray_runtime.plugins import spawn_workers

from ..conftest import FIXTURE_PLUGINS, PLUGINS


def test_spawned_workers_drain_a_queue_with_the_action(coord):
    ids = coord.enqueue_many("greetings", [{"name": f"n{i}"} for i in range(12)])
    pool = spawn_workers(PLUGINS / "hello", "greet", workers=2, tenant=coord.tenant, lease_s=30)
    result = coord.wait(ids, timeout_s=120)
    stats = pool.stop()
    assert len(result.done) == 12 and result.pending == []
    assert {t.result["message"] for t in result.done} == {f"Hello, n{i}." for i in range(12)}
    assert {t.result["mode"] for t in result.done} == {"worker"}
    assert sum(s["succeeded"] for s in stats) == 12


def test_rollout_workers_use_the_leased_resources_and_improve_when_they_change(coord):
    coord.resources.add(
        {
            "llm": rr.LLM(endpoint="http://llm", model="hot", sampling_parameters={"temperature": 0.9}),
            "prompt": rr.PromptTemplate(template="Solve: {question}"),
        }
    )
    problems = [{"question": f"{a} * {b}", "expected": a * b} for a in range(2, 8) for b in range(3, 5)]
    pool = spawn_workers(PLUGINS / "rollout", "solve", workers=1, tenant=coord.tenant)
    hot = coord.wait(coord.enqueue_many("rollouts", problems), timeout_s=120).done
    cool = coord.resources.update(
        {"llm": rr.LLM(endpoint="http://llm", model="cool", sampling_parameters={"temperature": 0.1})}
    )
    cold = coord.wait(coord.enqueue_many("rollouts", problems), timeout_s=120).done
    pool.stop()
    hot_reward = sum(t.result["reward"] for t in hot) / len(hot)
    assert hot_reward < 1.0 and all(t.result["model"] == "hot" for t in hot)
    assert all(t.result["reward"] == 1.0 and t.result["resources_id"] == cool.resources_id for t in cold)
    assert cold[0].result["prompt"].startswith("Solve: ")


def test_a_raising_action_is_retried_then_dead_lettered_with_its_traceback(coord):
    poison = coord.enqueue("explosions", {"reason": "worker"}, max_attempts=2)
    bad_input = coord.enqueue("explosions", {"unexpected": True})
    pool = spawn_workers(FIXTURE_PLUGINS / "failing", "explode", tenant=coord.tenant)
    done = {t.id: t for t in coord.wait([poison, bad_input], timeout_s=120).done}
    pool.stop()
    assert done[poison].status is TaskStatus.DEAD and done[poison].attempts == 2
    assert done[poison].error.type == "ExplosionError" and "raise ExplosionError" in done[poison].error.traceback
    assert done[bad_input].status is TaskStatus.FAILED and done[bad_input].attempts == 1  # bad input: no retry
    assert done[bad_input].error.type == "ValidationError"


def test_heartbeats_keep_a_long_task_leased_to_its_worker(coord):
    task_id = coord.enqueue("slow", {"seconds": 2.5})
    pool = spawn_workers(FIXTURE_PLUGINS / "failing", "slow", tenant=coord.tenant, lease_s=1.0)
    [task] = coord.wait([task_id], timeout_s=60).done
    pool.stop()
    assert task.status is TaskStatus.SUCCEEDED and task.attempts == 1 and task.result == 2.5


def test_the_cli_worker_consumes_until_max_tasks(coord, ray_cluster):
    ids = coord.enqueue_many("greetings", [{"name": "cli"}] * 3)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ray_runtime",
            "worker",
            str(PLUGINS / "hello"),
            "greet",
            "--max-tasks",
            "3",
            "--address",
            ray_cluster["address"],
            "--tenant",
            coord.tenant,
            "--concurrency",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 succeeded" in done.stdout
    assert all(t.status is TaskStatus.SUCCEEDED for t in coord.wait(ids, timeout_s=10).done)
