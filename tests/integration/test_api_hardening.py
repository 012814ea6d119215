"""The façade as a hostile tenant and a careless user would meet it: tenants cannot reach each other, code runs only
where a cluster admin allowed it, bad input gets a typed 4xx and breaks nothing, and errors never break the
connection they travel on."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import httpx
import pytest
import websockets.sync.client as ws_client
from websockets.exceptions import InvalidStatus

from ray_runtime.client import NotFoundError, RuntimeClient

from ..conftest import unique
from ..waiting import wait_until
from .test_api_jobs import wait_terminal

PACKAGE_LIMIT = 100 * 2**20


def plugin_zip(text: str) -> tuple[str, bytes]:
    """A package named the way ray_runtime names plugin packages: by the sha256 of its bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("main.py", date_time=(1980, 1, 1, 0, 0, 0)), text)
    data = buffer.getvalue()
    return f"_ray_pkg_{hashlib.sha256(data).hexdigest()[:32]}.zip", data


# ---------------------------------------------------------------------------------------- code and packages


def test_a_package_is_never_overwritten_and_must_match_its_name(facade):
    name, good = plugin_zip(f"print('tenant a {unique('x')}')")
    _, evil = plugin_zip("print('tenant b was here')")
    with facade.client("alpha") as alpha, facade.client("root") as root, facade.client("beta") as beta:
        assert beta.put(f"/api/packages/gcs/{name}", content=good).status_code == 403  # no run_code grant
        assert alpha.put(f"/api/packages/gcs/{name}", content=good).status_code == 200
        swapped = root.put(f"/api/packages/gcs/{name}", content=evil)
        assert swapped.status_code == 400 and "does not match its name" in swapped.json()["error"]["message"]
        assert root.put(f"/api/packages/gcs/{name}", content=good).status_code == 200  # the same content: no-op
        assert alpha.get(f"/api/packages/gcs/{name}").status_code == 200


