"""Authoring API: typed actions, their :class:`Context`, and the one calling convention every mode uses.

An action is an ordinary typed function (or a class whose instances are called)::

    class Greeting(BaseModel):
        name: str

    @action
    def greet(params: Greeting, ctx: Context) -> Reply: ...

    def count(n: int = 3) -> Iterator[int]: ...     # keyword parameters; a generator streams

The parameters model is the one pydantic model parameter, or else a model made from the keyword parameters;
the result model comes from the return annotation. A ``Context`` parameter (by type or named ``ctx``) receives
the context. Job, task, Serve and worker modes are thin adapters around :class:`LoadedAction`.
"""

from __future__ import annotations

import asyncio
import collections.abc
import importlib
import inspect
import logging
import sys
import time
import typing
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pydantic_core
from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model
from pydantic import ValidationError as PydanticValidationError

from ray_runtime.errors import BadRequestError, PluginNotFoundError, ValidationError
from ray_runtime.models.resources import Resource, ResourcesUpdate

__all__ = ["ActionSignature", "Context", "LoadedAction", "Reporter", "action", "bind", "import_entrypoint"]

logger = logging.getLogger("ray_runtime.action")
F = TypeVar("F", bound=Callable[..., Any])
_ACTION_ATTR = "__ray_runtime_action__"


# --------------------------------------------------------------------------------------------- context


class Reporter:
    """Where a mode sends what an action reports; the defaults log and keep nothing.

    Subclasses override what their mode records (the coordinator for jobs, lease heartbeats for workers).
    """

    def progress(self, ctx: Context, done: float, total: float | None, message: str) -> None:
        logger.info("%s/%s progress %s/%s %s", ctx.plugin, ctx.action, done, total, message)

    def resources(self, ctx: Context) -> ResourcesUpdate | None:
        """The resources version this run must use, or None when there is none."""
        return None


class Context:
    """What an action may use while it runs: progress, logs, metrics and the resources it should use."""

    def __init__(
        self,
        *,
        plugin: str,
        action: str,
        mode: str,
        run_id: str | None = None,
        reporter: Reporter | None = None,
    ) -> None:
        self.plugin = plugin
        self.action = action
        self.mode = mode
        self.run_id = run_id
        self.metrics: dict[str, float] = {}
        self._reporter = reporter or Reporter()
        self._resources: ResourcesUpdate | None = None
        self._resources_loaded = False
        self._gauges: dict[str, Any] = {}

    def progress(self, done: float, total: float | None = None, message: str = "") -> None:
        """Report progress: ``done`` of ``total`` units, with a short message."""
        self._reporter.progress(self, done, total, message)

    def log(self, message: str, **fields: Any) -> None:
        """Write a line to the run's log (the job log in job mode), with optional key=value fields."""
        extra = " ".join(f"{key}={value!r}" for key, value in fields.items())
        print(f"[{self.plugin}/{self.action}] {message}{' ' + extra if extra else ''}", flush=True)

    def metric(self, name: str, value: float, **tags: str) -> None:
        """Record a gauge, exported through Ray's metrics (``ray_runtime_<name>``) when running on Ray."""
        self.metrics[name] = value
        gauge = self._gauges.get(name)
        if gauge is None:
            gauge = self._gauges[name] = _ray_gauge(name, tuple(sorted(tags)))
        if gauge is not None:
            gauge.set(value, tags={"plugin": self.plugin, "action": self.action, **tags})

    @property
    def resources(self) -> dict[str, Resource]:
        """The named resources this run uses (pinned by its task, else the latest); empty if none."""
        update = self.resources_update
        return dict(update.resources) if update is not None else {}

    @property
    def resources_update(self) -> ResourcesUpdate | None:
        """The whole resources version (id and number too), fetched once per run."""
        if not self._resources_loaded:
            self._resources = self._reporter.resources(self)
            self._resources_loaded = True
        return self._resources

    def load_resources(self) -> None:
        """Fetch the resources now, outside any event loop: async actions read them without blocking their loop."""
        _ = self.resources_update


def _ray_gauge(name: str, tag_keys: tuple[str, ...]) -> Any:
    try:
        import ray
        from ray.util.metrics import Gauge
    except ImportError:  # pragma: no cover - ray is a dependency; kept for client-only installs
        return None
    if not ray.is_initialized():
        return None
    return Gauge(
        f"ray_runtime_{name}", description=f"reported by actions: {name}", tag_keys=("plugin", "action", *tag_keys)
    )


# ------------------------------------------------------------------------------------------- signature


