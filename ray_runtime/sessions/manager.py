"""``coord.sessions``: create, invoke (or stream), pause, resume, fork, refresh, cancel and close agent sessions.

Each operation is written once, as a flow (a generator, like the HTTP clients' flows): it yields the steps it needs,
a registry call on the coordinator (:class:`Call`) or a call into a session host (:class:`_HostCall`), and is sent
each answer (or has the step's error thrown into it). :class:`Sessions` runs the flows blocking, and
:class:`AsyncSessions` awaits them; only the way a step waits differs.

Where a session runs is looked up in the registry and remembered for a moment, so a turn is one call into its host.
A session resting ``inactive`` (idle, or its host died and it can come back) is resumed transparently by its next
turn; a ``paused`` one only by an explicit :meth:`resume`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import time
from collections.abc import AsyncIterator, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cachetools import TTLCache

from ray_runtime._ids import new_id
from ray_runtime._placement import Ask, await_placed, check_feasible, describe, kill_actor, wait_placed
from ray_runtime._unset import UNSET, Unset
from ray_runtime.checks import check_json
from ray_runtime.config import BOUND_TENANT_ENV, Settings
from ray_runtime.coordinator.calls import Call, from_ray
from ray_runtime.coordinator.handle import AsyncCoordinator, Coordinator
from ray_runtime.coordinator.session_calls import AsyncSessionRegistryHandle, SessionRegistryHandle
from ray_runtime.errors import (
    HostLostError,
    InsufficientResourcesError,
    InvalidArgumentError,
    PluginNotFoundError,
    RayRuntimeError,
    SessionClosedError,
    SessionCreationError,
    SessionNotFoundError,
    SessionPausedError,
    TemplateNotFoundError,
    TimeoutError,
    UnavailableError,
)
from ray_runtime.models.agent import REPLAYED_TYPES, read_message
from ray_runtime.models.sessions import Invocation, SessionInfo, SessionPage, Template, TurnRecord, TurnRequest
from ray_runtime.plugins.manifest import ActionSpec, Plugin, PluginRegistry
from ray_runtime.plugins.prepare import PreparedAction, prepare
from ray_runtime.sessions.host import SessionHost

__all__ = ["AsyncSessions", "Sessions", "TemplateSource", "sessions_of", "template_of"]

Flow = Generator[Any, Any, Any]
_ROUTE_TTL_S = 2.0
_SETTLE_S = 30.0  # how long a step waits for a session another caller is bringing back
_HOST_TRIES = 3  # a host that no longer holds a session: look it up again this many times
_MOVED = (SessionNotFoundError, HostLostError)  # what a host that no longer holds a session raises
MAX_TURN_BYTES = 1 << 20  # a turn's request, and its result, as JSON


# ------------------------------------------------------------------------------------------------ templates


def template_of(plugin: Plugin, spec: ActionSpec, config_schema: dict[str, Any] | None = None) -> Template:
    """A session template as users see it."""
    options = spec.session
    return Template(
        id=f"{plugin.name}.{spec.name}",
        plugin=plugin.name,
        action=spec.name,
        version=plugin.manifest.version,
        description=spec.description,
        tags=list(spec.tags),
        isolation=options.isolation,
        idle_timeout_s=options.idle_timeout_s,
        max_lifetime_s=options.max_lifetime_s,
        on_idle=options.on_idle,
        checkpoint=options.checkpoint,
        busy=options.busy,
        recover=options.recover,
        resources=spec.resources.model_dump(),
        config_schema=config_schema,
    )


class TemplateSource:
    """The session templates of a plugins folder: the actions of mode ``session`` (id ``<plugin>.<action>``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._prepared: TTLCache[tuple[str, str], PreparedAction] = TTLCache(maxsize=1024, ttl=5.0)

    def find(self, template_id: str) -> tuple[Plugin, ActionSpec]:
        """The plugin and action of a template id, or ``TemplateNotFoundError`` naming the templates there are."""
        plugin_name, _, action = str(template_id).partition(".")
        try:
            plugin = PluginRegistry(self.root).get(plugin_name)
            spec = plugin.action(action)
        except PluginNotFoundError:
            raise self._missing(template_id) from None
        if "session" not in spec.modes:
            raise self._missing(template_id)
        return plugin, spec

    def _missing(self, template_id: str) -> TemplateNotFoundError:
        available = [template.id for template in self.list()]
        there = f"the templates here are {', '.join(available)}" if available else "no template is installed here"
        return TemplateNotFoundError(
            f"no session template {template_id!r}; {there} (templates are the session actions of the plugins "
            "folder the façade was started with: `ray-runtime up --plugins-dir DIR`, default ./plugins where it "
            "was started)",
            template=template_id,
            available=available,
        )

    def list(self, *, tags: list[str] | None = None, name: str | None = None) -> list[Template]:
        """Every template (with all these ``tags``, and ``name`` in its id), by id."""
        found = [
            template_of(plugin, spec)
            for plugin in PluginRegistry(self.root)
            for spec in plugin.manifest.actions.values()
            if "session" in spec.modes
        ]
        return sorted(
            (t for t in found if set(tags or ()) <= set(t.tags) and (name is None or name in t.id)),
            key=lambda t: t.id,
        )

    def prepared(self, template_id: str, tenant: str) -> PreparedAction:
        """The template ready to run for a tenant (its package in the cluster; cached for a few seconds)."""
        cached = self._prepared.get((template_id, tenant))
        if cached is None:
            plugin, spec = self.find(template_id)
            env = {**spec.session.env_vars, BOUND_TENANT_ENV: tenant}
            cached = self._prepared[(template_id, tenant)] = prepare(plugin, spec.name, "session", env_vars=env)
        return cached


# ---------------------------------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class _HostCall:
    """A call into the session host ``host`` (made first from ``prepared`` if it does not exist)."""

    host: str
    method: str
    args: tuple[Any, ...]
    prepared: PreparedAction | None = None
    tenant: str = ""


def _host_handle(call: _HostCall, namespace: str) -> Any:
    """The host actor, created (detached, in the template's runtime_env) when it does not exist yet; a new host no
    node could ever hold is refused at once (``InsufficientResourcesError``)."""
    import ray

    try:
        return ray.get_actor(call.host, namespace=namespace)
    except ValueError:
        if call.prepared is None:
            raise HostLostError(f"session host {call.host} is gone") from None
    spec = call.prepared.spec
    check_feasible(_ask(call))
    return (
        ray.remote(SessionHost)
        .options(
            name=call.host,
            namespace=namespace,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=0,
            max_concurrency=10_000,
            runtime_env=call.prepared.runtime_env,
            **spec.resources.ray_options(),
        )
        .remote(
            call.host,
            call.tenant,
            call.prepared.plugin.name,
            spec.name,
            spec.entrypoint,
            spec.session.model_dump(),
            spec.session.isolation == "dedicated",
        )
    )


def _ask(call: _HostCall) -> Ask:
    """What placing the host of ``call`` asks of Ray."""
    assert call.prepared is not None
    return Ask.of(f"session host {call.host}", call.prepared.spec.resources.ray_options())


def _host_error(exc: BaseException) -> BaseException:
    """What a failed host call means to the caller: its own typed error, a lost host, or a deadline passed."""
    translated = from_ray(
        exc,
        "the session's host",
        failed=lambda cause: SessionCreationError(f"the session host failed: {type(cause).__name__}: {cause}"),
        lost=lambda lost: HostLostError(
            f"the session's host is gone ({type(lost).__name__}); its sessions are being settled"
        ),
        hint="; check `ray status` and the host actor's logs",
    )
    if translated is exc and not isinstance(exc, RayRuntimeError):
        return SessionCreationError(f"could not reach the session host: {type(exc).__name__}: {exc}")
    return translated


# ---------------------------------------------------------------------------------------------------- flows


class _SessionFlows:
    """Every operation, written once as a flow; the twins differ only in how a step waits."""

    def __init__(self, registry: SessionRegistryHandle | AsyncSessionRegistryHandle, templates: TemplateSource) -> None:
        self.registry = registry
        self.templates = templates
        self.tenant = registry.tenant
        self.turn_timeout_s = Settings().turn_timeout_s  # the deadline of a call into a host, either twin
        self._routes: TTLCache[str, SessionInfo] = TTLCache(maxsize=100_000, ttl=_ROUTE_TTL_S)
        self._handles: TTLCache[str, Any] = TTLCache(maxsize=10_000, ttl=300.0)

    def _handle(self, call: _HostCall) -> Any:
        """The host's actor handle (remembered by name; made when the call brings the template)."""
        handle = None if call.prepared is not None else self._handles.get(call.host)
        if handle is None:
            handle = self._handles[call.host] = _host_handle(call, self.registry.namespace)
        return handle

    def _placement(self, call: _HostCall, handle: Any) -> tuple[Any, Ask, float, Any]:
        """What waiting for a (maybe new) host to be placed takes: its ready call, the ask, the deadline, and how
        to withdraw it."""
        assert call.prepared is not None
        timeout = call.prepared.spec.session.placement_timeout_s
        return handle.__ray_ready__.remote(), _ask(call), timeout, kill_actor(handle)

    def _create_flow(
        self,
        template: str,
        config: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
        idle_timeout_s: float | Unset | None,
        restore: list[str] | None = None,
        cause: str = "created",
        parent_id: str | None = None,
    ) -> Flow:
        prepared: PreparedAction = yield _Prepare(template)
        options = _options(prepared, idle_timeout_s)
        session_id = new_id("ses")
        config = dict(config or {})
        placed = yield self.registry._create(
            session_id, template, prepared.version, options, config, metadata, parent_id
        )
        open_args = (session_id, prepared.version, json.dumps(config), restore, 0, cause)
        try:
            opened = yield _HostCall(placed["host"], "open", open_args, prepared, self.tenant)
        except RayRuntimeError as exc:
            if exc.http_status < 500:  # the caller's input (a bad config): the session never was
                yield self.registry._abort(session_id)
                raise
            yield self.registry._failed(session_id, f"could not be created: {exc.message}")
            if isinstance(exc, InsufficientResourcesError):
                raise
            raise SessionCreationError(f"session {session_id} could not be created: {exc.message}") from None
        return (yield from self._opened(session_id, opened))

    def _opened(self, session_id: str, opened: dict[str, Any]) -> Flow:
        """The session a host just opened: its record as the host's ``opened`` call left it (read again only if
        the host held it already), remembered as its route."""
        session = opened["session"]
        if session is None:
            session = yield self.registry._get(session_id)
        self._routes[session_id] = session
        return session

    def _route_flow(self, session_id: str, *, resume: bool = True) -> Flow:
        """The session, active on its host (resumed if it rests inactive and ``resume``)."""
        deadline = time.monotonic() + _SETTLE_S
        while True:
            session = self._routes.get(session_id)
            if session is None:
                session = yield self.registry._get(session_id)
            status = session.status.value
            if status == "active" and session.host:
                self._routes[session_id] = session
                return session
            self._routes.pop(session_id, None)
            if status == "paused":
                raise SessionPausedError(session_id)
            if status in ("closed", "error"):
                raise SessionClosedError(session_id, status, session.error)
            if status == "inactive" and resume:
                return (yield from self._resume_flow(session_id, explicit=False))
            if time.monotonic() > deadline:
                raise TimeoutError(f"session {session_id} is still {status}; try again shortly", session_id=session_id)
            yield _Pause(0.05)  # another caller is bringing it back (creating)

    def _resume_flow(self, session_id: str, *, explicit: bool) -> Flow:
        session = yield self.registry._get(session_id)
        prepared: PreparedAction = yield _Prepare(session.template)
        begun = yield self.registry._resume(session_id, _options(prepared), explicit=explicit)
        if begun["was"] in ("active", "creating"):
            return (yield from self._route_flow(session_id, resume=False))
        args = (session_id, prepared.version, json.dumps(session.config), begun["restore"], begun["seq"] + 1, "resumed")
        try:
            opened = yield _HostCall(begun["host"], "open", args, prepared, self.tenant)
        except RayRuntimeError as exc:
            cause = f"resume failed: {exc.message}"
            yield self.registry._rest(session_id, begun["was"], None, begun["seq"], cause)  # back as it was
            raise
        return (yield from self._opened(session_id, opened))

    def _on_host_flow(self, session_id: str, method: str, *args: Any) -> Flow:
        """Call the session's host; a host that no longer holds it (moved, unloaded, died) is looked up again."""
        for attempt in range(_HOST_TRIES):
            session = yield from self._route_flow(session_id)
            try:
                return (yield _HostCall(session.host or "", method, (session_id, *args)))
            except _MOVED:
                yield self._lost_host(session_id, attempt)
        raise AssertionError("unreachable")

    def _lost_host(self, session_id: str, attempt: int) -> _Pause:
        """A host no longer holds the session: forget where it was, and re-raise after the last try; else the pause
        that lets the registry settle what the host lost before the next try."""
        self._routes.pop(session_id, None)
        if attempt == _HOST_TRIES - 1:
            raise
        return _Pause(0.2 * (attempt + 1))

    def _invoke_flow(self, session_id: str, request: Any) -> Flow:
        raw = yield from self._on_host_flow(session_id, "invoke", _request(request))
        return Invocation.model_validate(raw)

    def _import_flow(self, template: str, items: Iterable[Mapping[str, Any]], batch: int) -> Flow:
        prepared: PreparedAction = yield _Prepare(template)
        options = _options(prepared)
        ids: list[str] = []
        rows = [(new_id("ses"), dict(item.get("config") or {}), item.get("metadata")) for item in items]
        for start in range(0, len(rows), batch):
            ids += yield self.registry._import(template, prepared.version, options, rows[start : start + batch])
        return ids

    def _transcript_flow(self, session_id: str) -> Flow:
        """The transcript, with the turns its host has not reported yet."""
        session = yield self.registry._get(session_id)
        if session.status.value == "active" and session.host:
            with contextlib.suppress(UnavailableError):  # what a lost host had is lost; the registry has the rest
                yield _HostCall(session.host, "flush", ())
        return (yield self.registry._transcript(session_id))

    def _pause_flow(self, session_id: str) -> Flow:
        session = yield self.registry._get(session_id)
        status = session.status.value
        if status == "paused":
            return session
        if status == "inactive":  # checkpointed already: only its status changes
            return (yield self.registry._rest(session_id, "paused", None, 0, "paused"))
        session = yield from self._route_flow(session_id, resume=False)
        self._routes.pop(session_id, None)
        return (yield _HostCall(session.host or "", "pause", (session_id,)))

    def _fork_flow(self, session_id: str, metadata: Mapping[str, Any] | None) -> Flow:
        session = yield self.registry._get(session_id)
        status = session.status.value
        if status == "active" and session.host:
            checkpoint = yield _HostCall(session.host, "checkpoint", (session_id,))
            key = checkpoint["key"]
        elif status in ("paused", "inactive") and session.checkpoint_key:
            key = session.checkpoint_key
        else:
            raise SessionClosedError(session_id, status, session.error or "nothing to fork from")
        metadata = dict(metadata if metadata is not None else (session.metadata or {}))
        return (
            yield from self._create_flow(
                session.template,
                session.config,
                metadata,
                session.idle_timeout_s,
                restore=[session_id, key],
                cause=f"forked from {session_id}",
                parent_id=session_id,
            )
        )

    def _close_flow(self, session_id: str) -> Flow:
        session = yield self.registry._get(session_id)
        self._routes.pop(session_id, None)
        if session.status.value == "closed":
            return session
        if session.host and session.status.value in ("active", "creating"):
            try:
                return (yield _HostCall(session.host, "close", (session_id, "closed")))
            except (HostLostError, SessionNotFoundError):
                pass  # not there any more: close it in the registry alone
        return (yield self.registry._close(session_id, "closed"))

    def _cancel_flow(self, session_id: str, turn_id: str | None) -> Flow:
        return (yield from self._on_host_flow(session_id, "cancel", turn_id))


@dataclass(frozen=True)
class _Pause:
    seconds: float


@dataclass(frozen=True)
class _Prepare:
    """A template ready to run for the tenant (packing may touch disk and the cluster: the async twin does it in a
    thread)."""

    template: str


def _options(prepared: PreparedAction, idle_timeout_s: float | Unset | None = UNSET) -> dict[str, Any]:
    """The template's session options, as the registry takes them (with what its host asks of Ray, which a session
    waiting for its host says)."""
    options = {
        **prepared.spec.session.model_dump(),
        "package": prepared.package.sha256[:12],
        "asks": describe(Ask.of("", prepared.spec.resources.ray_options()).resources),
    }
    if not isinstance(idle_timeout_s, Unset):
        options["idle_timeout_s"] = idle_timeout_s
    return options


def _request(request: Any) -> dict[str, Any]:
    """A turn's input as the host takes it (``TurnRequest.of``: text, a turn request, or JSON data), checked for
    size and depth here (``PayloadTooLargeError``, ``InvalidArgumentError``) before anything is sent."""
    body = TurnRequest.of(request).body()
    try:
        text = json.dumps(body, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidArgumentError("request", f"is not JSON ({type(exc).__name__}: {exc})") from None
    check_json("request", text, max_bytes=MAX_TURN_BYTES)
    return body


# ---------------------------------------------------------------------------------------------------- twins


class Sessions(_SessionFlows):
    """Agent sessions of one tenant (blocking): ``coord.sessions``.

    Example:
        >>> session = coord.sessions.create("chat.assistant", config={"temperature": 0.2})
        >>> coord.sessions.invoke(session.id, "What is 6 * 7?").result
        >>> for message in coord.sessions.invoke_stream(session.id, "And 7 * 8?"):
        ...     print(message)
        >>> coord.sessions.pause(session.id); coord.sessions.resume(session.id); coord.sessions.close(session.id)
    """

    registry: SessionRegistryHandle

    def _drive(self, flow: Flow) -> Any:
        import ray

        answer: Any = None
        failure: BaseException | None = None
        while True:
            try:
                step = flow.throw(failure) if failure is not None else flow.send(answer)
            except StopIteration as done:
                return done.value
            answer, failure = None, None
            try:
                if isinstance(step, Call):
                    answer = self.registry._run(step)
                elif isinstance(step, _Pause):
                    time.sleep(step.seconds)
                elif isinstance(step, _Prepare):
                    answer = self.templates.prepared(step.template, self.tenant)
                else:
                    handle = self._handle(step)
                    if step.prepared is not None:  # a host it may have made: placed within the template's deadline
                        wait_placed(*self._placement(step, handle))
                    ref = getattr(handle, step.method).remote(*step.args)
                    answer = ray.get(ref, timeout=self.turn_timeout_s)
            except Exception as exc:
                if isinstance(step, _HostCall):
                    self._handles.pop(step.host, None)
                failure = _host_error(exc) if not isinstance(step, Call) else exc

    def create(
        self,
        template: str,
        *,
        config: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        idle_timeout_s: float | Unset | None = UNSET,
    ) -> SessionInfo:
        """A new session of ``template`` (``<plugin>.<action>``), active when this returns.

        Args:
            config: Validated by the template's config model (a bad field: ``ValidationError``, nothing created).
            metadata: Free JSON kept with the session (listings filter on it).
            idle_timeout_s: Override the template's (None: never idles out).

        Raises:
            TemplateNotFoundError, ValidationError, RateLimitError (the tenant's max_sessions),
            SessionCreationError (the agent's ``__init__`` raised, or its host did not start).
        """
        return self._drive(self._create_flow(template, config, metadata, idle_timeout_s))

    def invoke(self, session_id: str, request: Any) -> Invocation:
        """Run one turn and return its result; ``request`` is text, a ``TurnRequest``, or JSON data.

        Raises:
            InvocationError: The agent raised (``details["agent_code"]``); the session stays usable.
            SessionBusyError: A turn runs and the template says ``busy: reject``.
            SessionPausedError, SessionClosedError, SessionNotFoundError.
        """
        return self._drive(self._invoke_flow(session_id, request))

    def invoke_stream(self, session_id: str, request: Any) -> Iterator[Any]:
        """Run one turn and yield its messages as they come: ``Event``s, then its ``End`` (raises the agent's
        error as ``InvocationError`` instead of an end)."""
        import ray

        session = self._drive(self._route_flow(session_id))
        handle = self._handle(_HostCall(session.host or "", "invoke_stream", ()))
        stream = handle.invoke_stream.options(num_returns="streaming").remote(session_id, _request(request))
        try:
            for ref in stream:
                yield read_message(ray.get(ref))
        except Exception as exc:
            self._routes.pop(session_id, None)
            raise _host_error(exc) from None

    def pause(self, session_id: str) -> SessionInfo:
        """Checkpoint the session and free its host (or slot): PAUSED until :meth:`resume`.

        Raises:
            SnapshotTooLargeError: Its snapshot is over the template's cap; it stays active.
        """
        return self._drive(self._pause_flow(session_id))

    def resume(self, session_id: str) -> SessionInfo:
        """Bring a paused (or inactive) session back, on whichever host has room; its memory is intact.

        Raises:
            RestoreRefusedError: The template's ``restore`` refused the snapshot; the session stays paused.
        """
        return self._drive(self._resume_flow(session_id, explicit=True))

    def fork(self, session_id: str, *, metadata: Mapping[str, Any] | None = None) -> SessionInfo:
        """A new session from this one's state now (active) or its checkpoint (paused, inactive)."""
        return self._drive(self._fork_flow(session_id, metadata))

    def refresh(self, session_id: str) -> SessionInfo:
        """Reset the session's idle timer."""
        return self.registry.refresh(session_id)

    def cancel(self, session_id: str, turn_id: str | None = None) -> bool:
        """Ask the running turn to stop (at its next chunk); whether one was running."""
        return self._drive(self._cancel_flow(session_id, turn_id))

    def close(self, session_id: str) -> SessionInfo:
        """End the session for good (its snapshots are deleted after the retention period)."""
        return self._drive(self._close_flow(session_id))

    def get(self, session_id: str) -> SessionInfo:
        """The session's record: status, counters (at most a second stale), transitions."""
        return self.registry.get(session_id)

    def list(self, **filters: Any) -> SessionPage:
        """The tenant's sessions, newest first: ``status``, ``template``, ``metadata`` (a subset), ``limit``,
        ``cursor``."""
        return self.registry.list(**filters)

    def transcript(self, session_id: str) -> list[TurnRecord]:
        """The session's turns, oldest first (the newest 500)."""
        return self._drive(self._transcript_flow(session_id))

    def import_paused(
        self, template: str, items: Iterable[Mapping[str, Any]], *, batch: int = 5_000
    ) -> builtins.list[str]:
        """Record many sessions of ``template`` as PAUSED, ``batch`` per durable change (a migration from another
        system, a seed): each item a dict with ``config`` and ``metadata``. A session starts fresh from its
        config when resumed (a bad config is refused then, and it stays paused). Their ids, in order."""
        return self._drive(self._import_flow(template, items, batch))

    def list_templates(self, *, tags: list[str] | None = None, name: str | None = None) -> list[Template]:
        return self.templates.list(tags=tags, name=name)

    def get_template(self, template_id: str) -> Template:
        plugin, spec = self.templates.find(template_id)
        return template_of(plugin, spec)

    def invoke_agent(self, template: str, request: Any, *, config: Mapping[str, Any] | None = None) -> Invocation:
        """Create a session, run one turn, close it."""
        session = self.create(template, config=config)
        try:
            return self.invoke(session.id, request)
        finally:
            self.close(session.id)


class AsyncSessions(_SessionFlows):
    """Agent sessions of one tenant (awaitable): ``coord.aio.sessions``; the same methods as :class:`Sessions`."""

    registry: AsyncSessionRegistryHandle

    async def _drive(self, flow: Flow) -> Any:
        answer: Any = None
        failure: BaseException | None = None
        while True:
            try:
                step = flow.throw(failure) if failure is not None else flow.send(answer)
            except StopIteration as done:
                return done.value
            answer, failure = None, None
            try:
                if isinstance(step, Call):
                    answer = await self.registry._run(step)
                elif isinstance(step, _Pause):
                    await asyncio.sleep(step.seconds)
                elif isinstance(step, _Prepare):
                    answer = await asyncio.to_thread(self.templates.prepared, step.template, self.tenant)
                else:
                    handle = await asyncio.to_thread(self._handle, step) if step.prepared else self._handle(step)
                    if step.prepared is not None:  # a host it may have made: placed within the template's deadline
                        await await_placed(*self._placement(step, handle))
                    ref = getattr(handle, step.method).remote(*step.args)
                    answer = await asyncio.wait_for(asyncio.wrap_future(ref.future()), self.turn_timeout_s)
            except Exception as exc:
                if isinstance(step, _HostCall):
                    self._handles.pop(step.host, None)
                failure = _host_error(exc) if not isinstance(step, Call) else exc

    async def create(
        self,
        template: str,
        *,
        config: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        idle_timeout_s: float | Unset | None = UNSET,
    ) -> SessionInfo:
        return await self._drive(self._create_flow(template, config, metadata, idle_timeout_s))

    async def invoke(self, session_id: str, request: Any) -> Invocation:
        return await self._drive(self._invoke_flow(session_id, request))

    async def invoke_stream(self, session_id: str, request: Any) -> AsyncIterator[Any]:
        async for raw in self.stream_messages(session_id, request):
            yield read_message(raw)

    async def stream_messages(self, session_id: str, request: Any) -> AsyncIterator[dict[str, Any]]:
        """A turn's messages as the host sends them (an agent's failure is its last, ``error``, message)."""
        body = _request(request)
        session = await self._drive(self._route_flow(session_id))
        handle = self._handle(_HostCall(session.host or "", "invoke_stream", ()))
        stream = handle.invoke_stream.options(num_returns="streaming").remote(session_id, body)
        try:
            async for ref in stream:
                yield await ref
        except Exception as exc:
            self._routes.pop(session_id, None)
            raise _host_error(exc) from None

    async def subscribe(self, session_id: str, after_seq: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """The session's messages from now on (with ``after_seq``, first those after it that its host still
        holds), until it leaves its host (the agent protocol's WebSocket is built on this)."""
        session = await self._drive(self._route_flow(session_id))
        handle = self._handle(_HostCall(session.host or "", "subscribe", ()))
        stream = handle.subscribe.options(num_returns="streaming").remote(session_id, after_seq)
        try:
            async for ref in stream:
                yield await ref
        except Exception as exc:
            self._routes.pop(session_id, None)
            raise _host_error(exc) from None

    async def route(self, session_id: str) -> SessionInfo:
        """The session, active on its host (an inactive one is brought back), remembered for the calls that follow.

        Raises:
            SessionPausedError, SessionClosedError, SessionNotFoundError.
        """
        return await self._drive(self._route_flow(session_id))

    async def follow(self, session_id: str, after_seq: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """:meth:`subscribe`, following the session when its host goes away (it moved, was unloaded, or died and
        recovered): it is looked up again and followed on its next host from the last message seen (the status a
        fresh follower got, else the newest turn message), as every host call does; then its error is raised."""
        for attempt in range(_HOST_TRIES):
            try:
                async for body in self.subscribe(session_id, after_seq):
                    if (after_seq is None and body["type"] == "status") or (
                        body["type"] in REPLAYED_TYPES and body.get("seq", 0) > (after_seq or 0)
                    ):
                        after_seq = body["seq"]
                    yield body
                return
            except _MOVED:
                await asyncio.sleep(self._lost_host(session_id, attempt).seconds)

    async def start_turn(self, session_id: str, request: Any) -> str:
        """Start a turn and return its id; its messages reach the session's subscribers."""
        return await self._drive(self._on_host_flow(session_id, "start_turn", _request(request)))

    async def pause(self, session_id: str) -> SessionInfo:
        return await self._drive(self._pause_flow(session_id))

    async def resume(self, session_id: str) -> SessionInfo:
        return await self._drive(self._resume_flow(session_id, explicit=True))

    async def fork(self, session_id: str, *, metadata: Mapping[str, Any] | None = None) -> SessionInfo:
        return await self._drive(self._fork_flow(session_id, metadata))

    async def refresh(self, session_id: str) -> SessionInfo:
        return await self.registry.refresh(session_id)

    async def cancel(self, session_id: str, turn_id: str | None = None) -> bool:
        return await self._drive(self._cancel_flow(session_id, turn_id))

    async def close(self, session_id: str) -> SessionInfo:
        return await self._drive(self._close_flow(session_id))

    async def get(self, session_id: str) -> SessionInfo:
        return await self.registry.get(session_id)

    async def list(self, **filters: Any) -> SessionPage:
        return await self.registry.list(**filters)

    async def transcript(self, session_id: str) -> list[TurnRecord]:
        return await self._drive(self._transcript_flow(session_id))

    async def import_paused(
        self, template: str, items: Iterable[Mapping[str, Any]], *, batch: int = 5_000
    ) -> builtins.list[str]:
        return await self._drive(self._import_flow(template, items, batch))

    async def list_templates(self, *, tags: list[str] | None = None, name: str | None = None) -> list[Template]:
        return await asyncio.to_thread(self.templates.list, tags=tags, name=name)

    async def get_template(self, template_id: str) -> Template:
        plugin, spec = await asyncio.to_thread(self.templates.find, template_id)
        return template_of(plugin, spec)

    async def invoke_agent(self, template: str, request: Any, *, config: Mapping[str, Any] | None = None) -> Invocation:
        session = await self.create(template, config=config)
        try:
            return await self.invoke(session.id, request)
        finally:
            await self.close(session.id)


def sessions_of(coord: Coordinator | AsyncCoordinator) -> Sessions | AsyncSessions:
    """``coord.sessions``: the agent sessions of the handle's tenant, blocking or awaitable as the handle is, with
    templates from ``RAY_RUNTIME_PLUGINS_DIR`` (default ``./plugins``)."""
    templates = TemplateSource(Settings().plugins_dir)
    if isinstance(coord, AsyncCoordinator):
        return AsyncSessions(coord.session_registry, templates)
    return Sessions(coord.session_registry, templates)
