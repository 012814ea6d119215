"""Wire models of versioned resources: LLM endpoints, prompt templates and free JSON, by name."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "LLM",
    "RESOURCE_TYPES",
    "JSONResource",
    "NamedResources",
    "PromptTemplate",
    "Resource",
    "ResourcesUpdate",
    "named_resources_adapter",
]


class _Resource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LLM(_Resource):
    """An LLM endpoint with its model and sampling parameters."""

    resource_type: Literal["llm"] = "llm"
    endpoint: str
    model: str
    api_key: str | None = Field(default=None, repr=False)
    sampling_parameters: dict[str, Any] = Field(default_factory=dict)


class PromptTemplate(_Resource):
    """A prompt template and the engine that renders it."""

    resource_type: Literal["prompt_template"] = "prompt_template"
    template: str
    engine: Literal["f-string", "jinja", "poml"] = "f-string"

    def format(self, **values: Any) -> str:
        """Render an ``f-string`` template (``str.format`` rules); other engines are the caller's to render."""
        if self.engine != "f-string":
            raise NotImplementedError(f"render {self.engine} templates with that engine")
        return self.template.format(**values)


class JSONResource(_Resource):
    """Any JSON value: a config, a table of thresholds, a feature flag set."""

    resource_type: Literal["json"] = "json"
    value: Any = None


Resource = Annotated[LLM | PromptTemplate | JSONResource, Field(discriminator="resource_type")]
NamedResources = dict[str, Resource]

named_resources_adapter: TypeAdapter[dict[str, LLM | PromptTemplate | JSONResource]] = TypeAdapter(NamedResources)
RESOURCE_TYPES = frozenset({"llm", "prompt_template", "json"})  # the tags of Resource


class ResourcesUpdate(BaseModel):
    """One immutable version of a tenant's named resources."""

    model_config = ConfigDict(frozen=True)

    resources_id: str
    version: int = Field(description="1 for a tenant's first version, then counting up.")
    created_at: float
    resources: NamedResources
