"""One error hierarchy for ray_runtime, shared by the coordinator, the API façade and the clients.

The tree is split first by who must act, which is also the retry rule::

    RayRuntimeError                              code                   HTTP
    ├── CallerError          the caller must change something; never retried
    │   ├── BadRequestError                      bad_request            400
    │   │   ├── InvalidArgumentError             invalid_argument       400  names the field
    │   │   ├── ManifestError                    invalid_manifest       400  names file, field, problem
    │   │   ├── PackageError                     invalid_package        400  escaping paths, symlinks
    │   │   └── ValidationError                  validation_error       422  names every bad field
    │   ├── AuthenticationError                  unauthenticated        401
    │   ├── PermissionDeniedError                permission_denied      403
    │   ├── NotFoundError                        not_found              404
    │   │   ├── PluginNotFoundError              plugin_not_found            (or action)
    │   │   ├── RunNotFoundError                 run_not_found
    │   │   ├── TaskNotFoundError                task_not_found
    │   │   ├── AttemptNotFoundError             attempt_not_found
    │   │   ├── ResourcesNotFoundError           resources_not_found
    │   │   ├── TemplateNotFoundError            template_not_found
    │   │   └── SessionNotFoundError             session_not_found
    │   ├── ConflictError                        conflict               409
    │   │   ├── StaleAttemptError                stale_attempt               fencing: not the live attempt
    │   │   ├── TaskFinishedError                task_finished               terminal states are final
    │   │   ├── SessionBusyError                 session_busy                a turn runs (busy: reject)
    │   │   ├── SessionPausedError               session_paused              resume it first
    │   │   ├── SessionClosedError               session_closed              closed, or in error
    │   │   └── RestoreRefusedError              restore_refused             the template refused a snapshot
    │   ├── PayloadTooLargeError                 payload_too_large      413
    │   │   ├── PackageTooLargeError             package_too_large      413
    │   │   └── SnapshotTooLargeError            snapshot_too_large     413
    │   └── RateLimitError                       rate_limited           429
    │       └── StreamLimitError                 stream_limit           429
    └── ServerError          transient or server-side; a retry may help
        ├── ActionFailedError                    action_failed          500  a plugin action raised
        ├── InvocationError                      invocation_failed      500  an agent's turn raised (its code kept)
        ├── SessionCreationError                 session_creation_failed 500 the agent could not be built
        ├── SnapshotFailedError                  snapshot_failed        500  the agent's snapshot() raised
        ├── TimeoutError                         timeout                408  also a builtins.TimeoutError
        ├── InternalError                        internal               500
        └── UnavailableError                     unavailable            503
            ├── CoordinatorUnavailableError      coordinator_unavailable
            └── InsufficientResourcesError       insufficient_resources      Ray could not place what was asked

Every error carries a stable ``code``, an ``http_status``, a human ``message`` and structured ``details``.
On the wire it is ``{"error": {"code", "message", "details"}}``; :func:`from_wire` maps it back to the
same class, so typed errors survive HTTP and Ray alike.
"""

from __future__ import annotations

import builtins
import traceback
from typing import Any, ClassVar

__all__ = [
    "ActionFailedError",
    "AttemptNotFoundError",
    "AuthenticationError",
    "BadRequestError",
    "CallerError",
    "ConflictError",
    "CoordinatorUnavailableError",
    "InsufficientResourcesError",
    "InternalError",
    "InvalidArgumentError",
    "InvocationError",
    "ManifestError",
    "NotFoundError",
    "PackageError",
    "PackageTooLargeError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PluginNotFoundError",
    "RateLimitError",
    "RayRuntimeError",
    "ResourcesNotFoundError",
    "RestoreRefusedError",
    "RunNotFoundError",
    "ServerError",
    "SessionBusyError",
    "SessionClosedError",
    "SessionCreationError",
    "SessionNotFoundError",
    "SessionPausedError",
    "SnapshotFailedError",
    "SnapshotTooLargeError",
    "StaleAttemptError",
    "StreamLimitError",
    "TaskFinishedError",
    "TaskNotFoundError",
    "TemplateNotFoundError",
    "TimeoutError",
    "UnavailableError",
    "ValidationError",
    "from_wire",
]

_BY_CODE: dict[str, type[RayRuntimeError]] = {}


