"""Every route of the façade, generated from its OpenAPI, as another tenant and as a read key.

For each operation whose path (or body) names a tenant's object, tenant beta gets with alpha's real id exactly the
answer it gets with an id that exists nowhere (status and body, the id aside), and alpha's objects are unchanged
afterwards. A read key is refused every write with 403. The WebSocket routes, which OpenAPI leaves out, are
checked in test_api_hardening.py (404 before the upgrade).
"""

from __future__ import annotations

import json
import re

import pytest

from ..conftest import unique
from .test_api_jobs import wait_terminal

MISSING = {
    "submission_id": "raysubmit_000000000MISSING",
    "job_id": "raysubmit_000000000MISSING",
    "task_id": "task_00000000000000000000000000",
    "attempt_id": "att_00000000000000000000000000_1",
    "resources_id": "res_00000000000000000000000000",
    "resource_id": "res_00000000000000000000000000",
    "key_id": "MISSINGKEY00",
    "name": "missing.app",
    "tenant": "missing-tenant",
    "session_id": "ses_00000000000000000000000000",
    "rollout_id": "rollout-missing",
    "turn_id": "turn_matrix",  # with a session's: a turn of it (the same in both sets)
    "upstream_path": "chat/completions",
}
# not tenant objects (see the notes below)
GLOBAL = {"protocol", "package_name", "kind", "item_id", "queue", "template_id", "node_id"}
BODIES = {  # a body each write would accept if the id were the caller's own
    ("post", "/api/v1/attempts/{attempt_id}/complete"): {"result": "stolen"},
    ("post", "/api/v1/attempts/{attempt_id}/fail"): {"error": "stolen", "retryable": False},
    ("post", "/api/v1/attempts/{attempt_id}/heartbeat"): {},
    ("put", "/api/v1/serve/applications/{name}"): {"plugin": "echo"},
    ("put", "/api/v1/tenants/{tenant}/limits"): {"max_queued_tasks": 0},
    ("post", "/api/v1/sessions/{session_id}/invoke"): {"text": "stolen"},
}
READ_ONLY_POSTS = {"/api/v1/tasks/wait"}  # a POST that only reads (long poll with a body)


@pytest.fixture(scope="module")
def alphas(facade):
    """Real objects of tenant alpha, one of each kind a route can name."""
    queue = unique("matrix")
    with facade.client("alpha") as alpha:
        job = alpha.post("/api/v1/jobs", json={"entrypoint": "echo matrix"}).json()["submission_id"]
        wait_terminal(alpha, job)
        ids = alpha.post(f"/api/v1/queues/{queue}/tasks/batch", json={"tasks": [{"input": 1}, {"input": 2}]})
        [lease] = alpha.post(f"/api/v1/queues/{queue}/claim", json={"worker_id": "m", "lease_s": 3600}).json()
        resources = alpha.post(
            "/api/v1/resources", json={"resources": {"p": {"resource_type": "prompt_template", "template": "x"}}}
        ).json()
        key = alpha.post("/api/v1/keys", json={"tenant": "alpha", "scope": "read", "name": "matrix"}).json()
        session = alpha.post("/api/v1/sessions", json={"template": "agents.counter"}).json()["id"]
        rollout = unique("rollout")
        alpha.post("/agl/api/rollouts", json=[{"rollout_id": rollout, "input": 1}]).raise_for_status()
        deployed = alpha.put("/api/v1/serve/applications/echo", json={"plugin": "echo"})
        assert deployed.status_code == 200, deployed.text
    real = {
        "submission_id": job,
        "job_id": job,
        "task_id": ids.json()["task_ids"][1],
        "attempt_id": lease["attempt_id"],
        "leased_task_id": lease["task"]["id"],
        "resources_id": resources["resources_id"],
        "resource_id": resources["resources_id"],
        "key_id": key["info"]["key_id"],
        "name": "echo.say",
        "tenant": "alpha",
        "session_id": session,
        "rollout_id": rollout,
        "turn_id": MISSING["turn_id"],
        "upstream_path": MISSING["upstream_path"],
    }
    yield real
    with facade.client("alpha") as alpha:
        alpha.delete("/api/v1/serve/applications/echo")