def test_an_oversize_package_gets_the_facades_own_413_even_when_chunked(facade):
    name, _ = plugin_zip("x")

    def chunks():
        block = b"\0" * 2**20
        for _ in range(PACKAGE_LIMIT // len(block) + 2):
            yield block

    with facade.client("alpha") as alpha:
        reply = alpha.put(f"/api/packages/gcs/{name}", content=chunks())
    assert reply.status_code == 413 and reply.json()["error"]["code"] == "payload_too_large"


def test_running_arbitrary_code_needs_the_run_code_grant(facade):
    with facade.client("beta") as beta:
        raw = beta.post("/api/v1/jobs", json={"entrypoint": "echo hi"})
        assert raw.status_code == 403 and "run_code" in raw.json()["error"]["message"]
        assert beta.post("/api/jobs/", json={"entrypoint": "echo hi"}).status_code == 403
        imported = beta.put("/api/v1/serve/applications/mine", json={"import_path": "os:getcwd"})
        assert imported.status_code == 403
        plugin = beta.post("/api/v1/jobs", json={"plugin": "hello", "action": "greet", "params": {"name": "b"}})
        assert plugin.status_code == 201, plugin.text  # installed plugins need only the submit scope
        assert wait_terminal(beta, plugin.json()["submission_id"])["status"] == "SUCCEEDED"


def test_plugin_code_run_for_a_tenant_cannot_act_for_another(facade):
    with facade.client("beta") as beta:
        job = beta.post("/api/v1/jobs", json={"plugin": "nosy", "action": "peek", "params": {"target": "alpha"}})
        assert job.status_code == 201, job.text
        done = wait_terminal(beta, job.json()["submission_id"])
    assert done["status"] == "SUCCEEDED", done
    assert done["run"]["result"] == {
        "own_tenant": "beta",
        "connect_as_other": "PermissionDeniedError",
        "switch_to_other": "PermissionDeniedError",
        "read_api_keys": "PermissionDeniedError",
    }


# -------------------------------------------------------------------------------------------- existence


def without_id(body: dict, value: str) -> str:
    return json.dumps(body).replace(value, "ID")


def test_another_tenants_job_is_indistinguishable_from_a_missing_one(facade):
    with facade.client("alpha") as alpha, facade.client("beta") as beta:
        job_id = alpha.post("/api/v1/jobs", json={"entrypoint": "echo mine"}).json()["submission_id"]
        missing = "raysubmit_" + "Z" * 16
        for path in ("/api/v1/jobs/{}", "/api/v1/jobs/{}/logs", "/api/jobs/{}", "/api/jobs/{}/logs"):
            theirs, nobodys = beta.get(path.format(job_id)), beta.get(path.format(missing))
            assert theirs.status_code == nobodys.status_code == 404, path
            assert without_id(theirs.json(), job_id) == without_id(nobodys.json(), missing), path
        for path in ("/api/v1/jobs/{}/stop", "/api/jobs/{}/stop"):
            assert beta.post(path.format(job_id)).status_code == 404
        assert alpha.get(f"/api/v1/jobs/{job_id}").status_code == 200


def test_websocket_tails_refuse_another_tenant_with_404_before_the_upgrade(facade):
    with facade.client("alpha") as alpha:
        job_id = alpha.post("/api/v1/jobs", json={"entrypoint": "echo tail"}).json()["submission_id"]
    base = facade.url.replace("http://", "ws://")
    for path in (f"/api/v1/jobs/{job_id}/logs/ws", f"/api/jobs/{job_id}/logs/tail"):
        with pytest.raises(InvalidStatus) as refused:
            ws_client.connect(f"{base}{path}", additional_headers=facade.headers("beta"), open_timeout=30)
        assert refused.value.response.status_code == 404
        assert json.loads(refused.value.response.body)["error"]["code"] == "not_found"
    with RuntimeClient(facade.url, facade.keys["beta"]) as client, pytest.raises(NotFoundError) as info:
        list(client.tail_job_logs(job_id, protocol="websocket"))
    assert info.value.status_code == 404


def test_jobs_made_around_the_facade_belong_to_no_tenant(facade, ray_cluster):
    from ray.job_submission import JobSubmissionClient

    outside = JobSubmissionClient(ray_cluster["dashboard"]).submit_job(entrypoint="echo outside")
    with facade.client("alpha") as alpha, facade.client("root") as root:
        assert alpha.get(f"/api/v1/jobs/{outside}").status_code == 404
        assert outside not in {j["submission_id"] for j in alpha.get("/api/v1/jobs").json()["items"]}
        seen = root.get(f"/api/v1/jobs/{outside}")
        assert seen.status_code == 200 and seen.json()["tenant"] is None


# ------------------------------------------------------------------------------------------- shared surfaces


def test_metrics_are_a_cluster_admins(facade):
    with facade.client("alpha-read") as reader, facade.client("root") as root:
        assert reader.get("/metrics").status_code == 403
        assert "ray_runtime_api_requests" in root.get("/metrics").text


def test_tenant_limits_answer_429_with_retry_after(facade):
    tenant = unique("limited")
    with facade.client("root") as root:  # a cluster admin makes keys for any tenant, and sets its limits
        key = root.post("/api/v1/keys", json={"tenant": tenant, "scope": "submit"}).json()["key"]
        limits = {"max_queued_tasks": 2, "requests_per_second": 0.01}  # one request per 100 s, after a burst of one
        set_ = root.put(f"/api/v1/tenants/{tenant}/limits", json=limits)
        assert set_.status_code == 200, set_.text
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=facade.url, headers=headers, timeout=60) as client:
        assert client.get(f"/api/v1/tenants/{tenant}/limits").status_code == 403  # reading needs admin scope
        fast = client.get("/api/v1/queues")
        assert fast.status_code == 429 and fast.json()["error"]["details"]["limit"] == "requests_per_second"
        assert int(fast.headers["retry-after"]) >= 90  # the burst of one went to the read above
    with facade.client("root") as root:
        assert root.put(f"/api/v1/tenants/{tenant}/limits", json={"max_queued_tasks": 2}).status_code == 200
    with httpx.Client(base_url=facade.url, headers=headers, timeout=60) as client:
        assert client.post("/api/v1/queues/q/tasks/batch", json={"tasks": [{"input": 1}, {"input": 2}]}).is_success
        over = client.post("/api/v1/queues/q/tasks", json={"input": 3})
        assert over.status_code == 429 and over.json()["error"]["details"]["limit"] == "max_queued_tasks"
        assert int(over.headers["retry-after"]) >= 1
    with facade.client("alpha") as alpha:
        assert alpha.put(f"/api/v1/tenants/{tenant}/limits", json={}).status_code == 403  # not a cluster admin