def _rebuild(cls: type[RayRuntimeError], message: str, details: dict[str, Any]) -> RayRuntimeError:
    """Unpickle an error without calling its structured ``__init__``."""
    error = cls.__new__(cls)
    RayRuntimeError.__init__(error, message, **details)
    return error


class RayRuntimeError(Exception):
    """Root of every error ray_runtime raises on purpose."""

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.status_code = self.http_status  # the HTTP status it came with (or will go out with)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:
            _BY_CODE[cls.code] = cls

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.details))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def to_wire(self) -> dict[str, Any]:
        """The JSON error body: ``{"error": {"code", "message", "details"}}``; tracebacks never go on the wire."""
        details = {key: value for key, value in self.details.items() if key != "traceback"}
        return {"error": {"code": self.code, "message": self.message, "details": details}}


class CallerError(RayRuntimeError):
    """The request cannot succeed as sent; retrying it unchanged will fail again."""

    code = "caller_error"
    http_status = 400


class BadRequestError(CallerError):
    """The request is malformed."""

    code = "bad_request"
    http_status = 400


class BadMessageError(BadRequestError):
    """A WebSocket frame of the agent protocol could not be used (not JSON, an unknown type, a wrong field)."""

    code = "bad_message"


class FrameTooLargeError(BadRequestError):
    """A WebSocket frame is over the agent protocol's cap."""

    code = "frame_too_large"
    http_status = 413


class InvalidArgumentError(BadRequestError):
    """One argument is out of range or of the wrong form."""

    code = "invalid_argument"

    def __init__(self, field: str, problem: str, **details: Any) -> None:
        super().__init__(f"{field}: {problem}", field=field, **details)


class ManifestError(BadRequestError):
    """A plugin.yaml is missing or invalid; ``details["errors"]`` lists each field and problem."""

    code = "invalid_manifest"

    def __init__(self, path: str, errors: list[dict[str, str]]) -> None:
        listing = "; ".join(f"{e['field']}: {e['problem']}" if e.get("field") else e["problem"] for e in errors)
        super().__init__(f"{path}: {listing}", path=path, errors=errors)


class PackageError(BadRequestError):
    """A plugin folder cannot be packaged as it is (a path or symlink escapes it, or it is empty)."""

    code = "invalid_package"


class ValidationError(BadRequestError):
    """A body or parameter set failed schema validation; ``details["errors"]`` lists every bad field."""

    code = "validation_error"
    http_status = 422

    @classmethod
    def from_pydantic(cls, what: str, exc: Any, *, tags: frozenset[str] = frozenset()) -> ValidationError:
        """Name every bad field of a pydantic ``ValidationError`` (``exc``) found while checking ``what``.

        ``tags`` are the tags of a discriminated union, which pydantic puts in the path after the position
        (``llm.llm.endpoint``): they are left out (``llm.endpoint``).
        """
        errors = [
            {
                "field": ".".join(str(p) for i, p in enumerate(e["loc"]) if not (i and p in tags)) or what,
                "problem": e["msg"],
            }
            for e in exc.errors(include_url=False, include_input=False)
        ]
        listing = "; ".join(f"{e['field']}: {e['problem']}" for e in errors)
        return cls(f"{what} are not valid: {listing}", errors=errors)


class AuthenticationError(CallerError):
    """No credentials, or credentials that do not match any key."""

    code = "unauthenticated"
    http_status = 401


class PermissionDeniedError(CallerError):
    """The credentials are valid but lack the scope for this call."""

    code = "permission_denied"
    http_status = 403


class NotFoundError(CallerError):
    """The thing named does not exist (or belongs to another tenant)."""

    code = "not_found"
    http_status = 404


class PluginNotFoundError(NotFoundError):
    """No plugin (or no action in it) with this name."""

    code = "plugin_not_found"


class RunNotFoundError(NotFoundError):
    """No plugin run recorded under this id."""

    code = "run_not_found"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r} is recorded", run_id=run_id)


class TaskNotFoundError(NotFoundError):
    """No task with this id."""

    code = "task_not_found"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id!r} does not exist", task_id=task_id)


class AttemptNotFoundError(NotFoundError):
    """No attempt with this id: it is malformed or its task is gone."""

    code = "attempt_not_found"

    def __init__(self, attempt_id: str) -> None:
        super().__init__(f"attempt {attempt_id!r} does not exist", attempt_id=attempt_id)