def operations(facade) -> list[tuple[str, str]]:
    with facade.client("alpha") as alpha:
        spec = alpha.get("/openapi.json").json()
    return [(method, path) for path, ops in spec["paths"].items() for method in ops]


def snapshot(facade, real: dict) -> dict:
    """What alpha sees of its objects (a write by another tenant must change none of it)."""
    with facade.client("alpha") as alpha:
        job = alpha.get(f"/api/v1/jobs/{real['submission_id']}").json()
        return {
            "job": {k: job[k] for k in ("status", "end_time")},
            "task": alpha.get(f"/api/v1/tasks/{real['task_id']}").json(),
            "leased": alpha.get(
                f"/api/v1/tasks/{real['attempt_id'].replace('att_', 'task_').rsplit('_', 1)[0]}"
            ).json(),
            "resources": alpha.get(f"/api/v1/resources/{real['resources_id']}").json(),
            "keys": sorted(k["key_id"] for k in alpha.get("/api/v1/keys").json() if k["revoked_at"] is None),
            "app": alpha.get(f"/api/v1/serve/applications/{real['name']}").json()["tenant"],
            "limits": alpha.get("/api/v1/tenants/alpha/limits").json(),
            "session": {
                k: v for k, v in alpha.get(f"/api/v1/sessions/{real['session_id']}").json().items() if k != "host"
            },
        }


def ask(client, method: str, path: str, ids: dict) -> tuple[int, str]:
    params = set(re.findall(r"{(\w+)}", path))
    url = path.format(**{p: ids[p] for p in params})
    body = BODIES.get((method, path), {} if method in ("post", "put", "patch") else None)
    reply = client.request(method.upper(), url, json=body)
    text = reply.text
    for value in ids.values():
        text = text.replace(value, "ID")
    return reply.status_code, text


def test_another_tenants_objects_are_missing_on_every_route_and_stay_unchanged(facade, alphas):
    before = snapshot(facade, alphas)
    checked = []
    with facade.client("beta") as beta:
        for method, path in operations(facade):
            params = set(re.findall(r"{(\w+)}", path))
            if not params or params & GLOBAL:
                continue
            theirs = ask(beta, method, path, alphas)
            nobodys = ask(beta, method, path, MISSING)
            assert theirs == nobodys, f"{method.upper()} {path}: {theirs} vs {nobodys}"
            assert theirs[0] >= 400, f"{method.upper()} {path} answered {theirs}"
            checked.append(f"{method} {path}")
        for body_route, body in (
            ("/rollout", lambda ids: {"rollout_id": ids["attempt_id"]}),
            ("/api/v1/tasks/wait", lambda ids: {"task_ids": [ids["task_id"]], "timeout_s": 0}),
        ):
            theirs, nobodys = (beta.post(body_route, json=body(ids)) for ids in (alphas, MISSING))
            assert theirs.status_code == nobodys.status_code == 404, body_route
            assert theirs.text.replace(alphas["attempt_id"], "ID").replace(alphas["task_id"], "ID") == (
                nobodys.text.replace(MISSING["attempt_id"], "ID").replace(MISSING["task_id"], "ID")
            )
    assert len(checked) >= 20, checked
    assert snapshot(facade, alphas) == before


def test_a_read_key_is_refused_every_write(facade, alphas):
    refused = []
    with facade.client("alpha-read") as reader:
        for method, path in operations(facade):
            if method not in ("post", "put", "patch", "delete") or path in READ_ONLY_POSTS:
                continue
            ids = {**alphas, "queue": "matrix", "protocol": "gcs", "package_name": "_ray_pkg_" + "0" * 32 + ".zip"}
            status, text = ask(reader, method, path, ids)
            assert status == 403, f"{method.upper()} {path} answered {status}: {text}"
            assert json.loads(text)["error"]["code"] == "permission_denied"
            refused.append(path)
    assert len(refused) >= 20
