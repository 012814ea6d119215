"""The call layer between drivers and the coordinator actor: codecs, the call object, its blocking and awaitable
runners, and Ray's exceptions translated into :mod:`ray_runtime.errors`, once.

Every driver-side method of the coordinator (queues, resources, runs, the system store, the session registry) is
written once, as a builder that validates and encodes its arguments into a named message (``messages``) and says
how to decode the answer: a :class:`Call`. A :class:`Blocking` handle runs it with ``ray.get`` and a deadline, an
:class:`Awaitable` one with ``await``; nothing else differs between the twins.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import ray
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from ray_runtime.config import NAMESPACE
from ray_runtime.coordinator.messages import POLL_GROUP
from ray_runtime.coordinator.packing import pack, unpack
from ray_runtime.errors import (
    CoordinatorUnavailableError,
    InternalError,
    InvalidArgumentError,
    RayRuntimeError,
    TimeoutError,
    UnavailableError,
)
from ray_runtime.models import TaskError

__all__ = [
    "POLL_GROUP",
    "Awaitable",
    "Blocking",
    "Call",
    "Handle",
    "error_json",
    "from_json",
    "from_ray",
    "new_request_id",
    "ray_errors",
    "to_json",
]

R = TypeVar("R")


# ------------------------------------------------------------------------------------------- codecs


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_json_default)  # one, not one per call


def to_json(field_name: str, value: Any) -> str:
    """``value`` as compact JSON (pydantic models dumped), or ``InvalidArgumentError`` naming ``field_name``."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(field_name, f"is not JSON-serialisable ({exc})") from None


def from_json(text: str | None) -> Any:
    """JSON text back to a value (None stays None)."""
    return None if text is None else json.loads(text)


def error_json(error: BaseException | TaskError | Mapping[str, Any] | str) -> str:
    """An error as a ``TaskError``'s JSON: an exception (with its traceback), a message, or a TaskError (or its
    dict, checked)."""
    if isinstance(error, BaseException):
        tb = "".join(traceback.format_exception(error))
        error = TaskError(type=type(error).__name__, message=str(error), traceback=tb)
    elif isinstance(error, str):
        error = TaskError(type="Error", message=error)
    elif not isinstance(error, TaskError):
        try:
            error = TaskError.model_validate(error)
        except PydanticValidationError as exc:
            raise InvalidArgumentError("error", f"is not a TaskError: {exc.errors()[0]['msg']}") from None
    return error.model_dump_json()


def new_request_id() -> str:
    """A mutating call's own id: a call Ray retries after a coordinator restart is answered again, not redone."""
    return uuid.uuid4().hex


# ------------------------------------------------------------------------------------ Ray's failures


def from_ray(
    exc: BaseException,
    what: str,
    *,
    failed: Callable[[BaseException], RayRuntimeError] | None = None,
    lost: Callable[[BaseException], RayRuntimeError] | None = None,
    hint: str = "",
) -> BaseException:
    """What a failure Ray raised for ``what`` (a call, a task, an actor) means in ray_runtime's errors; the one
    translation every caller of Ray uses.

    The remote code's own ray_runtime error comes back as itself; another exception it raised is ``failed(cause)``
    (default: ``InternalError``); a deadline passed, a ``TimeoutError``; the actor or its node gone,
    ``lost(exc)`` (default: ``UnavailableError``). Anything else is returned as it is.
    """
    if isinstance(exc, ray.exceptions.RayTaskError):  # first: Ray's class for it also subclasses the cause's
        cause = exc.cause
        if isinstance(cause, RayRuntimeError):
            return cause
        if failed is not None:
            return failed(cause)
        return InternalError(f"{what} failed: {type(cause).__name__}: {cause}")
    if isinstance(exc, RayRuntimeError):
        return exc
    if isinstance(exc, ray.exceptions.GetTimeoutError | builtins.TimeoutError):
        return TimeoutError(f"{what} did not answer in time{hint}", method=what)
    if isinstance(exc, ray.exceptions.RayActorError | ray.exceptions.ActorUnavailableError):
        return (
            lost(exc) if lost is not None else UnavailableError(f"{what} is unavailable ({type(exc).__name__}){hint}")
        )
    return exc


@contextlib.contextmanager
def ray_errors(what: str, **options: Any) -> Iterator[None]:
    """Raise what Ray raises inside as :func:`from_ray` translates it (foreign types never reach a caller)."""
    try:
        yield
    except Exception as exc:
        translated = from_ray(exc, what, **options)
        if translated is exc:
            raise
        raise translated from exc


