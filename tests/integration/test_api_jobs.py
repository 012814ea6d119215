"""Jobs through the façade: submit, list, inspect with the recorded run, stop, delete, bounded log ranges, live tails
that resume exactly at an offset (HTTP and WebSocket), and Ray's own job tools pointed at the façade."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import websockets.sync.client as ws_client

from ..conftest import PLUGINS
from ..waiting import wait_until

RAY = str(Path(sys.executable).parent / "ray")
CHATTY = (
    "python -c \"import time\nfor i in range(24):\n    print(f'line {i:02d}', flush=True)\n"
    '    time.sleep(1.2 if i == 5 else 0.05)"'
)  # 24 lines, with one pause long enough for heartbeats


def wait_terminal(client: httpx.Client, submission_id: str, timeout_s: float = 180) -> dict:
    def ended() -> dict | None:
        job = client.get(f"/api/v1/jobs/{submission_id}").json()
        return job if job["status"] in ("SUCCEEDED", "FAILED", "STOPPED") else None

    return wait_until(ended, timeout_s, interval_s=0.2, what=f"job {submission_id} to end")


def submit_raw(client: httpx.Client, entrypoint: str, **extra) -> str:
    reply = client.post("/api/v1/jobs", json={"entrypoint": entrypoint, **extra})
    assert reply.status_code == 201, reply.text
    return reply.json()["submission_id"]


def frames_of(client: httpx.Client, submission_id: str, **params) -> list[dict]:
    with client.stream("GET", f"/api/v1/jobs/{submission_id}/logs/stream", params=params) as reply:
        assert reply.status_code == 200
        return [json.loads(line) for line in reply.iter_lines() if line]


def full_log(client: httpx.Client, submission_id: str) -> str:
    reply = client.get(f"/api/v1/jobs/{submission_id}/logs", params={"limit": 8 * 2**20}).json()
    assert reply["complete"]
    return reply["data"]


@pytest.fixture(scope="module")
def chatty_job(facade):
    with facade.client("alpha") as client:
        yield submit_raw(client, CHATTY, runtime_env={"env_vars": {"GREETING": "hi"}})


def test_a_plugin_job_shows_ray_status_and_the_recorded_run(facade):
    with facade.client("alpha-submit") as client:
        job = client.post("/api/v1/jobs", json={"plugin": "wordcount", "action": "count", "params": {"top": 2}}).json()
        assert job["plugin"] == "wordcount" and job["tenant"] == "alpha" and job["submitted_by"]
        done = wait_terminal(client, job["submission_id"])
        assert done["status"] == "SUCCEEDED" and done["run"]["status"] == "succeeded"
        assert len(done["run"]["result"]["top"]) == 2 and done["run"]["progress"]["total"] == 4
        listed = client.get("/api/v1/jobs", params={"plugin": "wordcount", "status": "SUCCEEDED"}).json()["items"]
        assert job["submission_id"] in [j["submission_id"] for j in listed]
        bad = client.post("/api/v1/jobs", json={"plugin": "wordcount", "action": "count", "params": {"top": 0}})
        assert bad.status_code == 422 and "top" in bad.text
        assert client.post("/api/v1/jobs", json={"plugin": "nope", "action": "x"}).status_code == 404


def test_a_stopped_plugin_job_ends_its_run_as_failed_with_the_reason(facade):
    with facade.client("alpha") as client:
        job = client.post("/api/v1/jobs", json={"plugin": "failing", "action": "slow", "params": {"seconds": 300}})
        submission_id = job.json()["submission_id"]
        wait_until(
            lambda: (client.get(f"/api/v1/jobs/{submission_id}").json().get("run") or {}).get("status") == "running",
            120,
            what="the run to start",
        )
        assert client.post(f"/api/v1/jobs/{submission_id}/stop").status_code == 200
        done = wait_terminal(client, submission_id)
        assert done["status"] == "STOPPED"
        assert done["run"]["status"] == "failed"  # its driver was killed before it could say so
        assert done["run"]["error"]["message"].startswith("the Ray job ended STOPPED before the action finished")
        assert client.get(f"/api/v1/jobs/{submission_id}").json()["run"] == done["run"]  # recorded, final


def test_listing_pages_newest_first_with_a_cursor(facade):
    with facade.client("alpha") as client:
        ids = [submit_raw(client, "echo page") for _ in range(3)]
        for submission_id in ids:
            wait_terminal(client, submission_id)
        first = client.get("/api/v1/jobs", params={"limit": 2, "since": time.time() - 600}).json()
        second = client.get("/api/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        listed = [j["submission_id"] for j in first["items"] + second["items"]]
        assert len(first["items"]) == 2 and len(set(listed)) == len(listed)
        assert set(ids) <= set(listed)
        starts = [j["start_time"] for j in first["items"] + second["items"]]
        assert starts == sorted(starts, reverse=True)
        assert client.get("/api/v1/jobs", params={"cursor": "garbage"}).status_code == 400


def test_stop_delete_and_duplicate_submission_ids(facade):
    with facade.client("alpha") as client:
        submission_id = f"sleeper-{uuid.uuid4().hex[:6]}"
        submit_raw(client, "sleep 120", submission_id=submission_id)
        duplicate = client.post("/api/v1/jobs", json={"entrypoint": "echo", "submission_id": submission_id})
        assert duplicate.status_code == 409
        assert client.delete(f"/api/v1/jobs/{submission_id}").status_code == 409  # still running
        assert client.post(f"/api/v1/jobs/{submission_id}/stop").status_code == 200
        assert wait_terminal(client, submission_id)["status"] == "STOPPED"
        assert client.delete(f"/api/v1/jobs/{submission_id}").status_code == 204
        assert client.get(f"/api/v1/jobs/{submission_id}").status_code == 404


def test_another_tenant_cannot_see_or_touch_a_job(facade, chatty_job):
    with facade.client("beta") as beta:
        for method, path in (
            ("GET", f"/api/v1/jobs/{chatty_job}"),
            ("GET", f"/api/v1/jobs/{chatty_job}/logs"),
            ("GET", f"/api/v1/jobs/{chatty_job}/logs/stream"),
            ("POST", f"/api/v1/jobs/{chatty_job}/stop"),
            ("DELETE", f"/api/v1/jobs/{chatty_job}"),
            ("GET", f"/api/jobs/{chatty_job}"),
            ("GET", f"/api/jobs/{chatty_job}/logs"),
        ):
            assert beta.request(method, path).status_code == 404, (method, path)
        assert chatty_job not in [j["submission_id"] for j in beta.get("/api/v1/jobs").json()["items"]]
        assert chatty_job not in [j["submission_id"] for j in beta.get("/api/jobs/").json()]


def test_the_http_tail_delivers_every_line_once_with_offsets_heartbeats_and_an_end(facade, chatty_job):
    with facade.client("alpha-read") as client:
        frames = frames_of(client, chatty_job)
        log = full_log(client, chatty_job)
    lines = [f for f in frames if f["type"] == "lines"]
    assert "".join(f["data"] for f in lines) == log and [f"line {i:02d}" for i in range(24)] == [
        line for line in log.splitlines() if line.startswith("line ")
    ]
    offsets = [f["offset"] for f in lines]
    assert offsets == sorted(offsets) and offsets[-1] == len(log.encode())
    assert any(f["type"] == "heartbeat" for f in frames)
    assert frames[-1] == {"type": "end", "offset": len(log.encode()), "data": "", "status": "SUCCEEDED"}


def test_a_cut_tail_resumes_at_its_offset_over_the_other_protocol_with_nothing_lost_or_repeated(facade):
    with facade.client("alpha") as client:
        submission_id = submit_raw(client, CHATTY)
        received, offset = "", 0
        with client.stream("GET", f"/api/v1/jobs/{submission_id}/logs/stream") as reply:
            for line in reply.iter_lines():
                frame = json.loads(line)
                if frame["type"] == "lines":
                    received, offset = received + frame["data"], frame["offset"]
                    if "line 03" in received:
                        break  # the connection is cut mid-stream
        url = f"{facade.url.replace('http://', 'ws://')}/api/v1/jobs/{submission_id}/logs/ws?offset={offset}"
        with ws_client.connect(url, additional_headers=facade.headers("alpha"), open_timeout=30) as ws:
            frames = [json.loads(message) for message in ws]
        received += "".join(f["data"] for f in frames if f["type"] == "lines")
        assert frames[-1]["type"] == "end"
        assert received == full_log(client, submission_id)


def test_many_followers_of_one_job_see_the_same_log(facade):
    import concurrent.futures

    with facade.client("alpha") as client:
        submission_id = submit_raw(client, CHATTY)
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda _: frames_of(client, submission_id), range(3)))
        texts = ["".join(f["data"] for f in frames if f["type"] == "lines") for frames in results]
        assert texts[0] == texts[1] == texts[2] == full_log(client, submission_id)


def test_stream_limits_end_the_stream_with_an_explicit_frame(facade, chatty_job):
    with facade.client("alpha") as client:
        frames = frames_of(client, chatty_job, max_lines=3, max_message_size=32)
    assert frames[-1]["type"] == "limit" and frames[-1]["limit"] == "max_lines"
    assert sum(f["data"].count("\n") for f in frames if f["type"] == "lines") <= 3
    assert all(len(f["data"].encode()) <= 32 for f in frames if f["type"] == "lines")
    url = (
        f"{facade.url.replace('http://', 'ws://')}/api/v1/jobs/{chatty_job}/logs/ws?max_messages=1&max_message_size=64"
    )
    with ws_client.connect(url, additional_headers=facade.headers("alpha"), open_timeout=30) as ws:
        messages = [json.loads(m) for m in ws]
    assert [m["type"] for m in messages] == ["lines", "limit"] and messages[-1]["limit"] == "max_messages"


def test_log_ranges_are_bounded(facade, chatty_job):
    with facade.client("alpha") as client:
        log = full_log(client, chatty_job)
        part = client.get(f"/api/v1/jobs/{chatty_job}/logs", params={"offset": 10, "limit": 20}).json()
        assert part["data"] == log.encode()[10:30].decode() and part["next_offset"] == 30 and not part["complete"]
        tail = client.get(f"/api/v1/jobs/{chatty_job}/logs", params={"offset": len(log.encode())}).json()
        assert tail["data"] == "" and tail["complete"]
        assert client.get(f"/api/v1/jobs/{chatty_job}/logs", params={"offset": -1}).status_code == 422


def test_the_stock_ray_job_cli_works_through_the_facade_and_is_tenant_scoped(facade):
    headers = ["--headers", json.dumps(facade.headers("alpha"))]
    submitted = subprocess.run(
        [
            RAY,
            "job",
            "submit",
            "--address",
            facade.url,
            *headers,
            "--working-dir",
            str(PLUGINS / "hello"),
            "--",
            "python",
            "-m",
            "ray_runtime",
            "run",
            ".",
            "greet",
            "--params",
            '{"name": "stock cli"}',
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert "Hello, stock cli." in submitted.stdout  # followed through the façade's log tail
    submission_id = re.search(r"raysubmit_[A-Za-z0-9]+", submitted.stdout).group(0)
    listed = subprocess.run(
        [RAY, "job", "list", "--address", facade.url, *headers], capture_output=True, text=True, timeout=120
    )
    assert submission_id in listed.stdout
    other = subprocess.run(
        [RAY, "job", "list", "--address", facade.url, "--headers", json.dumps(facade.headers("beta"))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert other.returncode == 0 and submission_id not in other.stdout
    logs = subprocess.run(
        [RAY, "job", "logs", submission_id, "--follow", "--address", facade.url, *headers],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Hello, stock cli." in logs.stdout
    with facade.client("alpha") as client:
        job = client.get(f"/api/v1/jobs/{submission_id}").json()
        assert job["tenant"] == "alpha" and job["run"]["result"]["message"] == "Hello, stock cli."


def test_job_submission_client_works_against_the_facade(facade):
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(facade.url, headers=facade.headers("alpha"))
    submission_id = client.submit_job(entrypoint="echo through the facade", metadata={"ray_runtime.tenant": "beta"})
    wait_until(lambda: client.get_job_status(submission_id) in (JobStatus.SUCCEEDED, JobStatus.FAILED), 120)
    assert "through the facade" in client.get_job_logs(submission_id)
    assert client.get_job_info(submission_id).metadata["ray_runtime.tenant"] == "alpha"  # no tenant spoofing


def test_plugins_with_same_named_modules_run_side_by_side_and_never_load_in_the_facade(facade):
    with facade.client("alpha-submit") as client:
        bad = client.post("/api/v1/jobs", json={"plugin": "twin_a", "action": "whoami", "params": {"tag": "x"}})
        assert bad.status_code == 422, bad.text
        assert bad.json()["error"]["details"]["errors"][0]["field"] == "tag"
        assert client.get("/api/v1/jobs", params={"plugin": "twin_a"}).json()["items"] == []  # nothing submitted
        ids = {
            who: client.post(
                "/api/v1/jobs", json={"plugin": f"twin_{who}", "action": "whoami", "params": {"tag": tag}}
            ).json()["submission_id"]
            for tag, who in enumerate("ab")
        }
        for tag, who in enumerate("ab"):
            job = wait_terminal(client, ids[who])
            assert job["status"] == "SUCCEEDED", job
            assert job["run"]["result"] == {"who": who, "tag": tag}
        described = client.get("/api/v1/plugins/twin_b").json()
        whoami = next(a for a in described["actions"] if a["name"] == "whoami")
        assert whoami["params_schema"]["properties"]["tag"]["type"] == "integer" and whoami["streaming"] is False
    importers = [line.split() for line in Path(os.environ["RR_TEST_IMPORT_LOG"]).read_text().splitlines()]
    assert {plugin for _, plugin in importers} >= {"twin_a", "twin_b"}  # imported, in their own processes
    assert str(facade.pid) not in {pid for pid, _ in importers}, "the façade imported plugin code"