@dataclass(frozen=True)
class ActionSignature:
    """How to call one action: its parameters model, where the context goes, and how results serialise."""

    params_model: type[BaseModel]
    model_param: str | None  # the parameter that takes the whole model; None: fields are keyword arguments
    context_param: str | None
    result_adapter: TypeAdapter[Any] | None
    streaming: bool
    is_async: bool
    fields: tuple[str, ...] = field(default=())

    def validate(self, params: Any) -> BaseModel:
        """Parameters from JSON text, a mapping, a model or None; every bad field is named at once."""
        try:
            if isinstance(params, self.params_model):
                return params
            if isinstance(params, str | bytes):
                return self.params_model.model_validate_json(params or b"{}")
            if isinstance(params, BaseModel):
                params = params.model_dump()
            return self.params_model.model_validate(params if params is not None else {})
        except PydanticValidationError as exc:
            if any(error["type"] == "json_invalid" for error in exc.errors()):
                raise BadRequestError(f"params are not valid JSON: {exc.errors()[0]['msg']}") from None
            raise ValidationError.from_pydantic("params", exc) from None

    def arguments(self, params: BaseModel, ctx: Context) -> dict[str, Any]:
        """Keyword arguments for the callable."""
        kwargs: dict[str, Any] = (
            {self.model_param: params}
            if self.model_param is not None
            else {name: getattr(params, name) for name in self.fields}
        )
        if self.context_param is not None:
            kwargs[self.context_param] = ctx
        return kwargs

    def dump(self, value: Any) -> Any:
        """A result (or one streamed item) as JSON-compatible Python."""
        if self.result_adapter is not None:
            return self.result_adapter.dump_python(value, mode="json")
        return pydantic_core.to_jsonable_python(value)

    def params_schema(self) -> dict[str, Any]:
        return self.params_model.model_json_schema()


def _is_context(name: str, annotation: Any) -> bool:
    return annotation is Context or (annotation is inspect.Parameter.empty and name == "ctx")


_STREAM_TYPES = (
    collections.abc.Iterator,
    collections.abc.AsyncIterator,
    collections.abc.Generator,
    collections.abc.AsyncGenerator,
    collections.abc.Iterable,
    collections.abc.AsyncIterable,
)


def _streamed_item(annotation: Any) -> tuple[bool, Any]:
    """Whether a return annotation is a stream, and the type of its items."""
    if typing.get_origin(annotation) in _STREAM_TYPES:
        args = typing.get_args(annotation)
        return True, args[0] if args else Any
    return False, annotation


def bind(target: Callable[..., Any], name: str = "action") -> ActionSignature:
    """Read an action's signature from its type hints.

    Raises:
        TypeError: The signature cannot be served (e.g. positional-only or ``*args`` parameters).
    """
    function = target.__call__ if inspect.isclass(target) else target  # type: ignore[operator]
    hints = typing.get_type_hints(function, include_extras=True)
    parameters = [p for p in inspect.signature(function).parameters.values() if p.name != "self"]
    context_param = None
    fields: dict[str, Any] = {}
    for parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD, parameter.POSITIONAL_ONLY):
            raise TypeError(f"action {name}: parameter {parameter.name!r} must be a plain (keyword) parameter")
        annotation = hints.get(parameter.name, parameter.annotation)
        if _is_context(parameter.name, annotation):
            context_param = parameter.name
            continue
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (Any if annotation is parameter.empty else annotation, default)
    model_param = None
    if len(fields) == 1:
        (only, (annotation, _)) = next(iter(fields.items()))
        if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
            model_param, params_model = only, annotation
    if model_param is None:
        params_model = create_model(  # type: ignore[call-overload]
            f"{name}_params", __config__=ConfigDict(extra="forbid"), **fields
        )
    returned = hints.get("return", inspect.Signature.empty)
    is_async = inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)
    streaming = inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function)
    adapter = None
    if returned not in (inspect.Signature.empty, None, type(None)):
        is_stream_type, item = _streamed_item(returned)
        streaming = streaming or is_stream_type
        adapter = TypeAdapter(item if is_stream_type else returned)
    return ActionSignature(
        params_model=params_model,
        model_param=model_param,
        context_param=context_param,
        result_adapter=adapter,
        streaming=streaming,
        is_async=is_async,
        fields=tuple(fields) if model_param is None else (),
    )


def action(fn: F | None = None, *, description: str | None = None) -> Any:
    """Mark a function (or class) as an action and check its signature at import time.

    Works bare (``@action``) or called (``@action(description=...)``). Undecorated functions work too; the
    decorator only fails early and records the description.
    """

    def mark(target: F) -> F:
        signature = bind(target, getattr(target, "__name__", "action"))
        setattr(target, _ACTION_ATTR, {"description": description or (target.__doc__ or "").strip(), "sig": signature})
        return target

    return mark(fn) if fn is not None else mark


# --------------------------------------------------------------------------------------- calling it