# ------------------------------------------------------------------------------------------------ bad input


def test_one_poison_task_never_harms_its_neighbours(facade, coord):
    from ray_runtime.errors import InvalidArgumentError

    queue = unique("poison")
    deep: object = 1
    for _ in range(300):
        deep = [deep]
    with facade.client("alpha-submit") as client:
        before = client.post(f"/api/v1/queues/{queue}/tasks", json={"input": "healthy 1"}).json()["task_id"]
        poisoned = client.post(f"/api/v1/queues/{queue}/tasks", json={"input": deep})
        assert poisoned.status_code == 400 and poisoned.json()["error"]["details"]["field"] == "input"
        deeper = client.post(
            f"/api/v1/queues/{queue}/tasks",
            content=b'{"input": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
            headers={"content-type": "application/json"},
        )
        assert deeper.status_code == 400
        after = client.post(f"/api/v1/queues/{queue}/tasks", json={"input": "healthy 2"}).json()["task_id"]
        leases = client.post(f"/api/v1/queues/{queue}/claim", json={"worker_id": "w", "max_tasks": 10}).json()
        assert sorted(lease["task"]["id"] for lease in leases) == sorted([before, after])
        assert client.get("/api/v1/tasks", params={"queue": queue}).status_code == 200
    with pytest.raises(InvalidArgumentError, match="deeper"):
        coord.enqueue(queue, deep)  # the driver API is an edge too


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/api/jobs/", {"entrypoint": "echo x", "metadata": ["not", "an", "object"]}, 422),
        ("POST", "/api/jobs/", {}, 422),
        ("POST", "/api/v1/jobs", '{"entrypoint": "echo x", "entrypoint_num_cpus": Infinity}', 422),
        ("POST", "/api/v1/jobs", {"entrypoint": "echo x", "runtime_env": {"pip": 5}}, 400),
        ("GET", "/api/v1/jobs?cursor=WyJJbmZpbml0eSIsICJ4Il0=", None, 400),
        ("GET", "/api/v1/jobs?cursor=W0luZmluaXR5LCAieCJd", None, 400),
        ("PUT", "/api/v1/serve/applications/blank", {"import_path": ""}, 422),
        ("POST", "/api/v1/queues/q/tasks", {"input": 1, "delay_s": False}, 422),
        ("POST", "/api/v1/queues/q/claim", {"worker_id": "w", "wait_s": "1"}, 422),
    ],
)
def test_caller_mistakes_get_a_typed_4xx(facade, method, path, body, status):
    content = body if isinstance(body, str) else None if body is None else json.dumps(body)
    with facade.client("alpha") as client:
        reply = client.request(method, path, content=content, headers={"content-type": "application/json"})
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert set(reply.json()["error"]) == {"code", "message", "details"}
    assert "Traceback" not in reply.text


def test_a_taken_submission_id_is_a_409_and_a_failed_deploy_reserves_nothing(facade):
    submission_id = unique("raysubmit_taken")
    with facade.client("alpha") as alpha, facade.client("root") as root:
        assert alpha.post("/api/jobs/", json={"entrypoint": "echo a", "submission_id": submission_id}).is_success
        again = root.post("/api/jobs/", json={"entrypoint": "echo b", "submission_id": submission_id})
        assert again.status_code == 409 and "Traceback" not in again.text
        assert alpha.put("/api/v1/serve/applications/blank", json={"import_path": ""}).status_code == 422
        assert alpha.get("/api/v1/serve/applications/blank").status_code == 404


def test_an_error_never_breaks_the_connection_it_was_sent_on(facade):
    def peer(response: httpx.Response) -> tuple:
        return response.extensions["network_stream"].get_extra_info("client_addr")

    with facade.client("alpha") as client:
        first = client.get("/health/live")
        for method, path in (("GET", "/api/v1/jobs/nope"), ("DELETE", "/api/v1/queues"), ("POST", "/api/jobs/")):
            refused = client.request(method, path, content=b"{", headers={"content-type": "application/json"})
            assert refused.status_code >= 400
            after = client.get("/health/live")
            assert after.status_code == 200 and peer(after) == peer(first), f"{method} {path} broke the connection"


