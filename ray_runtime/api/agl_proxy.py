"""Agent Lightning 1.0's LLM proxy: an agent's OpenAI call, rewritten for training, sent to a registered model
endpoint (chosen by the rollout id, so a rollout keeps one server's prefix cache), its answer recorded as a
``model_request`` event of the rollout's attempt.

Registered endpoints and the pause state live in the coordinator's system store, per tenant, so every façade
replica sees them; a replica reuses what it read for a moment (``_FRESH_S``) and sees its own changes at once.
While paused, each replica publishes how many calls it still has in flight, and the state sums them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from ray_runtime.api.settings import AglSettings
from ray_runtime.models.agl import AglModel, PauseRequest, PauseState
from ray_runtime.models.resources import LLM

__all__ = ["ENDPOINT_PREFIX", "AglProxy", "NoServers", "Upstream", "endpoint_resources"]

ENDPOINT_PREFIX = "agl/"  # the names of registered endpoints among the tenant's resources

_MODELS = "agl.models"  # tenant/<hash of model and endpoint> -> AglModel
_PAUSE = "agl.pause"  # tenant -> {paused, retry_after_seconds, reason}
_INFLIGHT = "agl.inflight"  # tenant/<replica> -> calls in flight while paused
_FRESH_S = 0.25
_ATTEMPTS = 6
_RETRY_STATUS = frozenset({408, 409, 429})


class NoServers(Exception):
    """No endpoint is registered for the proxy's model."""


class Upstream(Exception):
    """The model server did not answer after every attempt (``status``: 504 timed out, 502 otherwise)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class _Cached:
    value: Any
    at: float


class AglProxy:
    """The proxy's state and calls for every tenant of one façade replica.

    Args:
        settings: The proxy's rewrite (AGL's ``default_proxy``) and upstream timeout.
        kv: The coordinator's system store (awaitable).
    """

    def __init__(self, settings: AglSettings, kv: Any, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.kv = kv
        self.clock = clock
        self.replica = uuid.uuid4().hex[:12]
        self._models: dict[str, _Cached] = {}
        self._pause: dict[str, _Cached] = {}
        self._inflight: dict[str, int] = {}
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.settings.upstream_timeout_s))
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    # ---------------------------------------------------------------------------------------- models

    async def register(self, tenant: str, models: list[AglModel]) -> None:
        """Add or replace endpoints, keyed by (model, endpoint)."""
        for model in models:
            await self.kv.put(_MODELS, f"{tenant}/{endpoint_key(model)}", model.model_dump(mode="json"))
        self._models.pop(tenant, None)

    async def unregister_all(self, tenant: str) -> None:
        for key in await self.kv.items(_MODELS, f"{tenant}/"):
            await self.kv.delete(_MODELS, key)
        self._models.pop(tenant, None)

    async def models(self, tenant: str) -> list[AglModel]:
        cached = self._models.get(tenant)
        if cached is None or self.clock() - cached.at > _FRESH_S:
            found = await self.kv.items(_MODELS, f"{tenant}/")
            cached = self._models[tenant] = _Cached([AglModel(**value) for value in found.values()], self.clock())
        return cached.value

    async def server_for(self, tenant: str, rollout_id: str) -> AglModel:
        """The endpoint of the proxy's model this rollout is pinned to: by its id's hash over the sorted endpoints."""
        name = self.settings.model_name
        pool = sorted((m for m in await self.models(tenant) if m.model == name), key=lambda m: m.endpoint)
        if not pool:
            raise NoServers(name)
        digest = hashlib.sha256(rollout_id.encode("utf-8")).digest()
        return pool[int.from_bytes(digest[:8], "big") % len(pool)]

    def rewrite(self, body: dict[str, Any], mode: str) -> dict[str, Any]:
        """The request as the model server gets it: the served model's name, the mode's temperature, token ids (and
        in training, log-probabilities and routing arrays as configured)."""
        temperature = self.settings.train_temperature if mode == "train" else self.settings.val_temperature
        rewritten = {**body, "model": self.settings.model_name, "temperature": temperature, "return_token_ids": True}
        if mode == "train":
            if self.settings.include_log_probs:
                rewritten["logprobs"] = True
            if self.settings.include_routed_experts:
                rewritten["return_routed_experts"] = True
        return rewritten

    # ----------------------------------------------------------------------------------------- pause

    async def pause_state(self, tenant: str, *, fresh: bool = False) -> dict[str, Any]:
        cached = self._pause.get(tenant)
        if fresh or cached is None or self.clock() - cached.at > _FRESH_S:
            value = await self.kv.get(_PAUSE, tenant) or {"paused": False, "retry_after_seconds": 5, "reason": None}
            cached = self._pause[tenant] = _Cached(value, self.clock())
        return cached.value

    async def set_pause(self, tenant: str, request: PauseRequest | None) -> PauseState:
        """Pause (with a request) or resume (None) new calls of the tenant on every replica."""
        previous = await self.pause_state(tenant, fresh=True)
        if request is None:
            value = {"paused": False, "retry_after_seconds": previous["retry_after_seconds"], "reason": None}
        else:
            value = {"paused": True, "retry_after_seconds": request.retry_after_seconds, "reason": request.reason}
        await self.kv.put(_PAUSE, tenant, value)
        self._pause[tenant] = _Cached(value, self.clock())
        await self._publish(tenant)
        return await self.state(tenant)

    async def state(self, tenant: str) -> PauseState:
        value = await self.pause_state(tenant, fresh=True)
        others = await self.kv.items(_INFLIGHT, f"{tenant}/")
        elsewhere = sum(int(n) for key, n in others.items() if key != f"{tenant}/{self.replica}")
        return PauseState(**value, inflight=self._inflight.get(tenant, 0) + elsewhere)

    async def _publish(self, tenant: str) -> None:
        key = f"{tenant}/{self.replica}"
        if self._pause[tenant].value["paused"]:
            await self.kv.put(_INFLIGHT, key, self._inflight.get(tenant, 0))
        else:
            await self.kv.delete(_INFLIGHT, key)

    # --------------------------------------------------------------------------------------- calling

    async def admit(self, tenant: str) -> dict[str, Any] | None:
        """Count a call in, or the pause state that refuses it."""
        state = await self.pause_state(tenant)
        if state["paused"]:
            return state
        self._inflight[tenant] = self._inflight.get(tenant, 0) + 1
        return None

    async def release(self, tenant: str) -> None:
        self._inflight[tenant] = max(0, self._inflight.get(tenant, 0) - 1)
        cached = self._pause.get(tenant)
        if cached is not None and cached.value["paused"]:
            await self._publish(tenant)

    async def send(
        self, url: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> tuple[httpx.Response, int]:
        """POST to the model server, again (backing off) on timeouts, transport errors, 408/409/429 and 5xx; the
        last answer and how many retries it took."""
        headers = {"content-type": "application/json", **(headers or {})}
        for attempt in range(_ATTEMPTS):
            last = attempt == _ATTEMPTS - 1
            try:
                response = await self.client.post(url, content=json.dumps(body), headers=headers)
            except httpx.TimeoutException:
                if last:
                    raise Upstream(504, "Upstream model server timed out") from None
            except httpx.TransportError:
                if last:
                    raise Upstream(502, "Upstream model server request failed") from None
            else:
                if last or not (response.status_code in _RETRY_STATUS or response.status_code >= 500):
                    return response, attempt
            await asyncio.sleep(min(0.5 * 2**attempt, 8.0) * random.uniform(0.75, 1.25))
        raise Upstream(502, "Upstream model server request failed")  # not reached


def endpoint_key(model: AglModel) -> str:
    """A registered endpoint's key: a digest of (model, endpoint)."""
    return hashlib.sha256(f"{model.model}\0{model.endpoint}".encode()).hexdigest()[:32]


