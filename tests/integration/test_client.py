"""The Python clients against the real façade: every method, sync and async, typed errors from real failing calls,
log tails that resume across a cut connection, and retries only where repeating is harmless."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from ray_runtime._net import free_port
from ray_runtime.client import (
    AsyncRuntimeClient,
    AuthenticationError,
    BadRequestError,
    ClientConfig,
    ClientError,
    ConflictError,
    JobStatus,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    RuntimeClient,
    ServerError,
    StreamLimitError,
    StreamLimits,
    TaskClient,
    TimeoutError,
    UnavailableError,
    ValidationError,
)
from ray_runtime.models import LLM, PromptTemplate

from ..conftest import FIXTURE_PLUGINS, unique
from ..waiting import async_wait_until
from .netkit import CuttingProxy, SilentServer, StatusServer

CHATTY = (
    "python -c \"import time\nfor i in range(24):\n    print(f'line {i:02d}', flush=True)\n"
    '    time.sleep(0.6 if i in (4, 12) else 0.05)"'
)
EXPECTED = [f"line {i:02d}" for i in range(24)]
FAST = ClientConfig(retries=2, backoff_s=0.01, backoff_max_s=0.05)


class Either:
    """One face for both clients: ``await api.method(...)`` whether the client blocks or awaits."""

    def __init__(self, client: RuntimeClient | AsyncRuntimeClient) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return call

    async def lines(self, job_id: str, **options: Any) -> list[str]:
        stream = self.client.tail_job_logs(job_id, **options)
        if inspect.isasyncgen(stream):
            return [line async for line in stream]
        return list(stream)

    async def jobs(self, **filters: Any) -> list[Any]:
        found = self.client.iter_jobs(**filters)
        if inspect.isasyncgen(found):
            return [job async for job in found]
        return list(found)


@asynccontextmanager
async def opened(kind: str, url: str, key: str | None, **options: Any) -> AsyncIterator[Either]:
    if kind == "sync":
        with RuntimeClient(url, key, **options) as client:
            yield Either(client)
    else:
        async with AsyncRuntimeClient(url, key, **options) as client:
            yield Either(client)


both = pytest.mark.parametrize("kind", ["sync", "async"])


@both
async def test_jobs_submit_wait_list_logs_stop_delete(facade, kind):
    async with opened(kind, facade.url, facade.keys["alpha"]) as api:
        assert (await api.health_check()).status == "ready"
        job = await api.submit_plugin("wordcount", "count", {"top": 2}, metadata={"origin": kind})
        assert job.plugin == "wordcount" and job.tenant == "alpha"
        seen: list[JobStatus] = []
        done = await api.wait_job(job.submission_id, timeout_s=180, poll_s=0.2, on_progress=lambda j: seen.append(j))
        assert done.status == JobStatus.SUCCEEDED and len(done.run.result["top"]) == 2
        assert seen[-1].status == JobStatus.SUCCEEDED and len(seen) >= 2  # the callback saw it move
        assert (await api.get_job(job.submission_id)).metadata["origin"] == kind

        raw = await api.submit_job("echo one && echo two", metadata={"origin": kind})
        await api.wait_job(raw.submission_id, timeout_s=120, poll_s=0.2)
        logs = await api.get_job_logs(raw.submission_id)
        assert logs.complete and "one\ntwo\n" in logs.data

        at = len(logs.data[: logs.data.index("two")].encode())
        assert (await api.get_job_logs(raw.submission_id, offset=at, limit=3)).data == "two"
        assert await api.lines(raw.submission_id) == logs.data.splitlines()

        page = await api.list_jobs(limit=1)
        assert len(page.items) == 1 and page.next_cursor
        walked = await api.jobs(limit=1)
        assert {job.submission_id, raw.submission_id} <= {j.submission_id for j in walked}
        assert len(walked) == len({j.submission_id for j in walked})
        only = await api.list_jobs(plugin="wordcount", status="SUCCEEDED")
        assert all(j.plugin == "wordcount" and j.status == "SUCCEEDED" for j in only.items)

        sleeper = await api.submit_job("sleep 300")
        await api.stop_job(sleeper.submission_id)
        assert (await api.wait_job(sleeper.submission_id, timeout_s=120, poll_s=0.2)).status == JobStatus.STOPPED
        await api.delete_job(raw.submission_id)
        with pytest.raises(NotFoundError) as missing:
            await api.get_job(raw.submission_id)
        assert missing.value.status_code == 404


@both
async def test_cluster_state(facade, kind):
    async with opened(kind, facade.url, facade.keys["alpha"]) as api:
        nodes = await api.list_nodes()
        assert nodes.total >= 1 and not nodes.truncated
        node = await api.get_cluster("nodes", nodes.items[0]["node_id"])
        assert node["node_id"] == nodes.items[0]["node_id"]
        assert (await api.list_actors(limit=5)).kind == "actors"
        assert (await api.list_tasks(limit=5)).kind == "tasks"
        assert (await api.list_cluster("workers", limit=1)).kind == "workers"
        with pytest.raises(NotFoundError):
            await api.get_cluster("nodes", "f" * 56)


async def test_serve_applications_with_both_clients(facade, serve_url):
    async with (
        opened("sync", facade.url, facade.keys["alpha"]) as sync,
        opened("async", facade.url, facade.keys["alpha"]) as aio,
    ):  # an import path runs the caller's own code: alpha's key was granted run_code
        [app] = await sync.deploy_plugin("echo")
        assert app.name == "echo.say" and app.tenant == "alpha"
        imported = await aio.deploy_application(
            "echo-imported",
            "ray_runtime.plugins.serve:build_app",
            args={"action": "say", "plugin_dir": str(FIXTURE_PLUGINS / "echo")},
            route_prefix="/echo-imported",
        )
        assert [a.name for a in imported] == ["echo-imported"]
        for api, name in ((aio, "echo.say"), (sync, "echo-imported")):

            async def running(api=api, name=name) -> bool:
                found = await api.get_application(name)
                assert found.status != "DEPLOY_FAILED", found.message
                return found.status == "RUNNING"

            await async_wait_until(running, 240, interval_s=0.5, what=f"{name} to run")
        for path in ("/plugins/echo/say", "/echo-imported"):
            said = httpx.post(f"{serve_url}{path}", json={"text": "hi"}, headers=facade.headers("alpha"), timeout=60)
            assert said.json() == {"text": "hi"}
        assert {"echo.say", "echo-imported"} <= {a.name for a in await aio.list_applications()}
        await sync.delete_application("echo")
        await aio.delete_application("echo-imported")
        for name in ("echo.say", "echo-imported"):

            async def gone(name=name) -> bool:
                return name not in {a.name for a in await sync.list_applications()}

            await async_wait_until(gone, 120, interval_s=0.5, what=f"{name} to be deleted")
        with pytest.raises(NotFoundError):
            await aio.get_application("echo-imported")


@both
async def test_queue_and_task_methods(facade, kind):
    queue = unique("cq")
    async with opened(kind, facade.url, facade.keys["alpha-submit"]) as api:
        first = await api.enqueue(queue, {"n": 1}, priority=5, idempotency_key=f"{queue}-1")
        assert await api.enqueue(queue, {"n": 1}, idempotency_key=f"{queue}-1") == first
        more = await api.enqueue_many(queue, [{"n": 2}, {"n": 3}, {"n": 4}])
        assert len(more) == 3 and queue in await api.list_queues()

        [lease] = await api.claim(queue, "w1", lease_s=30)
        assert lease.task.id == first and lease.task.input == {"n": 1}
        assert (await api.heartbeat(lease.attempt_id, 60)).lease_deadline > lease.lease_deadline
        task, [following] = await api.complete_and_claim(lease.attempt_id, {"ok": 1}, queue=queue, worker_id="w1")
        assert task.status == "succeeded" and following.task.id == more[0]
        with pytest.raises(ConflictError) as stale:
            await api.complete(lease.attempt_id, {"again": True})
        assert stale.value.code == "task_finished" and stale.value.status_code == 409
        failed = await api.fail(following.attempt_id, "boom", retryable=False)
        assert failed.status == "failed" and failed.error.message == "boom"
        assert (await api.retry_task(following.task.id)).status == "queued"
        [again] = await api.claim(queue, "w2", wait_s=5)
        assert (await api.complete(again.attempt_id, 7)).result == 7

        waited = await api.wait_tasks([first, again.task.id], timeout_s=5)
        assert not waited.pending and len(waited.done) == 2
        queued = [t.id for t in (await api.query_tasks(queue=queue, status="queued")).items]
        assert len(queued) == 2
        assert (await api.cancel_task(queued[0])).status == "cancelled"
        assert await api.purge_queue(queue) == 1

        stats = await api.queue_stats(queue)
        assert stats.counts["succeeded"] == 2 and stats.counts["cancelled"] == 2
        assert (await api.get_task(first)).result == {"ok": 1}
        page = await api.query_tasks(queue=queue, limit=3)
        rest = await api.query_tasks(queue=queue, cursor=page.next_cursor)
        assert [t.id for t in page.items + rest.items] == [first, *more]
        assert {"w1", "w2"} <= {w.worker_id for w in await api.workers()}
        assert await api.claim(queue, "w1") == []


@both
async def test_resources_versions(facade, kind):
    async with opened(kind, facade.url, facade.keys["beta"], tenant="beta") as api:
        llm = LLM(endpoint="http://llm:8000/v1", model="tiny", sampling_parameters={"temperature": 0.1})
        first = await api.add_resources({"llm": llm, "prompt": PromptTemplate(template="Q: {q}", engine="f-string")})
        second = await api.update_resources({"prompt": PromptTemplate(template="Question: {q}", engine="f-string")})
        assert second.resources["llm"] == first.resources["llm"]
        assert (await api.latest_resources()).resources_id == second.resources_id
        assert (await api.get_resources(first.resources_id)).resources["prompt"].template == "Q: {q}"
        history = [u.resources_id for u in await api.resources_history()]
        assert history[:2] == [second.resources_id, first.resources_id]
        with pytest.raises(NotFoundError):
            await api.get_resources("res_00000000000000000000000000")


@both
async def test_keys_lifecycle_and_the_tenant_header(facade, kind):
    async with opened(kind, facade.url, facade.keys["beta"]) as admin:
        created = await admin.create_key("beta", "read", name=unique("reader"))
        assert created.key.startswith("rrk_") and created.info.scope == "read"
        assert created.info.key_id in {k.key_id for k in await admin.list_keys()}
        async with opened(kind, facade.url, created.key, tenant="beta") as reader:
            assert (await reader.queue_stats(unique("q"))).counts["queued"] == 0
            with pytest.raises(PermissionDeniedError) as denied:
                await reader.enqueue(unique("q"), 1)
            assert denied.value.status_code == 403 and "submit" in denied.value.message
        async with opened(kind, facade.url, created.key, tenant="alpha") as impostor:
            with pytest.raises(PermissionDeniedError, match="acts for tenant 'beta'"):
                await impostor.list_queues()
        await admin.revoke_key(created.info.key_id)
        async with opened(kind, facade.url, created.key) as revoked:
            with pytest.raises(AuthenticationError) as refused:
                await revoked.list_queues()
            assert refused.value.status_code == 401


@both
async def test_each_error_class_from_a_real_failing_call(facade, kind):
    async with opened(kind, facade.url, facade.keys["alpha"]) as api:
        with pytest.raises(ValidationError) as invalid:
            await api.submit_plugin("wordcount", "count", {"top": 0})
        assert isinstance(invalid.value, BadRequestError) and invalid.value.status_code == 422
        assert "top" in str(invalid.value)
        with pytest.raises(BadRequestError) as bad:
            await api.enqueue("bad queue!", 1)
        assert bad.value.status_code in (400, 422) and "queue" in str(bad.value)
        with pytest.raises(NotFoundError):
            await api.submit_plugin("no-such-plugin", "x")
        with pytest.raises(PayloadTooLargeError) as large:
            await api.enqueue(unique("q"), "x" * (2 * 2**20))
        assert large.value.status_code == 413
        quick = await api.submit_job("echo a; echo b; echo c; echo d")
        with pytest.raises(StreamLimitError) as limited:
            await api.lines(quick.submission_id, limits=StreamLimits(max_lines=2))
        assert isinstance(limited.value, RateLimitError) and limited.value.details["limit"] == "max_lines"
    async with opened(kind, facade.url, "rrk_nokey_nosecret") as stranger:
        with pytest.raises(AuthenticationError):
            await stranger.list_jobs()
    async with opened(kind, facade.url, None) as anonymous:
        with pytest.raises(AuthenticationError, match="API key is required"):
            await anonymous.list_jobs()


@both
async def test_unreachable_and_silent_servers(kind):
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with opened(kind, closed, None, config=FAST) as api:
        with pytest.raises(UnavailableError, match="cannot reach") as unreachable:
            await api.list_jobs()
        assert isinstance(unreachable.value, ServerError | ClientError)
    silent = SilentServer()
    try:
        async with opened(kind, silent.url, None, config=FAST.model_copy(update={"read_timeout_s": 0.3})) as api:
            with pytest.raises(TimeoutError, match="timed out"):
                await api.get_job("x")
    finally:
        silent.close()


@both
async def test_retries_repeat_only_what_is_safe_to_repeat(kind):
    server = StatusServer(503)
    try:
        async with opened(kind, server.url, None, config=FAST) as api:
            for call in (
                api.list_jobs(),
                api.delete_job("j1"),
                api.enqueue("q", 1),
                api.enqueue("q", 1, idempotency_key="once"),
                api.submit_plugin("p", "a"),
                api.heartbeat("a1"),
            ):
                with pytest.raises(ServerError) as unavailable:
                    await call
                assert unavailable.value.status_code == 503
        assert server.seen == {
            "GET /api/v1/jobs": 3,  # 1 + 2 retries
            "DELETE /api/v1/jobs/j1": 3,
            "POST /api/v1/queues/q/tasks": 1 + 3,  # without a key: once; with one: retried
            "POST /api/v1/jobs": 1,
            "POST /api/v1/attempts/a1/heartbeat": 3,
        }
    finally:
        server.close()


@pytest.fixture(scope="module")
def chatty(facade):
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client:
        return client.submit_job(CHATTY).submission_id


@pytest.mark.parametrize(
    "kind, protocol",
    [("sync", "websocket"), ("sync", "http"), ("async", "websocket"), ("async", "http"), ("sync", "auto")],
)
async def test_a_tail_resumes_exactly_after_a_cut_connection(facade, kind, protocol):
    port = int(facade.url.rsplit(":", 1)[1])
    proxy = CuttingProxy(port, cut_after=4)  # the answer's head, then a few frames
    try:
        async with opened(kind, facade.url, facade.keys["alpha"]) as direct:
            job = await direct.submit_job(CHATTY)
            async with opened(kind, proxy.url, facade.keys["alpha"], config=FAST) as api:
                tailed = await api.lines(job.submission_id, protocol=protocol)
            assert proxy.cut.is_set() and proxy.connections >= 2
            assert printed(tailed) == EXPECTED  # Ray's own lines too, each once:
            assert tailed == (await direct.get_job_logs(job.submission_id, limit=2**20)).data.splitlines()
    finally:
        proxy.close()


async def test_a_tail_starts_at_an_offset(facade, chatty):
    async with opened("async", facade.url, facade.keys["alpha"]) as api:
        await api.wait_job(chatty, timeout_s=120, poll_s=0.2)
        whole = await api.get_job_logs(chatty, limit=2**20)
        start = whole.data.index("line 20")
        assert printed(await api.lines(chatty, offset=len(whole.data[:start].encode()))) == EXPECTED[20:]


def test_the_client_imports_and_tails_without_ray_fastapi_or_websockets(facade, chatty):
    script = f"""