class ResourcesNotFoundError(NotFoundError):
    """No resources version with this id (or none published yet)."""

    code = "resources_not_found"

    def __init__(self, resources_id: str | None) -> None:
        what = f"resources version {resources_id!r} does not exist" if resources_id else "no resources yet"
        super().__init__(what, resources_id=resources_id)


class TemplateNotFoundError(NotFoundError):
    """No session template with this id (``<plugin>.<action>`` of mode ``session``)."""

    code = "template_not_found"


class SessionNotFoundError(NotFoundError):
    """No session with this id (or another tenant's)."""

    code = "session_not_found"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} does not exist", session_id=session_id)


class ConflictError(CallerError):
    """The call conflicts with the current state of the thing it names."""

    code = "conflict"
    http_status = 409


class StaleAttemptError(ConflictError):
    """The attempt is not the task's live attempt any more (its lease expired, or the task was cancelled)."""

    code = "stale_attempt"

    def __init__(self, attempt_id: str, task_id: str, status: str, live_attempt_id: str | None) -> None:
        super().__init__(
            f"attempt {attempt_id!r} is not the live attempt of task {task_id!r} "
            f"(task is {status}, live attempt {live_attempt_id!r}); drop this result",
            attempt_id=attempt_id,
            task_id=task_id,
            status=status,
            live_attempt_id=live_attempt_id,
        )


class TaskFinishedError(ConflictError):
    """The task is in a terminal state, and terminal states are final."""

    code = "task_finished"

    def __init__(self, task_id: str, status: str, action: str) -> None:
        super().__init__(
            f"cannot {action} task {task_id!r}: it already ended as {status}",
            task_id=task_id,
            status=status,
            action=action,
        )


class SessionBusyError(ConflictError):
    """A turn is running and the template's ``busy`` policy is ``reject``: send again when it ends."""

    code = "session_busy"

    def __init__(self, session_id: str, turn_id: str | None = None) -> None:
        super().__init__(
            f"session {session_id!r} is running a turn ({turn_id}); send again when it ends, or cancel it",
            session_id=session_id,
            turn_id=turn_id,
        )


class SessionPausedError(ConflictError):
    """The session is paused: only an explicit resume brings it back."""

    code = "session_paused"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} is paused; resume it first", session_id=session_id)


class SessionClosedError(ConflictError):
    """The session is closed (or in error) and takes no more turns."""

    code = "session_closed"

    def __init__(self, session_id: str, status: str = "closed", reason: str | None = None) -> None:
        why = f": {reason}" if reason else ""
        super().__init__(
            f"session {session_id!r} is {status}{why}; create a new one (or fork it while it could be)",
            session_id=session_id,
            status=status,
        )


class RestoreRefusedError(ConflictError):
    """The template's ``restore`` refused a snapshot (e.g. one taken by an older plugin version)."""

    code = "restore_refused"


class PayloadTooLargeError(CallerError):
    """A payload is over the configured size cap."""

    code = "payload_too_large"
    http_status = 413

    def __init__(self, field: str, size: int, limit: int) -> None:
        super().__init__(
            f"{field} is {size} bytes as JSON, over the {limit}-byte cap "
            "(store large data elsewhere and pass a reference)",
            field=field,
            size=size,
            limit=limit,
        )


class PackageTooLargeError(PayloadTooLargeError):
    """A plugin package is over Ray's working_dir limit."""

    code = "package_too_large"

    def __init__(self, plugin: str, size: int, limit: int) -> None:
        CallerError.__init__(
            self,
            f"plugin {plugin!r} packs to {size / 2**20:.1f} MiB, over the {limit / 2**20:.0f} MiB limit of a "
            "Ray working_dir; list large files in .gitignore or plugin.yaml runtime_env.excludes, "
            "or fetch them at run time",
            plugin=plugin,
            size=size,
            limit=limit,
        )


class SnapshotTooLargeError(PayloadTooLargeError):
    """A session's snapshot is over its template's ``max_snapshot_bytes``."""

    code = "snapshot_too_large"

    def __init__(self, session_id: str, size: int, limit: int) -> None:
        CallerError.__init__(
            self,
            f"the snapshot of session {session_id!r} is {size} bytes, over its template's {limit}-byte cap; "
            "keep less state in the agent (or raise max_snapshot_bytes in plugin.yaml); the session stays active",
            session_id=session_id,
            size=size,
            limit=limit,
        )