def test_405_says_what_is_allowed_and_401_how_to_authenticate(facade):
    with facade.client("alpha") as client:
        wrong = client.delete("/api/v1/queues")
        assert wrong.status_code == 405 and "GET" in wrong.headers["allow"]
    anonymous = httpx.get(f"{facade.url}/task", timeout=30)
    assert anonymous.status_code == 401 and "Basic" in anonymous.headers["www-authenticate"]
    assert "HTTP Basic password" in anonymous.json()["error"]["message"]


def test_refused_writes_are_audited_with_key_and_tenant(facade, ray_cluster):
    with facade.client("alpha-read") as reader:
        assert reader.post("/api/v1/queues/q/tasks", json={"input": 1}).status_code == 403
        assert reader.post("/api/v1/queues/q/tasks", content=b"x" * (5 * 2**20)).status_code == 413
    key_id = facade.keys["alpha-read"].split("_")[1]
    audit = Path(ray_cluster["root"]) / "audit.jsonl"

    def mine() -> list[dict]:
        entries = [json.loads(line) for line in audit.read_text().splitlines()]
        return [e for e in entries if e["key_id"] == key_id and e["action"] == "POST /api/v1/queues/q/tasks"]

    # written after the answer (a refused caller may hang up at once), so read with a deadline
    wait_until(lambda: {e["status"] for e in mine()} >= {403, 413}, 30, what="both refusals in the audit log")
    assert all(e["tenant"] == "alpha" and e["outcome"] == "refused" for e in mine())
    assert facade.keys["alpha-read"] not in (Path(ray_cluster["root"]) / "audit.jsonl").read_text()


def test_the_legacy_routes_serve_only_what_its_client_parses(facade):
    with facade.client("beta") as beta:
        added = beta.post(
            "/api/v1/resources",
            json={
                "resources": {
                    "prompt": {"resource_type": "prompt_template", "template": "{q}"},
                    "thresholds": {"resource_type": "json", "value": {"min": 1}},
                }
            },
        )
        assert added.status_code == 201, added.text
        legacy = beta.get("/resources/latest").json()
    assert set(legacy["resources"]) == {"prompt"}


def test_a_browser_passes_its_key_as_a_websocket_subprotocol_and_never_in_the_url(facade):
    with facade.client("alpha") as alpha:
        job_id = alpha.post("/api/v1/jobs", json={"entrypoint": "echo from a browser"}).json()["submission_id"]
    url = f"{facade.url.replace('http://', 'ws://')}/api/v1/jobs/{job_id}/logs/ws"
    with ws_client.connect(url, subprotocols=["rr.logs.v1", f"rr.key.{facade.keys['alpha']}"], open_timeout=30) as ws:
        assert ws.subprotocol == "rr.logs.v1"  # the key is never echoed back
        frames = [json.loads(message) for message in ws]
    assert frames[-1]["type"] == "end" and "from a browser" in "".join(f.get("data", "") for f in frames)
    with pytest.raises(InvalidStatus) as refused:
        ws_client.connect(url, subprotocols=["rr.logs.v1", f"rr.key.{facade.keys['beta']}"], open_timeout=30)
    assert refused.value.response.status_code == 404


def test_me_says_who_the_key_is(facade):
    with facade.client("alpha-read") as reader:
        assert reader.get("/api/v1/me").json() == {
            "tenant": "alpha",
            "scope": "read",
            "key_id": facade.keys["alpha-read"].split("_")[1],
            "cluster_admin": False,
            "run_code": False,
            "dev_mode": False,
        }
    with facade.client(None) as anonymous:
        assert anonymous.get("/api/v1/me").status_code == 401


def test_a_wrong_method_is_a_405_that_names_the_right_one(facade):
    with facade.client("alpha") as alpha:
        reply = alpha.request("OPTIONS", "/api/v1/tasks/wait")
        assert reply.status_code == 405 and "POST" in reply.headers["allow"]
        assert reply.json()["error"]["code"]