def endpoint_resources(models: list[AglModel]) -> dict[str, LLM]:
    """Registered endpoints as the tenant's coordinator resources: one ``LLM`` each, named
    ``agl/<model>/<key>``, so the runtime's own workers and session templates see the endpoints AGL's trainer
    registered (``coord.resources.latest()``)."""
    return {
        f"{ENDPOINT_PREFIX}{m.model}/{endpoint_key(m)[:12]}": LLM(endpoint=m.endpoint, model=m.model) for m in models
    }


def model_request_event(
    server: AglModel,
    request: dict[str, Any],
    response: httpx.Response,
    answer: dict[str, Any],
    latency_ms: float,
    retries: int,
) -> dict[str, Any]:
    """The ``model_request`` event of one upstream answer (its routing arrays taken out of the answer)."""
    routes = None
    choices = answer.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict) and (routes := choice.pop("routed_experts", None)) is not None:
                break
    usage = answer.get("usage")
    finish = None
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        reason = choices[0].get("finish_reason")
        finish = reason if isinstance(reason, str) and reason else None
    return {
        "model": server.model,
        "model_version": server.version,
        "request": request,
        "response": answer,
        "server": {"model": server.model, "endpoint": server.endpoint, "version": server.version},
        "latency_ms": latency_ms,
        "http_status": response.status_code,
        "status": "ok" if response.status_code < 400 else "error",
        "retry_count": retries,
        "routed_experts": routes,
        "usage": usage if isinstance(usage, dict) else None,
        "finish_reason": finish,
    }