import sys

class Forbid:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {{"ray", "fastapi", "starlette", "uvicorn", "yaml", "cloudpickle"}}:
            raise ImportError(f"{{name}} must not be imported by the client")

sys.meta_path.insert(0, Forbid())
sys.modules["websockets"] = None  # as if not installed: tails go over HTTP

from ray_runtime.client import RuntimeClient

with RuntimeClient({facade.url!r}, {facade.keys["alpha"]!r}) as client:
    assert client.health_check().status == "ready"
    print(len([line for line in client.tail_job_logs({chatty!r}) if line.startswith("line ")]))

"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=os.environ)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(len(EXPECTED))


def printed(lines: list[str]) -> list[str]:
    """The lines the job printed (Ray adds its own to a job's log)."""
    return [line for line in lines if line.startswith("line ")]


def test_task_client_renews_the_lease_of_a_held_task_and_caches_resources(facade):
    queue = unique("rollouts")
    with RuntimeClient(facade.url, facade.keys["beta"]) as admin:
        versions = [admin.add_resources({"prompt": PromptTemplate(template=f"v{i}: {{q}}")}) for i in range(3)]
        first = admin.enqueue(queue, {"q": "a"}, resources_id=versions[0].resources_id)
        second = admin.enqueue(queue, {"q": "b"})
        with TaskClient(facade.url, facade.keys["beta"], queue=queue, lease_s=1.0, resource_cache_size=2) as tasks:
            lease = tasks.poll_next_task()
            assert lease.task.id == first and lease.resources_id == versions[0].resources_id
            assert tasks.get_resources_by_id(lease.resources_id).resources["prompt"].template == "v0: {q}"
            assert tasks.get_latest_resources().resources_id == versions[2].resources_id
            tasks.get_resources_by_id(versions[1].resources_id)
            assert list(tasks._cache) == [versions[2].resources_id, versions[1].resources_id]  # bounded, LRU

            held_until = time.monotonic() + 3.5  # three and a half lease lengths: only heartbeats keep it
            while time.monotonic() < held_until:
                assert admin.get_task(first).status == "leased"
                time.sleep(0.25)
            done = tasks.post_rollout(lease.attempt_id, {"final_reward": 1.0})
            assert done.status == "succeeded" and done.attempts == 1 and tasks.held == []
            with pytest.raises(ConflictError):  # a real error, not a swallowed None
                tasks.post_rollout(lease.attempt_id, {"final_reward": 0.0})

            abandoned = tasks.poll_next_task()
            assert abandoned.task.id == second
        # closed while holding it: no more heartbeats, so the lease expires and the task is retried
        with TaskClient(facade.url, facade.keys["beta"], queue=queue, poll_wait_s=10) as other:
            retried = other.poll_next_task()
            assert retried is not None and retried.task.id == second and retried.task.attempts == 2
            assert other.fail_task(retried.attempt_id, "gave up", retryable=False).status == "failed"
            assert other.poll_next_task(wait_s=0) is None


