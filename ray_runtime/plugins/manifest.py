"""``plugin.yaml``: the manifest model, loading with errors that name file, field and problem, and discovery.

A plugin is a folder::

    plugins/hello/
      plugin.yaml        name, version, requirements, runtime_env, actions
      hello.py           the code the actions point at (entrypoint ``hello:greet``)

Loading a manifest never imports plugin code: that happens where an action runs, inside its runtime_env.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ray_runtime.errors import ManifestError, PluginNotFoundError

__all__ = [
    "MANIFEST_NAME",
    "ActionResources",
    "ActionSpec",
    "Mode",
    "Plugin",
    "PluginManifest",
    "PluginRegistry",
    "ServeOptions",
    "SessionOptions",
    "load",
]

MANIFEST_NAME = "plugin.yaml"
Mode = Literal["job", "task", "serve", "worker", "session"]
_NAME = r"^[a-z][a-z0-9_-]{0,62}$"
_ENTRYPOINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
SESSION_HOST_CPUS = 0.1  # what a session template's host asks when it declares no resources


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActionResources(_Strict):
    """Ray resources one run of the action needs (a task, a replica, a worker actor, a job's entrypoint)."""

    num_cpus: float = Field(default=1.0, ge=0)
    num_gpus: float = Field(default=0.0, ge=0)
    memory: int | None = Field(default=None, ge=0, description="Bytes.")
    custom: dict[str, float] = Field(default_factory=dict)

    def ray_options(self) -> dict[str, Any]:
        """As keyword options of ``.options()`` on a Ray task or actor."""
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.memory is not None:
            options["memory"] = self.memory
        if self.custom:
            options["resources"] = dict(self.custom)
        return options


class AutoscalingOptions(_Strict):
    """Serve autoscaling, as in ``serve.config.AutoscalingConfig``."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    target_ongoing_requests: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingOptions:
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be >= min_replicas")
        return self


class ServeOptions(_Strict):
    """How the action's Serve deployment runs."""

    num_replicas: int = Field(default=1, ge=1)
    max_ongoing_requests: int = Field(default=16, ge=1)
    autoscaling: AutoscalingOptions | None = None
    auth: Literal["keys", "none"] = Field(
        default="keys",
        description="keys: once any API key exists, callers need a live key (of the app's tenant, scope submit); "
        "none: open to anyone who reaches Serve.",
    )


class SessionOptions(_Strict):
    """How sessions of a template (an action of mode ``session``) live: where, how long, and how they rest."""

    isolation: Literal["dedicated", "shared"] = Field(
        default="shared",
        description="dedicated: one Ray actor per session (its own process, resources, runtime_env); shared: many "
        "sessions per host actor in a pool of the tenant and template.",
    )
    idle_timeout_s: float | None = Field(default=900.0, gt=0, description="None: never idles out.")
    max_lifetime_s: float | None = Field(default=8 * 3600.0, gt=0, description="None: lives until closed.")
    on_idle: Literal["unload", "close"] = "unload"
    checkpoint: Literal["on_pause", "every_turn"] = "on_pause"
    busy: Literal["reject", "queue"] = Field(default="reject", description="A turn sent while one runs.")
    recover: Literal["none", "last_checkpoint"] = Field(
        default="none", description="When its process or node dies: error, or back from the last checkpoint."
    )
    sessions_per_host: int = Field(default=256, ge=1, description="shared: how many sessions one host holds.")
    max_snapshot_bytes: int = Field(default=64 * 2**20, ge=1)
    env_vars: dict[str, str] = Field(default_factory=dict, description="Added to the plugin's runtime_env.")
    model_proxy: bool = Field(
        default=False,
        description="Give each turn ctx.openai_base_url and ctx.openai_api_key: the façade's proxy to the tenant's "
        "LLM resources, every call kept in the session's trace (a key made for the turn, deleted at its end).",
    )
    placement_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="How long creating or resuming a session waits for Ray to place a new host; then it fails with "
        "insufficient_resources (503) and the request is withdrawn. With an autoscaler, above a node's start time.",
    )


