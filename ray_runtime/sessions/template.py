"""A session template's code: the agent class, the contexts it is given, and how its state is snapshotted.

An agent is a plain class::

    class ChatAgent:
        def __init__(self, config: ChatConfig, ctx: SessionContext): ...     # config: a pydantic model (or a dict)
        def invoke(self, request: TurnRequest, ctx: TurnContext): ...        # return a result, or yield chunks
        def snapshot(self) -> Any: ...                                       # optional (default: the instance, pickled)
        def restore(self, state: Any) -> None: ...                           # optional: called on a fresh instance
        def ping(self) -> str: ...                                           # optional: "healthy" or "busy"

``invoke`` may be async, and may be a generator: a ``str`` it yields is a text chunk; it may also yield the agent
protocol's events (``ToolCall``, ``ToolResult``, ``Progress``, ``Custom``, ``TextChunk``). A generator's return value
is the turn's result (else the text it yielded, joined). ``ctx.add_tokens(n)`` counts tokens; ``ctx.cancelled`` says
the turn was cancelled (a streaming turn is stopped at its next chunk anyway).
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from ray_runtime.errors import PluginNotFoundError, RestoreRefusedError, ValidationError
from ray_runtime.models.agent import TextChunk, agent_event_adapter
from ray_runtime.models.resources import Resource, ResourcesUpdate
from ray_runtime.plugins.action import import_entrypoint

__all__ = ["LoadedTemplate", "SessionContext", "TurnContext", "as_event", "describe_template"]


class SessionContext:
    """What an agent is given once, when it is built: who it is, and the resources it should use.

    Kept with a snapshotted instance; what it reads from the host (the resources) is attached again on restore.
    """

    def __init__(self, session_id: str, tenant: str, template: str, version: str) -> None:
        self.session_id = session_id
        self.tenant = tenant
        self.template = template
        self.version = version
        self._resources: ResourcesUpdate | None = None

    @property
    def resources(self) -> dict[str, Resource]:
        """The tenant's latest resources (kept current by the host; empty if none)."""
        return dict(self._resources.resources) if self._resources is not None else {}

    @property
    def resources_update(self) -> ResourcesUpdate | None:
        return self._resources

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_resources": None}


class TurnContext:
    """What an agent is given for one turn."""

    def __init__(self, session: SessionContext, turn_id: str) -> None:
        self.session = session
        self.turn_id = turn_id
        self.tokens = 0
        self._cancelled = False
        self.openai_base_url: str | None = None
        """With the template's ``model_proxy``: an OpenAI-compatible base URL whose calls are kept in the trace."""
        self.openai_api_key: str | None = None
        """Its key (valid for this turn only)."""

    @property
    def cancelled(self) -> bool:
        """Whether the turn was cancelled: stop as soon as you can."""
        return self._cancelled

    @property
    def resources(self) -> dict[str, Resource]:
        return self.session.resources

    def add_tokens(self, count: int) -> None:
        """Count tokens this turn used (reported with its end and in the session's counters)."""
        self.tokens += int(count)

    def cancel(self) -> None:
        self._cancelled = True


def as_event(chunk: Any) -> TextChunk | Any:
    """What an agent yielded, as a protocol event: a string is a text chunk."""
    if isinstance(chunk, str):
        return TextChunk(text=chunk)
    if isinstance(chunk, BaseModel) and getattr(chunk, "kind", None):
        return chunk
    return agent_event_adapter.validate_python(chunk)


@dataclass(frozen=True)
class LoadedTemplate:
    """A template's agent class, imported, with what its signature says."""

    plugin: str
    action: str
    cls: type
    config_model: type[BaseModel] | None
    streaming: bool
    is_async: bool

    @property
    def id(self) -> str:
        return f"{self.plugin}.{self.action}"

    @classmethod
    def load(cls, plugin: str, action: str, folder: str | Path, entrypoint: str) -> LoadedTemplate:
        """Import ``module:Class`` with the plugin folder importable (it is the working_dir under Ray)."""
        target = import_entrypoint(folder, entrypoint, f"template {plugin}.{action}")
        if not inspect.isclass(target) or not callable(getattr(target, "invoke", None)):
            raise PluginNotFoundError(f"template {plugin}.{action}: {entrypoint} is not a class with an invoke method")
        invoke = target.invoke
        return cls(
            plugin=plugin,
            action=action,
            cls=target,
            config_model=_config_model(target),
            streaming=inspect.isgeneratorfunction(invoke) or inspect.isasyncgenfunction(invoke),
            is_async=inspect.iscoroutinefunction(invoke) or inspect.isasyncgenfunction(invoke),
        )

    def config(self, raw: Any) -> Any:
        """The config as the template's model validates it (every bad field named), or the dict as it is."""
        if self.config_model is None:
            return raw if raw is not None else {}
        try:
            return self.config_model.model_validate(raw if raw is not None else {})
        except PydanticValidationError as exc:
            raise ValidationError.from_pydantic("config", exc) from None

    def config_schema(self) -> dict[str, Any] | None:
        return self.config_model.model_json_schema() if self.config_model is not None else None

    def build(self, config: Any, ctx: SessionContext) -> Any:
        """A new agent."""
        return self.cls(config, ctx)

    def snapshot(self, agent: Any) -> bytes:
        """The agent's state as bytes: what its ``snapshot()`` returns, else the whole instance."""
        if callable(getattr(agent, "snapshot", None)):
            return cloudpickle.dumps({"kind": "state", "state": agent.snapshot()})
        return cloudpickle.dumps({"kind": "instance", "agent": agent})

    def restore(self, blob: bytes, config: Any, ctx: SessionContext) -> Any:
        """An agent back from a snapshot (perhaps taken by another version of the plugin).

        Raises:
            RestoreRefusedError: The snapshot cannot be read, or the template's ``restore`` refused it.
        """
        try:
            saved = cloudpickle.loads(blob)
        except Exception as exc:
            raise RestoreRefusedError(
                f"template {self.id} cannot read this snapshot: {type(exc).__name__}: {exc}"
            ) from None
        if saved.get("kind") == "instance":
            agent = saved["agent"]
            for name, value in vars(agent).items():
                if isinstance(value, SessionContext):
                    setattr(agent, name, ctx)  # the context of this life of the session
            return agent
        agent = self.build(config, ctx)
        if not callable(getattr(agent, "restore", None)):
            raise RestoreRefusedError(f"template {self.id} has no restore() for a snapshot() state")
        try:
            agent.restore(saved["state"])
        except Exception as exc:
            raise RestoreRefusedError(
                f"template {self.id} refused the snapshot ({type(exc).__name__}: {exc}); the plugin version may "
                "have changed in a way its restore() does not accept"
            ) from None
        return agent


def _config_model(target: type) -> type[BaseModel] | None:
    """The pydantic model the ``config`` parameter of ``__init__`` is annotated with, if any."""
    try:
        hints = typing.get_type_hints(target.__init__)
    except Exception:
        return None
    parameters = [p for p in inspect.signature(target.__init__).parameters.values() if p.name != "self"]
    if not parameters:
        return None
    annotation = hints.get(parameters[0].name)
    return annotation if inspect.isclass(annotation) and issubclass(annotation, BaseModel) else None


def describe_template(plugin: str, action: str, folder: Path, entrypoint: str) -> dict[str, Any]:
    """What the plugin catalog shows of a session template: whether it streams, and its config's JSON Schema."""
    template = LoadedTemplate.load(plugin, action, folder, entrypoint)
    return {"streaming": template.streaming, "config_schema": template.config_schema()}