_HINT = (
    "; it restarts on its own unless it was killed with no_restart=True: retry, or run connect() again (and check "
    "`ray status` and the coordinator actor's logs)"
)


def _coordinator_error(exc: Exception, method: str | None) -> BaseException:
    """What a failed coordinator call raises (translated on the way out only: nothing is built per call)."""

    def lost(raised: BaseException) -> RayRuntimeError:
        return CoordinatorUnavailableError(
            f"the coordinator actor is unavailable ({type(raised).__name__}){_HINT}", method=method
        )

    translated = from_ray(exc, f"coordinator.{method}", lost=lost, hint=_HINT)
    return exc if translated is exc else translated


# ------------------------------------------------------------------------------------------ the calls


@dataclass(frozen=True, slots=True)
class Call(Generic[R]):
    """One call of the coordinator actor: its method, its message, how to decode the answer, and how long it may
    sleep. A call that may sleep (long poll, wait) goes to the actor's poll concurrency group."""

    method: str | None  # None: answered here (e.g. from a cache) without calling the actor
    message: Any
    parse: Callable[[Any], R]
    sleeps_s: float = 0.0

    def submit(self, actor: Any) -> Any:
        """Send the call; returns the ObjectRef of its packed answer. The message travels as its fields (a plain
        tuple pickles in a quarter of the time); the actor reads it back as its named tuple (``packing.read``)."""
        method = getattr(actor, self.method)  # type: ignore[arg-type]
        if self.sleeps_s > 0:
            method = method.options(concurrency_group=POLL_GROUP)
        return method.remote(pack(tuple(self.message)))


class Handle:
    """What every driver-side part of the coordinator holds: the actor, the tenant acted for, the per-call deadline.

    A ``bound`` handle belongs to code ray_runtime started for one tenant: it refuses to act for another tenant
    and has no system store. A guard against mistakes, not a boundary (see the README's trust model).
    """

    def __init__(
        self,
        actor: Any,
        *,
        tenant: str = "default",
        call_timeout_s: float = 60.0,
        bound: bool = False,
        namespace: str = NAMESPACE,
    ) -> None:
        self._actor = actor
        self.tenant = tenant
        self.call_timeout_s = call_timeout_s
        self.bound = bound
        self.namespace = namespace  # the coordinator's Ray namespace (its session hosts live there too)
        self._node_id: str | None = None

    def options(self) -> dict[str, Any]:
        """What another part on the same actor needs: ``type(part)(handle.actor, **handle.options())``."""
        return {
            "tenant": self.tenant,
            "call_timeout_s": self.call_timeout_s,
            "bound": self.bound,
            "namespace": self.namespace,
        }

    @property
    def actor(self) -> Any:
        """The Ray actor handle behind this coordinator."""
        return self._actor

    def _node(self) -> str | None:
        """The Ray node this driver runs on (claims record it, so a lost node's leases can be told)."""
        if self._node_id is None:
            with contextlib.suppress(Exception):
                self._node_id = ray.get_runtime_context().get_node_id()
        return self._node_id

    def _deadline(self, call: Call[Any]) -> float:
        return self.call_timeout_s + call.sleeps_s


class Blocking(Handle):
    """Runs calls with ``ray.get`` and the call's deadline."""

    def _run(self, call: Call[R]) -> R:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                f"{type(self).__name__}.{call.method}() blocks, and an event loop is running in this thread; "
                "use the awaitable twin instead (coord.aio / AsyncCoordinator)"
            )
        if call.method is None:
            return call.parse(None)
        try:
            raw = ray.get(call.submit(self._actor), timeout=self._deadline(call))
        except Exception as exc:
            translated = _coordinator_error(exc, call.method)
            if translated is exc:
                raise
            raise translated from exc
        return call.parse(unpack(raw))


class Awaitable(Handle):
    """Runs calls with ``await`` and the call's deadline."""

    async def _run(self, call: Call[R]) -> R:
        if call.method is None:
            return call.parse(None)
        try:
            raw = await asyncio.wait_for(asyncio.wrap_future(call.submit(self._actor).future()), self._deadline(call))
        except Exception as exc:
            translated = _coordinator_error(exc, call.method)
            if translated is exc:
                raise
            raise translated from exc
        return call.parse(unpack(raw))