class ActionSpec(_Strict):
    """One action of a plugin, as the manifest declares it."""

    name: str = Field(default="", description="Filled from the key under ``actions``.")
    entrypoint: str = Field(
        description="``module:callable``: a function, or a class whose instances are called (for sessions: the "
        "agent class)."
    )
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    modes: list[Mode] = Field(default_factory=lambda: ["job", "task", "serve", "worker"], min_length=1)
    resources: ActionResources = Field(default_factory=ActionResources)
    queue: str | None = Field(
        default=None, description="Worker mode: the coordinator queue consumed (default: '<plugin>.<action>')."
    )
    serve: ServeOptions = Field(default_factory=ServeOptions)
    uses_resources: bool = Field(default=False, description="Serve replicas receive coordinator resources.")
    session: SessionOptions = Field(default_factory=SessionOptions)

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint(cls, value: str) -> str:
        if not _ENTRYPOINT.match(value):
            raise ValueError(f"must be 'module:callable' (e.g. 'hello:greet'), got {value!r}")
        return value

    @model_validator(mode="after")
    def _session_host_resources(self) -> ActionSpec:
        """A session template that declares no ``resources`` asks ``SESSION_HOST_CPUS`` for its host, not the
        1 CPU of the other modes: an agent's host mostly waits on models and tools, and a shared host holds many
        sessions (so three templates fit beside the example plugins on a 2-core machine)."""
        if "session" in self.modes and "resources" not in self.model_fields_set:
            object.__setattr__(self, "resources", ActionResources(num_cpus=SESSION_HOST_CPUS))
        return self

    @field_validator("modes")
    @classmethod
    def _unique_modes(cls, value: list[Mode]) -> list[Mode]:
        if len(set(value)) != len(value):
            raise ValueError("lists a mode twice")
        if "session" in value and len(value) > 1:
            raise ValueError("session is a mode of its own: an agent class, not a function the other modes call")
        return value

    @property
    def module(self) -> str:
        return self.entrypoint.split(":", 1)[0]

    @property
    def attribute(self) -> str:
        return self.entrypoint.split(":", 1)[1]


class RuntimeEnvOptions(_Strict):
    """Extra runtime_env for every run of the plugin."""

    env_vars: dict[str, str] = Field(default_factory=dict)
    excludes: list[str] = Field(default_factory=list, description="gitignore-style patterns left out of the package.")


class PluginManifest(_Strict):
    """The content of ``plugin.yaml``."""

    name: str = Field(pattern=_NAME)
    version: str = "0.1.0"
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    requirements: list[str] | str = Field(
        default_factory=list, description="pip lines, or the name of a requirements file in the plugin folder."
    )
    runtime_env: RuntimeEnvOptions = Field(default_factory=RuntimeEnvOptions)
    actions: dict[str, ActionSpec] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _name_actions(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("actions"), dict):
            data = {**data, "actions": {k: _named(k, v) for k, v in data["actions"].items()}}
        return data

    @field_validator("actions")
    @classmethod
    def _action_names(cls, value: dict[str, ActionSpec]) -> dict[str, ActionSpec]:
        for name in value:
            if not re.match(_NAME, name):
                raise ValueError(f"action name {name!r} must match {_NAME}")
        return value

    @model_validator(mode="after")
    def _default_queues(self) -> PluginManifest:
        for name, spec in self.actions.items():
            if spec.queue is None:
                self.actions[name] = spec.model_copy(update={"queue": f"{self.name}.{name}"})
        return self


def _named(name: str, spec: Any) -> Any:
    return {**spec, "name": name} if isinstance(spec, dict) else spec


