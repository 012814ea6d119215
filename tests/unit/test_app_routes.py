"""The façade's routes: Agent Lightning's prefix is matched first, so it may not hide the façade's own routes."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from ray_runtime.api.app import create_app
from ray_runtime.api.settings import AglSettings, ApiSettings
from ray_runtime.errors import InvalidArgumentError


@pytest.fixture(autouse=True)
def _storage(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_RUNTIME_STORAGE", str(tmp_path))


@pytest.mark.parametrize(("prefix", "hidden"), [("/api", "/api/jobs/"), ("/ui", "/ui"), ("/synapse", "/synapse/")])
def test_an_agl_prefix_holding_the_facades_own_routes_is_refused_naming_the_setting(prefix: str, hidden: str) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        create_app(ApiSettings(agl=AglSettings(prefix=prefix)))
    assert refused.value.message.startswith(f"RAY_RUNTIME_API_AGL__PREFIX: '{prefix}' would hide")
    assert hidden in refused.value.message
    assert refused.value.details["field"] == "RAY_RUNTIME_API_AGL__PREFIX"


@pytest.mark.parametrize("prefix", ["/agl", "/v1/agl", "/apis"])
def test_agl_routes_answer_under_a_prefix_beside_the_facades_own(prefix: str) -> None:
    client = TestClient(create_app(ApiSettings(agl=AglSettings(prefix=prefix))))
    assert client.get(f"{prefix}/healthz").json() == {"status": "ok"}
    assert client.get("/openapi.json").status_code == 200
