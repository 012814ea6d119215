"""What the façade talks to, set up once per process: Ray, the dashboard, the coordinator, keys, logs, audit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cachetools import LRUCache, TTLCache

from ray_runtime._priority import background_pool
from ray_runtime._ray import dashboard_url, init_ray
from ray_runtime.api.agl_proxy import AglProxy
from ray_runtime.api.audit import AuditLog
from ray_runtime.api.auth import Authenticator
from ray_runtime.api.dashboard import Dashboard
from ray_runtime.api.limits import TenantLimiter
from ray_runtime.api.logtail import LogHub
from ray_runtime.api.settings import ApiSettings
from ray_runtime.config import CoordinatorSettings
from ray_runtime.keys import Caller, KeyStore
from ray_runtime.sessions.model_calls import ANNOUNCE_EVERY_S, FACADES

__all__ = ["Services", "misplaced_state"]

logger = logging.getLogger("ray_runtime.api")
T = TypeVar("T")

_UNKNOWN = object()
_FINISHED_RUN_TTL_S = 3600.0  # a finished run never changes again


class Services:
    """Everything a request handler needs; ``start`` connects, ``stop`` releases."""

    def __init__(self, settings: ApiSettings) -> None:
        from ray_runtime.plugins.catalog import PluginCatalog
        from ray_runtime.sessions.manager import TemplateSource
        from ray_runtime.sessions.template import describe_template

        self.settings = settings
        self.coordinator: Any = None
        self.dashboard: Dashboard = None  # type: ignore[assignment]  # set by start()
        self.keys: KeyStore = None  # type: ignore[assignment]
        self.auth: Authenticator = None  # type: ignore[assignment]
        self.logs: LogHub = None  # type: ignore[assignment]
        self.audit: AuditLog | None = None
        self.agl_events: Any = None  # coordinator.rollout_events.EventStore, set by start()
        self.agl_proxy: Any = None  # api.agl_proxy.AglProxy, set by start()
        self.agl_tasks: TTLCache[tuple[str, str], str] = TTLCache(maxsize=65536, ttl=1.0)  # (tenant, rollout) -> task
        self._background = background_pool("rr-bulk", workers=4)
        self.replica = uuid.uuid4().hex[:12]  # this façade process, among the replicas
        self._announcing: asyncio.Task[None] | None = None
        self.limiter: TenantLimiter = None  # type: ignore[assignment]
        self.catalog = PluginCatalog(settings.plugins_dir, describe_session=describe_template)
        self.templates = TemplateSource(settings.plugins_dir)
        self._tenants: LRUCache[str, Any] = LRUCache(maxsize=1024)
        self._sessions: LRUCache[str, Any] = LRUCache(maxsize=1024)
        self._finished_runs: TTLCache[tuple[str, str], Any] = TTLCache(maxsize=10_000, ttl=_FINISHED_RUN_TTL_S)
        self._running_runs: TTLCache[tuple[str, str], Any] = TTLCache(
            maxsize=10_000, ttl=max(settings.running_job_cache_s, 1e-9)
        )

    async def start(self) -> None:
        from ray_runtime.coordinator import aconnect

        await asyncio.to_thread(init_ray, self.settings.ray_address)
        url = self.settings.dashboard_url or dashboard_url()
        self.dashboard = Dashboard(
            url if "://" in url else f"http://{url}",
            finished_job_ttl_s=self.settings.finished_job_cache_s,
            job_list_ttl_s=self.settings.job_list_cache_s,
            running_job_ttl_s=self.settings.running_job_cache_s,
        )
        self.coordinator = await aconnect(name=self.settings.coordinator_name)
        problem = misplaced_state((await self.coordinator.info())["journal"], self.settings.coordinator_name)
        if problem is not None:
            raise RuntimeError(problem)
        self.keys = KeyStore(self.coordinator.kv, self.settings.keys_cache_s)
        self.limiter = TenantLimiter(self.coordinator.kv, ttl_s=self.settings.keys_cache_s)
        self.auth = Authenticator(self.keys)
        self.logs = LogHub(
            self.dashboard,
            lambda submission_id: self.dashboard.job_details(submission_id, fresh=True),
            poll_interval_s=self.settings.log_poll_interval_s,
            heartbeat_s=self.settings.log_heartbeat_s,
        )
        self.audit = self._audit_log()
        self.agl_events = await asyncio.to_thread(self._event_store)
        self.agl_proxy = AglProxy(self.settings.agl, self.coordinator.kv)
        await self.auth.start()
        if self.settings.public_url:
            self._announcing = asyncio.get_running_loop().create_task(self._announce(self.settings.public_url))

    async def _announce(self, url: str) -> None:
        """Tell session hosts where this façade is (their turns' model proxy), again every little while."""
        while True:
            try:
                await self.coordinator.kv.put(FACADES, self.replica, {"url": url, "at": time.time()})
            except Exception as exc:
                logger.warning("could not announce this façade (will retry): %s", exc)
            await asyncio.sleep(ANNOUNCE_EVERY_S)

    def _event_store(self) -> Any:
        """Agent Lightning's rollout events, where the coordinator's state is."""
        from ray_runtime.coordinator.rollout_events import open_event_store

        coordinator = CoordinatorSettings()
        return open_event_store(
            journal_url=coordinator.journal_url, coordinator=self.settings.coordinator_name, storage=coordinator.storage
        )

    def _audit_log(self) -> AuditLog:
        """Where the coordinator's state is: its PostgreSQL database, else a file beside its journal."""
        journal_url = CoordinatorSettings().journal_url
        if journal_url and self.settings.audit_log is None:
            return AuditLog.postgres(journal_url, self.settings.coordinator_name)
        storage = Path(os.environ.get("RAY_RUNTIME_STORAGE", "~/.ray_runtime")).expanduser()
        return AuditLog.file(self.settings.audit_log or storage / "audit.jsonl")

    async def stop(self) -> None:
        if self._announcing is not None:
            self._announcing.cancel()
            with contextlib.suppress(Exception):
                await self.coordinator.kv.delete(FACADES, self.replica)
        if self.dashboard is not None:
            await self.dashboard.close()
        if self.agl_proxy is not None:
            await self.agl_proxy.close()
        self._background.shutdown(wait=True)  # writes in flight finish before the store closes
        if self.agl_events is not None:
            self.agl_events.close()
        if self.audit is not None:
            self.audit.close()

    async def in_background(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a thread below this process's CPU priority: bulk work (rollout events of megabytes,
        traces) that must not take the CPU from API calls or, on a shared head node, from the coordinator."""
        return await asyncio.get_running_loop().run_in_executor(self._background, fn, *args)

    @property
    def dev_mode(self) -> bool:
        return self.auth is not None and self.auth.dev_mode

    def coordinator_for(self, caller: Caller) -> Any:
        """The coordinator acting for the caller's tenant (one handle per tenant, so its caches are kept)."""
        handle = self._tenants.get(caller.tenant)
        if handle is None:
            handle = self._tenants[caller.tenant] = self.coordinator.for_tenant(caller.tenant)
        return handle

    def sessions_for(self, caller: Caller) -> Any:
        """The caller's tenant's sessions (``AsyncSessions``), with templates from the façade's plugins folder."""
        sessions = self._sessions.get(caller.tenant)
        if sessions is None:
            from ray_runtime.sessions.manager import AsyncSessions

            registry = self.coordinator_for(caller).session_registry
            sessions = self._sessions[caller.tenant] = AsyncSessions(registry, self.templates)
        return sessions

    async def run_of(self, caller: Caller, run_id: str) -> Any:
        """A plugin run from the coordinator, or None; finished runs are final, so they are kept, and a running
        one is reused for ``running_job_cache_s`` (a burst of reads makes one call)."""
        key = (caller.tenant, run_id)
        cached = self._finished_runs.get(key) or self._running_runs.get(key, _UNKNOWN)
        if cached is _UNKNOWN:
            cached = await self.coordinator_for(caller).runs.find(run_id)
            finished = cached is not None and cached.status != "running"
            (self._finished_runs if finished else self._running_runs)[key] = cached  # None too: no run (yet)
        return cached


def misplaced_state(coordinator_journal: str, coordinator: str) -> str | None:
    """What is wrong, if anything, with where this process would keep rollout events and the audit log, given
    where the coordinator keeps its state (its ``info()["journal"]``). A coordinator in PostgreSQL beside a
    façade without its URL (or with another) would leave them in files on the façade's node, so losing that node
    would lose them: the façade refuses to start."""
    from ray_runtime.coordinator.postgres import URL_VARIABLE, is_postgres_url, journal_location

    if not is_postgres_url(coordinator_journal):
        return None
    url = CoordinatorSettings().journal_url
    ours = "none" if url is None else journal_location(url, coordinator)
    if ours == coordinator_journal:
        return None
    return (
        f"coordinator {coordinator!r} keeps its state in PostgreSQL ({coordinator_journal}) and this façade's "
        f"{URL_VARIABLE} is {ours}: start the façade with the coordinator's {URL_VARIABLE}, so rollout events and "
        "the audit log are kept there too"
    )
