"""The façade's front door: keys (Bearer or Basic), scopes, tenants, dev mode, one error shape, the audit log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ..waiting import wait_until


def error_of(reply: httpx.Response) -> dict:
    body = reply.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    return body["error"]


def test_calls_without_a_valid_key_get_401(facade):
    assert error_of(httpx.get(f"{facade.url}/api/v1/queues"))["code"] == "unauthenticated"
    for header in ("Bearer rrk_nope_nope", "Bearer not-a-key", "Token abc"):
        reply = httpx.get(f"{facade.url}/api/v1/queues", headers={"Authorization": header})
        assert reply.status_code == 401, header
    assert httpx.get(f"{facade.url}/health/live").status_code == 200  # probes need no key


def test_the_key_also_works_as_the_basic_auth_password(facade):
    reply = httpx.get(f"{facade.url}/api/v1/queues", auth=("anyone", facade.keys["alpha"]))
    assert reply.status_code == 200


def test_scopes_gate_writes(facade):
    with facade.client("alpha-read") as reader:
        assert reader.get("/api/v1/queues").status_code == 200
        reply = reader.post("/api/v1/queues/q/tasks", json={"input": 1})
        assert reply.status_code == 403 and "scope 'submit'" in error_of(reply)["message"]
    with facade.client("alpha-submit") as submitter:
        assert submitter.post("/api/v1/queues/q/tasks", json={"input": 1}).status_code == 201
        assert submitter.get("/api/v1/keys").status_code == 403


def test_bad_input_gets_a_typed_error_naming_the_field(facade):
    with facade.client() as client:
        malformed = client.post(
            "/api/v1/queues/q/tasks", content=b"{nope", headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 400 and error_of(malformed)["code"] == "bad_request"
        invalid = client.post("/api/v1/queues/q/claim", json={"worker_id": "", "max_tasks": 0})
        assert invalid.status_code == 422
        assert {e["field"] for e in error_of(invalid)["details"]["errors"]} == {"worker_id", "max_tasks"}
        bad_name = client.post("/api/v1/queues/bad%20name/tasks", json={"input": 1})
        assert bad_name.status_code == 422 and "queue" in error_of(bad_name)["message"]
        assert error_of(client.get("/api/v1/tasks/task_missing"))["code"] == "task_not_found"
        assert error_of(client.get("/api/v1/nowhere"))["code"] == "not_found"


def test_oversize_bodies_and_payloads_get_413(facade):
    with facade.client() as client:
        huge = client.post(
            "/api/v1/queues/q/tasks", content=b"x" * (5 * 2**20), headers={"content-type": "application/json"}
        )
        assert huge.status_code == 413 and error_of(huge)["code"] == "payload_too_large"
        payload = client.post("/api/v1/queues/q/tasks", json={"input": "x" * (2**20 + 10)})
        assert payload.status_code == 413 and error_of(payload)["details"]["field"] == "input"


def test_a_revoked_key_stops_working(facade, session_coordinator):
    with facade.client("alpha") as admin:
        created = admin.post("/api/v1/keys", json={"tenant": "alpha", "scope": "read", "name": "temp"})
        assert created.status_code == 201
        key, key_id = created.json()["key"], created.json()["info"]["key_id"]
        assert "secret" not in json.dumps(admin.get("/api/v1/keys").json())
        assert httpx.get(f"{facade.url}/api/v1/queues", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert admin.delete(f"/api/v1/keys/{key_id}").status_code == 204
        assert httpx.get(f"{facade.url}/api/v1/queues", headers={"Authorization": f"Bearer {key}"}).status_code == 401
        assert admin.post("/api/v1/keys", json={"tenant": "beta", "scope": "admin"}).status_code == 403
    with facade.client("beta") as beta:
        assert beta.delete(f"/api/v1/keys/{key_id}").status_code == 404  # another tenant's key does not exist


def test_mutating_calls_are_audited_without_secrets(facade, ray_cluster):
    with facade.client("alpha-submit") as client:
        client.post("/api/v1/queues/audited/tasks", json={"input": {"secret": "hunter2"}})
    audit = Path(ray_cluster["root"]) / "audit.jsonl"

    def written() -> str | None:  # the audit line is written after the answer goes out
        lines = audit.read_text().splitlines() if audit.exists() else []
        return next((line for line in reversed(lines) if "/api/v1/queues/audited/tasks" in line), None)

    entry = json.loads(wait_until(written, 60, what="the audit line"))
    lines = audit.read_text().splitlines()
    assert entry["tenant"] == "alpha" and entry["status"] == 201 and entry["outcome"] == "ok" and entry["key_id"]
    text = "\n".join(lines)
    assert "hunter2" not in text and not any(key in text for key in facade.keys.values())


def test_dev_mode_serves_only_on_loopback_and_refuses_other_binds(ray_cluster, tmp_path):
    fresh = "devmode-coordinator"  # a coordinator that holds no keys
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "ray_runtime",
            "api",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--address",
            ray_cluster["address"],
            "--coordinator",
            fresh,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "no API keys exist" in refused.stderr + refused.stdout

    from fastapi.testclient import TestClient

    from ray_runtime.api import ApiSettings, create_app

    app = create_app(ApiSettings(coordinator_name=fresh, audit_log=tmp_path / "audit.jsonl"))
    with TestClient(app) as client:
        assert client.get("/api/v1/queues").status_code == 200  # dev mode: no key needed
        assert client.post("/api/v1/queues/dev/tasks", json={"input": 1}).status_code == 201
        other = {"x-ray-runtime-tenant": "dev-other"}  # dev mode: the header picks the tenant
        assert client.post("/api/v1/queues/elsewhere/tasks", json={"input": 1}, headers=other).status_code == 201
        assert "elsewhere" in client.get("/api/v1/queues", headers=other).json()
        assert "elsewhere" not in client.get("/api/v1/queues").json()
        bad = client.get("/api/v1/queues", headers={"x-ray-runtime-tenant": "no spaces!"})
        assert bad.status_code == 400 and "x-ray-runtime-tenant" in bad.text
    exposed = create_app(ApiSettings(host="0.0.0.0", coordinator_name=fresh))
    with pytest.raises(RuntimeError, match="refusing to serve"), TestClient(exposed):
        pass
