"""Wire models of installed plugins: what each action offers and the JSON schemas of its parameters and result."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["ActionInfo", "PluginInfo"]


class ActionInfo(BaseModel):
    """One action as its manifest declares it and, when described, as its code types it."""

    name: str
    description: str = ""
    modes: list[str]
    queue: str | None = Field(default=None, description="The queue worker mode consumes.")
    streaming: bool | None = Field(default=None, description="Yields chunks (None until described).")
    params_schema: dict[str, Any] | None = Field(default=None, description="JSON Schema of the parameters.")
    result_schema: dict[str, Any] | None = Field(default=None, description="JSON Schema of the result (or a chunk).")
    config_schema: dict[str, Any] | None = Field(default=None, description="A session template's config schema.")
    problem: str | None = Field(default=None, description="Why the action could not be described (e.g. import error).")


class PluginInfo(BaseModel):
    """An installed plugin and its actions."""

    name: str
    version: str
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    actions: list[ActionInfo]