def import_entrypoint(folder: str | Path, entrypoint: str, what: str, **details: Any) -> Any:
    """The attribute ``module:attribute`` names (None if the module lacks it), imported with the plugin folder
    importable (it is the working_dir under Ray); an import that fails is a ``PluginNotFoundError`` about ``what``."""
    folder = str(Path(folder).resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    module_name, attribute = entrypoint.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginNotFoundError(
            f"{what}: cannot import {module_name!r} from {folder} ({exc}); "
            "check the entrypoint in plugin.yaml and the plugin's requirements",
            **details,
        ) from exc
    return getattr(module, attribute, None)


class LoadedAction:
    """An action's code imported and bound: validate parameters, then call, or stream chunks.

    A class entrypoint is instantiated once, here; its instance is called for every run.
    """

    def __init__(self, plugin: str, name: str, target: Callable[..., Any]) -> None:
        self.plugin = plugin
        self.name = name
        marked = getattr(target, _ACTION_ATTR, None)
        self.signature: ActionSignature = marked["sig"] if marked else bind(target, name)
        self.description = (marked or {}).get("description") or (target.__doc__ or "").strip()
        self._call = target() if inspect.isclass(target) else target

    @classmethod
    def load(cls, plugin: str, name: str, folder: str | Path, entrypoint: str) -> LoadedAction:
        """Import ``module:attribute`` with the plugin folder importable (it is the working_dir under Ray)."""
        what = f"plugin {plugin!r} action {name!r}"
        target = import_entrypoint(folder, entrypoint, what, plugin=plugin, action=name)
        if target is None or not callable(target):
            raise PluginNotFoundError(f"{what}: {entrypoint} is not callable", plugin=plugin, action=name)
        return cls(plugin, name, target)

    def context(self, mode: str, *, run_id: str | None = None, reporter: Reporter | None = None) -> Context:
        """A fresh context for one run of this action."""
        return Context(plugin=self.plugin, action=self.name, mode=mode, run_id=run_id, reporter=reporter)

    def run(self, params: Any, ctx: Context) -> Any:
        """Validate and call; the JSON-compatible result (a streaming action's chunks as a list)."""
        if self.signature.streaming:
            return list(self.stream(params, ctx))
        validated = self.signature.validate(params)
        if self.signature.is_async:
            ctx.load_resources()
        result = self._call(**self.signature.arguments(validated, ctx))
        if self.signature.is_async:
            result = asyncio.run(result)
        return self.signature.dump(result)

    def stream(self, params: Any, ctx: Context) -> Iterator[Any]:
        """Validate (before the first chunk), then yield each chunk as JSON-compatible Python."""
        validated = self.signature.validate(params)
        if self.signature.is_async:
            ctx.load_resources()
        produced = self._call(**self.signature.arguments(validated, ctx))
        if not self.signature.streaming:
            yield self.signature.dump(asyncio.run(produced) if self.signature.is_async else produced)
            return
        if inspect.isasyncgen(produced):
            yield from map(self.signature.dump, _drain(produced))
            return
        for item in produced:
            yield self.signature.dump(item)

    async def arun(self, params: Any, ctx: Context) -> Any:
        """:meth:`run` for event loops: sync code runs in a worker thread, never on the loop."""
        if self.signature.streaming:
            return [chunk async for chunk in self.astream(params, ctx)]
        validated = self.signature.validate(params)
        kwargs = self.signature.arguments(validated, ctx)
        if self.signature.is_async:
            await asyncio.to_thread(ctx.load_resources)
            return self.signature.dump(await self._call(**kwargs))
        return self.signature.dump(await asyncio.to_thread(self._call, **kwargs))

    async def astream(self, params: Any, ctx: Context) -> AsyncIterator[Any]:
        """:meth:`stream` for event loops."""
        validated = self.signature.validate(params)
        kwargs = self.signature.arguments(validated, ctx)
        if not self.signature.streaming:
            yield await self.arun(validated, ctx)
            return
        if self.signature.is_async:
            await asyncio.to_thread(ctx.load_resources)
            async for item in self._call(**kwargs):
                yield self.signature.dump(item)
            return
        produced = await asyncio.to_thread(self._call, **kwargs)
        done = object()
        while (item := await asyncio.to_thread(next, produced, done)) is not done:
            yield self.signature.dump(item)


def _drain(generator: Any) -> Iterator[Any]:
    """Iterate an async generator from sync code, on a private event loop."""
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(generator.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.close()


def throttle(interval_s: float) -> Callable[[bool], bool]:
    """A gate that opens at most every ``interval_s`` (always when forced): for chatty progress reports."""
    last = [0.0]

    def gate(force: bool = False) -> bool:
        now = time.monotonic()
        if force or now - last[0] >= interval_s:
            last[0] = now
            return True
        return False

    return gate