async def test_task_client_async_twins(facade):
    queue = unique("rollouts")
    async with AsyncRuntimeClient(facade.url, facade.keys["beta"]) as admin:
        version = await admin.add_resources({"prompt": PromptTemplate(template="async {q}")})
        task_id = await admin.enqueue(queue, {"q": "x"})
        async with TaskClient(facade.url, facade.keys["beta"], queue=queue) as tasks:
            lease = await tasks.poll_next_task_async(wait_s=5)
            assert lease.task.id == task_id and lease.resources_id == version.resources_id
            assert (await tasks.get_resources_by_id_async(lease.resources_id)).resources_id == version.resources_id
            assert (await tasks.get_latest_resources_async()).resources_id == version.resources_id
            assert (await tasks.post_rollout_async(lease.attempt_id, {"final_reward": 0.5})).result == {
                "final_reward": 0.5
            }
            second = await admin.enqueue(queue, {"q": "y"})
            lease = await tasks.poll_next_task_async(wait_s=5)
            failed = await tasks.fail_task_async(lease.attempt_id, "nope", retryable=False)
            assert failed.id == second and failed.status == "failed"
            assert await tasks.poll_next_task_async(wait_s=0) is None
            with pytest.raises(NotFoundError):
                await tasks.get_resources_by_id_async("res_00000000000000000000000000")
