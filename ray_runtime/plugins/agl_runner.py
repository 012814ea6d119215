"""Agent Lightning rollouts run as Ray tasks: a runner claims a tenant's queuing rollouts from the coordinator and
runs each one's ``config.local.agent_class`` in a Ray task, in a plugin's runtime_env, with AGL's environment.

The agent sees what AGL's own local controller gives it: ``AGL_KEY`` (here a key of the rollout's tenant with
submit scope, made for this rollout and deleted when it ends), ``AGL_OPENAI_BASE_URL`` (the façade's LLM proxy for
this rollout and attempt), ``AGL_EVENT_URL`` and the variables of ``config.local.env_map``. A clean return ends the
rollout ``succeeded``, an exception ``failed`` with its message, ``timeout_seconds`` running out ``failed``; a task
lost with its node or worker runs again as a new attempt (``"1"``, ``"2"``, ...), whose events are then the ones
``GET events`` returns.

One runner per tenant, and not beside AGL's own ``LocalReconciler`` on that tenant: that one fails every running
rollout it did not start. Keep them on different tenants (keys).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from ray_runtime._environ import environ
from ray_runtime.keys import KEYS_NAMESPACE, new_key
from ray_runtime.models.agl import DEFAULT_ATTEMPT
from ray_runtime.models.api import Scope
from ray_runtime.plugins.manifest import Plugin, resolve
from ray_runtime.plugins.package import runtime_env
from ray_runtime.plugins.upload import ensure_uploaded, package_for

__all__ = ["RolloutRunner", "agent_env"]

logger = logging.getLogger(__name__)


def _lookup(value: Any, path: str) -> Any:
    if path == "input":
        return value
    if not path.startswith("input."):
        return path  # not a path: the text itself
    for part in path.split(".")[1:]:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise ValueError(f"local.env_map path not found: {path}")
    return value


def agent_env(rollout: Any, *, url: str, key: str, attempt_id: str) -> dict[str, str]:
    """The environment AGL gives an agent for one attempt of a rollout (``url``: the façade's AGL prefix)."""
    mode = "train" if rollout.is_train else "val"
    base = f"{url.rstrip('/')}"
    env = {
        "AGL_KEY": key,
        "AGL_OPENAI_BASE_URL": f"{base}/proxy/rollout/{rollout.rollout_id}/attempt/{attempt_id}/mode/{mode}/openai/v1",
        "AGL_EVENT_URL": f"{base}/api/rollouts/{rollout.rollout_id}/attempt/{attempt_id}/events",
    }
    local = rollout.config.local
    for name, path in (local.env_map if local is not None else {}).items():
        value = _lookup(rollout.input, path)
        env[name] = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return env


def _run_agent(agent_class: str, env: dict[str, str]) -> None:
    """In the Ray task: build the agent class and run it with AGL's environment (restored afterwards: the worker
    process runs other tasks later)."""
    with environ(env):
        module_name, _, class_name = agent_class.partition(":") if ":" in agent_class else agent_class.rpartition(".")
        loaded = getattr(importlib.import_module(module_name), class_name)
        if not isinstance(loaded, type):
            raise TypeError(f"{agent_class} is not a class")
        result = loaded().run()
        if inspect.isawaitable(result):
            asyncio.run(result)  # type: ignore[arg-type]


@dataclass
class _Running:
    rollout: Any
    attempt: int
    key_id: str
    ref: Any
    started: float = field(default_factory=time.monotonic)


class RolloutRunner:
    """Claims a tenant's queuing AGL rollouts and runs them as Ray tasks.

    Args:
        coordinator: A handle acting for the tenant (not bound to it: the runner makes keys in the system store).
        plugin: The plugin (folder or name) whose package and requirements the agents run with.
        agl_url: The façade's AGL prefix as agents reach it (``http://host:port/agl``).
        concurrency: Rollouts running at once.
        num_cpus, resources: What each rollout's task asks of Ray.
        max_attempts: Attempts per rollout when Ray loses its task (a node or worker died).
        poll_s: How often it looks for new rollouts when it has room.
    """

    def __init__(
        self,
        coordinator: Any,
        *,
        plugin: Plugin | str | Path,
        agl_url: str,
        concurrency: int = 4,
        num_cpus: float = 1.0,
        resources: dict[str, float] | None = None,
        max_attempts: int = 3,
        poll_s: float = 0.5,
        on_end: Callable[[str, str, str | None], None] | None = None,
    ) -> None:
        self.coordinator = coordinator
        self.on_end = on_end  # called with (rollout id, state, error) as each rollout ends: progress
        self.rollouts = coordinator.rollouts
        self.plugin = resolve(plugin)
        self.agl_url = agl_url
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.poll_s = poll_s
        self.worker_id = f"agl-runner-{uuid.uuid4().hex[:8]}"
        self._options = {"num_cpus": num_cpus, "resources": resources or {}, "max_retries": 0}
        self._running: dict[Any, _Running] = {}
        self.finished: dict[str, str] = {}  # rollout id -> succeeded | failed, for progress

    def _task_options(self) -> dict[str, Any]:
        package = package_for(self.plugin)
        ensure_uploaded(package)
        return {**self._options, "runtime_env": runtime_env(self.plugin, package)}

    def run(self, stop: threading.Event | None = None, *, until_done: int | None = None) -> None:
        """Run rollouts until ``stop`` is set (or ``until_done`` of them ended); ends what it started as failed."""
        stop = stop or threading.Event()
        remote = ray.remote(_run_agent)
        options = self._task_options()
        try:
            while not stop.is_set() and (until_done is None or len(self.finished) < until_done):
                room = self.concurrency - len(self._running)
                if room > 0:
                    for rollout in self.rollouts.claim(self.worker_id, room):
                        self._start(remote, options, rollout, 0)
                self._reap(remote, options, wait_s=self.poll_s)
        finally:
            for running in list(self._running.values()):
                ray.cancel(running.ref, force=True)
                self._end(running, "failed", "the rollout runner stopped")

    def _start(self, remote: Any, options: dict[str, Any], rollout: Any, attempt: int) -> None:
        tenant = self.coordinator.tenant
        key, record = new_key(tenant, Scope.SUBMIT, f"agl rollout {rollout.rollout_id}")
        self.coordinator.kv.put(KEYS_NAMESPACE, record.key_id, record.model_dump(mode="json"))
        attempt_id = DEFAULT_ATTEMPT if attempt == 0 else str(attempt)
        env = agent_env(rollout, url=self.agl_url, key=key, attempt_id=attempt_id)
        local = rollout.config.local
        if local is None or not local.agent_class:
            self.coordinator.kv.delete(KEYS_NAMESPACE, record.key_id)
            self._ended(rollout.rollout_id, "failed", "invalid rollout config: missing config.local.agent_class")
            return
        ref = remote.options(**options).remote(local.agent_class, env)
        self._running[ref] = _Running(rollout, attempt, record.key_id, ref)

    def _reap(self, remote: Any, options: dict[str, Any], *, wait_s: float) -> None:
        refs = list(self._running)
        if not refs:
            time.sleep(wait_s)
            return
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=wait_s)
        for ref in done:
            running = self._running.pop(ref)
            try:
                ray.get(ref)
            except ray.exceptions.RayTaskError as exc:  # the agent's own failure
                self._end(running, "failed", f"agent failed: {exc.cause!r}" if exc.cause else str(exc).splitlines()[0])
            except ray.exceptions.RayError as exc:  # Ray lost the task: its node or worker died
                self.coordinator.kv.delete(KEYS_NAMESPACE, running.key_id)
                if running.attempt + 1 < self.max_attempts:
                    logger.warning(
                        "rollout %s lost its task (%s); attempt %d",
                        running.rollout.rollout_id,
                        exc,
                        running.attempt + 1,
                    )
                    self._patch(running.rollout.rollout_id, None, None, last_attempt_id=str(running.attempt + 1))
                    self._start(remote, options, running.rollout, running.attempt + 1)
                else:
                    self._end(running, "failed", f"Ray lost the rollout's task {self.max_attempts} times: {exc}")
            else:
                self._end(running, "succeeded", None)
        now = time.monotonic()
        for ref, running in list(self._running.items()):
            if now - running.started > running.rollout.config.timeout_seconds:
                ray.cancel(ref, force=True)
                del self._running[ref]
                self._end(running, "failed", "the rollout timed out")

    def _end(self, running: _Running, state: str, error: str | None) -> None:
        self.coordinator.kv.delete(KEYS_NAMESPACE, running.key_id)
        self._ended(running.rollout.rollout_id, state, error)

    def _ended(self, rollout_id: str, state: str, error: str | None) -> None:
        self._patch(rollout_id, state, error)
        self.finished[rollout_id] = state
        if self.on_end is not None:
            self.on_end(rollout_id, state, error)

    @property
    def running(self) -> int:
        """Rollouts running now."""
        return len(self._running)

    def _patch(self, rollout_id: str, state: str | None, error: str | None, **changes: Any) -> None:
        if state is not None:
            changes["state"] = state
        if error is not None:
            changes["error_message"] = error
        try:
            self.rollouts.patch(rollout_id, changes)
        except Exception as exc:  # e.g. deleted, or already ended by its timeout in the coordinator
            logger.warning("could not set rollout %s to %s: %s", rollout_id, changes, exc)