class Plugin:
    """A loaded plugin: its manifest and the folder it lives in."""

    def __init__(self, manifest: PluginManifest, path: Path) -> None:
        self.manifest = manifest
        self.path = path

    @property
    def name(self) -> str:
        return self.manifest.name

    def action(self, name: str) -> ActionSpec:
        """One action by name; ``PluginNotFoundError`` lists the ones there are."""
        spec = self.manifest.actions.get(name)
        if spec is None:
            known = ", ".join(sorted(self.manifest.actions))
            raise PluginNotFoundError(f"plugin {self.name!r} has no action {name!r} (it has: {known})")
        return spec

    def requirements(self) -> list[str]:
        """pip requirement lines, read from the requirements file if the manifest names one."""
        requirements = self.manifest.requirements
        if isinstance(requirements, list):
            return requirements
        file = self.path / requirements
        if not file.is_file():
            raise ManifestError(
                str(self.path / MANIFEST_NAME), [_problem("requirements", f"{requirements} is missing")]
            )
        lines = (line.split("#", 1)[0].strip() for line in file.read_text().splitlines())
        return [line for line in lines if line]

    def __repr__(self) -> str:
        return f"Plugin({self.name!r}, {str(self.path)!r})"


def _problem(field: str, problem: str) -> dict[str, str]:
    return {"field": field, "problem": problem}


def load(path: str | Path) -> Plugin:
    """Load the plugin in folder ``path`` (or the ``plugin.yaml`` at ``path``).

    Raises:
        ManifestError: The manifest is missing, is not YAML, or breaks the schema; the message names the file
            and every bad field.
    """
    path = Path(path).expanduser().resolve()
    folder = path.parent if path.name == MANIFEST_NAME else path
    file = folder / MANIFEST_NAME
    if not file.is_file():
        raise ManifestError(str(file), [_problem("", f"no {MANIFEST_NAME} in {folder}")])
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise ManifestError(str(file), [_problem("", f"not valid YAML: {exc}")]) from None
    if not isinstance(data, dict):
        raise ManifestError(str(file), [_problem("", "must be a mapping of name, version, actions, ...")])
    try:
        manifest = PluginManifest.model_validate(data)
    except ValidationError as exc:
        errors = [
            _problem(".".join(str(part) for part in e["loc"]), e["msg"].removeprefix("Value error, "))
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise ManifestError(str(file), errors) from None
    return Plugin(manifest, folder)


class PluginRegistry:
    """The plugins under a folder (default ``./plugins``), one sub-folder each.

    Invalid plugins do not hide valid ones: their errors are kept in ``errors``.
    """

    def __init__(self, root: str | Path = "plugins") -> None:
        self.root = Path(root).expanduser().resolve()
        self.plugins: dict[str, Plugin] = {}
        self.errors: dict[str, ManifestError] = {}
        self.refresh()

    def refresh(self) -> None:
        """Scan the folder again."""
        self.plugins, self.errors = {}, {}
        if not self.root.is_dir():
            return
        for folder in sorted(p for p in self.root.iterdir() if (p / MANIFEST_NAME).is_file()):
            try:
                plugin = load(folder)
            except ManifestError as exc:
                self.errors[folder.name] = exc
                continue
            self.plugins[plugin.name] = plugin

    def get(self, name: str) -> Plugin:
        """A plugin by name."""
        plugin = self.plugins.get(name)
        if plugin is None:
            broken = f"; {name} is invalid: {self.errors[name].message}" if name in self.errors else ""
            known = ", ".join(sorted(self.plugins)) or "none"
            raise PluginNotFoundError(f"no plugin {name!r} under {self.root} (found: {known}){broken}")
        return plugin

    def __iter__(self):
        return iter(self.plugins.values())


def resolve(plugin: Plugin | str | Path, registry_root: str | Path = "plugins") -> Plugin:
    """A Plugin from a Plugin, a folder path, or a name under ``registry_root``."""
    if isinstance(plugin, Plugin):
        return plugin
    candidate = Path(plugin).expanduser()
    if (candidate / MANIFEST_NAME).is_file() or candidate.name == MANIFEST_NAME:
        return load(candidate)
    return PluginRegistry(registry_root).get(str(plugin))