class RateLimitError(CallerError):
    """Too many requests; slow down."""

    code = "rate_limited"
    http_status = 429


class StreamLimitError(RateLimitError):
    """A stream hit one of its limits (messages, lines, bytes or message size)."""

    code = "stream_limit"


class ServerError(RayRuntimeError):
    """Something failed on the server side; a retry may succeed."""

    code = "server_error"
    http_status = 500
    retryable = True


class ActionFailedError(ServerError):
    """A plugin action raised; ``details`` keep the exception type and traceback (never sent over HTTP)."""

    code = "action_failed"
    http_status = 500

    @classmethod
    def from_exception(cls, exc: BaseException, plugin: str, action: str) -> ActionFailedError:
        """Wrap an action's own exception, keeping its type and traceback as data."""
        return cls(
            f"{plugin}/{action} raised {type(exc).__name__}: {exc}",
            plugin=plugin,
            action=action,
            type=type(exc).__name__,
            traceback="".join(traceback.format_exception(exc)),
        )


class InvocationError(ServerError):
    """An agent's turn raised; ``details["agent_code"]`` is the agent's own error code (or its exception's type).
    The session stays usable."""

    code = "invocation_failed"
    http_status = 500
    retryable = False

    @classmethod
    def from_exception(cls, exc: BaseException, session_id: str, turn_id: str) -> InvocationError:
        agent_code = getattr(exc, "code", None)
        return cls(
            f"the agent's turn {turn_id} raised {type(exc).__name__}: {exc}",
            session_id=session_id,
            turn_id=turn_id,
            agent_code=agent_code if isinstance(agent_code, str) else type(exc).__name__,
            type=type(exc).__name__,
            traceback="".join(traceback.format_exception(exc)),
        )


class SessionCreationError(ServerError):
    """The session's agent could not be built (its ``__init__`` or ``restore`` raised, or its host did not start)."""

    code = "session_creation_failed"
    http_status = 500
    retryable = False


class SnapshotFailedError(ServerError):
    """The agent's ``snapshot()`` raised: a pause (or checkpoint) is refused and the session stays active."""

    code = "snapshot_failed"
    http_status = 500
    retryable = False


class TimeoutError(ServerError, builtins.TimeoutError):  # deliberately also the builtin
    """An upstream call (Ray, the dashboard, the coordinator) did not answer in time."""

    code = "timeout"
    http_status = 408


class InternalError(ServerError):
    """A bug or an unexpected failure; the message never carries a traceback."""

    code = "internal"
    http_status = 500


class UnavailableError(ServerError):
    """A dependency (Ray, the dashboard, the coordinator) cannot be reached."""

    code = "unavailable"
    http_status = 503


class HostLostError(UnavailableError):
    """An agent session's host died while (or before) it was called; its sessions are settled shortly (recovered
    from their last checkpoint, or marked failed, as their template says)."""

    code = "session_host_lost"


class CoordinatorUnavailableError(UnavailableError):
    """The coordinator actor cannot be reached or did not come back in time."""

    code = "coordinator_unavailable"


class InsufficientResourcesError(UnavailableError):
    """Ray could not place what ray_runtime asked for (a session host, a worker, a task, a replica) within its
    deadline, or no node could ever hold it. ``details``: what (``asked``), the cluster's ``free`` and ``total``
    resources, and how long it waited (``waited_s``). The request was withdrawn: no demand stays behind."""

    code = "insufficient_resources"


_STATUS_FALLBACK: dict[int, type[RayRuntimeError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: TimeoutError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitError,
    503: UnavailableError,
}


def from_wire(body: Any, http_status: int) -> RayRuntimeError:
    """Rebuild the typed error from a JSON error body, falling back on the HTTP status."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {"message": str(body)[:500] or f"HTTP {http_status}"}
    cls = _BY_CODE.get(str(error.get("code")))
    if cls is None:
        cls = _STATUS_FALLBACK.get(http_status, ServerError if http_status >= 500 else CallerError)
    details = error.get("details") if isinstance(error.get("details"), dict) else {}
    rebuilt = _rebuild(cls, str(error.get("message", "")), details)
    rebuilt.status_code = http_status
    return rebuilt
