"""synapse-sdk's own AgentClient (the package from the index, installed by `make`) against the façade's /synapse
routes: every method it has for them, sync; its log tail over each protocol; tenants; bad tokens; the async methods
that work upstream."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from synapse_sdk.clients.agent import AgentClient, AsyncAgentClient
from synapse_sdk.exceptions import AuthenticationError, AuthorizationError, ClientError, NotFoundError

from ray_runtime.api.routes.synapse import FRAME_LIMIT, log_frames
from ray_runtime.client import JobStatus, RuntimeClient

from ..waiting import wait_until

LONG = "x" * 25_000  # over the client's 10 KB frame limit: it reaches the client in pieces
TAILED = (
    "python -c \"import time\nprint('first', flush=True)\ntime.sleep(1.5)\n"  # quiet: heartbeats keep it open
    "for i in range(30):\n    print(f'line {i:02d}', flush=True)\n"
    "print('x' * 25000, flush=True)\nprint('last', flush=True)\""
)
EXPECTED = ["first", *[f"line {i:02d}" for i in range(30)], LONG, "last"]


def agent(facade, key: str = "alpha", **options) -> AgentClient:
    return AgentClient(f"{facade.url}/synapse", facade.keys[key], **options)


@pytest.fixture(scope="module")
def jobs(facade):
    """Tenant alpha's jobs: a wordcount run (it fans out Ray tasks), a chatty one, and a sleeper."""
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client:
        counted = client.submit_plugin("wordcount", "count", {"top": 2})
        chatty = client.submit_job(TAILED)
        sleeper = client.submit_job("sleep 600")
        client.wait_job(counted.submission_id, timeout_s=180, poll_s=0.2)
        yield {"counted": counted.submission_id, "chatty": chatty.submission_id, "sleeper": sleeper.submission_id}
        client.stop_job(sleeper.submission_id)


def joined(lines: list[str]) -> list[str]:
    """Tail lines with a long line's pieces joined back (pieces are the only lines made of x's)."""
    out: list[str] = []
    for line in lines:
        if out and set(line) == {"x"} and set(out[-1]) == {"x"}:
            out[-1] += line
        else:
            out.append(line)
    return out


def test_the_sync_client_reads_jobs_nodes_tasks_and_stops_a_job(facade, jobs, ray_cluster):
    client = agent(facade, tenant="alpha", user_token="ada")
    assert client.health_check()["status"] == "ok"
    listed = {job["submission_id"]: job for job in client.list_jobs()}
    assert {jobs["counted"], jobs["chatty"], jobs["sleeper"]} <= set(listed)
    counted = client.get_job(jobs["counted"])
    assert counted["status"] == "SUCCEEDED" and counted["entrypoint"] and counted["job_id"]
    assert "[result]" in client.get_job_logs(jobs["counted"])
    assert client.list_job_logs(jobs["counted"]) == client.get_job_logs(jobs["counted"])

    nodes = client.list_nodes()
    assert nodes and client.get_node(nodes[0]["node_id"])["node_id"] == nodes[0]["node_id"]
    tasks = [t for t in client.list_tasks() if t["job_id"] == counted["job_id"]]
    assert tasks, "wordcount's Ray tasks are listed for its tenant"
    assert client.get_task(tasks[0]["task_id"])["job_id"] == counted["job_id"]

    assert client.stop_job(jobs["sleeper"]) == {"stopped": True}
    with RuntimeClient(facade.url, facade.keys["alpha"]) as ours:
        assert ours.wait_job(jobs["sleeper"], timeout_s=60, poll_s=0.2).status == JobStatus.STOPPED
    audit = [json.loads(line) for line in Path(ray_cluster["root"], "audit.jsonl").read_text().splitlines()]
    stopped = [e for e in audit if e["action"] == f"POST /synapse/jobs/{jobs['sleeper']}/stop/"]
    assert stopped and stopped[-1]["user"] == "ada" and stopped[-1]["tenant"] == "alpha"


def test_serve_applications_are_listed_read_and_deleted(facade):
    with RuntimeClient(facade.url, facade.keys["alpha"]) as ours:
        ours.deploy_plugin("echo")
        wait_until(lambda: ours.get_application("echo.say").status == "RUNNING", 120, what="echo.say to run")
    client = agent(facade)
    names = [app["name"] for app in client.list_serve_applications()]
    assert "echo.say" in names
    details = client.get_serve_application("echo.say")
    assert details["route_prefix"] == "/plugins/echo/say" and "deployments" in details  # Serve's own fields
    assert client.delete_serve_application("echo.say") is None
    with pytest.raises(NotFoundError):
        client.get_serve_application("echo.say")


@pytest.mark.parametrize("protocol", ["websocket", "http", "auto"])
def test_the_log_tail_reaches_the_jobs_end_with_every_line_once(facade, jobs, protocol):
    lines = list(agent(facade).tail_job_logs(jobs["chatty"], protocol=protocol))
    assert [line for line in joined(lines) if line in EXPECTED] == EXPECTED  # the job's own lines (Ray's too:)
    with RuntimeClient(facade.url, facade.keys["alpha"]) as ours:
        whole = ours.get_job_logs(jobs["chatty"], limit=2**20).data
    assert joined(lines) == [line for line in whole.splitlines() if line]
    assert all(len(line) <= FRAME_LIMIT for line in lines)


def test_long_and_escaped_lines_are_split_under_the_frame_limit():
    for line in (LONG, '"' * 30_000, "\x01" * 9_000, "é" * 12_000):
        frames = [json.loads(text) for text in log_frames(line)]
        assert "".join(f["message"] for f in frames) == line
        assert all(len(text) <= FRAME_LIMIT for text in log_frames(line))


def test_another_tenants_jobs_and_apps_are_missing_and_a_bad_token_is_refused(facade, jobs):
    beta = agent(facade, "beta")
    for call in (
        lambda: beta.get_job(jobs["chatty"]),
        lambda: beta.get_job_logs(jobs["chatty"]),
        lambda: beta.stop_job(jobs["chatty"]),
    ):
        with pytest.raises(NotFoundError):
            call()
    for protocol in ("auto", "http"):  # auto: the upgrade is refused, then HTTP; its tail reports a 404 as a 503
        with pytest.raises(ClientError) as refused:
            list(beta.tail_job_logs(jobs["chatty"], protocol=protocol))
        assert "404" in str(refused.value)
    assert jobs["chatty"] not in {job["submission_id"] for job in beta.list_jobs()}
    with pytest.raises(AuthenticationError):
        AgentClient(f"{facade.url}/synapse", "rrk_notakey_notasecret").list_jobs()
    with pytest.raises(AuthenticationError):
        AgentClient(f"{facade.url}/synapse", "").health_check()
    with pytest.raises(AuthorizationError):
        agent(facade, tenant="beta").list_jobs()  # SYNAPSE-Tenant may only repeat the key's tenant


async def test_the_async_client_methods_that_work_upstream(facade, jobs):
    async with AsyncAgentClient(f"{facade.url}/synapse", facade.keys["alpha"], tenant="alpha") as client:
        assert (await client.health_check())["status"] == "ok"
        assert jobs["counted"] in {job["submission_id"] for job in await client.list_jobs()}
        assert (await client.get_job(jobs["counted"]))["status"] == "SUCCEEDED"
        assert "[result]" in await client.get_job_logs(jobs["counted"])
        nodes = await client.list_nodes()
        assert (await client.get_node(nodes[0]["node_id"]))["node_id"] == nodes[0]["node_id"]
        assert isinstance(await client.list_tasks(), list)
        assert isinstance(await client.list_serve_applications(), list)
