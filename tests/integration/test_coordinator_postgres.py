"""The coordinator on its PostgreSQL journal, against a real PostgreSQL server: restarted under load (cleanly, and
crashed) it costs callers a wait and nothing acknowledged; two coordinators on one database leave exactly one that
writes; the URL's password shows nowhere."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid

import pytest
import ray

import ray_runtime as rr
from ray_runtime.errors import CoordinatorUnavailableError, RayRuntimeError
from ray_runtime.models import TaskStatus

from ..conftest import SESSION_SETTINGS
from ..waiting import wait_until


def coordinator_on(url: str, **options):
    name = f"pg-{uuid.uuid4().hex[:8]}"
    return rr.connect(name=name, journal_url=url, **SESSION_SETTINGS, **options)


@pytest.mark.parametrize("how", ["restart", "crash"])
def test_postgres_restarting_under_load_costs_a_wait_and_nothing_acknowledged(postgres_server, postgres_url, how):
    coord = coordinator_on(postgres_url)
    acked: list[str] = []
    completed: dict[str, int] = {}
    errors: list[BaseException] = []
    stop = threading.Event()

    def produce() -> None:
        n = 0
        while not stop.is_set():
            if len(acked) - len(completed) >= 200:  # keep the backlog small: the worker drains it at the end
                stop.wait(0.01)
                continue
            try:
                acked.extend(coord.enqueue_many("load", list(range(n, n + 20))))
                n += 20
            except BaseException as exc:
                errors.append(exc)
                return

    def work() -> None:
        while not stop.is_set() or coord.stats("load").counts.get("queued", 0):
            try:
                for lease in coord.claim("load", "w", max_tasks=20, wait_s=0.2):
                    completed[coord.complete(lease.attempt_id, lease.task.input * 2).id] = lease.task.input * 2
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=produce), threading.Thread(target=work)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(completed) >= 200, 120, what="the load to get going")
    if how == "crash":
        postgres_server.ctl("-m", "immediate", "stop")  # no shutdown checkpoint: the WAL is all it has
        postgres_server.start()
    else:  # stop, then start: `pg_ctl restart` would hand the server this process's pipes and never return
        postgres_server.ctl("-m", "fast", "stop")
        postgres_server.start()
    seen = len(completed)
    wait_until(lambda: len(completed) >= seen + 200, 180, what="calls to resume after PostgreSQL came back")
    stop.set()
    for thread in threads:
        thread.join(timeout=300)

    assert errors == []  # callers waited; none saw an error, a traceback least of all
    kill_and_replay(coord)  # what PostgreSQL holds is what was acknowledged
    for task_id in acked:
        task = coord.get(task_id)
        if task_id in completed:
            assert task.status is TaskStatus.SUCCEEDED and task.result == completed[task_id]
    ray.kill(coord.actor, no_restart=True)


def kill_and_replay(coord) -> None:
    pid = coord.info()["pid"]
    ray.kill(coord.actor, no_restart=False)
    wait_until(lambda: coord.info()["pid"] != pid, 120, interval_s=0.05, what="the coordinator to restart")


def test_of_two_coordinators_on_one_database_the_older_stops_and_the_newer_writes(postgres_server, postgres_url):
    name = f"twin-{uuid.uuid4().hex[:8]}"
    older = rr.connect(name=name, namespace="rr-older", journal_url=postgres_url, **SESSION_SETTINGS)
    before = older.enqueue("q", "before")
    newer = rr.connect(name=name, namespace="rr-newer", journal_url=postgres_url, **SESSION_SETTINGS)
    assert newer.get(before).input == "before"  # it replayed what the older one wrote

    with pytest.raises(CoordinatorUnavailableError, match="newer coordinator"):
        older.enqueue("q", "too late")
    wait_until(lambda: _dead(older), 60, what="the fenced coordinator to stop")
    with pytest.raises(RayRuntimeError):
        older.enqueue("q", "later still")  # it did not come back: a restart would take the journal back
    after = newer.enqueue("q", "after")
    assert [t.input for t in newer.query(queue="q").items] == ["before", "after"]
    assert postgres_server.password not in newer.info()["journal"] and newer.info()["journal"].startswith("postgresql")
    assert newer.get(after).status is TaskStatus.QUEUED
    ray.kill(newer.actor, no_restart=True)


def _dead(coord) -> bool:
    from ray.util.state import get_actor

    state = get_actor(coord.actor._actor_id.hex())
    return state is not None and state.state == "DEAD"


def test_a_facade_keeps_rollout_events_and_its_audit_where_its_postgres_coordinator_keeps_its_state(
    ray_cluster, postgres_server, postgres_url, tmp_path
):
    import httpx
    import psycopg

    from ray_runtime.coordinator.postgres import URL_VARIABLE, schema_name
    from ray_runtime.keys import KEYS_NAMESPACE, new_key
    from ray_runtime.models.api import Scope

    from ..conftest import running_facade

    name = f"pg-{uuid.uuid4().hex[:8]}"
    coord = rr.connect(name=name, journal_url=postgres_url, **SESSION_SETTINGS)
    key, record = new_key("pg-tenant", Scope.ADMIN, "pg")
    coord.kv.put(KEYS_NAMESPACE, record.key_id, record.model_dump(mode="json"))
    command = [sys.executable, "-m", "ray_runtime", "api", "--address", ray_cluster["address"], "--coordinator", name]

    # Without the coordinator's URL it would keep them in files on its own node: it refuses, saying what to give it.
    assert URL_VARIABLE not in os.environ
    refused = subprocess.run(
        [*command, "--port", "1"],
        env={**os.environ, "RAY_RUNTIME_STORAGE": str(tmp_path / "a")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0 and URL_VARIABLE in refused.stderr and "PostgreSQL" in refused.stderr
    assert postgres_server.password not in refused.stderr + refused.stdout and "Traceback" not in refused.stderr

    env = {URL_VARIABLE: postgres_url, "RAY_RUNTIME_STORAGE": str(tmp_path / "a")}
    auth = {"Authorization": f"Bearer {key}"}
    with (
        running_facade(ray_cluster["address"], "--coordinator", name, env=env) as (url, _),
        httpx.Client(base_url=f"{url}/agl", headers=auth, timeout=60) as client,
    ):
        client.post("/api/rollouts", json=[{"rollout_id": "r1", "input": 1}]).raise_for_status()
        running = {"status": {"state": "running", "last_attempt_id": "a"}}
        client.patch("/api/rollouts/r1", json=running).raise_for_status()
        for value in range(3):
            event = {"event_type": "reward", "data": {"value": value}}
            client.post("/api/rollouts/r1/attempt/a/events", json=event).raise_for_status()

    kill_and_replay(coord)  # the coordinator starts again from PostgreSQL; the next façade is on another node's disk
    env["RAY_RUNTIME_STORAGE"] = str(tmp_path / "b")
    with (
        running_facade(ray_cluster["address"], "--coordinator", name, env=env) as (url, _),
        httpx.Client(base_url=f"{url}/agl", headers=auth, timeout=60) as client,
    ):
        events = client.get("/api/rollouts/r1/events").json()
    assert [event["data"]["value"] for event in events] == [0, 1, 2]
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == []  # no event store, no audit file
    with psycopg.connect(postgres_url) as connection:
        audited = connection.execute(
            f"SELECT count(*) FROM {schema_name(name)}.audit WHERE entry::text LIKE %s", ("%/agl/api/rollouts%",)
        ).fetchone()[0]
    assert audited >= 5  # the creation, the PATCH and the three events
    ray.kill(coord.actor, no_restart=True)
